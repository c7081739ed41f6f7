using System.Security.Cryptography;
using Domicile.Store;
using Domicile.Tests.Support;
using Microsoft.Data.Sqlite;
using Xunit;

namespace Domicile.Tests;

/// <summary>What only the SQLite store does: its write-ahead log is copied back by a thread of its own.</summary>
public sealed class SqliteStoreTests
{
    static readonly byte[] Payload = RandomNumberGenerator.GetBytes(1024);

    /// <summary>The region, a user who consented to sync, and the path of <paramref name="file"/> in the region's store folder.</summary>
    static async Task<(Region Region, string User, string Path)> SyncingUserAsync(TestDeployment t, string file)
    {
        var region = t["in-mumbai"];
        var user = await t.UserAsync(consents: "cloud-sync");
        return (region, user.UserId, Path.Combine(region.Config.Store.Target, file));
    }

    /// <summary>Batch <paramref name="b"/>: a hundred 1 KiB notes, as a sync client uploads them.</summary>
    static Task WriteBatchAsync(Region region, string user, int b) =>
        region.PutManyAsync(user, "cloud-sync", [.. Enumerable.Range(0, 100).Select(i => new Region.BatchItem("notes", $"n{b}-{i}", null, Payload))]);

    static async Task AssertReadsBackAsync(Region region, string user, int b)
    {
        await using var last = await region.GetAsync(user, "cloud-sync", "notes", $"n{b}-99");
        Assert.Equal(Payload, await Bytes.ReadAllAsync(last.Content));
    }

    [Fact]
    public async Task SQLite_runs_without_its_global_memory_counters()
    {
        await using var t = await TestDeployment.CreateAsync(Engines.Sqlite);
        var (region, user, _) = await SyncingUserAsync(t, "region.db");
        await WriteBatchAsync(region, user, 0);
        await AssertReadsBackAsync(region, user, 0);
        // The store turns the counters off before SQLite's first use; had it come too late, SQLite
        // would count (and lock for) every allocation, and report them here.
        Assert.Equal(0, SQLitePCL.raw.sqlite3_memory_used());
    }

    [Fact]
    public async Task A_write_still_under_way_when_the_store_closes_commits_on_its_own_connection()
    {
        var dir = Engines.TempDir("domicile-close");
        var folder = Path.Combine(dir, "in-mumbai");
        try
        {
            var store = new SqliteRegionStore(folder) { CloseWait = TimeSpan.FromMilliseconds(200) };
            await store.UpgradeAsync();
            var started = new TaskCompletionSource();
            var go = new TaskCompletionSource();
            var write = store.WriteAsync(async tx =>
            {
                await tx.JournalAsync("mig_close", "u1", "copied", 1, "{}");
                started.SetResult();
                await go.Task;
                // The statements after the close began run on the same connection, compiled before it.
                await tx.JournalAsync("mig_close", "u2", "copied", 2, "{}");
                await tx.JournalAsync("mig_close", "u1", "switched", 3, "{}");
                return 0;
            });
            await started.Task;
            // Queued behind it as the store closes: refused once its turn comes, with nothing written.
            var late = store.WriteAsync(async tx => { await tx.JournalAsync("mig_close", "u3", "copied", 4, "{}"); return 0; });
            await store.DisposeAsync(); // gives up waiting for the write after 200 ms
            go.SetResult();
            await write;
            await Assert.ThrowsAsync<ObjectDisposedException>(() => late);
            await Assert.ThrowsAsync<ObjectDisposedException>(() => store.WriteAsync(_ => Task.FromResult(0)));

            // The write's connection was closed as it ended: the last connection out takes the log with it.
            var wal = Path.Combine(folder, "region.db-wal");
            for (var i = 0; i < 100 && File.Exists(wal); i++) await Task.Delay(50);
            Assert.False(File.Exists(wal));
            await using var reopened = new SqliteRegionStore(folder);
            var journal = await reopened.ReadAsync(tx => tx.ReadJournalAsync("mig_close"));
            Assert.Equal([("u1", "copied"), ("u1", "switched"), ("u2", "copied")], journal.Select(j => (j.UserId, j.Step)).Order());
        }
        finally
        {
            SqliteConnection.ClearAllPools();
            AbandonedFolders.Delete(dir);
        }
    }

    [Fact]
    public async Task Writes_reach_the_database_file_while_the_store_stays_open()
    {
        await using var t = await TestDeployment.CreateAsync(Engines.Sqlite);
        var (region, user, file) = await SyncingUserAsync(t, "region.db");
        var before = new FileInfo(file).Length;

        // About 3.7 MiB of sealed rows: past the point where SQLite would have checkpointed
        // inside a commit, which this store no longer does.
        for (var b = 0; b < 30; b++) await WriteBatchAsync(region, user, b);

        // The checkpointer copies the log a tenth of a second after a write; give it a few seconds.
        var grew = 0L;
        for (var wait = 0; wait < 100 && grew < 2_500_000; wait++)
        {
            await Task.Delay(100);
            grew = new FileInfo(file).Length - before;
        }
        Assert.True(grew >= 2_500_000, $"region.db grew by {grew:N0} bytes with the store open; the log was not copied back");
        await AssertReadsBackAsync(region, user, 29);
    }

    [Fact]
    public async Task The_log_starts_over_while_writes_never_pause()
    {
        await using var t = await TestDeployment.CreateAsync(Engines.Sqlite);
        var (region, user, log) = await SyncingUserAsync(t, "region.db-wal");
        // SQLite draws new salts for the log's header each time the log starts over from its beginning.
        string Salts()
        {
            using var f = new FileStream(log, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            var header = new byte[24];
            return f.Read(header) == 24 ? Convert.ToHexString(header, 16, 8) : "";
        }

        // Some 100 MiB through the log, one batch straight after another: the copier rarely finds a
        // moment when the whole log is copied, so it is its held restart (past 8 MiB, writers waiting
        // for one checkpoint) that starts the log over again and again.
        var salts = new HashSet<string>();
        for (var b = 0; b < 300; b++)
        {
            await WriteBatchAsync(region, user, b);
            salts.Add(Salts());
        }
        var size = new FileInfo(log).Length;
        Assert.True(salts.Count >= 4, $"the log started over {salts.Count - 1} times in 300 batches; it is {size:N0} bytes long");
        await AssertReadsBackAsync(region, user, 299);
    }

    /// <summary>
    /// Writes run through SQLite's own API, beside the driver: what they store must be what the
    /// driver would store (an empty blob or string is not NULL, text is UTF-8 however long), and a
    /// clash with a unique key must still be refused as a conflict.
    /// </summary>
    [Fact]
    public async Task Writes_below_the_driver_store_what_the_driver_would()
    {
        await using var t = await TestDeployment.CreateAsync(Engines.Sqlite);
        var region = t["in-mumbai"];
        await t.UserAsync(consents: "cloud-sync"); // keys to count below
        var longText = string.Concat(Enumerable.Repeat("Grüße, 世界 ", 120)); // past the 512-byte stack buffer
        await region.Store.WriteAsync(async tx =>
        {
            await tx.SetMetaAsync("test.empty", []);
            await tx.SetMetaAsync("test.bytes", Payload);
            await tx.JournalAsync("mig_t", "u1", "copied", 1, "");
            await tx.JournalAsync("mig_t", "u2", "copied", 2, longText);
            return 0;
        });

        await using var c = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(region.Config.Store.Target, "region.db")}");
        await c.OpenAsync();
        async Task<(string Type, object Value)> One(string sql)
        {
            await using var cmd = c.CreateCommand();
            cmd.CommandText = sql;
            await using var r = await cmd.ExecuteReaderAsync();
            Assert.True(await r.ReadAsync());
            return (r.GetString(0), r.GetValue(1));
        }
        async Task AssertBlob(string name, byte[] expected)
        {
            var (type, value) = await One($"SELECT typeof(value), value FROM meta WHERE name = '{name}'");
            Assert.Equal("blob", type);
            Assert.Equal(expected, (byte[])value);
        }
        await AssertBlob("test.empty", []);
        await AssertBlob("test.bytes", Payload);
        Assert.Equal(("text", (object)""), await One("SELECT typeof(details), details FROM migration_journal WHERE user_id = 'u1'"));
        Assert.Equal(("text", (object)longText), await One("SELECT typeof(details), details FROM migration_journal WHERE user_id = 'u2'"));

        // The same statement again, with other values, on the same compiled statement; then a clash.
        await region.Store.WriteAsync(async tx => { await tx.SetMetaAsync("test.empty", Payload); return 0; });
        await AssertBlob("test.empty", Payload);
        var clash = await Assert.ThrowsAsync<DomicileException>(() => region.Store.WriteAsync(async tx =>
        {
            await tx.JournalAsync("mig_t", "u3", "copied", 3, "{}");
            await tx.InsertKekAsync(new Store.KekRow(999, Payload, 0));
            await tx.InsertKekAsync(new Store.KekRow(999, Payload, 0));
            return 0;
        }));
        Assert.Equal("conflict", clash.Code);
        // A statement's value (an insert's new id, a count) comes back as the driver would give it.
        var (first, second, keks) = await region.Store.WriteAsync(async tx =>
            (await tx.AppendConsentAsync(new Store.ConsentRow(0, "u1", "cloud-sync", 1, true, 5, "test")),
             await tx.AppendConsentAsync(new Store.ConsentRow(0, "u1", "cloud-sync", 1, false, 6, "test")),
             await tx.CountDeksByKekAsync(1)));
        Assert.True(first > 0 && second == first + 1, $"consent ids {first}, {second}");
        Assert.True(keks > 0);
        await using (var count = c.CreateCommand())
        {
            count.CommandText = "SELECT COUNT(*) FROM data_keys WHERE kek_version = 1";
            Assert.Equal((long)(await count.ExecuteScalarAsync())!, keks);
        }

        // Nothing of the refused transaction stays.
        var journal = await region.Store.ReadAsync(tx => tx.ReadJournalAsync("mig_t"));
        Assert.Equal(["u1", "u2"], journal.Select(j => j.UserId).Order());
    }
}
