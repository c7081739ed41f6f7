using System.Data.Common;
using Domicile.Config;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace Domicile.Tests.Support;

/// <summary>Direct SQL against a region's store, the way an insider with the disks would tamper with it.</summary>
public static class RawSql
{
    public static async Task<DbConnection> OpenAsync(StoreLocation location)
    {
        DbConnection c = location.Engine == StoreEngine.Sqlite
            ? new SqliteConnection($"Data Source={Path.Combine(location.Target, "region.db")};Pooling=false")
            : new NpgsqlConnection(new NpgsqlConnectionStringBuilder(location.Target) { Pooling = false }.ConnectionString);
        await c.OpenAsync();
        return c;
    }

    public static async Task<int> ExecAsync(StoreLocation location, string sql, params (string Name, object Value)[] args)
    {
        await using var c = await OpenAsync(location);
        await using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        foreach (var (n, v) in args)
        {
            var p = cmd.CreateParameter();
            p.ParameterName = n;
            p.Value = v;
            cmd.Parameters.Add(p);
        }
        return await cmd.ExecuteNonQueryAsync();
    }

    public static async Task<byte[]> BytesAsync(StoreLocation location, string sql)
    {
        await using var c = await OpenAsync(location);
        await using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        return (byte[])(await cmd.ExecuteScalarAsync())!;
    }

    public static async Task<long> CountAsync(StoreLocation location, string sql)
    {
        await using var c = await OpenAsync(location);
        await using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        return Convert.ToInt64(await cmd.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture);
    }
}
