using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Domicile.Audit;
using Domicile.Crypto;
using Domicile.Keys;
using Domicile.Store;
using Domicile.Tests.Support;

namespace Domicile.Tests;

/// <summary>
/// The engine's contract, run unchanged against each store: custody, consent, records, audit,
/// integrity. Subclasses pick the engine.
/// </summary>
public abstract class RegionContract(string engine)
{
    Task<TestDeployment> Deploy(bool unsealed = true, long maxItemBytes = 64L * 1024 * 1024) =>
        TestDeployment.CreateAsync(engine, unsealed, maxItemBytes);

    static async Task<DomicileException> Refused(Func<Task> action) => await Assert.ThrowsAnyAsync<DomicileException>(action);

    // ---- custody --------------------------------------------------------------------------

    [Fact]
    public async Task Init_issues_n_shares_and_refuses_to_run_twice()
    {
        await using var d = await Deploy(unsealed: false);
        Assert.Equal(3, d.Shares.Count);
        foreach (var (region, shares) in d.Shares)
        {
            Assert.Equal(5, shares.Count);
            Assert.All(shares, s => Assert.StartsWith($"domicile-share:v1:{region}:", s));
            Assert.Equal(5, shares.Distinct().Count());
        }
        var e = await Refused(() => d.Deployment.InitializeAsync());
        Assert.Equal("conflict", e.Code);
        Assert.True(d["in-mumbai"].IsSealed);
    }

    [Fact]
    public async Task A_sealed_region_refuses_data_and_unseals_with_any_threshold_of_shares()
    {
        await using var d = await Deploy(unsealed: false);
        var r = d["in-mumbai"];
        var e = await Refused(() => r.CreateAccountAsync("a@example.com", "correct horse battery", "IN"));
        Assert.Equal("sealed", e.Code);

        var shares = d.Shares["in-mumbai"];
        var p1 = await r.SubmitShareAsync(shares[4]);
        Assert.Equal((true, 1, 3), (p1.Sealed, p1.Progress, p1.Threshold));
        var again = await r.SubmitShareAsync(shares[4]);
        Assert.Equal(1, again.Progress); // the same share twice does not count twice
        Assert.Equal(2, (await r.SubmitShareAsync(shares[1])).Progress);
        var done = await r.SubmitShareAsync(shares[2]);
        Assert.False(done.Sealed);
        Assert.False(r.IsSealed);

        var account = await r.CreateAccountAsync("a@example.com", "correct horse battery", "IN");
        await r.SetConsentAsync(account.UserId, "cloud-sync", true, "test");
        await r.PutAsync(account.UserId, "cloud-sync", "notes", "n1", "text/plain", Bytes.Stream("kept across seal"));

        await r.SealAsync("admin-1");
        Assert.True(r.IsSealed);
        Assert.Equal("sealed", (await Refused(() => r.GetAsync(account.UserId, "cloud-sync", "notes", "n1"))).Code);

        foreach (var s in shares.Take(3)) await r.SubmitShareAsync(s);
        await using var item = await r.GetAsync(account.UserId, "cloud-sync", "notes", "n1");
        Assert.Equal("kept across seal", await Bytes.TextAsync(item.Content));
    }

    [Fact]
    public async Task Foreign_corrupted_and_stale_shares_are_refused_without_progress()
    {
        await using var d = await Deploy(unsealed: false);
        var r = d["in-mumbai"];
        var good = d.Shares["in-mumbai"][0];

        var foreign = await Refused(() => r.SubmitShareAsync(d.Shares["cn-beijing"][0]));
        Assert.Equal("invalid_request", foreign.Code);
        Assert.Contains("cn-beijing", foreign.Message, StringComparison.Ordinal);

        var chars = good.ToCharArray();
        chars[^3] = chars[^3] == 'A' ? 'B' : 'A';
        var corrupted = await Refused(() => r.SubmitShareAsync(new string(chars)));
        Assert.Contains("checksum", corrupted.Message, StringComparison.Ordinal);

        // A well-formed share of the same region name from another initialisation: valid checksum, wrong key.
        var other = Shamir.Split(RandomNumberGenerator.GetBytes(32), 5, 3);
        var stale = await Refused(() => r.SubmitShareAsync(ShareCodec.Format("in-mumbai", other[0])));
        Assert.Contains("not one of the shares issued", stale.Message, StringComparison.Ordinal);

        Assert.Equal(0, (await r.UnsealProgressAsync()).Progress);
        Assert.DoesNotContain(good[20..], foreign.Message + corrupted.Message + stale.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Shares_that_pass_every_per_share_check_but_combine_to_another_key_are_caught_by_the_key_check_value()
    {
        await using var d = await Deploy(unsealed: false);
        // An insider swaps the stored share digests for those of shares they made themselves: each
        // forged share now passes on its own, and only the root's key-check value can tell.
        var forged = Shamir.Split(RandomNumberGenerator.GetBytes(32), 5, 3);
        var digests = forged.SelectMany(p => SHA256.HashData(Sealing.Aad("share", "in-mumbai", Convert.ToHexString(p)))).ToArray();
        await RawSql.ExecAsync(d["in-mumbai"].Config.Store, "UPDATE meta SET value = @v WHERE name = 'share_digests'", ("v", digests));

        await using var fresh = Deployment.Open(d.Config);
        var r = fresh.Region("in-mumbai");
        Assert.Equal(1, (await r.SubmitShareAsync(ShareCodec.Format("in-mumbai", forged[0]))).Progress);
        Assert.Equal(2, (await r.SubmitShareAsync(ShareCodec.Format("in-mumbai", forged[1]))).Progress);
        var wrong = await Refused(() => r.SubmitShareAsync(ShareCodec.Format("in-mumbai", forged[2])));
        Assert.Contains("do not combine to this region's root key", wrong.Message, StringComparison.Ordinal);
        Assert.True(r.IsSealed);
        Assert.Equal(0, (await r.UnsealProgressAsync()).Progress);
    }

    // ---- consent --------------------------------------------------------------------------

    [Fact]
    public async Task Nothing_is_stored_without_consent_and_withdrawal_stops_later_writes()
    {
        await using var d = await Deploy();
        var r = d["in-mumbai"];
        var u = await d.UserAsync();
        var e = await Refused(() => r.PutAsync(u.UserId, "cloud-sync", "notes", "n1", "text/plain", Bytes.Stream("secret")));
        Assert.Equal("consent_required", e.Code);
        Assert.Empty((await r.ChangesAsync(u.UserId, null)).Changes);
        Assert.Equal(0, await RawSql.CountAsync(r.Config.Store, "SELECT COUNT(*) FROM items"));

        var grant = await r.SetConsentAsync(u.UserId, "cloud-sync", true, "settings-app");
        Assert.True(grant.Granted);
        await r.PutAsync(u.UserId, "cloud-sync", "notes", "n1", "text/plain", Bytes.Stream("first"));

        await r.SetConsentAsync(u.UserId, "cloud-sync", false, "settings-app");
        Assert.Equal("consent_required", (await Refused(() => r.PutAsync(u.UserId, "cloud-sync", "notes", "n2", null, Bytes.Stream("late")))).Code);
        // 30-day grace: the data stays readable and comes back with a re-grant.
        await using (var kept = await r.GetAsync(u.UserId, "cloud-sync", "notes", "n1"))
            Assert.Equal("first", await Bytes.TextAsync(kept.Content));
        await r.SetConsentAsync(u.UserId, "cloud-sync", true, "settings-app");
        await r.PutAsync(u.UserId, "cloud-sync", "notes", "n2", null, Bytes.Stream("after re-grant"));

        var ledger = await r.ConsentHistoryAsync(u.UserId);
        Assert.Equal([true, false, true], ledger.Where(c => c.Service == "cloud-sync").Select(c => c.Granted));
        Assert.All(ledger, c => Assert.Equal("settings-app", c.Source));
        var views = await r.GetConsentsAsync(u.UserId);
        Assert.Equal(3, views.Count);
        Assert.True(views.Single(v => v.Service == "cloud-sync").Granted);
        Assert.False(views.Single(v => v.Service == "find-device").Granted);
    }

    [Fact]
    public async Task Withdrawal_with_zero_grace_deletes_the_data_and_destroys_the_key()
    {
        await using var d = await Deploy();
        var r = d["in-mumbai"];
        var u = await d.UserAsync(consents: "find-device");
        await r.PutAsync(u.UserId, "find-device", "locations", "now", "application/json", Bytes.Stream("{\"lat\":19.07}"));
        await r.SetConsentAsync(u.UserId, "find-device", false, "test");
        Assert.Equal("not_found", (await Refused(() => r.GetAsync(u.UserId, "find-device", "locations", "now"))).Code);
        Assert.Equal(0, await RawSql.CountAsync(r.Config.Store, $"SELECT COUNT(*) FROM items WHERE user_id = '{u.UserId}' AND service = 'find-device'"));
        Assert.Equal(0, await RawSql.CountAsync(r.Config.Store, $"SELECT COUNT(*) FROM data_keys WHERE user_id = '{u.UserId}' AND service = 'find-device'"));
        // A new grant starts over with a new key.
        await r.SetConsentAsync(u.UserId, "find-device", true, "test");
        Assert.Equal(1, await RawSql.CountAsync(r.Config.Store, $"SELECT COUNT(*) FROM data_keys WHERE user_id = '{u.UserId}' AND service = 'find-device'"));
    }

    [Fact]
    public async Task Consent_receipts_verify_against_the_regions_public_key()
    {
        await using var d = await Deploy();
        var r = d["in-mumbai"];
        var u = await d.UserAsync();
        var change = await r.SetConsentAsync(u.UserId, "cloud-messaging", true, "test");
        var jwk = r.PublicJwk();
        using var key = Jws.FromJwk(jwk)!;
        Assert.True(Jws.TryVerify(change.Receipt, kid => kid == jwk["kid"]!.GetValue<string>() ? key : null, out var payload));
        Assert.Equal(u.UserId, payload!["sub"]!.GetValue<string>());
        Assert.Equal("cloud-messaging", payload["service"]!.GetValue<string>());
        Assert.True(payload["granted"]!.GetValue<bool>());
        Assert.Equal(1, payload["version"]!.GetValue<int>());
        // Another region's key does not verify it.
        var other = d["cn-beijing"].PublicJwk();
        using var otherKey = Jws.FromJwk(other)!;
        Assert.False(Jws.TryVerify(change.Receipt, _ => otherKey, out _));
    }

    [Fact]
    public async Task The_public_signing_key_is_kept_in_clear_and_published_while_sealed_and_after_a_restart()
    {
        await using var d = await Deploy();
        var r = d["in-mumbai"];
        var u = await d.UserAsync();
        var receipt = (await r.SetConsentAsync(u.UserId, "cloud-sync", true, "test")).Receipt;
        var jwk = r.PublicJwk();

        // What is stored is the SubjectPublicKeyInfo of that key: public, nothing private in clear.
        var spki = await RawSql.BytesAsync(r.Config.Store, "SELECT value FROM meta WHERE name = 'signing_public'");
        using (var stored = ECDsa.Create())
        {
            stored.ImportSubjectPublicKeyInfo(spki, out var read);
            Assert.Equal(spki.Length, read);
            Assert.Throws<CryptographicException>(() => stored.ExportParameters(includePrivateParameters: true));
            Assert.Equal(jwk.ToJsonString(), Jws.PublicJwk(stored, (string)jwk["kid"]!).ToJsonString());
        }

        await r.SealAsync("admin-1");
        Assert.Equal(jwk.ToJsonString(), (await r.PublishedJwkAsync())!.ToJsonString());

        // A restart: a new process opens the stores, every region sealed, and still publishes every key.
        await using var restarted = Deployment.Open(d.Config);
        Assert.All(restarted.Regions.Values, x => Assert.True(x.IsSealed));
        var published = await restarted.Region("in-mumbai").PublishedJwkAsync();
        Assert.Equal(jwk.ToJsonString(), published!.ToJsonString());
        using var key = Jws.FromJwk(published)!;
        Assert.True(Jws.TryVerify(receipt, kid => kid == (string)published["kid"]! ? key : null, out var payload));
        Assert.Equal(u.UserId, (string?)payload!["sub"]);
        foreach (var other in new[] { "cn-beijing", "sg-singapore" })
            Assert.Equal(d[other].PublicJwk().ToJsonString(), (await restarted.Region(other).PublishedJwkAsync())!.ToJsonString());
    }

    [Fact]
    public async Task A_store_without_the_public_key_gets_it_back_at_the_next_unseal()
    {
        await using var d = await Deploy();
        var jwk = d["in-mumbai"].PublicJwk();
        // As a store initialised before public keys were kept would be.
        await RawSql.ExecAsync(d["in-mumbai"].Config.Store, "DELETE FROM meta WHERE name = 'signing_public'");
        await using var restarted = Deployment.Open(d.Config);
        var r = restarted.Region("in-mumbai");
        Assert.Null(await r.PublishedJwkAsync());
        foreach (var share in d.Shares["in-mumbai"].Take(3)) await r.SubmitShareAsync(share);
        Assert.Equal(jwk.ToJsonString(), (await r.PublishedJwkAsync())!.ToJsonString());
        await r.SealAsync("admin-1");
        await using var again = Deployment.Open(d.Config);
        Assert.Equal(jwk.ToJsonString(), (await again.Region("in-mumbai").PublishedJwkAsync())!.ToJsonString());
    }

    [Fact]
    public async Task Unknown_services_and_unknown_users_are_refused()
    {
        await using var d = await Deploy();
        var r = d["in-mumbai"];
        var u = await d.UserAsync();
        Assert.Equal("unknown_service", (await Refused(() => r.SetConsentAsync(u.UserId, "telemetry", true, "test"))).Code);
        Assert.Equal("unknown_service", (await Refused(() => r.PutAsync(u.UserId, "telemetry", "x", "y", null, Bytes.Stream("z")))).Code);
        Assert.Equal("not_found", (await Refused(() => r.SetConsentAsync("nobody", "cloud-sync", true, "test"))).Code);
        Assert.Equal("residency_violation", (await Refused(() => r.CreateAccountAsync("cn@example.com", "correct horse battery", "CN"))).Code);
    }

    // ---- records --------------------------------------------------------------------------

    [Fact]
    public async Task Items_round_trip_with_etags_if_match_and_content_type()
    {
        await using var d = await Deploy();
        var r = d["in-mumbai"];
        var u = await d.UserAsync(consents: "cloud-sync");
        var put = await r.PutAsync(u.UserId, "cloud-sync", "contacts", "alice", "text/vcard", Bytes.Stream("BEGIN:VCARD"));
        Assert.True(put.Created);
        await using (var got = await r.GetAsync(u.UserId, "cloud-sync", "contacts", "alice"))
        {
            Assert.Equal("text/vcard", got.ContentType);
            Assert.Equal(put.ETag, got.ETag);
            Assert.Equal("BEGIN:VCARD", await Bytes.TextAsync(got.Content));
        }
        var stale = put.ETag;
        var put2 = await r.PutAsync(u.UserId, "cloud-sync", "contacts", "alice", "text/vcard", Bytes.Stream("BEGIN:VCARD v2"), ifMatch: stale);
        Assert.False(put2.Created);
        Assert.NotEqual(stale, put2.ETag);
        var conflict = await Refused(() => r.PutAsync(u.UserId, "cloud-sync", "contacts", "alice", "text/vcard", Bytes.Stream("lost update"), ifMatch: stale));
        Assert.Equal("conflict", conflict.Code);
        await using (var got = await r.GetAsync(u.UserId, "cloud-sync", "contacts", "alice"))
            Assert.Equal("BEGIN:VCARD v2", await Bytes.TextAsync(got.Content));
        Assert.Equal("conflict", (await Refused(() => r.PutAsync(u.UserId, "cloud-sync", "contacts", "bob", null, Bytes.Stream("x"), ifMatch: "*"))).Code);

        await r.DeleteAsync(u.UserId, "cloud-sync", "contacts", "alice");
        Assert.Equal("not_found", (await Refused(() => r.GetAsync(u.UserId, "cloud-sync", "contacts", "alice"))).Code);
        Assert.True((await r.PutAsync(u.UserId, "cloud-sync", "contacts", "alice", null, Bytes.Stream("again"))).Created);
    }

    [Fact]
    public async Task Batched_writes_are_all_or_nothing_and_behave_like_single_writes()
    {
        await using var d = await Deploy();
        var r = d["in-mumbai"];
        var u = await d.UserAsync();
        var batch = Enumerable.Range(0, 120).Select(i => new Region.BatchItem(i % 2 == 0 ? "contacts" : "notes", $"k{i}", "text/plain", Encoding.UTF8.GetBytes($"v{i}"))).ToList();
        Assert.Equal("consent_required", (await Refused(() => r.PutManyAsync(u.UserId, "cloud-sync", batch))).Code);
        Assert.Equal(0, await RawSql.CountAsync(r.Config.Store, "SELECT COUNT(*) FROM items"));

        await r.SetConsentAsync(u.UserId, "cloud-sync", true, "test");
        var single = await r.PutAsync(u.UserId, "cloud-sync", "contacts", "k0", null, Bytes.Stream("old"));
        var results = await r.PutManyAsync(u.UserId, "cloud-sync", batch);
        Assert.False(results[0].Created); // k0 existed
        Assert.All(results.Skip(1), x => Assert.True(x.Created));
        Assert.Equal(120, results.Select(x => x.ETag).Distinct().Count());
        Assert.DoesNotContain(single.ETag, results.Select(x => x.ETag));
        for (var i = 0; i < 120; i += 17)
        {
            await using var got = await r.GetAsync(u.UserId, "cloud-sync", i % 2 == 0 ? "contacts" : "notes", $"k{i}");
            Assert.Equal($"v{i}", await Bytes.TextAsync(got.Content));
            Assert.Equal(results[i].ETag, got.ETag);
        }
        var feed = await r.ChangesAsync(u.UserId, null, 1000);
        Assert.Equal(120, feed.Changes.Count);
        // The new rows are stored live, inline, created as they were updated (k0 keeps its own
        // creation, counted only when that fell in the same millisecond), each with its content's size ("v0" to "v119").
        Assert.InRange(await RawSql.CountAsync(r.Config.Store,
            "SELECT COUNT(*) FROM items WHERE deleted = 0 AND blob_id IS NULL AND content IS NOT NULL AND created_at = updated_at AND size BETWEEN 2 AND 4"), 119, 120);

        // Over a deleted item, a large one (its chunks go) and a plain one: created, replaced, replaced.
        await r.DeleteAsync(u.UserId, "cloud-sync", "contacts", "k2");
        await r.PutAsync(u.UserId, "cloud-sync", "contacts", "k4", null, new MemoryStream(new byte[3 * Region.ChunkSize]));
        Assert.True(await RawSql.CountAsync(r.Config.Store, "SELECT COUNT(*) FROM blob_chunks") > 0);
        var again = await r.PutManyAsync(u.UserId, "cloud-sync",
            [new("contacts", "k2", null, [2]), new("contacts", "k4", null, [4]), new("contacts", "k0", null, [0]), new("contacts", "new", null, [9])]);
        Assert.Equal([true, false, false, true], again.Select(x => x.Created));
        Assert.Equal(0, await RawSql.CountAsync(r.Config.Store, "SELECT COUNT(*) FROM blob_chunks"));
        await using (var k4 = await r.GetAsync(u.UserId, "cloud-sync", "contacts", "k4"))
            Assert.Equal(new byte[] { 4 }, await Bytes.ReadAllAsync(k4.Content));
        Assert.Equal(121, await RawSql.CountAsync(r.Config.Store, "SELECT COUNT(*) FROM items"));

        var duplicate = new List<Region.BatchItem> { new("notes", "same", null, [1]), new("notes", "same", null, [2]) };
        Assert.Equal("invalid_request", (await Refused(() => r.PutManyAsync(u.UserId, "cloud-sync", duplicate))).Code);
        var tooBig = new List<Region.BatchItem> { new("notes", "fine", null, [1]), new("notes", "big", null, new byte[Region.ChunkSize + 1]) };
        Assert.Equal("invalid_request", (await Refused(() => r.PutManyAsync(u.UserId, "cloud-sync", tooBig))).Code);
        Assert.Equal("not_found", (await Refused(() => r.GetAsync(u.UserId, "cloud-sync", "notes", "fine"))).Code);
    }

    [Fact]
    public async Task Hostile_keys_are_plain_data()
    {
        await using var d = await Deploy();
        var r = d["in-mumbai"];
        var u = await d.UserAsync(consents: "cloud-sync");
        string[] keys = ["../../etc/passwd", "a'b\"c", "'; DROP TABLE items; --", "ключ-🔑-鍵", "nul\0byte", " spaced ", new string('k', 1024)];
        foreach (var k in keys) await r.PutAsync(u.UserId, "cloud-sync", "notes", k, null, Bytes.Stream("v:" + k));
        foreach (var k in keys)
        {
            await using var got = await r.GetAsync(u.UserId, "cloud-sync", "notes", k);
            Assert.Equal("v:" + k, await Bytes.TextAsync(got.Content));
        }
        var listed = (await r.ListAsync(u.UserId, "cloud-sync", "notes", null, 100)).Items.Select(i => i.Key).Order(StringComparer.Ordinal);
        Assert.Equal(keys.Order(StringComparer.Ordinal), listed);
        Assert.Equal("invalid_request", (await Refused(() => r.PutAsync(u.UserId, "cloud-sync", "notes", new string('k', 1025), null, Bytes.Stream("")))).Code);
        Assert.Equal("invalid_request", (await Refused(() => r.PutAsync(u.UserId, "cloud-sync", "../notes", "k", null, Bytes.Stream("")))).Code);
        Assert.Equal("invalid_request", (await Refused(() => r.PutAsync(u.UserId, "cloud-sync", "notes", "", null, Bytes.Stream("")))).Code);
    }

    [Fact]
    public async Task Listing_pages_through_every_item_once_and_the_change_feed_follows_writes()
    {
        await using var d = await Deploy();
        var r = d["in-mumbai"];
        var u = await d.UserAsync(consents: "cloud-sync");
        var expected = Enumerable.Range(0, 25).Select(i => $"note-{i:D2}").ToList();
        foreach (var k in expected) await r.PutAsync(u.UserId, "cloud-sync", "notes", k, null, Bytes.Stream(k));
        await r.PutAsync(u.UserId, "cloud-sync", "photos", "p1", "image/jpeg", Bytes.Stream("jpeg"));

        var seen = new List<string>();
        string? cursor = null;
        var pages = 0;
        do
        {
            var page = await r.ListAsync(u.UserId, "cloud-sync", "notes", cursor, 10);
            seen.AddRange(page.Items.Select(i => i.Key));
            cursor = page.NextCursor;
            pages++;
        } while (cursor is not null);
        Assert.Equal(expected, seen.Order(StringComparer.Ordinal));
        Assert.Equal(3, pages);

        var all = await r.ChangesAsync(u.UserId, null);
        Assert.Equal(26, all.Changes.Count);
        await r.DeleteAsync(u.UserId, "cloud-sync", "notes", "note-03");
        await r.PutAsync(u.UserId, "cloud-sync", "notes", "note-04", null, Bytes.Stream("edited"));
        var delta = await r.ChangesAsync(u.UserId, all.Cursor);
        Assert.Equal([("note-03", true), ("note-04", false)], delta.Changes.Select(c => (c.Key, c.Deleted)));
        Assert.Empty((await r.ChangesAsync(u.UserId, delta.Cursor)).Changes);
        // Another user sees none of it.
        var other = await d.UserAsync(consents: "cloud-sync");
        Assert.Empty((await r.ChangesAsync(other.UserId, null)).Changes);
        Assert.Equal("not_found", (await Refused(() => r.GetAsync(other.UserId, "cloud-sync", "notes", "note-01"))).Code);
    }

    [Fact]
    public async Task Blobs_stream_in_chunks_and_oversized_items_leave_nothing()
    {
        await using var d = await Deploy(maxItemBytes: 1_000_000);
        var r = d["in-mumbai"];
        var u = await d.UserAsync(consents: "cloud-sync");
        var photo = RandomNumberGenerator.GetBytes(Region.ChunkSize * 7 + 123);
        var put = await r.PutAsync(u.UserId, "cloud-sync", "photos", "big.jpg", "image/jpeg", new MemoryStream(photo));
        Assert.Equal(photo.Length, put.Size);
        Assert.Equal(8, await RawSql.CountAsync(r.Config.Store, "SELECT COUNT(*) FROM blob_chunks"));
        await using (var got = await r.GetAsync(u.UserId, "cloud-sync", "photos", "big.jpg"))
            Assert.Equal(photo, await Bytes.ReadAllAsync(got.Content));
        var exact = RandomNumberGenerator.GetBytes(Region.ChunkSize);
        await r.PutAsync(u.UserId, "cloud-sync", "photos", "exact", null, new MemoryStream(exact));
        await using (var got = await r.GetAsync(u.UserId, "cloud-sync", "photos", "exact"))
            Assert.Equal(exact, await Bytes.ReadAllAsync(got.Content));

        var tooBig = await Refused(() => r.PutAsync(u.UserId, "cloud-sync", "photos", "huge", null, new MemoryStream(new byte[1_000_001])));
        Assert.Equal("payload_too_large", tooBig.Code);
        Assert.Equal(8, await RawSql.CountAsync(r.Config.Store, "SELECT COUNT(*) FROM blob_chunks"));
        // Replacing a blob removes the old chunks.
        await r.PutAsync(u.UserId, "cloud-sync", "photos", "big.jpg", "image/jpeg", Bytes.Stream("small now"));
        Assert.Equal(0, await RawSql.CountAsync(r.Config.Store, "SELECT COUNT(*) FROM blob_chunks"));
    }

    // ---- integrity (G4) -------------------------------------------------------------------

    [Fact]
    public async Task A_data_key_unwrapped_inside_a_write_is_zeroed_when_the_write_ends_and_a_cached_one_is_not()
    {
        await using var d = await Deploy();
        var r = d["in-mumbai"];
        var u = await d.UserAsync(consents: ["cloud-sync"]);
        await r.PutAsync(u.UserId, "cloud-sync", "notes", "before", "text/plain", Bytes.Stream("written before"));
        async Task<byte[]> KeyInsideAWrite()
        {
            byte[]? inside = null;
            using var lease = r.Lease();
            await r.Store.WriteAsync(async tx =>
            {
                inside = await r.DekAsync(lease.Keys, tx, u.UserId, "cloud-sync");
                Assert.Contains(inside!, b => b != 0);
                return 0;
            });
            return inside!;
        }
        using (var lease = r.Lease()) lease.Keys.Forget(u.UserId, "cloud-sync");
        Assert.All(await KeyInsideAWrite(), b => Assert.Equal(0, b)); // unwrapped for that write alone

        // Read once (committed: now cached), the same key inside a write is the cached one, left whole.
        await using (var got = await r.GetAsync(u.UserId, "cloud-sync", "notes", "before"))
            Assert.Equal("written before", await Bytes.TextAsync(got.Content));
        Assert.Contains(await KeyInsideAWrite(), b => b != 0);
        await r.PutAsync(u.UserId, "cloud-sync", "notes", "after", "text/plain", Bytes.Stream("written after"));
        foreach (var (key, text) in new[] { ("before", "written before"), ("after", "written after") })
        {
            await using var got = await r.GetAsync(u.UserId, "cloud-sync", "notes", key);
            Assert.Equal(text, await Bytes.TextAsync(got.Content));
        }
    }

    [Fact]
    public async Task Erasing_an_account_zeroes_every_cached_data_key_of_the_user_and_no_one_elses()
    {
        await using var d = await Deploy();
        var r = d["in-mumbai"];
        var leaver = await d.UserAsync(consents: ["cloud-sync", "cloud-messaging"]);
        var stayer = await d.UserAsync(consents: ["cloud-sync"]);
        foreach (var u in new[] { leaver, stayer })
        {
            await r.PutAsync(u.UserId, "cloud-sync", "notes", "n", "text/plain", Bytes.Stream("x"));
            await using var got = await r.GetAsync(u.UserId, "cloud-sync", "notes", "n"); // cached by the read
        }
        await r.SendMessageAsync("op_app", leaver.UserId, "hello", 600);
        Assert.Single(await r.ReceiveMessagesAsync(leaver.UserId, TimeSpan.Zero));
        byte[] Cached(string user, string service)
        {
            using var lease = r.Lease();
            Assert.True(lease.Keys.TryGetDek(user, service, out var dek), $"{service} of {user} should be cached");
            return dek;
        }
        var leaverKeys = new[] { Cached(leaver.UserId, "cloud-sync"), Cached(leaver.UserId, "cloud-messaging") };
        var stayerKey = Cached(stayer.UserId, "cloud-sync");

        await r.EraseAccountAsync(leaver.UserId, leaver.UserId);
        Assert.All(leaverKeys, k => Assert.All(k, b => Assert.Equal(0, b)));
        Assert.Contains(stayerKey, b => b != 0);
        await using var still = await r.GetAsync(stayer.UserId, "cloud-sync", "notes", "n");
        Assert.Equal("x", await Bytes.TextAsync(still.Content));
    }

    [Fact]
    public async Task Ciphertext_moved_swapped_or_altered_on_disk_is_refused()
    {
        await using var d = await Deploy();
        var r = d["in-mumbai"];
        var s = r.Config.Store;
        var a = await d.UserAsync(consents: "cloud-sync");
        var b = await d.UserAsync(consents: "cloud-sync");
        await r.PutAsync(a.UserId, "cloud-sync", "notes", "one", null, Bytes.Stream("alpha"));
        await r.PutAsync(a.UserId, "cloud-sync", "notes", "two", null, Bytes.Stream("beta"));
        await r.PutAsync(b.UserId, "cloud-sync", "notes", "one", null, Bytes.Stream("gamma"));

        // Swap the content of a's two items.
        await RawSql.ExecAsync(s, $"""
            UPDATE items SET content = (SELECT content FROM items x WHERE x.user_id = '{b.UserId}')
            WHERE user_id = '{a.UserId}' AND version = (SELECT MIN(version) FROM items y WHERE y.user_id = '{a.UserId}')
            """);
        var e = await Refused(() => r.GetAsync(a.UserId, "cloud-sync", "notes", "one"));
        Assert.Equal("tampered", e.Code);

        // Flip one byte of b's content.
        var content = await RawSql.BytesAsync(s, $"SELECT content FROM items WHERE user_id = '{b.UserId}'");
        content[20] ^= 0x01;
        await RawSql.ExecAsync(s, $"UPDATE items SET content = @c WHERE user_id = '{b.UserId}'", ("c", content));
        Assert.Equal("tampered", (await Refused(() => r.GetAsync(b.UserId, "cloud-sync", "notes", "one"))).Code);

        // An item row rolled back to an older version number is refused too.
        await RawSql.ExecAsync(s, $"UPDATE items SET version = version + 100 WHERE user_id = '{a.UserId}' AND version = (SELECT MAX(version) FROM items y WHERE y.user_id = '{a.UserId}')");
        Assert.Equal("tampered", (await Refused(() => r.GetAsync(a.UserId, "cloud-sync", "notes", "two"))).Code);
    }

    [Fact]
    public async Task A_swapped_blob_chunk_is_refused()
    {
        await using var d = await Deploy();
        var r = d["in-mumbai"];
        var u = await d.UserAsync(consents: "cloud-sync");
        await r.PutAsync(u.UserId, "cloud-sync", "photos", "p", null, new MemoryStream(RandomNumberGenerator.GetBytes(Region.ChunkSize * 3)));
        foreach (var step in new[] { "idx = 100 WHERE idx = 0", "idx = 0 WHERE idx = 1", "idx = 1 WHERE idx = 100" })
            await RawSql.ExecAsync(r.Config.Store, "UPDATE blob_chunks SET " + step);
        await using var got = await r.GetAsync(u.UserId, "cloud-sync", "photos", "p");
        Assert.Equal("tampered", (await Refused(() => Bytes.ReadAllAsync(got.Content))).Code);
    }

    // ---- audit (G7) -----------------------------------------------------------------------

    [Fact]
    public async Task The_audit_chain_records_actions_exports_per_spec_and_catches_tampering()
    {
        await using var d = await Deploy();
        var r = d["in-mumbai"];
        var u = await d.UserAsync(consents: "cloud-sync");
        await r.SetConsentAsync(u.UserId, "cloud-sync", false, "test");
        var ok = await r.VerifyAuditAsync();
        Assert.True(ok.Ok, ok.Problem);
        Assert.Null(ok.FirstBadSeq);

        var export = new StringWriter();
        await r.ExportAuditAsync(export);
        var lines = export.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(ok.Entries, lines.Length);
        var actions = lines.Select(l => JsonNode.Parse(l)!["action"]!.GetValue<string>()).ToList();
        Assert.Equal(["region.init", "operator.create", "account.create", "consent.grant", "consent.withdraw"], actions);
        // Independent recomputation: the hash is SHA-256 of the JCS form without "hash".
        var prev = new string('0', 64);
        foreach (var (line, i) in lines.Select((l, i) => (l, i)))
        {
            var o = JsonNode.Parse(line)!.AsObject();
            Assert.Equal(["seq", "at", "actor", "action", "subject", "details", "prev", "hash"], o.Select(p => p.Key));
            Assert.Equal(i + 1, o["seq"]!.GetValue<long>());
            Assert.Equal(prev, o["prev"]!.GetValue<string>());
            Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", o["at"]!.GetValue<string>());
            var hash = o["hash"]!.GetValue<string>();
            o.Remove("hash");
            Assert.Equal(hash, Convert.ToHexStringLower(SHA256.HashData(Jcs.Canonicalize(o))));
            prev = hash;
        }
        Assert.DoesNotContain("example.com", export.ToString(), StringComparison.Ordinal);

        var checkpoint = prev;
        Assert.True((await r.VerifyAuditAsync(checkpoint)).Ok);

        await RawSql.ExecAsync(r.Config.Store, "UPDATE audit SET actor = 'someone-else' WHERE seq = 3");
        var broken = await r.VerifyAuditAsync();
        Assert.False(broken.Ok);
        Assert.Equal(3, broken.FirstBadSeq);
    }

    [Fact]
    public async Task Truncation_after_a_checkpoint_is_detected()
    {
        await using var d = await Deploy();
        var r = d["in-mumbai"];
        await d.UserAsync(consents: "cloud-sync");
        var head = (await r.VerifyAuditAsync()).Entries;
        string checkpoint = "";
        await foreach (var row in r.ReadAuditAsync()) checkpoint = row.Hash;
        await RawSql.ExecAsync(r.Config.Store, $"DELETE FROM audit WHERE seq = {head}");
        Assert.True((await r.VerifyAuditAsync()).Ok); // without the checkpoint a clean cut is invisible
        var v = await r.VerifyAuditAsync(checkpoint);
        Assert.False(v.Ok);
        Assert.Contains("checkpoint", v.Problem, StringComparison.Ordinal);
    }

    // ---- keys -----------------------------------------------------------------------------

    [Fact]
    public async Task Kek_rotation_rewraps_every_dek_and_destroys_the_old_version()
    {
        await using var d = await Deploy();
        var r = d["in-mumbai"];
        var users = new List<Account>();
        for (var i = 0; i < 3; i++)
        {
            var u = await d.UserAsync(consents: "cloud-sync");
            await r.PutAsync(u.UserId, "cloud-sync", "notes", "n", null, Bytes.Stream($"note {i}"));
            users.Add(u);
        }
        var rotation = await r.RotateKekAsync("admin-1");
        Assert.Equal(2, rotation.NewVersion);
        Assert.Equal(6, rotation.Rewrapped); // account + cloud-sync key per user
        Assert.Equal([1L], rotation.DestroyedVersions);
        Assert.Equal(0, await RawSql.CountAsync(r.Config.Store, "SELECT COUNT(*) FROM keks WHERE version = 1"));
        Assert.Equal(0, await RawSql.CountAsync(r.Config.Store, "SELECT COUNT(*) FROM data_keys WHERE kek_version = 1"));

        // After a seal and unseal (no cached keys), everything still opens under the new KEK.
        await r.SealAsync("test");
        foreach (var s in d.Shares["in-mumbai"].Take(3)) await r.SubmitShareAsync(s);
        for (var i = 0; i < 3; i++)
        {
            await using var got = await r.GetAsync(users[i].UserId, "cloud-sync", "notes", "n");
            Assert.Equal($"note {i}", await Bytes.TextAsync(got.Content));
        }
        var actions = new List<string>();
        await foreach (var row in r.ReadAuditAsync()) actions.Add(row.Action);
        Assert.Contains("key.kek_created", actions);
        Assert.Contains("key.kek_destroyed", actions);
    }

    [Fact]
    public async Task Copies_sealed_before_a_rotation_are_written_under_the_new_KEK()
    {
        await using var d = await Deploy();
        var to = d["in-mumbai"];
        var pkg = Demo.DemoSeeder.User(0, await PasswordHasher.HashAsync("correct horse battery"), DateTimeOffset.UtcNow) with { Country = "IN" };
        // Fresh keys are wrapped as the copies are sealed, outside the write; a rotation in between must not leave them under a destroyed KEK.
        using (var copies = to.SealCopies([pkg]))
        {
            Assert.Equal(1, copies.KekVersion);
            var rotation = await to.RotateKekAsync("admin-1");
            Assert.Equal(2, rotation.NewVersion);
            await to.Store.WriteAsync(async tx => { await to.WriteCopiesAsync(tx, copies, UserStates.Incoming); return 0; });
        }
        Assert.Equal(0, await RawSql.CountAsync(to.Config.Store, "SELECT COUNT(*) FROM data_keys WHERE kek_version <> 2"));
        // No cached keys: everything opens from the rows, under the new KEK.
        await to.SealAsync("test");
        foreach (var s in d.Shares["in-mumbai"].Take(3)) await to.SubmitShareAsync(s);
        var copy = await to.PackageUserAsync(pkg.UserId);
        Assert.Equal(pkg.Login, copy.Login);
        Assert.Equal(pkg.Items.Select(i => Convert.ToHexString(i.Content!)), copy.Items.Select(i => Convert.ToHexString(i.Content!)));
        Assert.Equal(pkg.Messages.Select(m => m.Body), copy.Messages.Select(m => m.Body));
        Assert.Equal((await Region.DigestAsync(pkg)).Digest, (await to.DigestUserAsync(pkg.UserId)).Digest);
    }

    // ---- schema ---------------------------------------------------------------------------

    [Fact]
    public async Task A_store_with_a_newer_schema_is_refused()
    {
        await using var d = await Deploy();
        var r = d["in-mumbai"];
        await r.Store.CheckSchemaAsync();
        await RawSql.ExecAsync(r.Config.Store, "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 'future')");
        var e = await Assert.ThrowsAsync<StoreException>(() => r.Store.CheckSchemaAsync());
        Assert.Contains("newer", e.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<StoreException>(() => r.Store.UpgradeAsync());
        // The message names the region and says what to do, with commands that exist.
        e = await Assert.ThrowsAsync<StoreException>(() => d.Deployment.CheckSchemasAsync());
        Assert.StartsWith("region 'in-mumbai': ", e.Message, StringComparison.Ordinal);
        Assert.Contains("schema version 99, newer than this program's", e.Message, StringComparison.Ordinal);
        Assert.Contains("run that release", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("domicile upgrade", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_store_never_initialised_is_refused_pointing_at_init()
    {
        var dir = Engines.TempDir();
        try
        {
            await using var deployment = Deployment.Open(Engines.Config(engine, dir));
            var e = await Assert.ThrowsAsync<StoreException>(() => deployment.CheckSchemasAsync());
            Assert.Matches("^region '[a-z-]+': the (sqlite|postgres) store is not initialised; run 'domicile init' with this configuration first", e.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    // ---- confidentiality at rest (G3) -----------------------------------------------------

    [Fact]
    public async Task Disk_canary_no_plaintext_reaches_the_disk()
    {
        await using var d = await Deploy();
        var r = d["in-mumbai"];
        const string login = "canary-login-7f3a@example.com";
        const string key = "canary-key-Q9ZX";
        const string content = "canary-content-VK2P the quick brown fox";
        var u = await r.CreateAccountAsync(login, "canary-password-88", "IN");
        await r.SetConsentAsync(u.UserId, "cloud-sync", true, "test");
        await r.PutAsync(u.UserId, "cloud-sync", "notes", key, "text/x-canary-type", Bytes.Stream(content));
        var blobMarker = Encoding.ASCII.GetBytes("canary-blob-M4RK");
        var blob = new byte[1024 * 1024];
        for (var i = 0; i + blobMarker.Length <= blob.Length; i += 4096) blobMarker.CopyTo(blob, i);
        await r.PutAsync(u.UserId, "cloud-sync", "photos", "blob", "image/png", new MemoryStream(blob));
        await r.DeleteAsync(u.UserId, "cloud-sync", "notes", key); // tombstones must not leak either
        await r.PutAsync(u.UserId, "cloud-sync", "notes", key, "text/x-canary-type", Bytes.Stream(content));

        string[] folders = engine == Engines.Sqlite ? [r.Config.Store.Target] : [PostgresServer.Instance.DataDirectory];
        if (engine == Engines.Postgres) await PostgresServer.Instance.CheckpointAsync();
        var needles = new[] { login, key, content, "text/x-canary-type", "canary-password-88" }
            .SelectMany(n => new[] { Encoding.UTF8.GetBytes(n), Encoding.Unicode.GetBytes(n) })
            .Append(blobMarker).ToList();
        var scanned = 0L;
        foreach (var file in folders.SelectMany(f => Directory.EnumerateFiles(f, "*", SearchOption.AllDirectories)))
        {
            byte[] bytes;
            try
            {
                bytes = await File.ReadAllBytesAsync(file);
            }
            catch (IOException)
            {
                continue;
            }
            scanned += bytes.Length;
            foreach (var n in needles)
                Assert.True(bytes.AsSpan().IndexOf(n) < 0, $"plaintext '{Encoding.UTF8.GetString(n)}' found in {file}");
        }
        Assert.True(scanned > blob.Length, "the scan must have covered the stored blob");
        // The canary is meaningful: the same bytes do read back through the engine.
        await using var got = await r.GetAsync(u.UserId, "cloud-sync", "notes", key);
        Assert.Equal(content, await Bytes.TextAsync(got.Content));
        Assert.Equal(login, await r.LoginOfAsync(u.UserId));
    }
}

public sealed class SqliteRegionContract() : RegionContract(Engines.Sqlite);

public sealed class PostgresRegionContract() : RegionContract(Engines.Postgres);
