using Domicile.Config;

namespace Domicile.Tests.Support;

/// <summary>Builds configurations whose regions live on one engine, in fresh throwaway stores.</summary>
public static class Engines
{
    public const string Sqlite = "sqlite";
    public const string Postgres = "postgres";

    public static TheoryData<string> Both => new(Sqlite, Postgres);

    public static string TempDir(string prefix = "domicile-test")
    {
        var dir = Path.Combine(Path.GetTempPath(), $"{prefix}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>A store line for a new, empty store on the engine.</summary>
    public static string StoreLine(string engine, string dir, string region) => engine switch
    {
        Sqlite => $"sqlite:{Path.Combine(dir, region)}",
        Postgres => "postgres:" + PostgresServer.Instance.NewDatabase(region.Replace('-', '_')),
        _ => throw new ArgumentOutOfRangeException(nameof(engine)),
    };

    /// <summary>The demo policy with every region on <paramref name="engine"/> (or per-region engines).</summary>
    public static DomicileConfig Config(string engine, string? dir = null, Func<string, string>? engineFor = null,
        string extraServices = "", int shares = 5, int threshold = 3, long maxItemBytes = 64L * 1024 * 1024)
    {
        dir ??= TempDir();
        return ConfigLoader.Parse(Yaml(engine, dir, engineFor, extraServices, shares, threshold, maxItemBytes), dir);
    }

    /// <summary>The YAML behind <see cref="Config"/>, for a process started from a file.</summary>
    public static string Yaml(string engine, string dir, Func<string, string>? engineFor = null,
        string extraServices = "", int shares = 5, int threshold = 3, long maxItemBytes = 64L * 1024 * 1024)
    {
        string Store(string region) => StoreLine(engineFor?.Invoke(region) ?? engine, dir, region);
        var yaml = $"""
            regions:
              - id: cn-beijing
                country: CN
                store: "{Store("cn-beijing")}"
              - id: in-mumbai
                country: IN
                store: "{Store("in-mumbai")}"
              - id: sg-singapore
                country: SG
                store: "{Store("sg-singapore")}"
            jurisdictions:
              IN: [in-mumbai]
              CN: [cn-beijing]
              "*": [sg-singapore]
            services:
              - id: cloud-sync
                purpose: Back up and sync your contacts, notes and photos.
                version: 1
                retention: {"{"} after_withdrawal: 30d {"}"}
              - id: cloud-messaging
                purpose: Deliver messages from apps to your devices.
                version: 1
                retention: {"{"} message_ttl: 28d, after_withdrawal: 0d {"}"}
              - id: find-device
                purpose: Locate your lost phone.
                version: 1
                retention: {"{"} max_age: 7d, after_withdrawal: 0d {"}"}
            {extraServices}
            custody: {"{"} shares: {shares}, threshold: {threshold} {"}"}
            limits: {"{"} max_item_bytes: {maxItemBytes}, user_rps: 0 {"}"}
            """;
        return yaml;
    }
}
