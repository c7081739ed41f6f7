using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Domicile.Config;
using Domicile.Tests.Support;

namespace Domicile.Tests;

/// <summary>Messaging, retention, export, erasure, backup and the access log, on each engine.</summary>
public abstract class RightsContract(string engine)
{
    static async Task<DomicileException> Refused(Func<Task> action) => await Assert.ThrowsAnyAsync<DomicileException>(action);

    [Fact]
    public async Task Messages_need_consent_live_until_ack_or_ttl()
    {
        var clock = new ManualTime(DateTimeOffset.UtcNow);
        await using var d = await TestDeployment.CreateAsync(engine, time: clock);
        var r = d["in-mumbai"];
        var u = await d.UserAsync();
        Assert.Equal("consent_required", (await Refused(() => r.SendMessageAsync("op_app", u.UserId, "hello", 60))).Code);
        Assert.Equal(0, await RawSql.CountAsync(r.Config.Store, "SELECT COUNT(*) FROM messages"));

        await r.SetConsentAsync(u.UserId, "cloud-messaging", true, "test");
        var acked = await r.SendMessageAsync("op_app", u.UserId, "ack me", 3600);
        var ttl = await r.SendMessageAsync("op_app", u.UserId, "expire me", 60);
        var capped = await r.SendMessageAsync("op_app", u.UserId, "capped at 28 days", 365 * 24 * 3600);
        var inbox = await r.ReceiveMessagesAsync(u.UserId, TimeSpan.Zero);
        Assert.Equal(["ack me", "expire me", "capped at 28 days"], inbox.Select(m => m.Body));
        Assert.All(inbox, m => Assert.Equal("op_app", m.From));

        await r.AcknowledgeAsync(u.UserId, acked);
        Assert.Equal("not_found", (await Refused(() => r.AcknowledgeAsync(u.UserId, acked))).Code);
        clock.Advance(TimeSpan.FromSeconds(61));
        Assert.Equal(["capped at 28 days"], (await r.ReceiveMessagesAsync(u.UserId, TimeSpan.Zero)).Select(m => m.Body));
        var sweep = await r.SweepAsync();
        Assert.Equal(1, sweep.Services["cloud-messaging"].Messages);
        Assert.Equal(1, await RawSql.CountAsync(r.Config.Store, "SELECT COUNT(*) FROM messages"));
        clock.Advance(TimeSpan.FromDays(28));
        await r.SweepAsync();
        Assert.Equal(0, await RawSql.CountAsync(r.Config.Store, "SELECT COUNT(*) FROM messages"));
        Assert.Equal("not_found", (await Refused(() => r.AcknowledgeAsync(u.UserId, capped))).Code);
        _ = ttl;
    }

    [Fact]
    public async Task A_long_poll_wakes_when_a_message_arrives()
    {
        await using var d = await TestDeployment.CreateAsync(engine);
        var r = d["in-mumbai"];
        var u = await d.UserAsync(consents: "cloud-messaging");
        var started = DateTime.UtcNow;
        var poll = r.ReceiveMessagesAsync(u.UserId, TimeSpan.FromSeconds(50));
        await Task.Delay(300);
        Assert.False(poll.IsCompleted);
        await r.SendMessageAsync("op_app", u.UserId, "wake up", 60);
        var got = await poll.WaitAsync(TimeSpan.FromSeconds(45));
        Assert.Equal("wake up", Assert.Single(got).Body);
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(45), "the poll must end on the message, not on its timeout");
    }

    [Fact]
    public async Task Time_limited_data_goes_at_its_age_limit()
    {
        var clock = new ManualTime(DateTimeOffset.UtcNow);
        await using var d = await TestDeployment.CreateAsync(engine, time: clock);
        var r = d["in-mumbai"];
        var u = await d.UserAsync(consents: ["find-device", "cloud-sync"]);
        await r.PutAsync(u.UserId, "find-device", "fixes", "old", null, Bytes.Stream("19.07,72.87"));
        await r.PutAsync(u.UserId, "cloud-sync", "notes", "old", null, Bytes.Stream("kept: no max_age"));
        clock.Advance(TimeSpan.FromDays(6));
        await r.PutAsync(u.UserId, "find-device", "fixes", "recent", null, Bytes.Stream("19.08,72.88"));
        clock.Advance(TimeSpan.FromDays(1) + TimeSpan.FromMinutes(1));
        var sweep = await r.SweepAsync();
        Assert.Equal(1, sweep.Services["find-device"].Items);
        Assert.Equal("not_found", (await Refused(() => r.GetAsync(u.UserId, "find-device", "fixes", "old"))).Code);
        await using (var recent = await r.GetAsync(u.UserId, "find-device", "fixes", "recent")) Assert.Equal("19.08,72.88", await Bytes.TextAsync(recent.Content));
        await using (var note = await r.GetAsync(u.UserId, "cloud-sync", "notes", "old")) Assert.Equal("kept: no max_age", await Bytes.TextAsync(note.Content));
        var expired = Assert.Single(await r.AccessLogAsync(u.UserId), a => a.Action == "retention.expired");
        Assert.Equal(("system", 1L), (expired.Actor, (long)expired.Details!["items"]!));
    }

    [Fact]
    public async Task A_withdrawn_service_is_deleted_after_its_grace_and_a_regrant_inside_it_keeps_the_data()
    {
        var clock = new ManualTime(DateTimeOffset.UtcNow);
        await using var d = await TestDeployment.CreateAsync(engine, time: clock);
        var r = d["in-mumbai"];
        var leaver = await d.UserAsync(consents: "cloud-sync");
        var returner = await d.UserAsync(consents: "cloud-sync");
        foreach (var u in new[] { leaver, returner })
        {
            await r.PutAsync(u.UserId, "cloud-sync", "notes", "n", null, Bytes.Stream("mine"));
            await r.SetConsentAsync(u.UserId, "cloud-sync", false, "test");
        }
        clock.Advance(TimeSpan.FromDays(29));
        Assert.Equal(0, (await r.SweepAsync()).Services["cloud-sync"].WithdrawnUsers);
        await r.SetConsentAsync(returner.UserId, "cloud-sync", true, "test");
        clock.Advance(TimeSpan.FromDays(2));
        Assert.Equal(1, (await r.SweepAsync()).Services["cloud-sync"].WithdrawnUsers);
        Assert.Equal(0, await RawSql.CountAsync(r.Config.Store, $"SELECT COUNT(*) FROM items WHERE user_id = '{leaver.UserId}'"));
        Assert.Equal(0, await RawSql.CountAsync(r.Config.Store, $"SELECT COUNT(*) FROM data_keys WHERE user_id = '{leaver.UserId}' AND service = 'cloud-sync'"));
        await using (var kept = await r.GetAsync(returner.UserId, "cloud-sync", "notes", "n")) Assert.Equal("mine", await Bytes.TextAsync(kept.Content));
        var access = await r.AccessLogAsync(leaver.UserId);
        Assert.Contains(access, a => a.Action == "key.dek_destroyed" && a.Actor == "system");
    }

    static async Task<List<Store.AuditRow>> AuditAsync(Region r)
    {
        var rows = new List<Store.AuditRow>();
        await foreach (var row in r.ReadAuditAsync()) rows.Add(row);
        return rows;
    }

    /// <summary>What the sweep can delete in a region, counted in the store itself.</summary>
    static async Task<(long Messages, long FindDeviceItems, long DataKeys)> StoredAsync(Region r) =>
        (await RawSql.CountAsync(r.Config.Store, "SELECT COUNT(*) FROM messages"),
         await RawSql.CountAsync(r.Config.Store, "SELECT COUNT(*) FROM items WHERE service = 'find-device'"),
         await RawSql.CountAsync(r.Config.Store, "SELECT COUNT(*) FROM data_keys"));

    /// <summary>
    /// Sweeps once and checks the one <c>retention.sweep</c> entry it writes: by the system, about the
    /// region, with per-service counts equal to the sweep's result, to <paramref name="expected"/>
    /// and to what actually left the store.
    /// </summary>
    static async Task SweepAndCheckAsync(TestDeployment d, Region r, Dictionary<string, (long Messages, long Items, long WithdrawnUsers)> expected, params string[] userIds)
    {
        var before = await AuditAsync(r);
        var othersBefore = new Dictionary<string, int>();
        foreach (var other in d.Deployment.Regions.Values.Where(o => o != r)) othersBefore[other.Id] = (await AuditAsync(other)).Count;
        var stored = await StoredAsync(r);

        var result = await r.SweepAsync();

        var added = (await AuditAsync(r)).Skip(before.Count).ToList();
        var entry = Assert.Single(added, a => a.Action == "retention.sweep");
        Assert.Equal(("system", r.Id), (entry.Actor, entry.Subject));
        Assert.Same(entry, added[^1]); // written after everything it counts
        foreach (var other in d.Deployment.Regions.Values.Where(o => o != r))
            Assert.Equal(othersBefore[other.Id], (await AuditAsync(other)).Count); // a region's sweep writes nothing elsewhere
        foreach (var user in userIds) Assert.DoesNotContain(user, entry.Details, StringComparison.Ordinal); // counts, no one's id

        var details = JsonNode.Parse(entry.Details)!.AsObject();
        Assert.Equal(result.OrphanChunks, (long)details["orphan_chunks"]!);
        Assert.Equal(d.Config.Services.Select(s => s.Id).Order().Append("orphan_chunks").Order(), details.Select(p => p.Key).Order());
        foreach (var svc in d.Config.Services)
        {
            var want = expected.GetValueOrDefault(svc.Id);
            var inEntry = details[svc.Id]!;
            Assert.Equal(want, ((long)inEntry["messages"]!, (long)inEntry["items"]!, (long)inEntry["withdrawn_users"]!));
            Assert.Equal(want, (result.Services[svc.Id].Messages, result.Services[svc.Id].Items, result.Services[svc.Id].WithdrawnUsers));
        }

        // The counts are what left the store: messages and find-device items deleted, one data key per withdrawn user destroyed.
        var now = await StoredAsync(r);
        Assert.Equal(expected.Values.Sum(e => e.Messages), stored.Messages - now.Messages);
        Assert.Equal(expected.GetValueOrDefault("find-device").Items, stored.FindDeviceItems - now.FindDeviceItems);
        Assert.Equal(expected.Values.Sum(e => e.WithdrawnUsers), stored.DataKeys - now.DataKeys);
        Assert.True((await r.VerifyAuditAsync()).Ok);
    }

    [Fact]
    public async Task A_sweep_writes_one_audit_entry_about_the_region_with_what_it_deleted()
    {
        var clock = new ManualTime(DateTimeOffset.UtcNow);
        await using var d = await TestDeployment.CreateAsync(engine, time: clock);
        var r = d["in-mumbai"];
        var a = await d.UserAsync(consents: ["cloud-sync", "cloud-messaging", "find-device"]);
        var b = await d.UserAsync(consents: ["cloud-sync", "cloud-messaging", "find-device"]);
        var c = await d.UserAsync(consents: ["cloud-sync", "cloud-messaging"]);
        var ids = new[] { a.UserId, b.UserId, c.UserId };

        // Day 0: three fixes of two people (find-device max_age 7 d), two messages with a one-minute
        // TTL and one capped at 28 d; c leaves cloud-sync (grace 30 d) and cloud-messaging (grace 0 d:
        // deleted at the withdrawal itself, so no sweep counts it).
        await r.PutAsync(a.UserId, "find-device", "fixes", "1", null, Bytes.Stream("19.07,72.87"));
        await r.PutAsync(a.UserId, "find-device", "fixes", "2", null, Bytes.Stream("19.08,72.88"));
        await r.PutAsync(b.UserId, "find-device", "fixes", "1", null, Bytes.Stream("28.61,77.20"));
        await r.PutAsync(b.UserId, "cloud-sync", "notes", "n", null, Bytes.Stream("b's note"));
        await r.PutAsync(c.UserId, "cloud-sync", "notes", "n", null, Bytes.Stream("c's note"));
        await r.SendMessageAsync("op_app", a.UserId, "one minute", 60);
        await r.SendMessageAsync("op_app", b.UserId, "one minute too", 60);
        await r.SendMessageAsync("op_app", b.UserId, "capped at 28 days", 365 * 24 * 3600);
        await r.SetConsentAsync(c.UserId, "cloud-sync", false, "test");
        await r.SetConsentAsync(c.UserId, "cloud-messaging", false, "test");
        clock.Advance(TimeSpan.FromDays(6));
        await r.PutAsync(a.UserId, "find-device", "fixes", "recent", null, Bytes.Stream("19.09,72.89"));
        clock.Advance(TimeSpan.FromDays(1) + TimeSpan.FromMinutes(1));

        // Day 7: the old fixes and the one-minute messages go; c's grace runs on.
        await SweepAndCheckAsync(d, r, new()
        {
            ["cloud-messaging"] = (2, 0, 0),
            ["find-device"] = (0, 3, 0),
        }, ids);
        await using (var kept = await r.GetAsync(c.UserId, "cloud-sync", "notes", "n")) Assert.Equal("c's note", await Bytes.TextAsync(kept.Content));
        await r.SetConsentAsync(b.UserId, "cloud-sync", false, "test");

        // Nothing is left to delete: the next sweep still writes its one entry, with zeros.
        await SweepAndCheckAsync(d, r, [], ids);

        // Day 31: the capped message, the recent fix and c's cloud-sync data go; b's grace (from day 7) runs on.
        clock.Advance(TimeSpan.FromDays(24));
        await SweepAndCheckAsync(d, r, new()
        {
            ["cloud-messaging"] = (1, 0, 0),
            ["find-device"] = (0, 1, 0),
            ["cloud-sync"] = (0, 0, 1),
        }, ids);
        Assert.Equal(0, await RawSql.CountAsync(r.Config.Store, $"SELECT COUNT(*) FROM items WHERE user_id = '{c.UserId}'"));
        await using (var kept = await r.GetAsync(b.UserId, "cloud-sync", "notes", "n")) Assert.Equal("b's note", await Bytes.TextAsync(kept.Content));

        // Day 38: b's grace is over too; c, already gone, is not counted again.
        clock.Advance(TimeSpan.FromDays(7));
        await SweepAndCheckAsync(d, r, new() { ["cloud-sync"] = (0, 0, 1) }, ids);
        Assert.Equal(0, await RawSql.CountAsync(r.Config.Store, $"SELECT COUNT(*) FROM items WHERE user_id = '{b.UserId}' AND service = 'cloud-sync'"));
    }

    [Fact]
    public async Task The_server_sweeps_by_itself_every_sweep_interval()
    {
        var clock = new ManualTime(DateTimeOffset.UtcNow);
        await using var server = await LiveServer.StartAsync(engine, sweepInterval: "1s", time: clock);
        Assert.Equal(TimeSpan.FromSeconds(1), server.Deployment.Config.SweepInterval);
        var r = server.Deployment["in-mumbai"];
        var (user, access, _) = await server.UserAsync("IN", consents: ["cloud-sync", "cloud-messaging", "find-device"]);
        using (var me = server.Client(access))
        {
            Assert.Equal(System.Net.HttpStatusCode.Created, (await me.PutAsync("/v1/me/data/find-device/fixes/old", new StringContent("19.07,72.87"))).StatusCode);
            Assert.Equal(System.Net.HttpStatusCode.Created, (await me.PutAsync("/v1/me/data/cloud-sync/notes/kept", new StringContent("no max_age"))).StatusCode);
        }
        using (var sender = server.Client(await server.OperatorAsync("sender")))
            Assert.Equal(System.Net.HttpStatusCode.Accepted, (await sender.PostAsync("/v1/messages",
                LiveServer.JsonContent($$"""{"to":"{{user}}","body":"expires in a minute","ttl_seconds":60}"""))).StatusCode);
        Task<long> Count(string table, string service) => RawSql.CountAsync(r.Config.Store,
            table == "messages" ? $"SELECT COUNT(*) FROM messages WHERE user_id = '{user}'" : $"SELECT COUNT(*) FROM items WHERE user_id = '{user}' AND service = '{service}'");

        // Let the sweeper run a few times on fresh data: it deletes nothing before the limits.
        await Task.Delay(TimeSpan.FromSeconds(2.5));
        Assert.Equal((1L, 1L), (await Count("messages", ""), await Count("items", "find-device")));

        // Past the message's TTL and the fix's max_age; no one calls the sweep.
        clock.Advance(TimeSpan.FromDays(7) + TimeSpan.FromMinutes(1));
        // A sweep deletes first and writes its audit entry last, in a later transaction: wait for the
        // entry that counts the deletions, not only for the rows to go.
        var waited = System.Diagnostics.Stopwatch.StartNew();
        List<(string Actor, JsonNode Details)> sweeps;
        long Swept(string service, string what) => sweeps.Sum(s => (long?)s.Details[service]?[what] ?? 0);
        while (true)
        {
            sweeps = [.. (await AuditAsync(r)).Where(a => a.Action == "retention.sweep").Select(a => (a.Actor, Details: JsonNode.Parse(a.Details)!))];
            if ((Swept("cloud-messaging", "messages") >= 1 && Swept("find-device", "items") >= 1 && sweeps.Count >= 3) || waited.Elapsed > TimeSpan.FromSeconds(20)) break;
            await Task.Delay(100);
        }
        Assert.Equal((0L, 0L), (await Count("messages", ""), await Count("items", "find-device")));
        Assert.Equal(1, await Count("items", "cloud-sync"));

        // It was the background sweeper: entries by the system, and they add up to what went.
        Assert.True(sweeps.Count >= 3, $"the sweeper should have run every second, ran {sweeps.Count} times");
        Assert.All(sweeps, s => Assert.Equal("system", s.Actor));
        Assert.Equal(1, sweeps.Sum(s => (long)s.Details["cloud-messaging"]!["messages"]!));
        Assert.Equal(1, sweeps.Sum(s => (long)s.Details["find-device"]!["items"]!));
        Assert.Contains(await r.AccessLogAsync(user), e => e.Action == "retention.expired" && e.Actor == "system");
        foreach (var other in server.Deployment.Deployment.Regions.Values.Where(o => o != r))
            Assert.Contains(await AuditAsync(other), a => a.Action == "retention.sweep"); // every region is swept
    }

    [Fact]
    public async Task Export_holds_every_stored_byte()
    {
        await using var d = await TestDeployment.CreateAsync(engine);
        var r = d["in-mumbai"];
        var u = await d.UserAsync(login: "exporter@example.in", consents: ["cloud-sync", "cloud-messaging"]);
        var items = new Dictionary<(string, string), (byte[] Body, string Type)>
        {
            [("contacts", "alice")] = (Encoding.UTF8.GetBytes("BEGIN:VCARD\nFN:Alice\nEND:VCARD"), "text/vcard"),
            [("notes", "../../evil")] = (Encoding.UTF8.GetBytes("hostile key, plain data"), "text/plain"),
            [("photos", "big.jpg")] = (RandomNumberGenerator.GetBytes(Region.ChunkSize * 16 + 5), "image/jpeg"),
        };
        foreach (var ((c, k), (body, type)) in items) await r.PutAsync(u.UserId, "cloud-sync", c, k, type, new MemoryStream(body));
        await r.SendMessageAsync("op_app", u.UserId, "a waiting message", 600);

        using var zipBytes = new MemoryStream();
        await r.ExportAsync(u.UserId, zipBytes);
        zipBytes.Position = 0;
        using var zip = new ZipArchive(zipBytes, ZipArchiveMode.Read);
        JsonNode Read(string name) { using var s = zip.GetEntry(name)!.Open(); return JsonNode.Parse(s)!; }
        var manifest = Read("manifest.json");
        var listed = manifest["items"]!.AsArray();
        Assert.Equal(items.Count, listed.Count);
        foreach (var entry in listed)
        {
            var key = ((string)entry!["collection"]!, (string)entry["key"]!);
            var file = (string)entry["file"]!;
            Assert.DoesNotContain("..", file, StringComparison.Ordinal);
            using var s = zip.GetEntry(file)!.Open();
            Assert.Equal(items[key].Body, await Bytes.ReadAllAsync(s));
            Assert.Equal(items[key].Type, (string?)entry["content_type"]);
        }
        Assert.Equal("exporter@example.in", (string?)Read("account.json")["login"]);
        Assert.Equal("a waiting message", (string?)Read("messages.json")[0]!["body"]);
        Assert.Equal(2, Read("consents.json").AsArray().Count);
        Assert.Contains(Read("access-log.json").AsArray(), a => (string?)a!["action"] == "message.send");
    }

    [Fact]
    public async Task Erasure_is_final_even_against_an_earlier_backup()
    {
        await using var d = await TestDeployment.CreateAsync(engine);
        var r = d["in-mumbai"];
        var gone = await d.UserAsync(login: "erase-me@example.in", consents: "cloud-sync");
        var stays = await d.UserAsync(consents: ["cloud-sync", "cloud-messaging"]);
        var photo = RandomNumberGenerator.GetBytes(Region.ChunkSize * 3 + 1);
        foreach (var u in new[] { gone, stays })
        {
            await r.PutAsync(u.UserId, "cloud-sync", "notes", "n", "text/plain", Bytes.Stream("note of " + u.UserId));
            await r.PutAsync(u.UserId, "cloud-sync", "photos", "p", "image/jpeg", new MemoryStream(photo));
        }
        await r.SendMessageAsync("op_app", stays.UserId, "still here", 600);
        var backupFile = Path.Combine(d.Dir, "in-mumbai.backup");
        await using (var f = File.Create(backupFile)) await Backup.WriteAsync(r, f);

        await r.EraseAccountAsync(gone.UserId, gone.UserId);
        Assert.Null(await r.GetAccountAsync(gone.UserId));
        Assert.Null(await r.AuthenticateAsync("erase-me@example.in", "correct horse battery"));
        await r.PutAsync(stays.UserId, "cloud-sync", "notes", "after-backup", null, Bytes.Stream("lost by the restore, as expected"));

        RestoreResult restored;
        await using (var f = File.OpenRead(backupFile)) restored = await Backup.RestoreAsync(r, f, "test");
        Assert.Equal((1, 1), (restored.RestoredUsers, restored.SkippedUsers));
        Assert.Null(await r.GetAccountAsync(gone.UserId));
        Assert.Equal(0, await RawSql.CountAsync(r.Config.Store, $"SELECT COUNT(*) FROM items WHERE user_id = '{gone.UserId}'"));
        Assert.Equal(4, await RawSql.CountAsync(r.Config.Store, "SELECT COUNT(*) FROM blob_chunks"));
        await using (var n = await r.GetAsync(stays.UserId, "cloud-sync", "notes", "n")) Assert.Equal("note of " + stays.UserId, await Bytes.TextAsync(n.Content));
        await using (var p = await r.GetAsync(stays.UserId, "cloud-sync", "photos", "p")) Assert.Equal(photo, await Bytes.ReadAllAsync(p.Content));
        Assert.Equal("still here", Assert.Single(await r.ReceiveMessagesAsync(stays.UserId, TimeSpan.Zero)).Body);
        Assert.True((await r.VerifyAuditAsync()).Ok);
        var actions = new List<string>();
        await foreach (var row in r.ReadAuditAsync()) actions.Add(row.Action);
        Assert.Contains("account.erase", actions);
        Assert.Contains("backup.restore", actions);
    }

    [Fact]
    public async Task A_restore_leaves_out_messages_whose_key_was_destroyed_since_the_backup()
    {
        var clock = new ManualTime(DateTimeOffset.UtcNow);
        await using var d = await TestDeployment.CreateAsync(engine, time: clock);
        var r = d["in-mumbai"];
        var u = await d.UserAsync(consents: ["cloud-sync", "cloud-messaging"]);
        await r.SendMessageAsync("op_app", u.UserId, "before the backup", 600);
        await r.PutAsync(u.UserId, "cloud-sync", "notes", "kept", "text/plain", Bytes.Stream("under a key that stays"));
        using var backup = new MemoryStream();
        await Backup.WriteAsync(r, backup);

        // The clock steps back a minute (a time server's correction): the new key below is dated
        // before the backup, and must still not be taken for the one that sealed its messages.
        clock.Advance(TimeSpan.FromMinutes(-1));
        // Withdrawn with no grace period: the messages and their key go; a new grant makes a new key.
        await r.SetConsentAsync(u.UserId, "cloud-messaging", false, "test");
        clock.Advance(TimeSpan.FromSeconds(1));
        await r.SweepAsync();
        await r.SetConsentAsync(u.UserId, "cloud-messaging", true, "test");
        await r.SendMessageAsync("op_app", u.UserId, "after the re-grant", 600);
        await r.DeleteAsync(u.UserId, "cloud-sync", "notes", "kept");

        backup.Position = 0;
        await Backup.RestoreAsync(r, backup, "test");
        var inbox = await r.ReceiveMessagesAsync(u.UserId, TimeSpan.Zero);
        Assert.DoesNotContain(inbox, m => m.Body == "before the backup");
        Assert.Equal(0, await RawSql.CountAsync(r.Config.Store, $"SELECT COUNT(*) FROM messages WHERE user_id = '{u.UserId}'") - inbox.Count);
        // What was sealed under a key that still exists comes back.
        await using var kept = await r.GetAsync(u.UserId, "cloud-sync", "notes", "kept");
        Assert.Equal("under a key that stays", await Bytes.TextAsync(kept.Content));
    }

    [Fact]
    public async Task The_audit_summaries_a_migration_carries_are_the_same_read_in_pages_of_any_size()
    {
        await using var d = await TestDeployment.CreateAsync(engine);
        var r = d["in-mumbai"];
        var users = new List<string>();
        for (var n = 0; n < 3; n++)
        {
            var u = await d.UserAsync(consents: "cloud-sync");
            for (var k = 0; k <= n * 3; k++) await r.AuditAsync("op_support_" + k, "support.lookup", u.UserId, new JsonObject { ["ticket"] = k });
            users.Add(u.UserId);
        }
        var whole = await r.HistorySummariesAsync(users, "migration:none", page: 10_000);
        foreach (var page in new[] { 1, 2, 5 })
        {
            var paged = await r.HistorySummariesAsync(users, "migration:none", page);
            foreach (var u in users) Assert.Equal(whole[u].ToJsonString(), paged[u].ToJsonString());
        }
        for (var n = 0; n < 3; n++)
        {
            var summary = whole[users[n]];
            Assert.Equal(n * 3 + 1, summary["touches"]!.AsArray().Count(t => (string?)t!["action"] == "support.lookup"));
            var entries = 0;
            await foreach (var row in r.ReadAuditAsync()) if (row.Subject == users[n]) entries++;
            Assert.Equal(entries, (long)summary["entries"]!);
        }
    }

    [Fact]
    public async Task A_restore_of_a_backup_taken_mid_migration_brings_back_no_items_of_the_user_then_half_copied_in()
    {
        await using var d = await TestDeployment.CreateAsync(engine, policy: y => y.Replace("IN: [in-mumbai]", "IN: [in-mumbai, sg-singapore]", StringComparison.Ordinal));
        var source = d["sg-singapore"];
        var dst = d["in-mumbai"];
        var stays = await d.UserAsync(consents: "cloud-sync");
        await dst.PutAsync(stays.UserId, "cloud-sync", "notes", "n", "text/plain", Bytes.Stream("note of the one who stays"));
        var arriving = (await source.CreateAccountAsync("arriving@example.in", "correct horse battery", "IN")).UserId;
        await source.SetConsentAsync(arriving, "cloud-sync", true, "test");
        await source.PutAsync(arriving, "cloud-sync", "notes", "n", "text/plain", Bytes.Stream("note of the one arriving"));
        using var backup = new MemoryStream();
        var migrator = new Migrator(d.Deployment, new MigrationOptions
        {
            // The destination's backup is taken while the copy is there but not yet switched to.
            AtStep = async (step, _) => { if (step == "copied" && backup.Length == 0) await Backup.WriteAsync(dst, backup); },
        });
        var moved = await migrator.Run(await migrator.StartAsync(new MigrationRequest(null, arriving, "in-mumbai")));
        Assert.Equal(("done", 1L), (moved.State, moved.Users));
        Assert.True(backup.Length > 0);

        backup.Position = 0;
        var restored = await Backup.RestoreAsync(dst, backup, "test");
        Assert.Equal((1, 1), (restored.RestoredUsers, restored.SkippedUsers));
        Assert.Null(await dst.GetAccountAsync(arriving));
        Assert.Equal(0, await RawSql.CountAsync(dst.Config.Store, $"SELECT COUNT(*) FROM items WHERE user_id = '{arriving}'"));
        await using (var n = await dst.GetAsync(stays.UserId, "cloud-sync", "notes", "n")) Assert.Equal("note of the one who stays", await Bytes.TextAsync(n.Content));
    }

    [Fact]
    public async Task A_restore_leaves_out_an_account_row_sealed_under_an_account_key_destroyed_since()
    {
        await using var d = await TestDeployment.CreateAsync(engine, policy: y => y.Replace("IN: [in-mumbai]", "IN: [in-mumbai, sg-singapore]", StringComparison.Ordinal));
        var r = d["in-mumbai"];
        var traveller = await d.UserAsync(login: "traveller@example.in", consents: "cloud-sync");
        var stays = await d.UserAsync(consents: "cloud-sync");
        foreach (var u in new[] { traveller, stays }) await r.PutAsync(u.UserId, "cloud-sync", "notes", "n", "text/plain", Bytes.Stream("note of " + u.UserId));
        using var backup = new MemoryStream();
        await Backup.WriteAsync(r, backup);

        // Away and back: the purge destroyed the traveller's keys here, the return made new ones.
        var migrator = new Migrator(d.Deployment);
        foreach (var to in new[] { "sg-singapore", "in-mumbai" })
        {
            var moved = await migrator.Run(await migrator.StartAsync(new MigrationRequest(null, traveller.UserId, to)));
            Assert.Equal(("done", 1L, 0L), (moved.State, moved.Users, moved.Failed));
        }
        Assert.NotNull(await r.AuthenticateAsync("traveller@example.in", "correct horse battery"));

        backup.Position = 0;
        var restored = await Backup.RestoreAsync(r, backup, "test");
        // The backup's login was sealed under the old account key: restored, it would be a login
        // nobody can open. It stays out, like every row of a key destroyed since the backup.
        Assert.Equal((1, 1), (restored.RestoredUsers, restored.SkippedUsers));
        Assert.Null(await r.GetAccountAsync(traveller.UserId));
        Assert.Equal(0, await RawSql.CountAsync(r.Config.Store, $"SELECT COUNT(*) FROM items WHERE user_id = '{traveller.UserId}'"));
        await using (var n = await r.GetAsync(stays.UserId, "cloud-sync", "notes", "n")) Assert.Equal("note of " + stays.UserId, await Bytes.TextAsync(n.Content));
    }

    [Fact]
    public async Task A_key_of_a_service_the_policy_no_longer_names_is_never_cached_and_erasure_leaves_no_key_of_the_user_in_memory()
    {
        var dir = Engines.TempDir();
        var yaml = Engines.Yaml(engine, dir); // once: on PostgreSQL each call names new databases
        string userId;
        IReadOnlyDictionary<string, IReadOnlyList<string>> shares;
        await using (var before = Deployment.Open(ConfigLoader.Parse(yaml, dir)))
        {
            shares = await before.InitializeAsync(stayUnsealed: true);
            var r = before.Region("in-mumbai");
            userId = (await r.CreateAccountAsync("finder@example.in", "correct horse battery", "IN")).UserId;
            foreach (var service in new[] { "cloud-sync", "find-device" }) await r.SetConsentAsync(userId, service, true, "test");
            await r.PutAsync(userId, "cloud-sync", "notes", "n", "text/plain", Bytes.Stream("a note"));
            await r.PutAsync(userId, "find-device", "locations", "last-known", "application/json", Bytes.Stream("{\"lat\":19.07}"));
        }
        var findDevice = yaml.IndexOf("  - id: find-device", StringComparison.Ordinal);
        var withoutIt = yaml.Remove(findDevice, yaml.IndexOf("custody:", StringComparison.Ordinal) - findDevice);
        Assert.DoesNotContain("find-device", withoutIt, StringComparison.Ordinal);
        try
        {
            await using var after = Deployment.Open(ConfigLoader.Parse(withoutIt, dir));
            var region = after.Region("in-mumbai");
            foreach (var share in shares["in-mumbai"].Take(3)) await region.SubmitShareAsync(share);

            // A migration's package reads and opens every key row of the user, the dropped service's too.
            var package = await region.PackageUserAsync(userId);
            Assert.Contains(package.Items, i => i.Service == "find-device" && i.Key == "last-known");
            using (var lease = region.Lease())
            {
                Assert.True(lease.Keys.TryGetDek(userId, "cloud-sync", out _), "a key of a service in the policy is cached as it is read");
                Assert.False(lease.Keys.TryGetDek(userId, "find-device", out _), "a key of a service not in the policy must not be cached");
            }
            await region.EraseAccountAsync(userId, userId);
            using (var lease = region.Lease())
                foreach (var service in new[] { "account", "cloud-sync", "find-device" })
                    Assert.False(lease.Keys.TryGetDek(userId, service, out _), $"the erased user's {service} key is still in memory");
        }
        finally
        {
            AbandonedFolders.Delete(dir);
        }
    }

    [Fact]
    public async Task Backup_files_hold_no_plaintext_and_no_keys()
    {
        await using var d = await TestDeployment.CreateAsync(engine);
        var r = d["in-mumbai"];
        var u = await d.UserAsync(login: "backup-canary-login@example.in", consents: ["cloud-sync", "cloud-messaging"]);
        await r.PutAsync(u.UserId, "cloud-sync", "notes", "backup-canary-key", "text/x-backup-canary", Bytes.Stream("backup-canary-content"));
        await r.SendMessageAsync("op_app", u.UserId, "backup-canary-message", 600);
        using var ms = new MemoryStream();
        await Backup.WriteAsync(r, ms);
        ms.Position = 0;
        using var gz = new GZipStream(ms, CompressionMode.Decompress);
        var text = await new StreamReader(gz).ReadToEndAsync();
        Assert.Contains(u.UserId, text, StringComparison.Ordinal);
        foreach (var canary in new[] { "backup-canary-login", "backup-canary-key", "backup-canary-content", "backup-canary-message", "x-backup-canary" })
            Assert.DoesNotContain(canary, text, StringComparison.Ordinal);
        Assert.DoesNotContain("data_keys", text, StringComparison.Ordinal);
        Assert.DoesNotContain("\"keks\"", text, StringComparison.Ordinal);
        var wrapped = await RawSql.BytesAsync(r.Config.Store, $"SELECT wrapped FROM data_keys WHERE user_id = '{u.UserId}' AND service = 'cloud-sync'");
        Assert.DoesNotContain(Convert.ToBase64String(wrapped), text, StringComparison.Ordinal);
    }
}

public sealed class SqliteRightsContract() : RightsContract(Engines.Sqlite);

public sealed class PostgresRightsContract() : RightsContract(Engines.Postgres);
