using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Domicile.Crypto;

namespace Domicile;

/// <summary>What to move: every user of a jurisdiction, or one user, to a region.</summary>
public sealed record MigrationRequest(string? Jurisdiction, string? UserId, string To);

/// <summary>A migration's progress and outcome (SPEC 6.5).</summary>
public sealed record MigrationState(
    string Id, string State, long Done, long Total, long Items, long Bytes, long Failed, long Users, bool Verified, double Seconds, string? Certificate);

public sealed record MigrationPlan(string To, IReadOnlyList<(string UserId, string From)> Users);

/// <summary>How a migration runs.</summary>
public sealed class MigrationOptions
{
    public int Parallelism { get; set; } = Math.Max(2, Environment.ProcessorCount * 2);

    /// <summary>
    /// Users moved together: each step (the fence, the copy, the switch, the purge, and the journal
    /// lines with them) is one transaction per region for all of them. 25 moved small users
    /// 10–25 % faster than 10, and 50 another 5–12 % faster than 25 once writes ran below the
    /// driver (three paired runs of 3,000 users, four workers); each of them stays fenced while the
    /// group's copy and verification run, under a second for users with at most
    /// <see cref="FenceFirstChanges"/> changes.
    /// </summary>
    public int GroupSize { get; set; } = 50;

    /// <summary>Users copied live (many changes) are fenced together for their tails, at most this many at once.</summary>
    public int LiveGroupSize { get; set; } = 10;

    /// <summary>
    /// Users with at most this many changes and no blobs are fenced first and copied once (their copy
    /// takes milliseconds); larger ones are copied live, caught up, then fenced for their tail only.
    /// </summary>
    public long FenceFirstChanges { get; set; } = 256;

    /// <summary>
    /// Test hook: called with (step, user) once each step has committed ("fenced" once the source
    /// fenced the user, even where its journal line goes with the copy), and with "read" right
    /// after each read of a user's data at the source; may throw to simulate a crash there.
    /// </summary>
    public Func<string, string, Task>? AtStep { get; set; }

    /// <summary>Users a second at most; null takes <c>migration.users_per_second</c> from the configuration (0 = no ceiling).</summary>
    public int? UsersPerSecond { get; set; }
}

/// <summary>
/// Live migration (G9). Per user: copy → catch up → fence → copy tail → verify → switch →
/// purge; a user with few changes and no blobs is fenced first and copied once (the copy takes
/// milliseconds). Each step is idempotent and journaled in the destination (and audited where it happens), so a job resumes after a
/// crash at any instant by running every unfinished user's pipeline again. The job itself is
/// durable in the destination region and resumes once its regions are unsealed.
/// </summary>
public sealed class Migrator(Deployment deployment, MigrationOptions? options = null)
{
    public const string Planned = "planned", Running = "running", Done = "done", Failed = "failed";
    readonly MigrationOptions _options = options ?? new MigrationOptions();
    readonly ConcurrentDictionary<string, RunSlot> _running = new();

    /// <summary>One run of a job in this process; it stays after the run ends so that its outcome reaches a caller who joins late.</summary>
    sealed class RunSlot(Func<Task<MigrationState>> start)
    {
        public readonly Lazy<Task<MigrationState>> Run = new(start);
        public int Joined;
    }
    readonly ConcurrentDictionary<string, Progress> _progress = new();

    sealed class Progress
    {
        public long Done, Total, Items, Bytes, Failed;
        public DateTimeOffset Started = DateTimeOffset.UtcNow;
    }

    static readonly string[] Steps = ["copied", "fenced", "verified", "switched", "purged"];

    /// <summary>Which users would move, from where. Nothing is written.</summary>
    public async Task<MigrationPlan> PlanAsync(MigrationRequest request, CancellationToken ct = default)
    {
        var to = deployment.Region(request.To);
        if ((request.Jurisdiction is null) == (request.UserId is null))
            throw DomicileException.Invalid("name either a jurisdiction or a user to migrate, not both");
        var users = new List<(string, string)>();
        if (request.UserId is { } single)
        {
            var from = await deployment.FindUserRegionAsync(single, ct) ?? throw DomicileException.NotFound("there is no such user");
            var account = await from.GetAccountAsync(single, ct);
            if (from.Id != to.Id) users.Add((single, from.Id));
            if (account is not null && !deployment.Config.AllowedRegions(account.Country).Contains(to.Id))
                throw new DomicileException("residency_violation", $"users of {account.Country} may not be stored in region '{to.Id}'");
        }
        else
        {
            var cc = request.Jurisdiction!.ToUpperInvariant();
            if (cc.Length != 2 || !cc.All(char.IsAsciiLetterUpper))
                throw DomicileException.Invalid("jurisdiction must be an ISO 3166-1 alpha-2 code such as IN");
            if (!deployment.Config.AllowedRegions(cc).Contains(to.Id))
                throw new DomicileException("residency_violation", $"users of {cc} may not be stored in region '{to.Id}'");
            foreach (var from in deployment.Regions.Values.Where(r => r.Id != to.Id))
            {
                var after = "";
                while (true)
                {
                    var page = await from.Store.ReadAsync(tx => tx.UserIdsOfCountryAsync(cc, after, 1000), ct);
                    users.AddRange(page.Select(u => (u, from.Id)));
                    if (page.Count < 1000) break;
                    after = page[^1];
                }
            }
        }
        return new MigrationPlan(to.Id, users);
    }

    /// <summary>Records the job and its plan durably in the destination, then runs it in the background.</summary>
    public async Task<string> StartAsync(MigrationRequest request, CancellationToken ct = default)
    {
        var plan = await PlanAsync(request, ct);
        var id = "mig_" + Region.NewId(8);
        var to = deployment.Region(plan.To);
        var spec = new JsonObject
        {
            ["jurisdiction"] = request.Jurisdiction, ["user_id"] = request.UserId, ["to"] = plan.To,
            ["sources"] = new JsonArray([.. plan.Users.Select(u => u.From).Distinct().Select(s => JsonValue.Create(s))]),
            ["total"] = plan.Users.Count, ["started_at"] = DateTimeOffset.UtcNow,
        }.ToJsonString();
        // Each source journals the users it is giving up; the job itself lives in the destination.
        foreach (var bySource in plan.Users.GroupBy(u => u.From))
            await PlanLinesAsync(deployment.Region(bySource.Key), id, request, plan.To, [.. bySource], job: null, ct);
        await PlanLinesAsync(to, id, request, plan.To, plan.Users, job: spec, ct);
        Begin(id);
        return id;
    }

    static Task PlanLinesAsync(Region region, string id, MigrationRequest request, string to, IReadOnlyList<(string UserId, string From)> users, string? job, CancellationToken ct) =>
        region.Store.WriteAsync(async tx =>
        {
            var at = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            if (job is not null) await tx.InsertMigrationAsync(id, job, Planned, at);
            foreach (var (user, from) in users)
                await tx.JournalAsync(id, user, "planned", at, new JsonObject { ["from"] = from }.ToJsonString());
            await Audit.AuditChain.AppendAsync(tx, region.Time.GetUtcNow(), $"migration:{id}", "migration.plan", region.Id,
                new JsonObject { ["jurisdiction"] = request.Jurisdiction, ["to"] = to, ["users"] = users.Count });
            return 0;
        }, ct);

    /// <summary>
    /// A sealed region or a store that stopped answering pauses the job instead of failing its
    /// users: they stay where they are and the job resumes at the next unseal or restart.
    /// </summary>
    static bool Interrupts(Exception e, Region from, Region to) =>
        e is DomicileException { Code: "sealed" } or Store.StoreException || from.IsSealed || to.IsSealed;

    /// <summary>
    /// Joins the job's run in this process, or runs it; safe to call again after a crash or a pause.
    /// The first caller after a run ended gets that run's outcome: a run <see cref="StartAsync"/>
    /// began may end (done, or crashed) before its starter joins it, and running it a second time
    /// would hide the crash or audit the end twice. Later callers run the job again. A resume begun
    /// meanwhile (<see cref="ResumeAllAsync"/>, at an unseal) takes the place of a run that ended
    /// unseen: the job must go on in a server, where nobody joins.
    /// </summary>
    public Task<MigrationState> Run(string id)
    {
        while (true)
        {
            var slot = _running.GetOrAdd(id, NewSlot);
            var run = slot.Run.Value;
            if (Interlocked.Exchange(ref slot.Joined, 1) == 0 || !run.IsCompleted) return run;
            _running.TryRemove(KeyValuePair.Create(id, slot));
        }
    }

    RunSlot NewSlot(string id) => new(() => Task.Run(() => RunAsync(id)));

    /// <summary>Starts a run nobody has joined yet, unless one is in flight.</summary>
    void Begin(string id)
    {
        var fresh = NewSlot(id);
        _ = _running.AddOrUpdate(id, fresh, (_, old) => old.Run.Value.IsCompleted ? fresh : old).Run.Value;
    }

    /// <summary>Resumes every unfinished job whose regions are all unsealed.</summary>
    public async Task ResumeAllAsync(CancellationToken ct = default)
    {
        foreach (var region in deployment.Regions.Values)
        {
            if (region.IsSealed || await region.Store.SchemaVersionAsync(ct) == 0) continue;
            foreach (var (id, spec, state) in await region.Store.ReadAsync(tx => tx.ListMigrationsAsync(), ct))
            {
                if (state is Done or Failed) continue; // a run in flight is left to go on by Begin
                var sources = JsonNode.Parse(spec)!["sources"]!.AsArray().Select(s => (string)s!).ToList();
                if (!region.IsSealed && sources.All(s => deployment.Regions.TryGetValue(s, out var r) && !r.IsSealed)) Begin(id);
            }
        }
    }

    /// <summary>The job's state from its journal (works for finished, running and crashed jobs).</summary>
    public async Task<MigrationState?> GetAsync(string id, CancellationToken ct = default)
    {
        foreach (var region in deployment.Regions.Values)
        {
            if (await region.Store.SchemaVersionAsync(ct) == 0) continue;
            var job = (await region.Store.ReadAsync(tx => tx.ListMigrationsAsync(), ct)).FirstOrDefault(m => m.Id == id);
            if (job.Id is null) continue;
            var journal = await region.Store.ReadAsync(tx => tx.ReadJournalStepsAsync(id, SummarySteps), ct);
            return Summarise(job.Id, job.State, JsonNode.Parse(job.Spec)!, journal);
        }
        return null;
    }

    public async Task<IReadOnlyList<MigrationState>> ListAsync(CancellationToken ct = default)
    {
        var list = new List<MigrationState>();
        foreach (var region in deployment.Regions.Values)
        {
            if (await region.Store.SchemaVersionAsync(ct) == 0) continue;
            foreach (var (id, _, _) in await region.Store.ReadAsync(tx => tx.ListMigrationsAsync(), ct))
                if (await GetAsync(id, ct) is { } s) list.Add(s);
        }
        return list;
    }

    static readonly string[] SummarySteps = ["verified", "purged", "failed"];

    /// <summary>
    /// A job's totals from its journal's lines of <see cref="SummarySteps"/>: a user failed and not
    /// purged after is failed, one verified and purged is done.
    /// </summary>
    MigrationState Summarise(string id, string state, JsonNode spec, IReadOnlyList<(string UserId, string Step, string Details)> journal)
    {
        var byUser = new Dictionary<string, (string? Verified, bool Purged, bool Failed)>(StringComparer.Ordinal);
        foreach (var (user, step, details) in journal)
        {
            var u = byUser.GetValueOrDefault(user);
            byUser[user] = step switch
            {
                "verified" => u with { Verified = details },
                "purged" => u with { Purged = true },
                "failed" => u with { Failed = true },
                _ => u,
            };
        }
        long items = 0, bytes = 0, failed = 0, done = 0;
        var digests = new List<string>();
        foreach (var (user, u) in byUser)
        {
            if (Outcome(u.Verified, u.Purged, u.Failed) is not { } outcome) continue;
            done++;
            if (outcome.Failed) failed++;
            else if (outcome.Verified is { } d)
            {
                items += d.Items;
                bytes += d.Bytes;
                digests.Add($"{user}:{d.Digest}");
            }
        }
        var total = (long)spec["total"]!;
        string? certificate = null;
        if (state == Done && deployment.Regions.TryGetValue((string)spec["to"]!, out var to) && !to.IsSealed)
        {
            digests.Sort(StringComparer.Ordinal);
            certificate = to.Sign(new JsonObject
            {
                ["iss"] = $"domicile:{to.Id}", ["typ"] = "migration-certificate", ["migration"] = id, ["to"] = to.Id,
                ["jurisdiction"] = (string?)spec["jurisdiction"], ["users"] = done - failed, ["failed"] = failed, ["items"] = items, ["bytes"] = bytes,
                ["digest"] = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(string.Join('\n', digests)))),
                ["verified"] = failed == 0, ["source_keys_destroyed"] = true, ["iat"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
            });
        }
        return new MigrationState(id, state, done, total, items, bytes, failed, done - failed, failed == 0, 0, certificate);
    }

    /// <summary>
    /// A user's outcome from its journal: null while unfinished; failed when a failure was not
    /// followed by a purge (a failed user alone again after a crash may still move); the verified
    /// line's totals once purged.
    /// </summary>
    static (bool Failed, JournalFields? Verified)? Outcome(string? verified, bool purged, bool failed) =>
        !purged && !failed ? null
        : failed && !purged ? (true, null)
        : (false, verified is null ? null : JournalFields.Read(verified));

    /// <summary>Live counters of a job running in this process (for progress bars).</summary>
    public (long Done, long Total, long Items, long Bytes, long Failed)? LiveProgress(string id) =>
        _progress.TryGetValue(id, out var p) ? (Interlocked.Read(ref p.Done), p.Total, Interlocked.Read(ref p.Items), Interlocked.Read(ref p.Bytes), Interlocked.Read(ref p.Failed)) : null;

    async Task<MigrationState> RunAsync(string id)
    {
        var (home, spec, jobState) = await FindJobAsync(id);
        // A finished job is only summarised: running it again would audit its end a second time.
        if (jobState is Done or Failed) return (await GetAsync(id))!;
        var to = deployment.Region((string)spec["to"]!);
        var actor = $"migration:{id}";
        var journal = await home.Store.ReadAsync(tx => tx.ReadJournalAsync(id));
        var users = journal.GroupBy(j => j.UserId).Select(g => (UserId: g.Key, Steps: g.ToDictionary(j => j.Step, j => j.Details))).ToList();
        var progress = _progress[id] = new Progress();
        progress.Total = users.Count;
        await home.Store.WriteAsync(async tx => { await tx.SetMigrationStateAsync(id, Running, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()); return 0; });

        var pending = new List<(string UserId, Dictionary<string, string> Steps)>();
        foreach (var u in users)
        {
            if (Outcome(u.Steps.GetValueOrDefault("verified"), u.Steps.ContainsKey("purged"), u.Steps.ContainsKey("failed")) is not { } outcome)
            {
                pending.Add(u);
                continue;
            }
            progress.Done++;
            if (outcome.Failed) progress.Failed++;
            else if (outcome.Verified is { } d)
            {
                progress.Items += d.Items;
                progress.Bytes += d.Bytes;
            }
        }
        // migration.users_per_second: each group waits for its slot on one shared schedule, and
        // holds at most half a second's users, so that no single group outruns the ceiling.
        var pace = _options.UsersPerSecond ?? deployment.Config.MigrationUsersPerSecond;
        var groupSize = Math.Max(1, pace > 0 ? Math.Min(_options.GroupSize, pace / 2) : _options.GroupSize);
        // Groups of users from one source; a user already switched before a crash finishes on its own.
        var queue = new ConcurrentQueue<(Region From, List<string> Users, bool Switched)>();
        foreach (var bySource in pending.GroupBy(u => (From: JournalFields.Read(u.Steps["planned"]).From!, Switched: u.Steps.ContainsKey("switched"))))
            foreach (var chunk in Groups([.. bySource], bySource.Key.Switched ? 1 : groupSize, _options.Parallelism))
                queue.Enqueue((deployment.Region(bySource.Key.From), chunk.Select(u => u.UserId).ToList(), bySource.Key.Switched));
        void Count(UserDigest? outcome)
        {
            if (outcome is null) Interlocked.Increment(ref progress.Failed);
            else
            {
                Interlocked.Add(ref progress.Items, outcome.Items);
                Interlocked.Add(ref progress.Bytes, outcome.Bytes);
            }
            Interlocked.Increment(ref progress.Done);
        }
        var paceClock = System.Diagnostics.Stopwatch.StartNew();
        var paceLock = new object();
        var nextSlot = 0.0;
        async Task PaceAsync(int users)
        {
            if (pace <= 0) return;
            double slot;
            lock (paceLock)
            {
                // A slot is never earlier than now: time spent below the ceiling (a busy store)
                // is not saved up as a burst for later.
                slot = Math.Max(nextSlot, paceClock.Elapsed.TotalSeconds);
                nextSlot = slot + (double)users / pace;
            }
            var wait = TimeSpan.FromSeconds(slot) - paceClock.Elapsed;
            if (wait > TimeSpan.Zero) await Task.Delay(wait);
        }
        var paused = 0;
        using var stop = new CancellationTokenSource();
        var purges = Channel.CreateUnbounded<(Region From, string User, UserDigest Digest)>();
        var producersDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var purger = Task.Run(() => PurgeSwitchedAsync(id, actor, to, purges.Reader, Count, () => Interlocked.Exchange(ref paused, 1), producersDone.Task, stop.Token));
        var workers = Enumerable.Range(0, _options.Parallelism).Select(_ => Task.Run(async () =>
        {
            while (Volatile.Read(ref paused) == 0 && !purger.IsFaulted && queue.TryDequeue(out var g))
            {
                try
                {
                    await PaceAsync(g.Users.Count);
                    // Paused while waiting for the slot: the resume picks the group up from the journal.
                    if (Volatile.Read(ref paused) != 0) break;
                    if (g.Switched) Count(await MigrateUserAsync(id, actor, g.Users[0], g.From, to, alreadySwitched: true));
                    else
                    {
                        // Settled: counted, or switched and handed to the purger.
                        var counted = new HashSet<string>();
                        try
                        {
                            await MigrateGroupAsync(id, actor, g.Users, g.From, to, (u, d) => { counted.Add(u); Count(d); }, (users, digests) =>
                            {
                                foreach (var u in users)
                                {
                                    counted.Add(u);
                                    purges.Writer.TryWrite((g.From, u, digests[u]));
                                }
                            });
                        }
                        catch (DomicileException e) when (!Interrupts(e, g.From, to))
                        {
                            // A refusal inside the group (an item gone mid-copy, say): every user not
                            // yet finished goes through the one-user pipeline, which settles it.
                            var left = g.Users.Where(u => !counted.Contains(u)).ToList();
                            // They wait at home, not fenced: each one-user pipeline fences its user again, for its own copy only.
                            await UnfenceAsync(g.From, left, actor);
                            foreach (var u in left) Count(await SettleUserAsync(id, actor, u, g.From, to));
                        }
                    }
                }
                catch (Exception e) when (Interrupts(e, g.From, to))
                {
                    Interlocked.Exchange(ref paused, 1);
                    await UnfenceAsync(g.From, g.Users, actor);
                }
            }
        })).ToList();
        try
        {
            await Task.WhenAll(workers);
        }
        catch
        {
            // The switched users the purger has not taken yet finish at the resume, as after a crash.
            await stop.CancelAsync();
            purges.Writer.TryComplete();
            producersDone.TrySetResult();
            try { await purger; } catch (Exception) { /* the workers' failure is the one reported */ }
            throw;
        }
        purges.Writer.TryComplete();
        producersDone.TrySetResult();
        await purger;
        if (paused != 0)
        {
            // Unfinished users are home at the source again; the resume redoes their steps.
            _progress.TryRemove(id, out _);
            return (await GetAsync(id))!;
        }
        var sources = spec["sources"]!.AsArray().Select(x => deployment.Region((string)x!)).ToList();
        foreach (var region in sources.Append(to))
            await region.Store.WriteAsync(async tx =>
            {
                if (region == home) await tx.SetMigrationStateAsync(id, Done, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
                await Audit.AuditChain.AppendAsync(tx, region.Time.GetUtcNow(), actor, "migration.done", region.Id,
                    new JsonObject { ["to"] = to.Id, ["users"] = progress.Done - progress.Failed, ["failed"] = progress.Failed, ["items"] = progress.Items, ["bytes"] = progress.Bytes });
                return 0;
            });
        var state = (await GetAsync(id))!;
        return state with { Seconds = (DateTimeOffset.UtcNow - progress.Started).TotalSeconds };
    }

    /// <summary>
    /// Purges the sources of switched users in batches of several groups: a purge rewrites every page
    /// of the source's indexes it deletes entries from, and one transaction for many users rewrites
    /// few more pages than one for a group's (purges of groups of 33 users rewrote 228 pages each).
    /// A user waits here already at home in the destination, served from there; the job is done once
    /// the last is purged. A user left switched and unpurged (an interruption, a crash) is finished
    /// by the resume from its journal.
    /// </summary>
    async Task PurgeSwitchedAsync(string id, string actor, Region to, ChannelReader<(Region From, string User, UserDigest Digest)> queue,
        Action<UserDigest?> count, Action pause, Task producersDone, CancellationToken stop)
    {
        var batch = new List<(Region From, string User, UserDigest Digest)>();
        while (await queue.WaitToReadAsync(CancellationToken.None))
        {
            if (stop.IsCancellationRequested) return;
            // Left to itself the purger keeps up with the workers and takes one group at a time; a few
            // milliseconds' wait for more costs the job nothing, the users waiting being served at home.
            while (queue.Count < MinPurge && !producersDone.IsCompleted && !stop.IsCancellationRequested) await Task.WhenAny(producersDone, Task.Delay(10));
            batch.Clear();
            while (batch.Count < MaxPurge && queue.TryRead(out var next)) batch.Add(next);
            foreach (var bySource in batch.GroupBy(b => b.From))
            {
                var from = bySource.Key;
                var users = bySource.Select(b => b.User).ToList();
                try
                {
                    await PurgeAsync(id, actor, users, from, to);
                    foreach (var b in bySource) count(b.Digest);
                }
                catch (Exception e) when (Interrupts(e, from, to))
                {
                    pause();
                    return;
                }
                catch (DomicileException)
                {
                    // A refusal in the batch: each user is finished alone, as a resume would.
                    foreach (var b in bySource)
                        if (!stop.IsCancellationRequested) count(await MigrateUserAsync(id, actor, b.User, from, to, alreadySwitched: true));
                }
            }
        }
    }

    /// <summary>Leaves nothing of switched users at their source, then journals it in the destination.</summary>
    async Task PurgeAsync(string id, string actor, IReadOnlyList<string> users, Region from, Region to)
    {
        await from.PurgeMovedUsersAsync(users, to.Id, actor);
        await JournalGroup(id, users, "purged", from, to);
    }

    /// <summary>
    /// Users purged in one transaction: at least <see cref="MinPurge"/> while the workers go on, at most
    /// <see cref="MaxPurge"/> (the list of their ids is one statement parameter). Batches of 400 took
    /// 6 % less of a migration's CPU than the purger's own pace of one group each (paired runs, 20 rounds).
    /// </summary>
    const int MinPurge = 400, MaxPurge = 500;

    /// <summary>
    /// Groups of <paramref name="size"/>, the last ones smaller: once two rounds of full groups are
    /// all that is left, each group takes a share of the rest per worker, so that the workers finish
    /// together rather than one finishing a whole group while the others have nothing to do.
    /// </summary>
    internal static IEnumerable<T[]> Groups<T>(IReadOnlyList<T> users, int size, int workers)
    {
        workers = Math.Max(1, workers);
        for (var at = 0; at < users.Count;)
        {
            var left = users.Count - at;
            var n = left > 2 * workers * size ? size : Math.Clamp(left / (2 * workers), Math.Min(size, 8), size);
            n = Math.Min(n, left);
            var group = new T[n];
            for (var k = 0; k < n; k++) group[k] = users[at + k];
            at += n;
            yield return group;
        }
    }

    async Task<(Region Home, JsonNode Spec, string State)> FindJobAsync(string id)
    {
        foreach (var region in deployment.Regions.Values)
        {
            var job = (await region.Store.ReadAsync(tx => tx.ListMigrationsAsync())).FirstOrDefault(m => m.Id == id);
            if (job.Id is not null) return (region, JsonNode.Parse(job.Spec)!, job.State);
        }
        throw DomicileException.NotFound($"there is no migration '{id}'");
    }

    Task Journal(string id, string user, string step, Region from, Region to, JsonObject? details = null) =>
        JournalGroup(id, [user], step, from, to, details is null ? null : _ => details);

    // Steps whose state change already wrote its own audit entry in the destination (the switch)
    // or that happen at the source, which audits them itself (the fence).
    static readonly HashSet<string> AuditedByTheirStep = ["fenced", "switched"];

    /// <summary>
    /// Journals one step for many users in one transaction of the destination, where the job lives
    /// and resumes from: journal lines and their audit entries together. The source's own record of
    /// the move is its audit chain (plan, fence, switch, purge, done).
    /// </summary>
    async Task JournalGroup(string id, IReadOnlyList<string> users, string step, Region from, Region to, Func<string, JsonObject?>? details = null)
    {
        if (users.Count == 0) return;
        var lines = JournalLines.Of(id, users, step, from, to, details);
        await to.Store.WriteAsync(async tx => { await lines.WriteAsync(tx); return 0; });
        await AtStepAsync(step, users);
    }

    /// <summary>
    /// One step's journal lines and their audit entries, their texts made before the destination's
    /// write turn: that single writer is what the workers of a migration queue for, and every
    /// moment it holds the turn for work that could have been done before costs the whole job that
    /// moment (2 ms more per copy inside the turn cost 8 % of a 3,000-user migration; outside it, nothing).
    /// The caller calls the step hook once the transaction commits.
    /// </summary>
    sealed class JournalLines(string id, string step, string? audit, TimeProvider time, (string User, string Details)[] lines)
    {
        public static JournalLines Of(string id, IReadOnlyList<string> users, string step, Region from, Region to, Func<string, JsonObject?>? details = null) =>
            new(id, step, AuditedByTheirStep.Contains(step) ? null : Audit.AuditChain.Canonical(new JsonObject { ["from"] = from.Id, ["to"] = to.Id }),
                to.Time, [.. users.Select(u => (u, details?.Invoke(u)?.ToJsonString() ?? "{}"))]);

        /// <summary>Writes the lines, stamped with the time of this transaction (the audit chain's entries follow its order).</summary>
        public async Task WriteAsync(Store.IStoreTx tx)
        {
            var (at, now, actor, action) = (DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), time.GetUtcNow(), $"migration:{id}", $"migration.{step}");
            foreach (var (user, details) in lines)
            {
                await tx.JournalAsync(id, user, step, at, details);
                if (audit is not null) await Audit.AuditChain.AppendCanonicalAsync(tx, now, actor, action, user, audit);
            }
        }
    }

    /// <summary>Points every region but the two of the move at the users' new home.</summary>
    async Task PointOtherDirectoriesAsync(IReadOnlyList<string> users, Region from, Region to)
    {
        foreach (var other in deployment.Regions.Values.Where(r => r != from && r != to))
            await other.PointDirectoryAsync(users, to.Id);
    }

    async Task AtStepAsync(string step, IEnumerable<string> users)
    {
        if (_options.AtStep is { } hook)
            foreach (var user in users) await hook(step, user);
    }

    /// <summary>
    /// The pipeline for a group of users of one source. Small users are fenced first and copied
    /// together, larger ones copied live in smaller groups; each step is one transaction per region
    /// for its group, so a user is fenced for the time the group's copies, tails and digests take.
    /// </summary>
    /// <param name="purgeLater">Takes the switched users for the batched purge (see <see cref="PurgeSwitchedAsync"/>).</param>
    async Task MigrateGroupAsync(string id, string actor, IReadOnlyList<string> group, Region from, Region to, Action<string, UserDigest?> count,
        PurgeLater purgeLater)
    {
        var present = new List<string>();
        var states = await from.Store.ReadAsync(tx => tx.UserStatesAsync(group));
        foreach (var userId in group)
        {
            // Gone or given up at the source: the one-user pipeline settles what is left of the move.
            if (states.TryGetValue(userId, out var state) && state != UserStates.Moved) present.Add(userId);
            else count(userId, await MigrateUserAsync(id, actor, userId, from, to, alreadySwitched: false));
        }
        var small = await from.SmallUsersAsync(present, _options.FenceFirstChanges);
        if (small.Count > 0) await MigrateFencedFirstAsync(id, actor, [.. present.Where(small.Contains)], from, to, count, purgeLater);
        // Users copied live are fenced together for their tails and digests, whose size is their
        // own: they go in groups of their own size.
        foreach (var live in present.Where(u => !small.Contains(u)).Chunk(Math.Max(1, Math.Min(_options.GroupSize, _options.LiveGroupSize))))
            await MigrateLiveAsync(id, actor, live, from, to, count, purgeLater);
    }

    /// <summary>Hands switched users and their verified digests to the batched purge.</summary>
    delegate void PurgeLater(IReadOnlyList<string> users, Dictionary<string, UserDigest> digests);

    /// <summary>
    /// Users with many changes or blobs: a snapshot while they keep working, a catch-up, then the
    /// fence for their tails only (a user with blobs alone).
    /// </summary>
    async Task MigrateLiveAsync(string id, string actor, IReadOnlyList<string> live, Region from, Region to, Action<string, UserDigest?> count, PurgeLater purgeLater)
    {
        var snapshots = new List<UserPackage>();
        var read = await from.PackageUsersAsync(live);
        for (var n = 0; n < live.Count; n++)
        {
            // Users with blobs are fenced alone: their digests take longer than a group should wait.
            if (read[n] is not { } snapshot || (snapshot.Items.Any(i => i.Open is not null) && live.Count > 1))
                count(live[n], await MigrateUserAsync(id, actor, live[n], from, to, alreadySwitched: false));
            else snapshots.Add(snapshot);
        }
        if (snapshots.Count == 0) return;
        await AtStepAsync("read", snapshots.Select(s => s.UserId));
        // The group's copies arrive in one transaction, then whatever changed meanwhile in another.
        await to.ImportUsersAsync(snapshots, UserStates.Incoming, actor);
        var seqs = await CatchUpAsync(from, to, snapshots, actor);
        var users = snapshots.Select(s => s.UserId).ToList();
        await JournalGroup(id, users, "copied", from, to, u => new JsonObject { ["seq"] = seqs[u] });

        await from.SetUsersStateAsync(users, UserStates.Fenced, actor, "migration.fence");
        await JournalGroup(id, users, "fenced", from, to);
        var histories = await CarryHistoriesAsync(actor, users, from, to);
        await SwitchAndPurgeAsync(id, actor, users, await TailAndVerifyAsync(id, actor, users, from, to, seqs, histories, u => count(u, null)), histories, from, to, count, purgeLater);
    }

    /// <summary>
    /// Users with few changes and no blobs are fenced first and read once: their whole copy takes
    /// milliseconds, less than a live snapshot and its catch-up would cost, and nothing can change
    /// at the source while it is made.
    /// </summary>
    async Task MigrateFencedFirstAsync(string id, string actor, IReadOnlyList<string> users, Region from, Region to, Action<string, UserDigest?> count, PurgeLater purgeLater)
    {
        await from.SetUsersStateAsync(users, UserStates.Fenced, actor, "migration.fence");
        // The fence is the source's; its journal line goes with the copy, in one destination transaction.
        await AtStepAsync("fenced", users);
        var fulls = AllThere(await from.PackageUsersAsync(users), users);
        await AtStepAsync("read", users);
        var histories = await from.HistorySummariesAsync(users, actor);
        using (var copies = to.SealCopies(fulls))
        {
            // More than 500 items (not a small user, so not expected here) arrive the one-user way.
            var alone = fulls.Where(f => !copies.Holds(f)).ToList();
            if (alone.Count > 0) await to.ImportUsersAsync(alone, UserStates.Incoming, actor);
            var fenced = JournalLines.Of(id, users, "fenced", from, to);
            var seqs = fulls.ToDictionary(f => f.UserId, f => f.ChangeSeq, StringComparer.Ordinal);
            var copied = JournalLines.Of(id, users, "copied", from, to, u => new JsonObject { ["seq"] = seqs[u] });
            var carried = Region.CanonicalHistories(histories);
            await to.Store.WriteAsync(async tx =>
            {
                await fenced.WriteAsync(tx);
                await to.WriteCopiesAsync(tx, copies, UserStates.Incoming);
                await copied.WriteAsync(tx);
                await to.CarryHistoriesAsync(tx, carried, actor);
                return 0;
            });
            to.ForgetAccounts(users);
        }
        await AtStepAsync("copied", users);
        var v = await VerifyAsync(id, actor, fulls, from, to, histories, u => count(u, null));
        await SwitchAndPurgeAsync(id, actor, users, v, histories, from, to, count, purgeLater);
    }

    /// <summary>The users' audit summaries, taken at the source after the fence and carried to the destination.</summary>
    static async Task<Dictionary<string, JsonObject>> CarryHistoriesAsync(string actor, IReadOnlyList<string> users, Region from, Region to)
    {
        var histories = await from.HistorySummariesAsync(users, actor);
        await to.CarryHistoriesAsync(histories, actor);
        return histories;
    }

    /// <summary>
    /// The verified users' switch and purge, one transaction per step and region for all of them;
    /// with <paramref name="purgeLater"/>, the purge goes to the batched one.
    /// </summary>
    async Task SwitchAndPurgeAsync(string id, string actor, IReadOnlyList<string> users, Dictionary<string, UserDigest> digests,
        Dictionary<string, JsonObject> histories, Region from, Region to, Action<string, UserDigest?> count, PurgeLater? purgeLater = null)
    {
        var verified = users.Where(digests.ContainsKey).ToList();
        if (verified.Count == 0) return;
        // Switch: the source stops being home first, so there is never a moment with two homes. The
        // destination journals the verification with its switch: a crash between the two finds the
        // source given up, which only ever follows a verified copy, and completes the switch from it.
        var verifiedLines = JournalLines.Of(id, verified, "verified", from, to, u => VerifiedDetails(digests[u], histories[u]));
        var switchedLines = JournalLines.Of(id, verified, "switched", from, to);
        await from.SetUsersStateAsync(verified, UserStates.Moved, actor, "migration.switch", movedTo: to.Id);
        await to.SetUsersStateAsync(verified, UserStates.Active, actor, "migration.switch", movedTo: to.Id, alongside: async tx =>
        {
            await verifiedLines.WriteAsync(tx);
            await switchedLines.WriteAsync(tx);
        });
        await AtStepAsync("verified", verified);
        await AtStepAsync("switched", verified);
        await PointOtherDirectoriesAsync(verified, from, to);
        if (purgeLater is not null)
        {
            purgeLater(verified, digests);
            return;
        }
        await PurgeAsync(id, actor, verified, from, to);
        foreach (var userId in verified) count(userId, digests[userId]);
    }

    static List<UserPackage> AllThere(IReadOnlyList<UserPackage?> read, IReadOnlyList<string> users) =>
        [.. read.Select((p, n) => p ?? throw DomicileException.NotFound($"user {users[n]} is no longer at the source"))];

    /// <summary>
    /// After the fence: copies the users' tails (one full read serves both the tail and the source's
    /// digest), then verifies every copy. The fence itself took a change number; anything beyond it
    /// is a write that got in first.
    /// </summary>
    async Task<Dictionary<string, UserDigest>> TailAndVerifyAsync(string id, string actor, IReadOnlyList<string> users, Region from, Region to,
        IReadOnlyDictionary<string, long> copiedSeqs, IReadOnlyDictionary<string, JsonObject> histories, Action<string>? failed = null)
    {
        var fulls = AllThere(await from.PackageUsersAsync(users), users);
        await to.ImportUsersAsync([.. fulls.Where(f => f.ChangeSeq > copiedSeqs[f.UserId] + 1)
            .Select(f => f with { Items = [.. f.Items.Where(i => i.Version > copiedSeqs[f.UserId])] })], UserStates.Incoming, actor);
        return await VerifyAsync(id, actor, fulls, from, to, histories, failed);
    }

    /// <summary>
    /// Compares each copy with its source (read after the fence) by content digest and the carried
    /// audit summary; returns the verified users' digests. On a mismatch nothing of that user is
    /// switched: the copy is discarded, the user is home again at the source, and the failure is journaled.
    /// </summary>
    /// <param name="failed">Told of each failure as soon as it is journaled: a refusal later in the
    /// group must not send a user already settled as failed through the pipeline again.</param>
    async Task<Dictionary<string, UserDigest>> VerifyAsync(string id, string actor, IReadOnlyList<UserPackage> fulls, Region from, Region to,
        IReadOnlyDictionary<string, JsonObject> histories, Action<string>? failed = null)
    {
        IReadOnlyList<UserPackage?>? copies;
        try
        {
            copies = await to.PackageUsersAsync([.. fulls.Select(f => f.UserId)]);
        }
        catch (Keys.TamperedException)
        {
            copies = null; // some copy does not decrypt: each is read alone below, to find which
        }
        var carried = await to.CarriedHistoryDigestsAsync([.. fulls.Select(f => f.UserId)], actor);
        var verified = new Dictionary<string, UserDigest>();
        for (var n = 0; n < fulls.Count; n++)
        {
            var userId = fulls[n].UserId;
            // The source's contents are hashed once, by the copy's digest below.
            var source = await Region.DigestAsync(fulls[n], sealedDigests: true);
            var copy = await CopyDigestAsync(to, fulls[n], source, copies?[n]);
            if (copy is not null && copy.Digest == source.Digest && carried.TryGetValue(userId, out var digest) && digest == (string?)histories[userId]["digest"])
            {
                verified[userId] = source;
                continue;
            }
            await to.DiscardIncomingUserAsync(userId, actor);
            await from.SetUserStateAsync(userId, UserStates.Active, actor, "migration.unfence");
            await Journal(id, userId, "failed", from, to, new JsonObject { ["reason"] = "the copy did not match the source; nothing was switched" });
            failed?.Invoke(userId);
        }
        return verified;
    }

    /// <summary>
    /// The fields of a "verified" or "planned" journal line that summaries and resumes read, and the
    /// digest of a carried audit summary, without a document model: a job's summary reads one line
    /// per user, and a verification one summary per user, whose list of touches may be long.
    /// </summary>
    internal readonly record struct JournalFields(string? Digest, long Items, long Bytes, string? From)
    {
        public static JournalFields Read(string json)
        {
            string? digest = null, from = null;
            long items = 0, bytes = 0;
            var r = new Utf8JsonReader(Encoding.UTF8.GetBytes(json));
            // Only the top level: the carried audit summary nests objects of its own.
            while (r.Read())
            {
                if (r.TokenType != JsonTokenType.PropertyName || r.CurrentDepth != 1) continue;
                var name = r.GetString();
                r.Read();
                switch (name)
                {
                    case "digest" when r.TokenType == JsonTokenType.String: digest = r.GetString(); break;
                    case "from" when r.TokenType == JsonTokenType.String: from = r.GetString(); break;
                    case "items" when r.TokenType == JsonTokenType.Number: items = r.GetInt64(); break;
                    case "bytes" when r.TokenType == JsonTokenType.Number: bytes = r.GetInt64(); break;
                    default: r.Skip(); break;
                }
            }
            return new(digest, items, bytes, from);
        }
    }

    /// <summary>The "verified" journal line: the content digest and totals, and the audit summary when one was carried.</summary>
    static JsonObject VerifiedDetails(UserDigest digest, JsonObject? history)
    {
        var details = new JsonObject { ["digest"] = digest.Digest, ["items"] = digest.Items, ["bytes"] = digest.Bytes };
        if (history is not null)
        {
            details["audit_entries"] = history["entries"]!.DeepClone();
            details["audit_digest"] = history["digest"]!.DeepClone();
        }
        return details;
    }

    /// <summary>
    /// Copies what changed at the source since the snapshots; returns each user's change number as
    /// copied. Every write (items, consents, messages) takes a change number, so an unchanged number
    /// spares reading the user again.
    /// </summary>
    static async Task<Dictionary<string, long>> CatchUpAsync(Region from, Region to, IReadOnlyList<UserPackage> snapshots, string actor)
    {
        var now = await from.Store.ReadAsync(async tx =>
        {
            var seqs = new List<long?>(snapshots.Count);
            foreach (var s in snapshots) seqs.Add((await tx.GetUserAsync(s.UserId))?.ChangeSeq);
            return seqs;
        });
        var since = snapshots.Where((s, n) => now[n] != s.ChangeSeq).ToDictionary(s => s.UserId, s => s.ChangeSeq);
        var catchUps = AllThere(await from.PackageUsersAsync([.. since.Keys], u => since[u]), [.. since.Keys]);
        await to.ImportUsersAsync(catchUps, UserStates.Incoming, actor);
        var copied = snapshots.ToDictionary(s => s.UserId, s => s.ChangeSeq);
        foreach (var c in catchUps) copied[c.UserId] = c.ChangeSeq;
        return copied;
    }

    /// <summary>
    /// The copy's digest. When it differs, the source may have deleted something without a change
    /// number (a sweep, a purge) since the copy: the copy drops what the source no longer has and is
    /// digested again. Altered or extra content stays a mismatch. Null when the copy does not decrypt.
    /// </summary>
    static async Task<UserDigest?> CopyDigestAsync(Region to, UserPackage full, UserDigest source, UserPackage? read)
    {
        try
        {
            var copy = read is null ? await to.DigestUserAsync(full.UserId) : await Region.DigestAsync(read);
            if (copy.Digest != source.Digest && await to.DropWhatTheSourceNoLongerHasAsync(full))
                copy = await to.DigestUserAsync(full.UserId);
            return copy;
        }
        catch (Keys.TamperedException)
        {
            return null; // a copy that does not even decrypt is a mismatch like any other
        }
    }

    /// <summary>
    /// A paused job must not keep its users fenced until the unseal: those not yet switched are
    /// home again at the source (the resume copies and fences them afresh). Best effort: the source
    /// itself may be the region that stopped answering, and then its fences are lifted by the resume.
    /// </summary>
    static async Task UnfenceAsync(Region from, IReadOnlyList<string> users, string actor)
    {
        try
        {
            foreach (var u in users)
                if (await from.GetAccountAsync(u) is { State: UserStates.Fenced })
                    await from.SetUserStateAsync(u, UserStates.Active, actor, "migration.unfence");
        }
        catch (Exception e) when (e is DomicileException or Store.StoreException)
        {
        }
    }

    /// <summary>After a refusal mid-group: try the user alone; if that is refused too, leave the user home at the source.</summary>
    async Task<UserDigest?> SettleUserAsync(string id, string actor, string userId, Region from, Region to)
    {
        try
        {
            return await MigrateUserAsync(id, actor, userId, from, to, alreadySwitched: false);
        }
        catch (DomicileException e) when (!Interrupts(e, from, to))
        {
            if (await from.GetAccountAsync(userId) is { State: UserStates.Fenced }) await from.SetUserStateAsync(userId, UserStates.Active, actor, "migration.unfence");
            if (await from.GetAccountAsync(userId) is { State: UserStates.Active } && await to.GetAccountAsync(userId) is { State: UserStates.Incoming })
                await to.DiscardIncomingUserAsync(userId, actor);
            await Journal(id, userId, "failed", from, to, new JsonObject { ["reason"] = e.Message });
            return null;
        }
    }

    /// <summary>One user's pipeline. Returns the verified digest, or null when verification failed (nothing switched).</summary>
    async Task<UserDigest?> MigrateUserAsync(string id, string actor, string userId, Region from, Region to, bool alreadySwitched)
    {
        if (!alreadySwitched)
        {
            var account = await from.GetAccountAsync(userId);
            var arrived = await to.GetAccountAsync(userId);
            if (account is { State: UserStates.Moved } && arrived is not null)
            {
                // The source gave the user up (only ever after a verified copy) before a crash that
                // lost the rest of the switch: complete it from the destination's verified copy.
                if (arrived.State != UserStates.Active) await to.SetUserStateAsync(userId, UserStates.Active, actor, "migration.switch", movedTo: to.Id);
                await PointOtherDirectoriesAsync([userId], from, to);
                await Journal(id, userId, "switched", from, to);
                return await FinishAsync(id, actor, userId, from, to, await to.DigestUserAsync(userId));
            }
            if (account is null || account.State == UserStates.Moved)
            {
                // Erased at the source before the switch: a half-made copy must not become a home.
                if (arrived is { State: UserStates.Incoming }) await to.DiscardIncomingUserAsync(userId, actor);
                await Journal(id, userId, "failed", from, to, new JsonObject { ["reason"] = "the user no longer exists at the source" });
                return null;
            }
            // Copy a snapshot while the user keeps working, then catch up on what changed meanwhile.
            var snapshot = await from.PackageUserAsync(userId);
            await AtStepAsync("read", [userId]);
            await to.ImportUserAsync(snapshot, UserStates.Incoming, actor);
            var seqs = await CatchUpAsync(from, to, [snapshot], actor);
            await Journal(id, userId, "copied", from, to, new JsonObject { ["seq"] = seqs[userId] });

            // Fence: from here writes are refused with a retry hint for the few seconds the tail takes.
            await from.SetUserStateAsync(userId, UserStates.Fenced, actor, "migration.fence");
            await Journal(id, userId, "fenced", from, to);
            var histories = await CarryHistoriesAsync(actor, [userId], from, to);
            var digests = await TailAndVerifyAsync(id, actor, [userId], from, to, seqs, histories);
            if (!digests.TryGetValue(userId, out var source)) return null;
            await SwitchAndPurgeAsync(id, actor, [userId], digests, histories, from, to, (_, _) => { });
            return source;
        }
        // The switch is journaled with the destination's own: a crash may have come before the
        // other regions were pointed at the new home.
        await PointOtherDirectoriesAsync([userId], from, to);
        var digest = await to.DigestUserAsync(userId);
        return await FinishAsync(id, actor, userId, from, to, digest);
    }

    /// <summary>Finishes a user switched before a crash: journals the destination's digest, then purges the source.</summary>
    async Task<UserDigest> FinishAsync(string id, string actor, string userId, Region from, Region to, UserDigest digest)
    {
        await Journal(id, userId, "verified", from, to, VerifiedDetails(digest, history: null));
        await PurgeAsync(id, actor, [userId], from, to);
        return digest;
    }
}
