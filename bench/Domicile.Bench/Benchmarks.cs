using System.Data.Common;
using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Domicile.Config;
using Domicile.Keys;
using Domicile.Server;
using Domicile.Store;
using Domicile.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace Domicile.Bench;

/// <summary>
/// SPEC 7: every figure is a ratio against a baseline measured in the same run on the same
/// machine, after a warm-up, as the median of several rounds.
/// </summary>
public sealed class Benchmarks(Sizes sizes, TextWriter log)
{
    /// <summary>The stores P1 measures (a profile of one engine needs the other left out).</summary>
    public IReadOnlyList<string> Engines { get; init; } = ["sqlite", "postgres"];

    public IEnumerable<(string Id, Func<Task<JsonObject>> Run)> All() =>
    [
        ("P1", P1), ("P2", P2), ("P3", P3), ("P4", P4), ("P5", P5), ("P6", P6),
    ];

    // ---- helpers ---------------------------------------------------------------------------

    static readonly List<string> Folders = [];

    static string TempDir()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"domicile-bench-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        lock (Folders) Folders.Add(dir);
        return dir;
    }

    /// <summary>
    /// Removes this run's store folders (called after each figure, once its deployments are closed)
    /// and those of earlier runs that were killed: a full-size run leaves gigabytes behind.
    /// </summary>
    public static void CleanUp()
    {
        List<string> mine;
        lock (Folders)
        {
            mine = [.. Folders];
            Folders.Clear();
        }
        foreach (var dir in mine) AbandonedFolders.Delete(dir);
        AbandonedFolders.Remove("domicile-bench-");
    }

    static bool PostgresAvailable()
    {
        try
        {
            _ = PostgresServer.Instance.Port;
            return true;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    static string Yaml(string dir, Func<string, string> store) => $"""
        regions:
          - {"{"} id: cn-beijing, country: CN, store: "{store("cn-beijing")}" {"}"}
          - {"{"} id: in-mumbai, country: IN, store: "{store("in-mumbai")}" {"}"}
        jurisdictions:
          IN: [in-mumbai]
          "*": [cn-beijing]
        services:
          - {"{"} id: cloud-sync, purpose: Back up and sync., version: 1, retention: {"{"} after_withdrawal: 30d {"}"} {"}"}
          - {"{"} id: cloud-messaging, purpose: Messages., version: 1, retention: {"{"} message_ttl: 28d, after_withdrawal: 0d {"}"} {"}"}
        custody: {"{"} shares: 3, threshold: 2 {"}"}
        limits: {"{"} max_item_bytes: 67108864, user_rps: 0 {"}"}
        """;

    static async Task<Deployment> DeployAsync(string engine, string dir)
    {
        string Store(string region) => engine == "sqlite"
            ? $"sqlite:{Path.Combine(dir, region)}"
            : "postgres:" + PostgresServer.Instance.NewDatabase("bench_" + region.Replace('-', '_'));
        var config = ConfigLoader.Parse(Yaml(dir, Store), dir);
        var d = Deployment.Open(config);
        await d.InitializeAsync(stayUnsealed: true);
        return d;
    }

    /// <summary>A measured series: its name, and one round returning the operations done and the time they took.</summary>
    sealed record Series(string What, Func<Task<(long Ops, TimeSpan Time)>> Round);

    /// <summary>
    /// Warms every series up together (see <see cref="WarmUpAsync"/>), then runs <see cref="Sizes.Rounds"/>
    /// rounds of each in turn (ours, baseline, ours, …) and returns each series' median rate. Taken in
    /// turn, a machine whose speed drifts during the run (a VM's neighbours) slows both sides of a
    /// ratio alike, instead of whichever side ran in the slow minute.
    /// </summary>
    async Task<double[]> MedianRates(params Series[] series)
    {
        await WarmUpAsync(async () => { foreach (var s in series) await s.Round(); });
        var rates = series.Select(_ => new List<double>()).ToArray();
        var cpu = series.Select(_ => new List<double>()).ToArray();
        var system = series.Select(_ => new List<double>()).ToArray();
        var io = series.Select(_ => new List<(double Bytes, double Writes, double Reads, double FromDisk)>()).ToArray();
        var gc = series.Select(_ => new List<double>()).ToArray();
        using var me = Process.GetCurrentProcess();
        for (var i = 0; i < sizes.Rounds; i++)
            for (var k = 0; k < series.Length; k++)
            {
                me.Refresh();
                var (cpu0, system0) = (me.TotalProcessorTime, me.PrivilegedProcessorTime);
                var io0 = IoCounters();
                var paused = GC.GetTotalPauseDuration();
                var (ops, time) = await series[k].Round();
                gc[k].Add((GC.GetTotalPauseDuration() - paused) / time);
                var done = IoSince(io0);
                me.Refresh();
                io[k].Add((done.Written / (double)ops, done.Writes / (double)ops, done.Reads / (double)ops, done.FromDisk / (double)ops));
                cpu[k].Add((me.TotalProcessorTime - cpu0).TotalMicroseconds / ops);
                system[k].Add((me.PrivilegedProcessorTime - system0).TotalMicroseconds / ops);
                rates[k].Add(ops / time.TotalSeconds);
            }
        var medians = new double[series.Length];
        static double Median(IEnumerable<double> values)
        {
            var sorted = values.Order().ToList();
            return sorted[sorted.Count / 2];
        }
        for (var k = 0; k < series.Length; k++)
        {
            rates[k].Sort();
            medians[k] = rates[k][rates[k].Count / 2];
            log.WriteLine($"  {series[k].What}: {Median(cpu[k]):N1} µs of this process's CPU per operation, {Median(system[k]):N1} of them in the kernel; {Median(gc[k]):P1} of the time in GC pauses");
            var (bytes, writes, reads, fromDisk) = (Median(io[k].Select(x => x.Bytes)), Median(io[k].Select(x => x.Writes)), Median(io[k].Select(x => x.Reads)), Median(io[k].Select(x => x.FromDisk)));
            if (bytes > 0) log.WriteLine($"  {series[k].What}: {bytes / 1024:N1} KiB written per operation in {writes:N2} write calls, and {reads:N2} read calls ({fromDisk / 1024:N1} KiB of them from the disk, not the kernel's cache)");
            log.WriteLine($"  {series[k].What}: {medians[k]:N0}/s (rounds {string.Join(", ", rates[k].Select(r => r.ToString("N0", System.Globalization.CultureInfo.InvariantCulture)))})");
        }
        return medians;
    }

    /// <summary>
    /// This process's bytes written, its write and read calls, and the bytes its reads took from the
    /// disk itself, from Linux's /proc/self/io (zeros elsewhere): the kernel's share of a write is
    /// mostly its bytes and calls, and a read that misses the kernel's cache waits for the disk.
    /// </summary>
    static (long Written, long Writes, long Reads, long FromDisk) IoCounters()
    {
        if (!File.Exists("/proc/self/io")) return (0, 0, 0, 0);
        var values = File.ReadAllLines("/proc/self/io").Select(l => l.Split(':', 2)).ToDictionary(p => p[0], p => long.Parse(p[1].Trim(), System.Globalization.CultureInfo.InvariantCulture));
        return (values["wchar"], values["syscw"], values["syscr"], values.GetValueOrDefault("read_bytes")); // without storage accounting, no read_bytes
    }

    /// <summary>The <see cref="IoCounters"/> since <paramref name="start"/>.</summary>
    static (long Written, long Writes, long Reads, long FromDisk) IoSince((long Written, long Writes, long Reads, long FromDisk) start)
    {
        var now = IoCounters();
        return (now.Written - start.Written, now.Writes - start.Writes, now.Reads - start.Reads, now.FromDisk - start.FromDisk);
    }

    /// <summary>
    /// Runs rounds for at least <see cref="Sizes.WarmUp"/> and until the JIT has stopped compiling
    /// (at most <see cref="Sizes.MaxWarmUp"/>): tiered compilation works in the background on this machine's two cores and
    /// would otherwise be measured against whichever side has more code.
    /// </summary>
    async Task WarmUpAsync(Func<Task> round)
    {
        var warm = Stopwatch.StartNew();
        long before;
        do
        {
            before = System.Runtime.JitInfo.GetCompiledMethodCount();
            await round();
        } while (warm.Elapsed < sizes.WarmUp || (System.Runtime.JitInfo.GetCompiledMethodCount() != before && warm.Elapsed < sizes.MaxWarmUp));
        log.WriteLine($"  warm-up: {warm.Elapsed.TotalSeconds:N1} s, {System.Runtime.JitInfo.GetCompiledMethodCount():N0} methods compiled so far");
    }

    static JsonObject Ratio(double ours, double baseline, JsonObject? extra = null)
    {
        var o = new JsonObject { ["ratio"] = Math.Round(ours / baseline, 3), ["ours_per_s"] = Math.Round(ours, 1), ["baseline_per_s"] = Math.Round(baseline, 1) };
        if (extra is not null) foreach (var (k, v) in extra) o[k] = v?.DeepClone();
        return o;
    }

    /// <summary>
    /// A plain client's connection to the region's store; with <paramref name="file"/>, on SQLite, to
    /// another database file beside it. A baseline whose rounds alternate with ours writes there:
    /// sharing one log, each side's checkpoints would copy the other's pages.
    /// </summary>
    static async Task<DbConnection> RawConnectionAsync(Region region, string file = "region.db")
    {
        var store = region.Config.Store;
        DbConnection c = store.Engine == StoreEngine.Sqlite
            ? new SqliteConnection($"Data Source={Path.Combine(store.Target, file)}")
            : new NpgsqlConnection(store.Target);
        await c.OpenAsync();
        if (c is SqliteConnection)
        {
            await using var p = c.CreateCommand();
            p.CommandText = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;";
            await p.ExecuteNonQueryAsync();
        }
        return c;
    }

    static async Task ExecAsync(DbConnection c, string sql)
    {
        await using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        await cmd.ExecuteNonQueryAsync();
    }

    /// <summary>
    /// A round of raw batched inserts with one prepared statement per batch, as a plain client would
    /// write: <paramref name="parameters"/> are bound once, <paramref name="nextRow"/> sets them for each row.
    /// </summary>
    Func<Task<(long Ops, TimeSpan Time)>> RawInserts(DbConnection c, string insertSql, (string Name, object Value)[] parameters, Action<DbParameter[]> nextRow) =>
        async () =>
        {
            var sw = Stopwatch.StartNew();
            for (var b = 0; b < sizes.BatchesPerRound; b++)
            {
                await using var tx = await c.BeginTransactionAsync();
                await using var cmd = c.CreateCommand();
                cmd.Transaction = tx;
                cmd.CommandText = insertSql;
                var bound = parameters.Select(x =>
                {
                    var p = cmd.CreateParameter();
                    p.ParameterName = "@" + x.Name; // prefixed, as the drivers' documentation writes it (a bare name costs SQLite four lookups)
                    p.Value = x.Value;
                    cmd.Parameters.Add(p);
                    return p;
                }).ToArray();
                await cmd.PrepareAsync();
                for (var i = 0; i < sizes.BatchSize; i++)
                {
                    nextRow(bound);
                    await cmd.ExecuteNonQueryAsync();
                }
                await tx.CommitAsync();
            }
            await CheckpointAsync(c);
            return ((long)sizes.BatchesPerRound * sizes.BatchSize, sw.Elapsed);
        };

    /// <summary>
    /// Ends a SQLite round: copies its log into the database file (and empties the log), inside the
    /// round's time. Each side then pays for the copy of its own writes, and none is left over to
    /// be copied during the other side's round (the vault's copier runs on a thread of its own).
    /// PostgreSQL checkpoints for the whole server on its own schedule.
    /// </summary>
    static async Task CheckpointAsync(DbConnection c)
    {
        if (c is SqliteConnection) await ExecAsync(c, "PRAGMA busy_timeout=30000; PRAGMA wal_checkpoint(TRUNCATE);");
    }

    /// <summary>Plain batched inserts of the same bytes (and the same number of rows) into a plain table, through <paramref name="c"/>.</summary>
    async Task<Func<Task<(long Ops, TimeSpan Time)>>> PlainInsertsAsync(DbConnection c, string valueSql)
    {
        var blob = c is SqliteConnection ? "BLOB" : "BYTEA";
        await ExecAsync(c, $"CREATE TABLE IF NOT EXISTS bench_plain (id TEXT PRIMARY KEY, data {blob} NOT NULL)");
        return RawInserts(c, $"INSERT INTO bench_plain (id, data) VALUES (@id, {valueSql})",
            [("id", ""), ("d", RandomNumberGenerator.GetBytes(1024))],
            p => p[0].Value = Guid.NewGuid().ToString("N"));
    }

    /// <summary>
    /// Not a target, a diagnosis: rows of the vault's size (sealed head and content) inserted raw
    /// into a table shaped like the vault's items table (its primary key and change index), with
    /// no engine in between: what the schema alone costs against the plain table.
    /// </summary>
    async Task<Func<Task<(long Ops, TimeSpan Time)>>> SchemaFloorAsync(DbConnection c)
    {
        var (blob, integer) = c is SqliteConnection ? ("BLOB", "INTEGER") : ("BYTEA", "BIGINT");
        await ExecAsync(c, $"""
            CREATE TABLE IF NOT EXISTS bench_items (user_id TEXT NOT NULL, service TEXT NOT NULL, collection TEXT NOT NULL, key_index {blob} NOT NULL,
              head {blob} NOT NULL, content {blob}, size {integer} NOT NULL, version {integer} NOT NULL, updated_at {integer} NOT NULL,
              PRIMARY KEY (user_id, service, collection, key_index))
            """);
        await ExecAsync(c, "CREATE INDEX IF NOT EXISTS bench_items_changes ON bench_items (user_id, version)");
        long version = 0;
        return RawInserts(c, "INSERT INTO bench_items VALUES (@u, 'cloud-sync', 'contacts', @k, @h, @c, 1024, @v, 0)",
            [("u", Guid.NewGuid().ToString("N")), ("k", Array.Empty<byte>()), ("h", RandomNumberGenerator.GetBytes(120)),
             ("c", RandomNumberGenerator.GetBytes(1024 + 28)), ("v", 0L)],
            p =>
            {
                p[1].Value = RandomNumberGenerator.GetBytes(32);
                p[4].Value = ++version;
            });
    }

    /// <summary>
    /// A round of vault writes: consent check + encrypt + audit + commit, batched as a sync client
    /// uploads; <paramref name="log"/> (a plain connection to the region's store) ends it with a checkpoint.
    /// </summary>
    async Task<Func<Task<(long Ops, TimeSpan Time)>>> VaultWritesAsync(Region region, DbConnection log)
    {
        var user = await region.CreateAccountAsync($"bench-{Guid.NewGuid():N}@example.com", "bench password 1", region.Id == "in-mumbai" ? "IN" : "CN");
        await region.SetConsentAsync(user.UserId, "cloud-sync", true, "bench");
        var payload = RandomNumberGenerator.GetBytes(1024);
        var n = 0;
        return async () =>
        {
            var sw = Stopwatch.StartNew();
            for (var b = 0; b < sizes.BatchesPerRound; b++)
            {
                var batch = Enumerable.Range(0, sizes.BatchSize).Select(_ => new Region.BatchItem("contacts", $"c{n++}", "text/vcard", payload)).ToList();
                await region.PutManyAsync(user.UserId, "cloud-sync", batch);
            }
            await CheckpointAsync(log);
            return ((long)sizes.BatchesPerRound * sizes.BatchSize, sw.Elapsed);
        };
    }

    // ---- P1 ----------------------------------------------------------------------------------

    async Task<JsonObject> P1()
    {
        var result = new JsonObject();
        foreach (var engine in Engines)
        {
            if (engine == "postgres" && !PostgresAvailable()) { result[engine] = new JsonObject { ["error"] = "PostgreSQL is not installed here" }; continue; }
            var dir = TempDir();
            await using var d = await DeployAsync(engine, dir);
            var region = d.Region("in-mumbai");
            await using var vaultConnection = await RawConnectionAsync(region);
            await using var plainConnection = await RawConnectionAsync(region, "bench-plain.db");
            await using var floorConnection = await RawConnectionAsync(region, "bench-floor.db");
            var rates = await MedianRates(
                new Series($"{engine} vault writes", await VaultWritesAsync(region, vaultConnection)),
                new Series($"{engine} plain inserts", await PlainInsertsAsync(plainConnection, "@d")),
                new Series($"{engine} raw inserts into the vault's table shape", await SchemaFloorAsync(floorConnection)));
            result[engine] = Ratio(rates[0], rates[1], new JsonObject { ["schema_floor_ratio"] = Math.Round(rates[2] / rates[1], 3) });
        }
        return result;
    }

    // ---- P4 ----------------------------------------------------------------------------------

    async Task<JsonObject> P4()
    {
        if (!PostgresAvailable()) return new JsonObject { ["error"] = "PostgreSQL is not installed here" };
        var dir = TempDir();
        await using var d = await DeployAsync("postgres", dir);
        var region = d.Region("in-mumbai");
        await using (var c = await RawConnectionAsync(region)) await ExecAsync(c, "CREATE EXTENSION IF NOT EXISTS pgcrypto");
        await using var pgcryptoConnection = await RawConnectionAsync(region);
        var rates = await MedianRates(
            new Series("vault writes", await VaultWritesAsync(region, pgcryptoConnection)),
            new Series("pgcrypto pgp_sym_encrypt", await PlainInsertsAsync(pgcryptoConnection, "pgp_sym_encrypt_bytea(@d, 'bench-secret-passphrase')")));
        return Ratio(rates[0], rates[1]);
    }

    // ---- P2 ----------------------------------------------------------------------------------

    async Task<JsonObject> P2()
    {
        var dir = TempDir();
        await using var d = await DeployAsync("sqlite", dir);
        var region = d.Region("in-mumbai");
        var hash = await PasswordHasher.HashAsync("bench password 1");
        var tokens = new List<string>();
        var payload = RandomNumberGenerator.GetBytes(1024);
        for (var i = 0; i < sizes.HttpUsers; i++)
        {
            var id = Region.NewId();
            var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            await region.ImportUserAsync(new UserPackage(id, $"http-{i}@example.in", hash, "IN", now, 1,
                [new(0, id, "cloud-sync", 1, true, now, "bench")], [new(id, "cloud-sync", 1, true, now)], ["cloud-sync"],
                [new PackagedItem("cloud-sync", "notes", "item", "application/octet-stream", 1, false, payload.Length, now, now, payload, null)], []), UserStates.Active, "bench");
            tokens.Add((await region.IssueTokensAsync(id)).AccessToken);
        }
        var ours = DomicileServer.Build(d, new ServerOptions { Urls = "http://127.0.0.1:0" });
        await ours.StartAsync();
        var bare = WebApplication.CreateSlimBuilder();
        bare.WebHost.UseUrls("http://127.0.0.1:0");
        bare.Logging.ClearProviders();
        var bareApp = bare.Build();
        bareApp.MapGet("/bare", () => Results.Bytes(payload, "application/octet-stream"));
        await bareApp.StartAsync();
        try
        {
            var oursUrl = ours.Urls.First() + "/v1/me/data/cloud-sync/notes/item";
            var bareUrl = bareApp.Urls.First() + "/bare";
            var (vault, plain) = await LoadAsync((oursUrl, "domicile GET 1 KiB"), (bareUrl, "bare Kestrel 1 KiB"), tokens);
            return Ratio(vault.Rps, plain.Rps, new JsonObject { ["p99_ms"] = Math.Round(vault.P99Ms, 2), ["baseline_p99_ms"] = Math.Round(plain.P99Ms, 2), ["connections"] = sizes.HttpConnections });
        }
        finally
        {
            await ours.StopAsync();
            await bareApp.StopAsync();
        }
    }

    /// <summary>
    /// The same closed-loop load for both endpoints (N connections, each a request at a time), their
    /// rounds taken in turn after a joint warm-up; the median round of each by rate, with its p99.
    /// </summary>
    async Task<((double Rps, double P99Ms) Ours, (double Rps, double P99Ms) Baseline)> LoadAsync(
        (string Url, string What) ours, (string Url, string What) baseline, IReadOnlyList<string> tokens)
    {
        using var handler = new SocketsHttpHandler { MaxConnectionsPerServer = sizes.HttpConnections, PooledConnectionLifetime = TimeSpan.FromMinutes(5) };
        using var client = new HttpClient(handler);
        async Task<(double Rps, double P99)> Round(string url, string what, TimeSpan duration)
        {
            var latencies = new List<double>[sizes.HttpConnections];
            var until = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);
            long total = 0;
            var sw = Stopwatch.StartNew();
            await Task.WhenAll(Enumerable.Range(0, sizes.HttpConnections).Select(async w =>
            {
                var mine = latencies[w] = [];
                var n = w;
                while (Stopwatch.GetTimestamp() < until)
                {
                    using var req = new HttpRequestMessage(HttpMethod.Get, url);
                    req.Headers.Authorization = new("Bearer", tokens[n++ % tokens.Count]);
                    var t0 = Stopwatch.GetTimestamp();
                    using var resp = await client.SendAsync(req);
                    await resp.Content.ReadAsByteArrayAsync();
                    if (resp.StatusCode != HttpStatusCode.OK) throw new InvalidOperationException($"{what}: {(int)resp.StatusCode}");
                    mine.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                    Interlocked.Increment(ref total);
                }
            }));
            var all = latencies.SelectMany(l => l).Order().ToList();
            return (total / sw.Elapsed.TotalSeconds, all[(int)(all.Count * 0.99)]);
        }
        await WarmUpAsync(async () =>
        {
            await Round(ours.Url, ours.What, TimeSpan.FromSeconds(1));
            await Round(baseline.Url, baseline.What, TimeSpan.FromSeconds(1));
        });
        var rounds = (Ours: new List<(double Rps, double P99)>(), Baseline: new List<(double Rps, double P99)>());
        for (var i = 0; i < Math.Min(3, sizes.Rounds); i++)
        {
            rounds.Ours.Add(await Round(ours.Url, ours.What, sizes.HttpDuration));
            rounds.Baseline.Add(await Round(baseline.Url, baseline.What, sizes.HttpDuration));
        }
        (double, double) Median(List<(double Rps, double P99)> list, string what)
        {
            list.Sort((a, b) => a.Rps.CompareTo(b.Rps));
            var median = list[list.Count / 2];
            log.WriteLine($"  {what}: {median.Rps:N0} req/s, p99 {median.P99:N2} ms");
            return median;
        }
        return (Median(rounds.Ours, ours.What), Median(rounds.Baseline, baseline.What));
    }

    // ---- P3 ----------------------------------------------------------------------------------

    /// <summary>The tables holding a user's rows, which a migration moves.</summary>
    static readonly string[] UserTables = ["users", "data_keys", "consent_state", "consents", "items", "messages"];

    /// <summary>
    /// Copies every row of <paramref name="table"/> into a fresh table of the same shape and indexes
    /// (made from the destination's own schema text), with one prepared insert. Returns the rows copied.
    /// </summary>
    static async Task<long> PlainCopyAsync(DbConnection src, DbConnection dst, string table)
    {
        var copy = "bench_copy_" + table;
        var ddl = new List<string>();
        await using (var schema = dst.CreateCommand())
        {
            schema.CommandText = "SELECT sql FROM sqlite_master WHERE tbl_name = @t AND sql IS NOT NULL ORDER BY type DESC";
            var p = schema.CreateParameter();
            p.ParameterName = "@t";
            p.Value = table;
            schema.Parameters.Add(p);
            await using var r = await schema.ExecuteReaderAsync();
            while (await r.ReadAsync())
                ddl.Add(System.Text.RegularExpressions.Regex.Replace(r.GetString(0), @"^CREATE (TABLE|INDEX) (\w+)( ON (\w+))?",
                    m => m.Groups[1].Value == "TABLE" ? $"CREATE TABLE IF NOT EXISTS {copy}" : $"CREATE INDEX IF NOT EXISTS bench_copy_{m.Groups[2].Value} ON {copy}"));
        }
        foreach (var sql in ddl) await ExecAsync(dst, sql);
        await using var read = src.CreateCommand();
        read.CommandText = $"SELECT * FROM {table}";
        await using var rows = await read.ExecuteReaderAsync();
        await using var ins = dst.CreateCommand();
        ins.CommandText = $"INSERT INTO {copy} VALUES ({string.Join(", ", Enumerable.Range(0, rows.FieldCount).Select(i => "@p" + i))})";
        var ps = Enumerable.Range(0, rows.FieldCount).Select(i => { var p = ins.CreateParameter(); p.ParameterName = "@p" + i; ins.Parameters.Add(p); return p; }).ToArray();
        DbTransaction? tx = null;
        long n = 0;
        while (await rows.ReadAsync())
        {
            if (n++ % 500 == 0) { if (tx is not null) await tx.CommitAsync(); tx = await dst.BeginTransactionAsync(); ins.Transaction = tx; }
            for (var i = 0; i < ps.Length; i++) ps[i].Value = rows.IsDBNull(i) ? DBNull.Value : rows.GetValue(i);
            await ins.ExecuteNonQueryAsync();
        }
        if (tx is not null) await tx.CommitAsync();
        return n;
    }

    async Task<JsonObject> P3()
    {
        var hash = await PasswordHasher.HashAsync("bench password 1");
        var ours = new List<double>();
        var plain = new List<double>();
        // Warm-up rounds (both sides) until the JIT is quiet, then the measured ones.
        var measuring = false;
        var told = false;
        await WarmUpAsync(Round);
        measuring = true;
        for (var round = 0; round < Math.Min(5, sizes.Rounds); round++) await Round();
        ours.Sort();
        plain.Sort();
        return Ratio(ours[ours.Count / 2], plain[plain.Count / 2], new JsonObject { ["users"] = sizes.MigrationUsers });

        async Task Round()
        {
            var dir = TempDir();
            await using var d = await DeployAsync("sqlite", dir);
            var from = d.Region("cn-beijing");
            var now = DateTimeOffset.UtcNow;
            for (var i = 0; i < sizes.MigrationUsers; i++)
                await from.ImportUserAsync(Demo.DemoSeeder.User(i * 2 + 0, hash, now) with { Country = "IN" }, UserStates.Active, "bench");
            long items = 0;
            await from.Store.DumpAsync([("items", ["user_id"])], (_, _) => { items++; return Task.CompletedTask; });

            // Baseline: the same rows the migration moves (every row of the users: account, keys,
            // consents, items, messages) copied as they are between the same two stores, into
            // tables of the same shape and indexes, 500 rows a transaction.
            var plainIo0 = IoCounters();
            using var me = Process.GetCurrentProcess();
            var plainCpu0 = me.TotalProcessorTime;
            var sw = Stopwatch.StartNew();
            long rows = 0;
            await using (var src = await RawConnectionAsync(from))
            await using (var dst = await RawConnectionAsync(d.Region("in-mumbai")))
            {
                foreach (var table in UserTables) rows += await PlainCopyAsync(src, dst, table);
                await CheckpointAsync(dst);
            }
            if (!told) log.WriteLine($"  the plain copy moves {rows:N0} rows, {items:N0} of them items");
            told = true;
            var plainRate = items / sw.Elapsed.TotalSeconds;
            var plainIo = IoSince(plainIo0);
            me.Refresh();
            var plainCpu = (me.TotalProcessorTime - plainCpu0).TotalMicroseconds / items;

            if (measuring) Profiler("enable");
            var (cpu0, paused, io0) = (me.TotalProcessorTime, GC.GetTotalPauseDuration(), IoCounters());
            sw.Restart();
            var migrator = new Migrator(d);
            var state = await migrator.Run(await migrator.StartAsync(new MigrationRequest("IN", null, "in-mumbai")));
            // Each side's time includes copying its logs into the databases (see CheckpointAsync).
            foreach (var region in new[] { from, d.Region("in-mumbai") })
            {
                await using var c = await RawConnectionAsync(region);
                await CheckpointAsync(c);
            }
            if (measuring) Profiler("disable");
            if (state.Failed > 0 || state.Items != items) throw new InvalidOperationException($"migration moved {state.Items} of {items} items, {state.Failed} failed");
            var oursRate = items / sw.Elapsed.TotalSeconds;
            if (!measuring) return;
            me.Refresh();
            plain.Add(plainRate);
            ours.Add(oursRate);
            log.WriteLine($"  round {ours.Count}: {items} items; migration {oursRate:N0}/s, plain copy {plainRate:N0}/s; the migration kept {(me.TotalProcessorTime - cpu0) / sw.Elapsed:N2} cores busy, {(GC.GetTotalPauseDuration() - paused) / sw.Elapsed:P1} of its time in GC pauses");
            // CPU per item drifts less than throughput on a shared machine: the figure to compare changes by.
            log.WriteLine($"    CPU per item: migration {(me.TotalProcessorTime - cpu0).TotalMicroseconds / items:N0} µs, plain copy {plainCpu:N0} µs");
            var io = IoSince(io0);
            log.WriteLine($"    written: migration {io.Written / 1e6:N1} MB in {io.Writes:N0} writes and {io.Reads:N0} reads; plain copy {plainIo.Written / 1e6:N1} MB in {plainIo.Writes:N0} writes and {plainIo.Reads:N0} reads");
        }
    }

    /// <summary>
    /// With DOMICILE_BENCH_PERF_CTL naming the control FIFO of a <c>perf record -D -1 --control fifo:…</c>,
    /// P3 records only its measured migrations, without the seeding and the plain copy around them.
    /// </summary>
    static void Profiler(string command)
    {
        if (Environment.GetEnvironmentVariable("DOMICILE_BENCH_PERF_CTL") is { Length: > 0 } fifo) File.AppendAllText(fifo, command + "\n");
    }

    // ---- P5 ----------------------------------------------------------------------------------

    /// <summary>
    /// User number <paramref name="n"/>'s id, made again whenever needed: an array of a million ids
    /// would put 90 MB of the load generator into the RSS that P5 reports for the server.
    /// SplitMix64 is a bijection, so ids never collide.
    /// </summary>
    static string UserId(int n)
    {
        static ulong Mix(ulong z)
        {
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
            return z ^ (z >> 31);
        }
        Span<byte> id = stackalloc byte[16];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(id, Mix((ulong)n));
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(id[8..], Mix((ulong)n + 0x9E3779B97F4A7C15));
        return Convert.ToHexStringLower(id);
    }

    async Task<JsonObject> P5()
    {
        var hash = await PasswordHasher.HashAsync("bench password 1");
        var payload = RandomNumberGenerator.GetBytes(512);
        // Both stores are seeded first and their rounds then taken in turn, like every other figure's
        // sides: measured one after the other, a drifting VM swung this ratio from 0.61 to 0.83.
        var dir = TempDir();
        var small = await SeedAsync(sizes.SmallUsers, Path.Combine(dir, "small"));
        await using var smallDeployment = small.Deployment;
        var large = await SeedAsync(sizes.LargeUsers, Path.Combine(dir, "large"));
        await using var largeDeployment = large.Deployment;

        // The server's memory while it serves (the load generator's and the small store's included),
        // sampled through the measured rounds: what it holds at work, not what is left once it is closed.
        // What the seeding (and figures before P5, in this process too) freed is handed back first.
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        using var sampling = new CancellationTokenSource();
        long peak = 0;
        var sampler = Task.Run(async () =>
        {
            using var me = Process.GetCurrentProcess();
            while (!sampling.IsCancellationRequested)
            {
                me.Refresh();
                peak = Math.Max(peak, me.WorkingSet64);
                await Task.Delay(100);
            }
        });
        double[] rates;
        try
        {
            rates = await MedianRates(
                new Series($"{sizes.SmallUsers:N0} users, {sizes.SmallUsers * sizes.ItemsPerUser:N0} items: read+write", () => LoadRound(small.Region, sizes.SmallUsers)),
                new Series($"{sizes.LargeUsers:N0} users, {(long)sizes.LargeUsers * sizes.ItemsPerUser:N0} items: read+write", () => LoadRound(large.Region, sizes.LargeUsers)));
        }
        finally
        {
            sampling.Cancel();
            await sampler;
        }
        log.WriteLine($"  the process's RSS peaked at {peak / 1048576.0:N0} MB while serving");
        return Ratio(rates[1], rates[0], new JsonObject
        {
            ["rss_mb"] = Math.Round(peak / 1048576.0, 1),
            ["large_users"] = sizes.LargeUsers, ["large_items"] = (long)sizes.LargeUsers * sizes.ItemsPerUser, ["small_users"] = sizes.SmallUsers,
        });

        async Task<(Deployment Deployment, Region Region)> SeedAsync(int users, string folder)
        {
            Directory.CreateDirectory(folder);
            var d = await DeployAsync("sqlite", folder);
            var region = d.Region("in-mumbai");
            var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            var seeded = 0;
            var sw = Stopwatch.StartNew();
            // Seeding is not measured: users arrive a hundred to a transaction (SQLite takes one writer at a time).
            const int perImport = 100;
            await Parallel.ForEachAsync(Enumerable.Range(0, (users + perImport - 1) / perImport), new ParallelOptions { MaxDegreeOfParallelism = 2 }, async (chunk, ct) =>
            {
                var packages = new List<UserPackage>();
                for (var i = chunk * perImport; i < Math.Min(users, (chunk + 1) * perImport); i++)
                {
                    var id = UserId(i);
                    var items = Enumerable.Range(0, sizes.ItemsPerUser)
                        .Select(k => new PackagedItem("cloud-sync", "contacts", $"c{k}", "text/vcard", k + 1, false, payload.Length, now, now, payload, null)).ToList();
                    packages.Add(new UserPackage(id, $"p5-{i}@example.in", hash, "IN", now, sizes.ItemsPerUser,
                        [new(0, id, "cloud-sync", 1, true, now, "bench")], [new(id, "cloud-sync", 1, true, now)], ["cloud-sync"], items, []));
                }
                await region.ImportUsersAsync(packages, UserStates.Active, "bench", ct);
                var before = Interlocked.Add(ref seeded, packages.Count) - packages.Count;
                if (before / 50_000 != (before + packages.Count) / 50_000) log.WriteLine($"  seeded {before + packages.Count:N0} users in {sw.Elapsed.TotalSeconds:N0} s");
            });
            return (d, region);
        }

        // Reads and writes of random users, the way devices arrive (Random.Shared: the workers draw at once).
        async Task<(long Ops, TimeSpan Time)> LoadRound(Region region, int users)
        {
            var t = Stopwatch.StartNew();
            const int ops = 10_000; // about a second a round here: shorter rounds swung by a third
            await Parallel.ForEachAsync(Enumerable.Range(0, ops), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (n, ct) =>
            {
                var id = UserId(Random.Shared.Next(users));
                if (n % 4 == 0)
                    await region.PutManyAsync(id, "cloud-sync", [new Region.BatchItem("notes", $"n{n % 3}", "text/plain", payload)], ct);
                else
                {
                    await using var item = await region.GetAsync(id, "cloud-sync", "contacts", $"c{n % sizes.ItemsPerUser}", ct);
                    await item.Content.CopyToAsync(Stream.Null, ct);
                }
            });
            return (ops, t.Elapsed);
        }
    }

    // ---- P6 ----------------------------------------------------------------------------------

    async Task<JsonObject> P6()
    {
        var dir = TempDir();
        var config = ConfigLoader.Parse(Yaml(dir, r => $"sqlite:{Path.Combine(dir, r)}"), dir);
        await using var d = Deployment.Open(config);
        var shares = (await d.InitializeAsync(stayUnsealed: true))["in-mumbai"];
        var region = d.Region("in-mumbai");
        var user = await region.CreateAccountAsync("p6@example.in", "bench password 1", "IN");
        await region.SetConsentAsync(user.UserId, "cloud-sync", true, "bench");
        await region.PutAsync(user.UserId, "cloud-sync", "notes", "n", null, new MemoryStream([1, 2, 3]));
        var times = new List<double>();
        for (var i = 0; i < sizes.UnsealRounds + 1; i++)
        {
            await region.SealAsync("bench");
            await region.SubmitShareAsync(shares[0]);
            var sw = Stopwatch.StartNew();
            await region.SubmitShareAsync(shares[1]);
            await using var item = await region.GetAsync(user.UserId, "cloud-sync", "notes", "n");
            await item.Content.CopyToAsync(Stream.Null);
            if (i > 0) times.Add(sw.Elapsed.TotalSeconds);
        }
        times.Sort();
        log.WriteLine($"  last share to serving: median {times[times.Count / 2] * 1000:N1} ms");
        return new JsonObject { ["seconds"] = Math.Round(times[times.Count / 2], 4) };
    }
}
