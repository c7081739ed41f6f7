using System.Data.Common;
using System.Reflection;

namespace Domicile.Store;

/// <summary>
/// The ADO.NET work both engines share: the SQL below is the common dialect of SQLite and
/// PostgreSQL (named parameters, ON CONFLICT, RETURNING). Subclasses open connections, start
/// transactions and supply the few statements that differ.
/// </summary>
public abstract class SqlRegionStore : IRegionStore
{
    /// <summary>The newest schema version this code knows.</summary>
    public static int CodeSchemaVersion => Migrations("sqlite").Count;

    public abstract string Engine { get; }

    protected abstract Task<DbConnection> OpenAsync(CancellationToken ct);
    protected abstract Task<DbTransaction> BeginWriteAsync(DbConnection connection, CancellationToken ct);
    protected abstract Task<DbTransaction?> BeginReadAsync(DbConnection connection, CancellationToken ct);
    protected abstract Task CreateIfMissingAsync(CancellationToken ct);

    /// <summary>
    /// Rows per batched statement (arrays per column): a server engine saves a round trip per row; in-process
    /// SQLite is fastest with one prepared single-row statement reused.
    /// </summary>
    protected internal virtual int RowsPerStatement => 1;

    /// <summary>
    /// PostgreSQL takes $1, $2… natively; named @parameters make the driver rewrite every
    /// statement on every execution.
    /// </summary>
    protected internal virtual bool PositionalParameters => false;

    /// <summary>
    /// What a named parameter's name starts with. Microsoft.Data.Sqlite looks a bare name up four
    /// times on every execution (as given, then with each of @, $ and :, each a new string) and a
    /// prefixed name once: a twelve-column upsert spent a third of its time there.
    /// </summary>
    protected internal virtual string ParameterPrefix => "";

    static readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> PositionalSql = new();

    /// <summary>Rewrites @name placeholders to $n, numbered by the order of <paramref name="names"/>.</summary>
    internal static string ToPositional(string sql, string[] names)
    {
        var key = sql + "\n" + string.Join(',', names);
        return PositionalSql.GetOrAdd(key, _ =>
        {
            var index = new Dictionary<string, int>(StringComparer.Ordinal);
            for (var i = 0; i < names.Length; i++) index.TryAdd(names[i], i + 1);
            return System.Text.RegularExpressions.Regex.Replace(sql, "@([A-Za-z_][A-Za-z0-9_]*)", m =>
                index.TryGetValue(m.Groups[1].Value, out var n) ? "$" + n.ToString(System.Globalization.CultureInfo.InvariantCulture)
                : throw new InvalidOperationException($"no value for parameter {m.Value}"));
        });
    }

    /// <summary>
    /// A filter matching <paramref name="column"/> against a list passed as one parameter: an array
    /// where the engine has them; SQLite takes a JSON array (see <see cref="ListValue"/>).
    /// </summary>
    protected internal virtual string InList(string column, string parameter) => $"{column} = ANY({parameter}::text[])";

    /// <summary>A list parameter as a table of one column, <c>value</c>.</summary>
    protected internal virtual string ListTable(string parameter) => $"unnest({parameter}::text[]) AS l(value)";

    protected internal virtual object ListValue(IReadOnlyList<string> values) => values.ToArray();

    /// <summary>Suffix that locks a selected row for the rest of a write transaction.</summary>
    protected internal abstract string LockShare { get; }
    protected internal abstract string LockUpdate { get; }
    /// <summary>Statement run before reading the audit head in a write (serialises appends).</summary>
    protected internal abstract string? AuditLockSql { get; }

    public virtual async Task<int> SchemaVersionAsync(CancellationToken ct = default)
    {
        await using var c = await OpenAsync(ct);
        if (!await TableExistsAsync(c, "schema_migrations", ct)) return 0;
        await using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations";
        return Convert.ToInt32(await cmd.ExecuteScalarAsync(ct), System.Globalization.CultureInfo.InvariantCulture);
    }

    protected abstract Task<bool> TableExistsAsync(DbConnection connection, string table, CancellationToken ct);

    public async Task UpgradeAsync(CancellationToken ct = default)
    {
        await CreateIfMissingAsync(ct);
        var current = await SchemaVersionAsync(ct);
        var migrations = Migrations(Engine);
        if (current > migrations.Count)
            throw NewerSchema(current);
        using var slot = await EnterWriteAsync(ct);
        await using var c = await OpenAsync(ct);
        for (var v = current + 1; v <= migrations.Count; v++)
        {
            await using var tx = await BeginWriteAsync(c, ct);
            await using (var cmd = c.CreateCommand())
            {
                cmd.Transaction = tx;
                cmd.CommandText = "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)";
                await cmd.ExecuteNonQueryAsync(ct);
            }
            var script = string.Join('\n', migrations[v - 1].Split('\n').Where(l => !l.TrimStart().StartsWith("--", StringComparison.Ordinal)));
            foreach (var sql in script.Split(';', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                await using var cmd = c.CreateCommand();
                cmd.Transaction = tx;
                cmd.CommandText = sql;
                await cmd.ExecuteNonQueryAsync(ct);
            }
            await using (var cmd = c.CreateCommand())
            {
                cmd.Transaction = tx;
                cmd.CommandText = "INSERT INTO schema_migrations (version, applied_at) VALUES (@v, @at)";
                AddParameter(cmd, ParameterPrefix + "v", v);
                AddParameter(cmd, ParameterPrefix + "at", DateTimeOffset.UtcNow.ToString("O", System.Globalization.CultureInfo.InvariantCulture));
                await cmd.ExecuteNonQueryAsync(ct);
            }
            await tx.CommitAsync(ct);
            Committed();
        }
    }

    /// <summary>
    /// Refuses a store this program cannot serve: not initialised, or written with another schema
    /// version. The messages say what to do; there is no in-place upgrade command (SPEC 6.1), so a
    /// store is served by the release whose schema it has.
    /// </summary>
    public async Task CheckSchemaAsync(CancellationToken ct = default)
    {
        var v = await SchemaVersionAsync(ct);
        if (v == 0)
            throw new StoreException($"the {Engine} store is not initialised; run 'domicile init' with this configuration first (or check the region's store: setting if it should already exist)");
        if (v > CodeSchemaVersion) throw NewerSchema(v);
        if (v < CodeSchemaVersion)
            throw new StoreException($"the {Engine} store has schema version {v}, older than this program's {CodeSchemaVersion}, and this program does not convert stores in place; serve it with the Domicile release that created it");
    }

    StoreException NewerSchema(int version) =>
        new($"the {Engine} store has schema version {version}, newer than this program's {CodeSchemaVersion}; it was written by a newer Domicile: run that release (or a later one) instead of this one");

    public async Task<T> ReadAsync<T>(Func<IStoreTx, Task<T>> work, CancellationToken ct = default)
    {
        var c = await RentAsync(ct);
        try
        {
            var (tx, ofCommands) = await BeginWorkAsync(c, write: false, ct);
            await using (tx)
            {
                await using var stx = new SqlStoreTx(this, c, ofCommands, write: false);
                return await work(stx);
            }
        }
        finally
        {
            await ReturnAsync(c);
        }
    }

    /// <summary>
    /// The transaction a <see cref="ReadAsync"/> or <see cref="WriteAsync"/> runs in, and the one
    /// its commands must name (null for none): by default the engine's own transaction for both.
    /// </summary>
    protected virtual async Task<(DbTransaction? Tx, DbTransaction? OfCommands)> BeginWorkAsync(DbConnection connection, bool write, CancellationToken ct)
    {
        var tx = write ? await BeginWriteAsync(connection, ct) : await BeginReadAsync(connection, ct);
        return (tx, tx);
    }

    /// <summary>A connection for one read or write; engines that pool themselves just open one.</summary>
    protected virtual Task<DbConnection> RentAsync(CancellationToken ct) => OpenAsync(ct);

    protected virtual ValueTask ReturnAsync(DbConnection connection) => connection.DisposeAsync();

    /// <summary>The connection for a write, rented while this process's write turn is held.</summary>
    protected virtual Task<DbConnection> RentWriterAsync(CancellationToken ct) => RentAsync(ct);

    protected virtual ValueTask ReturnWriterAsync(DbConnection connection) => ReturnAsync(connection);

    /// <summary>
    /// Runs a statement directly on the engine, below ADO.NET, where the engine allows it; returns
    /// the rows changed (or, with <paramref name="scalar"/>, its first row's first column as an
    /// integer, 0 for none), or null to take the usual path.
    /// </summary>
    protected internal virtual long? ExecuteDirect(DbConnection connection, string sql, (string Name, object? Value)[] args, bool scalar = false) => null;

    /// <summary>Statements kept with a connection across transactions, or null to keep them per transaction.</summary>
    protected internal virtual Dictionary<string, DbCommand>? CommandCache(DbConnection connection) => null;

    public async Task<T> WriteAsync<T>(Func<IStoreTx, Task<T>> work, CancellationToken ct = default)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                using var slot = await EnterWriteAsync(ct);
                var c = await RentWriterAsync(ct);
                try
                {
                    var (tx, ofCommands) = await BeginWorkAsync(c, write: true, ct);
                    await using (tx)
                    {
                        await using var stx = new SqlStoreTx(this, c, ofCommands, write: true);
                        var result = await work(stx);
                        await tx!.CommitAsync(ct);
                        Committed();
                        return result;
                    }
                }
                finally
                {
                    await ReturnWriterAsync(c);
                }
            }
            catch (DbException e) when (IsTransient(e) && attempt < 5)
            {
                await Task.Delay(10 * attempt * attempt, ct);
            }
            catch (DbException e) when (IsUniqueViolation(e))
            {
                throw new DomicileException("conflict", "that already exists (another request created it at the same moment); retry");
            }
        }
    }

    /// <summary>Called after every write transaction commits (writes, restores, schema upgrades).</summary>
    protected virtual void Committed()
    {
    }

    /// <summary>Deadlocks and serialization failures: the transaction may simply be run again.</summary>
    protected abstract bool IsTransient(DbException e);
    protected abstract bool IsUniqueViolation(DbException e);

    /// <summary>Waits for this process's turn to write, where the engine allows one writer only.</summary>
    protected virtual Task<IDisposable?> EnterWriteAsync(CancellationToken ct) => Task.FromResult<IDisposable?>(null);

    public abstract ValueTask DisposeAsync();

    /// <summary>Reads whole tables inside one snapshot (for backups); rows arrive column-ordered.</summary>
    public async Task DumpAsync(IReadOnlyList<(string Table, string[] Columns)> tables, Func<string, object?[], Task> onRow, CancellationToken ct = default)
    {
        await using var c = await OpenAsync(ct);
        await using var tx = await BeginSnapshotAsync(c, ct);
        foreach (var (table, columns) in tables)
        {
            await using var cmd = c.CreateCommand();
            cmd.Transaction = tx;
            cmd.CommandText = $"SELECT {string.Join(", ", columns)} FROM {table} ORDER BY 1{(columns.Length > 1 ? ", 2" : "")}";
            await using var r = await cmd.ExecuteReaderAsync(ct);
            while (await r.ReadAsync(ct))
            {
                var values = new object?[columns.Length];
                for (var i = 0; i < values.Length; i++) values[i] = r.IsDBNull(i) ? null : r.GetValue(i);
                await onRow(table, values);
            }
        }
    }

    /// <summary>
    /// Replaces whole tables in one transaction: deletes them, then inserts what <paramref name="rows"/> yields.
    /// Tables in <paramref name="merge"/> are not cleared; their rows are added unless one with the same key exists.
    /// <paramref name="after"/> statements run last, in the same transaction.
    /// </summary>
    public async Task<T> ReplaceAsync<T>(IReadOnlyList<(string Table, string[] Columns)> tables, IReadOnlySet<string> merge,
        Func<Func<string, object?[], Task>, Task<T>> rows, IReadOnlyList<string> after, CancellationToken ct = default)
    {
        using var slot = await EnterWriteAsync(ct);
        await using var c = await OpenAsync(ct);
        await using var tx = await BeginWriteAsync(c, ct);
        foreach (var (table, _) in tables.Reverse().Where(t => !merge.Contains(t.Table)))
        {
            await using var del = c.CreateCommand();
            del.Transaction = tx;
            del.CommandText = $"DELETE FROM {table}";
            await del.ExecuteNonQueryAsync(ct);
        }
        var commands = new Dictionary<string, DbCommand>();
        try
        {
            foreach (var (table, columns) in tables)
            {
                var cmd = c.CreateCommand();
                cmd.Transaction = tx;
                cmd.CommandText = $"INSERT INTO {table} ({string.Join(", ", columns)}) VALUES ({string.Join(", ", columns.Select((_, i) => "@p" + i))})"
                    + (merge.Contains(table) ? " ON CONFLICT DO NOTHING" : "");
                for (var i = 0; i < columns.Length; i++) AddParameter(cmd, ParameterPrefix + "p" + i, null);
                commands[table] = cmd;
            }
            var result = await rows(async (table, values) =>
            {
                var cmd = commands[table];
                for (var i = 0; i < values.Length; i++) cmd.Parameters[i].Value = values[i] ?? DBNull.Value;
                await cmd.ExecuteNonQueryAsync(ct);
            });
            foreach (var sql in after)
            {
                await using var cmd = c.CreateCommand();
                cmd.Transaction = tx;
                cmd.CommandText = sql;
                await cmd.ExecuteNonQueryAsync(ct);
            }
            await tx.CommitAsync(ct);
            Committed();
            return result;
        }
        finally
        {
            foreach (var cmd in commands.Values) await cmd.DisposeAsync();
        }
    }

    /// <summary>A read transaction that sees one consistent snapshot.</summary>
    protected abstract Task<DbTransaction> BeginSnapshotAsync(DbConnection connection, CancellationToken ct);

    internal static void AddParameter(DbCommand cmd, string name, object? value)
    {
        var p = cmd.CreateParameter();
        p.ParameterName = name;
        p.Value = Normalize(value);
        cmd.Parameters.Add(p);
    }

    internal static object Normalize(object? value) => value switch
    {
        null => DBNull.Value,
        bool b => b ? 1L : 0L,
        int i => (long)i,
        _ => value,
    };

    static readonly Dictionary<string, IReadOnlyList<string>> MigrationCache = [];

    static IReadOnlyList<string> Migrations(string engine)
    {
        lock (MigrationCache)
        {
            if (MigrationCache.TryGetValue(engine, out var cached)) return cached;
            var asm = Assembly.GetExecutingAssembly();
            var prefix = $"Domicile.Store.Sql.{engine}.";
            var list = asm.GetManifestResourceNames()
                .Where(n => n.StartsWith(prefix, StringComparison.Ordinal))
                .Order(StringComparer.Ordinal)
                .Select(n =>
                {
                    using var s = asm.GetManifestResourceStream(n)!;
                    using var r = new StreamReader(s);
                    return r.ReadToEnd();
                })
                .ToList();
            MigrationCache[engine] = list;
            return list;
        }
    }
}

/// <summary>A store that cannot be used as it is (not initialised, newer schema, unreachable).</summary>
public sealed class StoreException(string message, Exception? inner = null) : Exception(message, inner);
