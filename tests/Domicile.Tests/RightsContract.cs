using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
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
        await using var d = await TestDeployment.CreateAsync(engine);
        var r = d["in-mumbai"];
        var u = await d.UserAsync(consents: ["cloud-sync", "cloud-messaging"]);
        await r.SendMessageAsync("op_app", u.UserId, "before the backup", 600);
        using var backup = new MemoryStream();
        await Backup.WriteAsync(r, backup);
        await Task.Delay(20);

        // Withdrawn with no grace period: the messages and their key go; a new grant makes a new key.
        await r.SetConsentAsync(u.UserId, "cloud-messaging", false, "test");
        await r.SweepAsync();
        await r.SetConsentAsync(u.UserId, "cloud-messaging", true, "test");
        await r.SendMessageAsync("op_app", u.UserId, "after the re-grant", 600);

        backup.Position = 0;
        await Backup.RestoreAsync(r, backup, "test");
        var inbox = await r.ReceiveMessagesAsync(u.UserId, TimeSpan.Zero);
        Assert.DoesNotContain(inbox, m => m.Body == "before the backup");
        Assert.Equal(0, await RawSql.CountAsync(r.Config.Store, $"SELECT COUNT(*) FROM messages WHERE user_id = '{u.UserId}'") - inbox.Count);
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
