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
    /// <param name="policy">Rewrites the YAML before it is read (another policy).</param>
    public static DomicileConfig Config(string engine, string? dir = null, Func<string, string>? engineFor = null,
        int shares = 5, int threshold = 3, long maxItemBytes = 64L * 1024 * 1024, Func<string, string>? policy = null)
    {
        dir ??= TempDir();
        var yaml = Yaml(engine, dir, engineFor, shares, threshold, maxItemBytes);
        return ConfigLoader.Parse(policy?.Invoke(yaml) ?? yaml, dir);
    }

    /// <summary>
    /// The YAML behind <see cref="Config"/> (for a process started from a file): the spec's demo
    /// policy with fresh stores, the given custody and item limit, and no rate limit.
    /// </summary>
    public static string Yaml(string engine, string dir, Func<string, string>? engineFor = null,
        int shares = 5, int threshold = 3, long maxItemBytes = 64L * 1024 * 1024)
    {
        var yaml = ConfigLoader.DemoYaml
            .Replace("custody: { shares: 5, threshold: 3 }", $"custody: {{ shares: {shares}, threshold: {threshold} }}", StringComparison.Ordinal)
            .Replace("limits: { max_item_bytes: 67108864, user_rps: 100 }", $"limits: {{ max_item_bytes: {maxItemBytes}, user_rps: 0 }}", StringComparison.Ordinal);
        foreach (var region in new[] { "cn-beijing", "in-mumbai", "sg-singapore" })
            yaml = yaml.Replace($"store: sqlite:{region}", $"store: \"{StoreLine(engineFor?.Invoke(region) ?? engine, dir, region)}\"", StringComparison.Ordinal);
        return yaml;
    }
}
