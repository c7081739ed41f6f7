using System.Text;
using Domicile.Config;

namespace Domicile.Tests.Support;

/// <summary>A deployment on one engine, initialised and unsealed, with helpers for common steps.</summary>
public sealed class TestDeployment : IAsyncDisposable
{
    public required Deployment Deployment { get; init; }
    public required IReadOnlyDictionary<string, IReadOnlyList<string>> Shares { get; init; }
    public required string Dir { get; init; }
    public DomicileConfig Config => Deployment.Config;
    public Region this[string region] => Deployment.Region(region);

    /// <param name="policy">See <see cref="Engines.Config"/>.</param>
    public static async Task<TestDeployment> CreateAsync(string engine, bool unsealed = true, long maxItemBytes = 64L * 1024 * 1024,
        Func<string, string>? engineFor = null, TimeProvider? time = null, Func<string, string>? policy = null)
    {
        var dir = Engines.TempDir();
        var config = Engines.Config(engine, dir, engineFor, maxItemBytes: maxItemBytes, policy: policy);
        var deployment = Deployment.Open(config, time: time);
        var shares = await deployment.InitializeAsync(stayUnsealed: unsealed);
        return new TestDeployment { Deployment = deployment, Shares = shares, Dir = dir };
    }

    public async Task<Account> UserAsync(string region = "in-mumbai", string country = "IN", string? login = null, params string[] consents)
    {
        var account = await this[region].CreateAccountAsync(login ?? $"user-{Guid.NewGuid():N}@example.com", "correct horse battery", country);
        foreach (var s in consents) await this[region].SetConsentAsync(account.UserId, s, true, "test");
        return account;
    }

    public async ValueTask DisposeAsync()
    {
        await Deployment.DisposeAsync();
        AbandonedFolders.Delete(Dir);
    }
}

public static class Bytes
{
    public static MemoryStream Stream(string text) => new(Encoding.UTF8.GetBytes(text));

    public static async Task<byte[]> ReadAllAsync(Stream s)
    {
        using var ms = new MemoryStream();
        await s.CopyToAsync(ms);
        return ms.ToArray();
    }

    public static async Task<string> TextAsync(Stream s) => Encoding.UTF8.GetString(await ReadAllAsync(s));
}

/// <summary>A clock the test moves by hand (timers still run on real time).</summary>
public sealed class ManualTime(DateTimeOffset start) : TimeProvider
{
    DateTimeOffset _now = start;
    public override DateTimeOffset GetUtcNow() => _now;
    public void Advance(TimeSpan by) => _now += by;
}
