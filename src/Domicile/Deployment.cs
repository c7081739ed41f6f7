using Domicile.Config;
using Domicile.Store;

namespace Domicile;

public sealed record InitResult(string AdminToken, IReadOnlyDictionary<string, IReadOnlyList<string>> Shares);

/// <summary>Every region of one configuration, opened in this process (embedded mode).</summary>
public sealed class Deployment : IAsyncDisposable
{
    Deployment(DomicileConfig config, Dictionary<string, Region> regions)
    {
        Config = config;
        Regions = regions;
    }

    public DomicileConfig Config { get; }
    public IReadOnlyDictionary<string, Region> Regions { get; }

    public Region Region(string id) =>
        Regions.TryGetValue(id, out var r) ? r : throw DomicileException.NotFound($"there is no region '{id}' here; regions: {string.Join(", ", Regions.Keys)}");

    /// <summary>Opens the stores of every region (or only <paramref name="only"/>) without touching them.</summary>
    public static Deployment Open(DomicileConfig config, string? only = null, TimeProvider? time = null)
    {
        if (only is not null && config.Regions.All(r => r.Id != only))
            throw new ConfigException($"--region: there is no region '{only}' in the configuration");
        var regions = config.Regions.Where(r => only is null || r.Id == only)
            .ToDictionary(r => r.Id, r => new Region(r, config, RegionStores.Open(r.Store), time));
        return new Deployment(config, regions);
    }

    /// <summary>Initialises every region; refuses if any of them already is. Returns the shares per region.</summary>
    public async Task<IReadOnlyDictionary<string, IReadOnlyList<string>>> InitializeAsync(bool stayUnsealed = false, CancellationToken ct = default) =>
        (await InitializeWithAdminAsync(stayUnsealed, ct)).Shares;

    /// <summary>Initialises every region and creates the first admin operator, whose token is returned once.</summary>
    public async Task<InitResult> InitializeWithAdminAsync(bool stayUnsealed = false, CancellationToken ct = default,
        Action<string, IReadOnlyList<string>>? onRegion = null)
    {
        foreach (var r in Regions.Values)
            if (await r.IsInitializedAsync(ct))
                throw new DomicileException("conflict", $"region '{r.Id}' is already initialised; 'init' refuses to run twice on the same stores");
        var shares = new Dictionary<string, IReadOnlyList<string>>();
        foreach (var r in Regions.Values)
        {
            shares[r.Id] = await r.InitializeAsync(stayUnsealed, ct);
            // Handed out at once: if a later region fails, this one's shares are not lost with it.
            onRegion?.Invoke(r.Id, shares[r.Id]);
        }
        var (_, token) = await Operators.CreateAsync(this, "initial admin", Roles.Admin, "init", ct);
        return new InitResult(token, shares);
    }

    /// <summary>The region holding a user (the directory: user id → region, nothing else).</summary>
    public async Task<Region?> FindUserRegionAsync(string userId, CancellationToken ct = default)
    {
        foreach (var r in Regions.Values)
            if (await r.GetAccountAsync(userId, ct) is { State: UserStates.Active or UserStates.Fenced }) return r;
        return null;
    }

    /// <summary>Checks each region's schema: refuses a store not initialised or of another schema version, naming the region.</summary>
    public async Task CheckSchemasAsync(CancellationToken ct = default)
    {
        foreach (var r in Regions.Values)
        {
            try
            {
                await r.Store.CheckSchemaAsync(ct);
            }
            catch (StoreException e)
            {
                throw new StoreException($"region '{r.Id}': {e.Message}", e);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var r in Regions.Values) await r.DisposeAsync();
    }
}
