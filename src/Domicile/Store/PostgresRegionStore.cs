using System.Data.Common;
using Npgsql;

namespace Domicile.Store;

/// <summary>A region in one PostgreSQL database.</summary>
public sealed class PostgresRegionStore : SqlRegionStore
{
    readonly NpgsqlDataSource _dataSource;
    readonly NpgsqlConnectionStringBuilder _builder;

    public PostgresRegionStore(string connectionString)
    {
        _builder = new NpgsqlConnectionStringBuilder(connectionString);
        if (_builder.MaxAutoPrepare == 0) _builder.MaxAutoPrepare = 64;
        _dataSource = NpgsqlDataSource.Create(_builder.ConnectionString);
    }

    public override string Engine => "postgres";
    protected internal override int RowsPerStatement => 1000;
    protected internal override bool PositionalParameters => true;
    protected internal override string LockShare => " FOR SHARE";
    protected internal override string LockUpdate => " FOR UPDATE";
    protected internal override string? AuditLockSql => "SELECT pg_advisory_xact_lock(730155)";

    protected override async Task<DbConnection> OpenAsync(CancellationToken ct)
    {
        try
        {
            return await _dataSource.OpenConnectionAsync(ct);
        }
        catch (NpgsqlException e)
        {
            throw new StoreException($"cannot reach the PostgreSQL store (host {_builder.Host}, database {_builder.Database}): {e.Message}", e);
        }
    }

    protected override async Task CreateIfMissingAsync(CancellationToken ct)
    {
        var database = _builder.Database;
        if (string.IsNullOrEmpty(database)) return;
        var admin = new NpgsqlConnectionStringBuilder(_builder.ConnectionString) { Database = "postgres", Pooling = false };
        await using var c = new NpgsqlConnection(admin.ConnectionString);
        try
        {
            await c.OpenAsync(ct);
        }
        catch (NpgsqlException e)
        {
            throw new StoreException($"cannot reach the PostgreSQL server (host {_builder.Host}): {e.Message}", e);
        }
        await using var check = new NpgsqlCommand("SELECT 1 FROM pg_database WHERE datname = @d", c);
        check.Parameters.AddWithValue("d", database);
        if (await check.ExecuteScalarAsync(ct) is not null) return;
        await using var create = new NpgsqlCommand($"CREATE DATABASE \"{database.Replace("\"", "\"\"", StringComparison.Ordinal)}\"", c);
        await create.ExecuteNonQueryAsync(ct);
    }

    protected override async Task<bool> TableExistsAsync(DbConnection connection, string table, CancellationToken ct)
    {
        await using var cmd = connection.CreateCommand();
        cmd.CommandText = "SELECT to_regclass(@t) IS NOT NULL";
        AddParameter(cmd, "t", table);
        return (bool)(await cmd.ExecuteScalarAsync(ct))!;
    }

    public override async Task<int> SchemaVersionAsync(CancellationToken ct = default)
    {
        try
        {
            return await base.SchemaVersionAsync(ct);
        }
        catch (StoreException)
        {
            if (await DatabaseMissingAsync(ct)) return 0;
            throw;
        }
    }

    async Task<bool> DatabaseMissingAsync(CancellationToken ct)
    {
        var admin = new NpgsqlConnectionStringBuilder(_builder.ConnectionString) { Database = "postgres", Pooling = false };
        await using var c = new NpgsqlConnection(admin.ConnectionString);
        await c.OpenAsync(ct);
        await using var check = new NpgsqlCommand("SELECT 1 FROM pg_database WHERE datname = @d", c);
        check.Parameters.AddWithValue("d", _builder.Database ?? "");
        return await check.ExecuteScalarAsync(ct) is null;
    }

    protected override async Task<DbTransaction> BeginWriteAsync(DbConnection connection, CancellationToken ct) =>
        await connection.BeginTransactionAsync(System.Data.IsolationLevel.ReadCommitted, ct);

    protected override Task<DbTransaction?> BeginReadAsync(DbConnection connection, CancellationToken ct) =>
        Task.FromResult<DbTransaction?>(null);

    protected override async Task<DbTransaction> BeginSnapshotAsync(DbConnection connection, CancellationToken ct) =>
        await connection.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, ct);

    // Only errors the server raised before committing: a lost connection during COMMIT has an
    // unknown outcome, and running the work again could write it twice.
    protected override bool IsTransient(DbException e) => e is PostgresException { SqlState: "40001" or "40P01" };
    protected override bool IsUniqueViolation(DbException e) => e is PostgresException { SqlState: "23505" };

    public override ValueTask DisposeAsync() => _dataSource.DisposeAsync();
}
