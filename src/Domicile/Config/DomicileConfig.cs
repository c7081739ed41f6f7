namespace Domicile.Config;

/// <summary>A validated <c>domicile.yaml</c>: regions, jurisdiction policy, services, custody and limits.</summary>
public sealed class DomicileConfig
{
    public required IReadOnlyList<RegionConfig> Regions { get; init; }

    /// <summary>ISO 3166-1 alpha-2 code (or <c>*</c>) → allowed region ids; the first is home.</summary>
    public required IReadOnlyDictionary<string, IReadOnlyList<string>> Jurisdictions { get; init; }

    public required IReadOnlyList<ServiceConfig> Services { get; init; }
    public required CustodyConfig Custody { get; init; }
    public required LimitsConfig Limits { get; init; }
    public TimeSpan SweepInterval { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>A ceiling on how many users a migration moves a second, so a live region keeps its headroom; 0 = no ceiling.</summary>
    public int MigrationUsersPerSecond { get; init; }

    /// <summary>Folder that relative paths were resolved against.</summary>
    public required string BaseDirectory { get; init; }

    public RegionConfig Region(string id) =>
        Regions.FirstOrDefault(r => r.Id == id) ?? throw new KeyNotFoundException($"no region '{id}' in the configuration");

    public ServiceConfig? Service(string id) => Services.FirstOrDefault(s => s.Id == id);

    /// <summary>Regions allowed for a jurisdiction, home first; falls back to the <c>*</c> entry.</summary>
    public IReadOnlyList<string> AllowedRegions(string country)
    {
        if (Jurisdictions.TryGetValue(country.ToUpperInvariant(), out var regions)) return regions;
        return Jurisdictions.TryGetValue("*", out var fallback) ? fallback : [];
    }

    public string? HomeRegion(string country) => AllowedRegions(country) is [var first, ..] ? first : null;
}

public sealed record RegionConfig(string Id, string Country, StoreLocation Store);

public enum StoreEngine { Sqlite, Postgres }

/// <summary>Where a region keeps its data: a SQLite folder or a PostgreSQL connection string.</summary>
public sealed record StoreLocation(StoreEngine Engine, string Target)
{
    public override string ToString() => Engine == StoreEngine.Sqlite ? $"sqlite:{Target}" : "postgres:(connection string)";
}

public sealed record ServiceConfig(string Id, string Purpose, int Version, RetentionConfig Retention);

public sealed record RetentionConfig(TimeSpan AfterWithdrawal, TimeSpan? MessageTtl, TimeSpan? MaxAge);

public sealed record CustodyConfig(int Shares, int Threshold);

public sealed record LimitsConfig(long MaxItemBytes, int UserRps);
