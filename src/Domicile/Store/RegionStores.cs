using Domicile.Config;

namespace Domicile.Store;

public static class RegionStores
{
    public static SqlRegionStore Open(StoreLocation location) => location.Engine switch
    {
        StoreEngine.Sqlite => new SqliteRegionStore(location.Target),
        _ => new PostgresRegionStore(location.Target),
    };
}
