using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Domicile.Config;
using Domicile.Keys;
using Domicile.Tests.Support;
using Xunit.Abstractions;

namespace Domicile.Tests;

/// <summary>
/// A real server process killed with SIGKILL several times during a migration, then restarted:
/// the durable job resumes by itself, every acknowledged write reads back from the destination,
/// nothing of the users is left at the source. Each kill lands while the job is provably
/// unfinished: the server reports it running with done &lt; total just before the kill, and the
/// durable job read from the stores after the kill is not done either.
/// </summary>
/// <remarks>
/// The job is paced (<c>migration.users_per_second</c>) to last about four seconds unkilled, so the
/// kills land mid-job on any machine; <paramref name="users"/> is sized per engine to keep each test
/// well under a minute.
/// </remarks>
public abstract class CrashTests(string engine, ITestOutputHelper output, int users, Func<string, string>? engineFor = null)
{
    const string Password = "crash test password";
    const int Kills = 3;

    [Fact]
    public async Task A_migration_survives_sigkill_of_the_server_process()
    {
        var clock = Stopwatch.StartNew();
        var dir = Engines.TempDir("domicile-crash");
        var yamlPath = Path.Combine(dir, "domicile.yaml");
        // Paced so each life is cut short by its kill, however fast this machine's stores are.
        await File.WriteAllTextAsync(yamlPath, Engines.Yaml(engine, dir, engineFor) + $"\nmigration: {{ users_per_second: {users / 4} }}\n");
        var config = ConfigLoader.Load(yamlPath);
        var expected = new Dictionary<string, Dictionary<string, byte[]>>();
        var logins = new List<(string Login, string UserId)>();
        string admin;
        var hash = await PasswordHasher.HashAsync(Password);
        await using (var d = Deployment.Open(config))
        {
            var init = await d.InitializeWithAdminAsync(stayUnsealed: true);
            admin = init.AdminToken;
            foreach (var (region, shares) in init.Shares)
            {
                Directory.CreateDirectory(Path.Combine(dir, "shares", region));
                for (var i = 0; i < shares.Count; i++) await File.WriteAllTextAsync(Path.Combine(dir, "shares", region, $"custodian-{i + 1}.share"), shares[i]);
            }
            var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            for (var n = 0; n < users; n++)
            {
                var id = Region.NewId();
                var items = new Dictionary<string, byte[]> { ["c"] = Encoding.UTF8.GetBytes($"contact of {n}"), ["n"] = Encoding.UTF8.GetBytes($"note {n}") };
                if (n % 10 == 0) items["photo"] = RandomNumberGenerator.GetBytes(Region.ChunkSize * 4 + n);
                long v = 0;
                var login = $"crash-{n}@example.in";
                await d.Region("cn-beijing").ImportUserAsync(new UserPackage(id, login, hash, "IN", now, 10,
                    [new(0, id, "cloud-sync", 1, true, now, "seed")], [new(id, "cloud-sync", 1, true, now)], ["cloud-sync"],
                    [.. items.Select(kv => new PackagedItem("cloud-sync", "stuff", kv.Key, "application/octet-stream", ++v, false, kv.Value.Length, now, now,
                        kv.Value.Length <= Region.ChunkSize ? kv.Value : null, kv.Value.Length > Region.ChunkSize ? _ => Task.FromResult<Stream>(new MemoryStream(kv.Value)) : null))], []),
                    UserStates.Active, "seed");
                expected[id] = items;
                if (n < 3) logins.Add((login, id));
            }
        }

        output.WriteLine($"seeded {users} users in {clock.Elapsed.TotalSeconds:F1} s");
        var port = Ports.OutsideEphemeral();
        var url = $"http://127.0.0.1:{port}";
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(10) };
        Process? server = await StartServerAsync(yamlPath, dir, url, http);
        var acknowledged = new ConcurrentDictionary<(string User, string Key), string>();
        using var stop = new CancellationTokenSource();
        var writers = new List<Task>();
        try
        {
            var tokens = new List<(string UserId, string Token)>();
            foreach (var (login, id) in logins)
            {
                var t = await LiveServer.Json(await http.PostAsJsonAsync("/v1/auth/token", new { grant_type = "password", login, password = Password, country = "IN" }));
                tokens.Add((id, (string)t["access_token"]!));
            }
            writers.AddRange(tokens.Select(t => Task.Run(() => WriteUntilStopped(url, t.UserId, t.Token, acknowledged, stop.Token))));

            using var adminClient = new HttpClient { BaseAddress = new Uri(url) };
            adminClient.DefaultRequestHeaders.Authorization = new("Bearer", admin);
            var sw = Stopwatch.StartNew();
            var started = await adminClient.PostAsJsonAsync("/v1/sys/migrations", new { jurisdiction = "IN", to = "in-mumbai" });
            Assert.Equal(System.Net.HttpStatusCode.Accepted, started.StatusCode);
            var migration = (string)(await LiveServer.Json(started))["id"]!;

            var doneAtLastKill = 0L;
            for (var kill = 0; kill < Kills; kill++)
            {
                // Wait until this server life has moved users (the job resumed by itself after the
                // previous kill) but has not finished, and kill at once.
                var seen = await WaitForProgressAsync(adminClient, migration, doneAtLastKill);
                server.Kill(entireProcessTree: true); // SIGKILL: no shutdown hooks run
                await server.WaitForExitAsync();
                server.Dispose();
                server = null;
                Assert.Equal("running", (string?)seen["state"]);
                var (done, total) = ((long)seen["done"]!, (long)seen["total"]!);
                Assert.Equal(users, total);
                Assert.InRange(done, doneAtLastKill + 1, total - 1);

                // What survived the kill on disk: the durable job is still unfinished.
                await using (var probe = Deployment.Open(config))
                {
                    var durable = (await new Migrator(probe).GetAsync(migration))!;
                    output.WriteLine($"kill {kill + 1} at {sw.Elapsed.TotalSeconds:F1} s: server said {done}/{total} done; durable journal {durable.State} {durable.Done}/{durable.Total}");
                    Assert.NotEqual(Migrator.Done, durable.State);
                    Assert.InRange(durable.Done, done, total - 1);
                    doneAtLastKill = durable.Done;
                }
                // The job resumes as soon as the new process is up, so the next life is watched from
                // its launch: waiting for the unseal first could let a fast life finish the whole job.
                server = Launch(yamlPath, dir, url);
            }
            await WaitUnsealedAsync(server, http);
            var waited = Stopwatch.StartNew();
            JsonNode state;
            while (true)
            {
                state = await LiveServer.Json(await adminClient.GetAsync($"/v1/sys/migrations/{migration}"));
                if ((string?)state["state"] == "done" || waited.Elapsed > TimeSpan.FromMinutes(3)) break;
                await Task.Delay(200);
            }
            Assert.Equal("done", (string?)state["state"]);
            output.WriteLine($"done at {sw.Elapsed.TotalSeconds:F1} s");
            Assert.Equal(((long)users, 0L), ((long)state["done"]!, (long)state["failed"]!));
            await Task.Delay(300);
        }
        finally
        {
            stop.Cancel();
            await Task.WhenAll(writers);
            // A failure between a kill and the restart leaves no process: the finally must not hide it.
            if (server is not null)
            {
                server.Kill(entireProcessTree: true);
                await server.WaitForExitAsync();
                server.Dispose();
            }
        }

        await using var after = Deployment.Open(config);
        foreach (var region in after.Regions.Values)
            foreach (var share in Directory.GetFiles(Path.Combine(dir, "shares", region.Id)).Order().Take(3))
                await region.SubmitShareAsync(await File.ReadAllTextAsync(share));
        var mumbai = after.Region("in-mumbai");
        foreach (var (user, items) in expected)
        {
            foreach (var (key, body) in items)
            {
                await using var got = await mumbai.GetAsync(user, "cloud-sync", "stuff", key);
                Assert.Equal(body, await Bytes.ReadAllAsync(got.Content));
            }
            var feed = await mumbai.ChangesAsync(user, null, 1000);
            Assert.Equal(feed.Changes.Count, feed.Changes.Select(c => (c.Service, c.Collection, c.Key)).Distinct().Count()); // no duplicates
        }
        Assert.NotEmpty(acknowledged);
        foreach (var ((user, key), value) in acknowledged)
        {
            await using var got = await mumbai.GetAsync(user, "cloud-sync", "live", key);
            Assert.Equal(value, await Bytes.TextAsync(got.Content));
        }
        var beijing = after.Region("cn-beijing");
        Assert.Equal(0, await beijing.CountUsersAsync());
        Assert.Equal(0, await RawSql.CountAsync(beijing.Config.Store, "SELECT COUNT(*) FROM items"));
        Assert.Equal(0, await RawSql.CountAsync(beijing.Config.Store, "SELECT COUNT(*) FROM data_keys"));
        Assert.Equal(0, (await Residency.ReportAsync(after)).ViolationCount);
        foreach (var region in after.Regions.Values) Assert.True((await region.VerifyAuditAsync()).Ok);
        AbandonedFolders.Delete(dir);
    }

    static async Task WriteUntilStopped(string url, string userId, string token, ConcurrentDictionary<(string, string), string> acknowledged, CancellationToken stop)
    {
        using var c = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(5) };
        c.DefaultRequestHeaders.Authorization = new("Bearer", token);
        for (var n = 0; !stop.IsCancellationRequested; n++)
        {
            var key = $"k{n % 5}";
            var value = $"{userId}:{n}";
            try
            {
                var r = await c.PutAsync($"/v1/me/data/cloud-sync/live/{key}", new StringContent(value));
                if (r.IsSuccessStatusCode) acknowledged[(userId, key)] = value;
                else await Task.Delay(20);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                await Task.Delay(50); // the server is being killed and restarted
            }
        }
    }

    /// <summary>Polls the job until more than <paramref name="doneBefore"/> users are done (or it finished); returns what the server said.</summary>
    static async Task<JsonNode> WaitForProgressAsync(HttpClient admin, string migration, long doneBefore)
    {
        var waited = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                var r = await admin.GetAsync($"/v1/sys/migrations/{migration}");
                if (r.IsSuccessStatusCode)
                {
                    var state = await LiveServer.Json(r);
                    if ((string?)state["state"] == Migrator.Done || (long)state["done"]! > doneBefore) return state;
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
            }
            if (waited.Elapsed > TimeSpan.FromSeconds(60)) throw new TimeoutException($"the migration made no progress past {doneBefore} users within 60 s");
            await Task.Delay(10);
        }
    }

    static async Task<Process> StartServerAsync(string yaml, string dir, string url, HttpClient http)
    {
        var p = Launch(yaml, dir, url);
        await WaitUnsealedAsync(p, http);
        return p;
    }

    static Process Launch(string yaml, string dir, string url)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "domicile.dll");
        var psi = new ProcessStartInfo("dotnet", $"\"{dll}\" serve --config \"{yaml}\" --unseal-with \"{Path.Combine(dir, "shares")}\" --urls {url}")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    static async Task WaitUnsealedAsync(Process p, HttpClient http)
    {
        var waited = Stopwatch.StartNew();
        while (waited.Elapsed < TimeSpan.FromSeconds(60))
        {
            try
            {
                var health = await LiveServer.Json(await http.GetAsync("/v1/sys/health"));
                if (health["regions"]!.AsArray().All(r => !(bool)r!["sealed"]!)) return;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
            }
            if (p.HasExited) throw new InvalidOperationException($"the server exited with {p.ExitCode}");
            await Task.Delay(100);
        }
        throw new TimeoutException("the server did not come up unsealed within 60 s");
    }
}

public sealed class SqliteCrashTests(ITestOutputHelper output) : CrashTests(Engines.Sqlite, output, users: 200);

public sealed class PostgresCrashTests(ITestOutputHelper output) : CrashTests(Engines.Postgres, output, users: 100);

/// <summary>Users leave a SQLite region for a PostgreSQL one while the server is killed.</summary>
public sealed class CrossEngineCrashTests(ITestOutputHelper output)
    : CrashTests(Engines.Sqlite, output, users: 100, engineFor: region => region == "in-mumbai" ? Engines.Postgres : Engines.Sqlite);
