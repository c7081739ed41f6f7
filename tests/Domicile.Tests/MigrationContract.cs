using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Domicile.Crypto;
using Domicile.Tests.Support;

namespace Domicile.Tests;

/// <summary>Live migration (G9) and the residency report, on each engine and across engines.</summary>
public abstract class MigrationContract(string engine, Func<string, string>? engineFor = null)
{
    sealed record Seeded(string UserId, string Country, Dictionary<(string Service, string Collection, string Key), byte[]> Items);

    Task<TestDeployment> Deploy(TimeProvider? time = null) => TestDeployment.CreateAsync(engine, engineFor: engineFor, time: time);

    /// <summary>Users stored in cn-beijing as before the policy, whatever their country.</summary>
    static async Task<List<Seeded>> SeedAsync(TestDeployment d, string country, int count, bool withBlob = false)
    {
        var r = d["cn-beijing"];
        var list = new List<Seeded>();
        for (var i = 0; i < count; i++)
        {
            var id = Region.NewId();
            var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            var items = new Dictionary<(string, string, string), byte[]>
            {
                [("cloud-sync", "contacts", $"c-{i}")] = Encoding.UTF8.GetBytes($"BEGIN:VCARD\nFN:Person {i} of {country}\nEND:VCARD"),
                [("cloud-sync", "notes", "../hostile 'key'")] = Encoding.UTF8.GetBytes($"note {i}"),
            };
            if (withBlob && i == 0) items[("cloud-sync", "photos", "big.jpg")] = RandomNumberGenerator.GetBytes(Region.ChunkSize * 5 + 77);
            long v = 0;
            var pkg = new UserPackage(id, $"{country.ToLowerInvariant()}-{id}@example.com", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g", country, now, 10,
                [new(0, id, "cloud-sync", 1, true, now, "seed"), new(0, id, "cloud-messaging", 1, true, now, "seed")],
                [new(id, "cloud-sync", 1, true, now), new(id, "cloud-messaging", 1, true, now)],
                ["cloud-sync", "cloud-messaging"],
                [.. items.Select(kv => new PackagedItem(kv.Key.Item1, kv.Key.Item2, kv.Key.Item3, "application/octet-stream", ++v, false, kv.Value.Length, now, now,
                    kv.Value.Length <= Region.ChunkSize ? kv.Value : null,
                    kv.Value.Length > Region.ChunkSize ? _ => Task.FromResult<Stream>(new MemoryStream(kv.Value)) : null))],
                [new($"msg_{id}", "op_app", $"hello {i}", now, now + 3_600_000)]);
            await r.ImportUserAsync(pkg, UserStates.Active, "seed");
            list.Add(new Seeded(id, country, items));
        }
        return list;
    }

    static async Task AssertHolds(Region r, Seeded u)
    {
        Assert.Equal(UserStates.Active, (await r.GetAccountAsync(u.UserId))!.State);
        foreach (var ((svc, coll, key), body) in u.Items)
        {
            await using var got = await r.GetAsync(u.UserId, svc, coll, key);
            Assert.Equal(body, await Bytes.ReadAllAsync(got.Content));
        }
    }

    static async Task AssertNothingLeftAt(Region r, string userId)
    {
        foreach (var table in new[] { "users WHERE id", "items WHERE user_id", "data_keys WHERE user_id", "messages WHERE user_id", "consents WHERE user_id", "consent_state WHERE user_id" })
            Assert.Equal(0, await RawSql.CountAsync(r.Config.Store, $"SELECT COUNT(*) FROM {table} = '{userId}'"));
    }

    [Fact]
    public async Task A_paced_migration_moves_no_faster_than_its_ceiling()
    {
        await using var d = await Deploy();
        var indians = await SeedAsync(d, "IN", 30);
        var migrator = new Migrator(d.Deployment, new MigrationOptions { UsersPerSecond = 20 });
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var result = await migrator.Run(await migrator.StartAsync(new MigrationRequest("IN", null, "in-mumbai")));
        // At 20 users a second, groups of ten (half a second's users, whatever the default group
        // size): the third may start no sooner than 1 s in.
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(1), $"30 users at 20/s moved in {clock.Elapsed.TotalSeconds:F2} s");
        Assert.Equal(("done", 30L, 0L), (result.State, result.Done, result.Failed));
        foreach (var u in indians) await AssertHolds(d["in-mumbai"], u);
    }

    [Fact]
    public async Task A_jurisdiction_moves_verified_and_leaves_nothing_behind()
    {
        await using var d = await Deploy();
        var indians = await SeedAsync(d, "IN", 6, withBlob: true);
        var chinese = await SeedAsync(d, "CN", 2);
        var before = await Residency.ReportAsync(d.Deployment);
        Assert.Equal(6, before.ViolationCount);
        Assert.Equal(indians.Select(u => u.UserId).Order(), before.Violations.Select(v => v.UserId).Order());
        Assert.All(before.Violations, v => Assert.Equal(("IN", "cn-beijing"), (v.Jurisdiction, v.Region)));
        Assert.Equal(6, before.Regions.Single(r => r.Id == "cn-beijing").Jurisdictions["IN"].Users);

        // A touch by someone other than the person, recorded at the old region, must follow them.
        await d["cn-beijing"].AuditAsync("op_support_7", "support.lookup", indians[0].UserId, new System.Text.Json.Nodes.JsonObject { ["ticket"] = 42 });

        var migrator = new Migrator(d.Deployment);
        var plan = await migrator.PlanAsync(new MigrationRequest("IN", null, "in-mumbai"));
        Assert.Equal(6, plan.Users.Count);
        var id = await migrator.StartAsync(new MigrationRequest("IN", null, "in-mumbai"));
        var result = await migrator.Run(id);
        Assert.Equal(("done", 6L, 6L, 0L), (result.State, result.Done, result.Total, result.Failed));
        Assert.Equal(indians.Sum(u => u.Items.Count), result.Items);
        Assert.Equal(indians.Sum(u => u.Items.Values.Sum(b => (long)b.Length)), result.Bytes);

        var after = await Residency.ReportAsync(d.Deployment);
        Assert.Equal(0, after.ViolationCount);
        Assert.Equal(6, after.Regions.Single(r => r.Id == "in-mumbai").Jurisdictions["IN"].Users);
        foreach (var u in indians)
        {
            await AssertHolds(d["in-mumbai"], u);
            await AssertNothingLeftAt(d["cn-beijing"], u.UserId);
            Assert.Equal("in-mumbai", await d["cn-beijing"].DirectoryAsync(u.UserId));
            Assert.Single(await d["in-mumbai"].ReceiveMessagesAsync(u.UserId, TimeSpan.Zero));
            Assert.Equal(2, (await d["in-mumbai"].ConsentHistoryAsync(u.UserId)).Count);
        }
        foreach (var u in chinese) await AssertHolds(d["cn-beijing"], u);
        var carried = Assert.Single(await d["in-mumbai"].AccessLogAsync(indians[0].UserId), a => a.Action == "support.lookup");
        Assert.Equal(("op_support_7", 42), (carried.Actor, (int)carried.Details!["ticket"]!));
        Assert.DoesNotContain(await d["in-mumbai"].AccessLogAsync(indians[1].UserId), a => a.Action == "support.lookup");
        Assert.Contains(await d["in-mumbai"].AccessLogAsync(indians[1].UserId), a => a.Action == "migration.history");
        Assert.Equal(0, await RawSql.CountAsync(d["cn-beijing"].Config.Store, "SELECT COUNT(*) FROM blob_chunks"));
        Assert.True((await d["cn-beijing"].VerifyAuditAsync()).Ok);
        Assert.True((await d["in-mumbai"].VerifyAuditAsync()).Ok);

        // The certificate verifies against the destination's public key and states what moved.
        var jwk = d["in-mumbai"].PublicJwk();
        using var key = Jws.FromJwk(jwk)!;
        Assert.True(Jws.TryVerify(result.Certificate!, _ => key, out var claims));
        Assert.Equal((6L, true, true), ((long)claims!["users"]!, (bool)claims["verified"]!, (bool)claims["source_keys_destroyed"]!));
        var ledger = new List<string>();
        await foreach (var row in d["in-mumbai"].ReadAuditAsync()) ledger.Add(row.Action);
        Assert.Equal(6, ledger.Count(a => a == "migration.switch"));
    }

    [Fact]
    public async Task Sources_are_purged_in_batches_of_many_groups_and_keep_nothing_once_the_job_is_done()
    {
        await using var d = await Deploy();
        var indians = await SeedAsync(d, "IN", 12);
        // One worker, groups of three: a purge per group would sit between the next group's fence and switch.
        var migrator = new Migrator(d.Deployment, new MigrationOptions { Parallelism = 1, GroupSize = 3 });
        var result = await migrator.Run(await migrator.StartAsync(new MigrationRequest("IN", null, "in-mumbai")));
        Assert.Equal(("done", 12L, 0L), (result.State, result.Done, result.Failed));
        var actions = new List<string>();
        await foreach (var row in d["cn-beijing"].ReadAuditAsync())
            if (row.Action.StartsWith("migration.", StringComparison.Ordinal)) actions.Add(row.Action);
        Assert.Equal(12, actions.Count(a => a == "migration.fence"));
        var purges = actions.Select((a, n) => (a, n)).Where(x => x.a == "migration.purge").Select(x => x.n).ToList();
        Assert.Equal(12, purges.Count);
        // All of them in one transaction, after the last switch: one run of entries, nothing between.
        Assert.Equal(purges[0] + 11, purges[^1]);
        Assert.True(purges[0] > actions.LastIndexOf("migration.switch"));
        foreach (var u in indians)
        {
            await AssertHolds(d["in-mumbai"], u);
            await AssertNothingLeftAt(d["cn-beijing"], u.UserId);
        }
    }

    [Fact]
    public async Task Sealing_a_region_mid_migration_pauses_the_job_and_unsealing_resumes_it_without_failures()
    {
        await using var d = await Deploy();
        var indians = await SeedAsync(d, "IN", 4);
        var sealedOnce = 0;
        var options = new MigrationOptions
        {
            Parallelism = 1, GroupSize = 1,
            AtStep = async (step, _) =>
            {
                if (step == "fenced" && Interlocked.Exchange(ref sealedOnce, 1) == 0) await d["in-mumbai"].SealAsync("custodian");
            },
        };
        var migrator = new Migrator(d.Deployment, options);
        var id = await migrator.StartAsync(new MigrationRequest("IN", null, "in-mumbai"));
        var paused = await migrator.Run(id);
        Assert.Equal(("running", 0L), (paused.State, paused.Failed));
        Assert.True(paused.Done < 4, $"the job went on while the destination was sealed ({paused.Done} done)");
        // Nobody waits fenced for the custodians: the users not yet moved are home at the source.
        foreach (var u in indians)
            Assert.NotEqual(UserStates.Fenced, (await d["cn-beijing"].GetAccountAsync(u.UserId))?.State);

        // Unsealing is all it takes: the job picks up every user, none is given up.
        foreach (var share in d.Shares["in-mumbai"].Take(d.Config.Custody.Threshold)) await d["in-mumbai"].SubmitShareAsync(share);
        await migrator.ResumeAllAsync();
        var done = await migrator.Run(id);
        Assert.Equal(("done", 4L, 0L), (done.State, done.Done, done.Failed));
        foreach (var u in indians)
        {
            await AssertHolds(d["in-mumbai"], u);
            await AssertNothingLeftAt(d["cn-beijing"], u.UserId);
        }
        // Both regions audit the plan and the end; the source audits each user's fence, switch and
        // purge, the destination each user's copy, verification, switch and finished purge.
        foreach (var (r, steps) in new[] { (d["cn-beijing"], new[] { "migration.fence", "migration.switch", "migration.purge" }),
                                          (d["in-mumbai"], new[] { "migration.copied", "migration.verified", "migration.switch", "migration.purged" }) })
        {
            var actions = new List<string>();
            await foreach (var row in r.ReadAuditAsync()) if (row.Actor == $"migration:{id}") actions.Add(row.Action);
            Assert.Contains("migration.plan", actions);
            Assert.Contains("migration.done", actions);
            foreach (var step in steps) Assert.True(actions.Count(a => a == step) >= 4, $"{r.Id} audits {step} for every user: {string.Join(", ", actions)}");
            Assert.Equal(4, actions.Count(a => a == steps[^1]));
        }
    }

    [Fact]
    public async Task A_withdrawal_that_purges_data_mid_migration_is_followed_by_the_copy_not_failed()
    {
        await using var d = await Deploy();
        var indians = await SeedAsync(d, "IN", 2);
        var src = d["cn-beijing"];
        var leaver = indians[0].UserId;
        await src.SetConsentAsync(leaver, "find-device", true, "test");
        await src.PutAsync(leaver, "find-device", "locations", "last-known", "application/json", Bytes.Stream("{\"lat\":19.07,\"lon\":72.87}"));
        var options = new MigrationOptions
        {
            FenceFirstChanges = 0, // copied live: the window between copy and fence is what this is about
            AtStep = async (step, user) =>
            {
                // After the copy, before the fence: no grace period, so the data and its key go at once.
                if (step == "copied" && user == leaver && (await src.GetConsentsAsync(leaver)).Single(x => x.Service == "find-device").Granted)
                    await src.SetConsentAsync(leaver, "find-device", false, "test");
            },
        };
        var migrator = new Migrator(d.Deployment, options);
        var state = await migrator.Run(await migrator.StartAsync(new MigrationRequest("IN", null, "in-mumbai")));
        Assert.Equal(("done", 2L, 0L), (state.State, state.Done, state.Failed));
        var dst = d["in-mumbai"];
        var e = await Assert.ThrowsAsync<DomicileException>(() => dst.GetAsync(leaver, "find-device", "locations", "last-known"));
        Assert.Equal("not_found", e.Code);
        Assert.Equal(0, await RawSql.CountAsync(dst.Config.Store, $"SELECT COUNT(*) FROM data_keys WHERE user_id = '{leaver}' AND service = 'find-device'"));
        foreach (var u in indians)
        {
            await AssertHolds(dst, u);
            await AssertNothingLeftAt(src, u.UserId);
        }
    }

    [Theory]
    [InlineData("copied", false)]
    [InlineData("fenced", false)]
    [InlineData("verified", false)]
    [InlineData("switched", false)]
    [InlineData("purged", false)]
    [InlineData("copied", true)]
    [InlineData("fenced", true)]
    [InlineData("verified", true)]
    public async Task A_crash_at_any_step_boundary_resumes_to_the_same_end(string crashAt, bool copiedLive)
    {
        await using var d = await Deploy();
        var indians = await SeedAsync(d, "IN", 3, withBlob: true);
        var crashed = 0;
        var options = new MigrationOptions
        {
            Parallelism = 1,
            FenceFirstChanges = copiedLive ? 0 : new MigrationOptions().FenceFirstChanges,
            AtStep = (step, _) => step == crashAt && Interlocked.Exchange(ref crashed, 1) == 0 ? throw new IOException($"simulated crash after {step}") : Task.CompletedTask,
        };
        var first = new Migrator(d.Deployment, options);
        var id = await first.StartAsync(new MigrationRequest("IN", null, "in-mumbai"));
        await Assert.ThrowsAsync<IOException>(() => first.Run(id));

        // A fresh process: a new migrator finds the job in the destination and resumes it.
        var second = new Migrator(d.Deployment);
        await second.ResumeAllAsync();
        var state = await second.Run(id);
        Assert.Equal(("done", 3L, 0L), (state.State, state.Done, state.Failed));
        foreach (var u in indians)
        {
            await AssertHolds(d["in-mumbai"], u);
            await AssertNothingLeftAt(d["cn-beijing"], u.UserId);
            var changes = await d["in-mumbai"].ChangesAsync(u.UserId, null);
            Assert.Equal(u.Items.Count, changes.Changes.Count); // no duplicates
            // A region that took no part points at the new home too, even when the crash came right after the switch.
            Assert.Equal("in-mumbai", await d["sg-singapore"].DirectoryAsync(u.UserId));
        }
        Assert.Equal(0, (await Residency.ReportAsync(d.Deployment)).ViolationCount);
        var orphaned = await RawSql.CountAsync(d["in-mumbai"].Config.Store, "SELECT COUNT(*) FROM blob_chunks WHERE blob_id NOT IN (SELECT blob_id FROM items WHERE blob_id IS NOT NULL)");
        Assert.True(orphaned <= 6, "an interrupted blob copy leaves at most its own chunks for the orphan sweep");
    }

    [Fact]
    public async Task A_run_that_ends_before_anyone_joins_it_gives_its_outcome_to_the_first_caller_and_is_not_run_twice()
    {
        await using var d = await Deploy();
        await SeedAsync(d, "IN", 2);
        var migrator = new Migrator(d.Deployment);
        var id = await migrator.StartAsync(new MigrationRequest("IN", null, "in-mumbai"));
        // StartAsync's own run finishes first; only then does anyone ask for it.
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while ((await migrator.GetAsync(id))!.State != "done" && DateTime.UtcNow < deadline) await Task.Delay(10);
        for (var call = 0; call < 2; call++)
        {
            var state = await migrator.Run(id);
            Assert.Equal(("done", 2L, 0L), (state.State, state.Done, state.Failed));
        }
        foreach (var r in new[] { d["cn-beijing"], d["in-mumbai"] })
        {
            var ends = 0;
            await foreach (var row in r.ReadAuditAsync()) if (row.Actor == $"migration:{id}" && row.Action == "migration.done") ends++;
            Assert.Equal(1, ends);
        }

        // A crash before anyone joined reaches the first caller too, instead of a silent second run.
        await SeedAsync(d, "IN", 1);
        var crashed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var crashing = new Migrator(d.Deployment, new MigrationOptions
        {
            AtStep = (step, _) =>
            {
                if (step != "copied" || !crashed.TrySetResult()) return Task.CompletedTask;
                throw new IOException("simulated crash");
            },
        });
        var second = await crashing.StartAsync(new MigrationRequest("IN", null, "in-mumbai"));
        await crashed.Task.WaitAsync(TimeSpan.FromSeconds(60));
        await Task.Delay(200); // the run unwinds and ends
        await Assert.ThrowsAsync<IOException>(() => crashing.Run(second));
        // The caller who saw the crash may run the job again, and it finishes.
        var again = await crashing.Run(second);
        Assert.Equal(("done", 1L, 0L), (again.State, again.Done, again.Failed));
    }

    [Fact]
    public async Task Writers_keep_writing_through_the_migration_and_no_acknowledged_write_is_lost()
    {
        await using var d = await Deploy();
        var indians = await SeedAsync(d, "IN", 4);
        var acknowledged = new ConcurrentDictionary<(string User, string Key), string>();
        using var stop = new CancellationTokenSource();
        var fencedRefusals = 0;
        async Task Writer(Seeded u)
        {
            for (var n = 0; !stop.IsCancellationRequested; n++)
            {
                var key = $"live-{n % 7}";
                var value = $"{u.UserId}:{n}";
                Region? home = null;
                foreach (var r in d.Deployment.Regions.Values)
                    if (await r.GetAccountAsync(u.UserId) is { State: UserStates.Active or UserStates.Fenced }) { home = r; break; }
                if (home is null)
                {
                    await Task.Delay(5); // the instant of the switch: neither region is home
                    continue;
                }
                try
                {
                    await home.PutAsync(u.UserId, "cloud-sync", "live", key, "text/plain", Bytes.Stream(value));
                    acknowledged[(u.UserId, key)] = value;
                }
                catch (DomicileException e) when (e.Code is "unavailable" or "moved" or "not_found")
                {
                    if (e.Code == "unavailable") Interlocked.Increment(ref fencedRefusals);
                    await Task.Delay(5);
                }
            }
        }
        var writers = indians.Select(u => Task.Run(() => Writer(u))).ToList();
        await Task.Delay(200);
        var migrator = new Migrator(d.Deployment, new MigrationOptions { Parallelism = 2 });
        var state = await migrator.Run(await migrator.StartAsync(new MigrationRequest("IN", null, "in-mumbai")));
        await Task.Delay(200);
        stop.Cancel();
        await Task.WhenAll(writers);
        Assert.Equal(("done", 0L), (state.State, state.Failed));
        Assert.NotEmpty(acknowledged);
        foreach (var ((user, key), value) in acknowledged)
        {
            await using var got = await d["in-mumbai"].GetAsync(user, "cloud-sync", "live", key);
            Assert.Equal(value, await Bytes.TextAsync(got.Content));
        }
        foreach (var u in indians) await AssertNothingLeftAt(d["cn-beijing"], u.UserId);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_corrupted_copy_is_caught_and_nothing_is_switched(bool copiedLive)
    {
        await using var d = await Deploy();
        var indians = await SeedAsync(d, "IN", 2);
        var victim = indians[0].UserId;
        var options = new MigrationOptions
        {
            Parallelism = 1,
            FenceFirstChanges = copiedLive ? 0 : new MigrationOptions().FenceFirstChanges,
            AtStep = async (step, user) =>
            {
                if (step != "copied" || user != victim) return;
                var store = d["in-mumbai"].Config.Store;
                var content = await RawSql.BytesAsync(store, $"SELECT content FROM items WHERE user_id = '{victim}' AND content IS NOT NULL ORDER BY version LIMIT 1");
                content[^1] ^= 0x40;
                await RawSql.ExecAsync(store, $"UPDATE items SET content = @c WHERE user_id = '{victim}' AND version = (SELECT MIN(version) FROM items WHERE user_id = '{victim}')", ("c", content));
            },
        };
        var migrator = new Migrator(d.Deployment, options);
        var state = await migrator.Run(await migrator.StartAsync(new MigrationRequest("IN", null, "in-mumbai")));
        Assert.Equal((1L, 2L), (state.Failed, state.Done));
        Assert.False(state.Verified);
        await AssertHolds(d["cn-beijing"], indians[0]); // still home at the source, writable again
        await d["cn-beijing"].PutAsync(victim, "cloud-sync", "notes", "after", null, Bytes.Stream("still writable"));
        await AssertNothingLeftAt(d["in-mumbai"], victim);
        await AssertHolds(d["in-mumbai"], indians[1]);
        var report = await Residency.ReportAsync(d.Deployment);
        Assert.Equal(victim, Assert.Single(report.Violations).UserId);
    }

    [Fact]
    public async Task A_user_erased_mid_migration_is_not_resurrected_and_the_others_move()
    {
        await using var d = await Deploy();
        var indians = await SeedAsync(d, "IN", 3);
        var leaver = indians[1].UserId;
        var options = new MigrationOptions
        {
            Parallelism = 1,
            FenceFirstChanges = 0, // copied live, so the user can still be erased between copy and fence
            AtStep = async (step, user) =>
            {
                if (step == "copied" && user == leaver && await d["cn-beijing"].GetAccountAsync(leaver) is { State: UserStates.Active })
                    await d["cn-beijing"].EraseAccountAsync(leaver, leaver);
            },
        };
        var migrator = new Migrator(d.Deployment, options);
        var state = await migrator.Run(await migrator.StartAsync(new MigrationRequest("IN", null, "in-mumbai")));
        Assert.Equal(("done", 3L, 1L), (state.State, state.Done, state.Failed));
        Assert.Null(await d["in-mumbai"].GetAccountAsync(leaver));
        await AssertNothingLeftAt(d["in-mumbai"], leaver);
        await AssertNothingLeftAt(d["cn-beijing"], leaver);
        foreach (var u in indians.Where(u => u.UserId != leaver)) await AssertHolds(d["in-mumbai"], u);
    }

    [Theory]
    [InlineData(10, true)]
    [InlineData(9, false)]
    public async Task Small_users_are_fenced_before_their_one_copy_and_larger_ones_are_copied_live(long fenceFirstChanges, bool fencedFirst)
    {
        await using var d = await Deploy();
        var indians = await SeedAsync(d, "IN", 2); // ten changes each
        var src = d["cn-beijing"];
        var steps = new List<(string Step, string User)>();
        var refused = new List<string>();
        var options = new MigrationOptions
        {
            Parallelism = 1,
            FenceFirstChanges = fenceFirstChanges,
            AtStep = async (step, user) =>
            {
                lock (steps) steps.Add((step, user));
                // Right after the source was read (a write here is lost if the read came before the
                // fence), and once the copy is journaled.
                if (step is not ("read" or "copied")) return;
                try
                {
                    await src.PutAsync(user, "cloud-sync", "notes", $"after-{step}", "text/plain", Bytes.Stream($"written after the {step} step"));
                }
                catch (DomicileException e) when (e.Code == "unavailable")
                {
                    lock (refused) refused.Add(user);
                }
            },
        };
        var migrator = new Migrator(d.Deployment, options);
        var state = await migrator.Run(await migrator.StartAsync(new MigrationRequest("IN", null, "in-mumbai")));
        Assert.Equal(("done", 2L, 0L), (state.State, state.Done, state.Failed));
        foreach (var u in indians)
        {
            var order = steps.Where(s => s.User == u.UserId).Select(s => s.Step).ToList();
            Assert.Equal(fencedFirst, order.IndexOf("fenced") < order.IndexOf("read"));
            Assert.True(order.IndexOf("read") < order.IndexOf("copied"), string.Join(", ", order));
            // Fenced first: both writes are refused, so none can be acknowledged and then left behind.
            Assert.Equal(fencedFirst ? 2 : 0, refused.Count(r => r == u.UserId));
            await AssertHolds(d["in-mumbai"], u);
            await AssertNothingLeftAt(src, u.UserId);
            foreach (var step in new[] { "read", "copied" })
            {
                // Copied live: the write after the snapshot arrives with the catch-up, the one after the copy as the tail.
                var e = await Record.ExceptionAsync(async () =>
                {
                    await using var got = await d["in-mumbai"].GetAsync(u.UserId, "cloud-sync", "notes", $"after-{step}");
                    Assert.Equal($"written after the {step} step", await Bytes.TextAsync(got.Content));
                });
                if (fencedFirst) Assert.Equal("not_found", Assert.IsType<DomicileException>(e).Code);
                else Assert.Null(e);
            }
        }
    }

    [Fact]
    public async Task Only_users_with_few_changes_and_no_blobs_are_small_enough_to_fence_first()
    {
        await using var d = await Deploy();
        var seeded = await SeedAsync(d, "IN", 3, withBlob: true); // ten changes each; the first also has a blob
        var ids = seeded.Select(u => u.UserId).ToList();
        var src = d["cn-beijing"];
        Assert.Equal(new HashSet<string> { ids[1], ids[2] }, await src.SmallUsersAsync(ids, 10));
        Assert.Empty(await src.SmallUsersAsync(ids, 9));
        Assert.Empty(await src.SmallUsersAsync(["0123456789abcdef0123456789abcdef"], 1000));
    }

    [Fact]
    public async Task Plans_refuse_destinations_the_policy_forbids()
    {
        await using var d = await Deploy();
        await SeedAsync(d, "IN", 1);
        var migrator = new Migrator(d.Deployment);
        var e = await Assert.ThrowsAsync<DomicileException>(() => migrator.PlanAsync(new MigrationRequest("IN", null, "sg-singapore")));
        Assert.Equal("residency_violation", e.Code);
        Assert.Equal("invalid_request", (await Assert.ThrowsAsync<DomicileException>(() => migrator.PlanAsync(new MigrationRequest("IN", "u", "in-mumbai")))).Code);
        Assert.Empty((await migrator.PlanAsync(new MigrationRequest("FR", null, "sg-singapore"))).Users);
    }
}

public sealed class SqliteMigrationContract() : MigrationContract(Engines.Sqlite);

public sealed class PostgresMigrationContract() : MigrationContract(Engines.Postgres);

/// <summary>From a SQLite region to a PostgreSQL one: the stores are independent.</summary>
public sealed class CrossEngineMigrationContract() : MigrationContract(Engines.Sqlite, region => region == "in-mumbai" ? Engines.Postgres : Engines.Sqlite);
