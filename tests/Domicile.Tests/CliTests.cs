using System.Text.Json.Nodes;
using Domicile.Cli;
using Domicile.Config;
using Domicile.Crypto;
using Domicile.Tests.Support;
using Microsoft.AspNetCore.Builder;

namespace Domicile.Tests;

/// <summary>The <c>domicile</c> command: its JSON outputs (SPEC 6.5), files, and exit codes.</summary>
public class CliTests
{
    static async Task<(int Code, string Out, string Err)> Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        var code = await Domicile.Cli.Cli.RunAsync(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    static string WriteConfig(string dir)
    {
        var path = Path.Combine(dir, "domicile.yaml");
        File.WriteAllText(path, Engines.Yaml(Engines.Sqlite, dir));
        return path;
    }

    [Fact]
    public async Task Init_prints_the_spec_json_writes_private_share_files_and_refuses_twice()
    {
        var dir = Engines.TempDir();
        var config = WriteConfig(dir);
        var shares = Path.Combine(dir, "shares");
        var (code, stdout, _) = await Run("init", "--config", config, "--shares-out", shares, "--json");
        Assert.Equal(0, code);
        var json = JsonNode.Parse(stdout)!;
        Assert.StartsWith("dmo_", (string)json["admin_token"]!, StringComparison.Ordinal);
        var regions = json["regions"]!.AsArray();
        Assert.Equal(["cn-beijing", "in-mumbai", "sg-singapore"], regions.Select(r => (string)r!["id"]!));
        foreach (var r in regions)
        {
            var id = (string)r!["id"]!;
            var list = r["shares"]!.AsArray().Select(s => (string)s!).ToList();
            Assert.Equal(5, list.Count);
            for (var i = 0; i < 5; i++)
            {
                Assert.StartsWith($"domicile-share:v1:{id}:{i + 1}:", list[i], StringComparison.Ordinal);
                var file = Path.Combine(shares, id, $"custodian-{i + 1}.share");
                Assert.Equal(list[i], (await File.ReadAllTextAsync(file)).Trim());
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
            }
        }
        var again = await Run("init", "--config", config, "--json");
        Assert.Equal(1, again.Code);
        Assert.Contains("already initialised", again.Err, StringComparison.Ordinal);
        Assert.Empty(again.Out);
    }

    [Theory]
    [InlineData("no-such-command")]
    [InlineData("unseal")]
    [InlineData("migrate", "--to", "in-mumbai", "--token", "t")]
    [InlineData("migrate", "--jurisdiction", "IN", "--user", "u", "--to", "in-mumbai", "--token", "t")]
    [InlineData("status")]
    [InlineData("demo", "--users", "0", "--no-serve")]
    public async Task Usage_errors_exit_2_and_say_what_to_do(params string[] args)
    {
        Environment.SetEnvironmentVariable("DOMICILE_TOKEN", null);
        var (code, stdout, stderr) = await Run(args);
        Assert.Equal(2, code);
        Assert.Empty(stdout);
        Assert.StartsWith("domicile", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_bad_config_exits_2_naming_the_field()
    {
        var dir = Engines.TempDir();
        var path = Path.Combine(dir, "domicile.yaml");
        await File.WriteAllTextAsync(path, Engines.Yaml(Engines.Sqlite, dir).Replace("threshold: 3", "threshold: 9", StringComparison.Ordinal));
        var (code, _, stderr) = await Run("init", "--config", path);
        Assert.Equal(2, code);
        Assert.Contains("custody.threshold", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unreachable_server_is_a_failure_with_a_hint()
    {
        var (code, _, stderr) = await Run("status", "--server", "http://127.0.0.1:1", "--token", "dmo_x");
        Assert.Equal(1, code);
        Assert.Contains("is 'domicile serve' running", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_demo_tells_the_whole_story_and_leaves_a_deployment_that_reports_the_same()
    {
        var dir = Path.Combine(Engines.TempDir(), "demo");
        var (code, stdout, stderr) = await Run("demo", "--users", "400", "--dir", dir, "--no-serve", "--json");
        Assert.True(code == 0, stderr);
        var json = JsonNode.Parse(stdout)!;
        Assert.Equal(400, (int)json["users"]!);
        var before = (long)json["before"]!["violation_count"]!;
        Assert.True(before > 50, $"a realistic mix has many Indian users; got {before}");
        var migration = json["migration"]!;
        Assert.Equal(before, (long)migration["users"]!);
        Assert.True((long)migration["items"]! > before && (long)migration["bytes"]! > 0);
        Assert.Equal((true, 0L), ((bool)migration["verified"]!, (long)migration["failed"]!));
        Assert.Equal(0, (long)json["after"]!["violation_count"]!);
        Assert.True((bool)json["audit_ok"]!);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(dir, "admin.token")));
        Assert.Equal(5, Directory.GetFiles(Path.Combine(dir, "shares", "in-mumbai")).Length);

        // The deployment left behind serves and reports the same, through the real server and CLI.
        var config = ConfigLoader.Load(Path.Combine(dir, "domicile.yaml"));
        await using var d = Deployment.Open(config);
        foreach (var r in d.Regions.Values)
            foreach (var share in Directory.GetFiles(Path.Combine(dir, "shares", r.Id)).Order().Take(3))
                await r.SubmitShareAsync(await File.ReadAllTextAsync(share));
        var app = Server.DomicileServer.Build(d, new Server.ServerOptions { Urls = "http://127.0.0.1:0" });
        await app.StartAsync();
        try
        {
            var url = app.Urls.First();
            var token = (await File.ReadAllTextAsync(Path.Combine(dir, "admin.token"))).Trim();
            var report = await Run("report", "residency", "--server", url, "--token", token, "--json");
            Assert.Equal(0, report.Code);
            var r = JsonNode.Parse(report.Out)!;
            Assert.Equal(0, (long)r["violation_count"]!);
            Assert.Equal(before, (long)r["regions"]!.AsArray().Single(x => (string?)x!["id"] == "in-mumbai")!["jurisdictions"]!["IN"]!["users"]!);
            var verify = await Run("audit", "verify", "--region", "in-mumbai", "--server", url, "--token", token, "--json");
            Assert.Equal(0, verify.Code);
            var v = JsonNode.Parse(verify.Out)!;
            Assert.Equal(("in-mumbai", true), ((string)v["region"]!, (bool)v["ok"]!));
            Assert.Null(v["first_bad_seq"]);
            Assert.True((long)v["entries"]! > before);
            var status = JsonNode.Parse((await Run("status", "--server", url, "--token", token, "--json")).Out)!;
            Assert.Equal(400, status["regions"]!.AsArray().Sum(x => (long)x!["users"]!));
            Assert.Equal("done", (string?)Assert.Single(status["migrations"]!.AsArray())!["state"]);
            var export = await Run("audit", "export", "--region", "cn-beijing", "--server", url, "--token", token);
            var lines = export.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(AuditOf(lines), (await d.Region("cn-beijing").VerifyAuditAsync()).Entries);
            // A fresh migration of the same jurisdiction has nothing left to move.
            var again = await Run("migrate", "--jurisdiction", "IN", "--to", "in-mumbai", "--wait", "--json", "--server", url, "--token", token);
            Assert.True(again.Code == 0, again.Err + again.Out);
            Assert.Equal(0, (long)JsonNode.Parse(again.Out)!["users"]!);

            // Nothing was kept past its time: the demo swept before migrating, so a sweep now finds nothing.
            var sweptBefore = new List<string>();
            await foreach (var row in d.Region("cn-beijing").ReadAuditAsync()) if (row.Action == "retention.sweep") sweptBefore.Add(row.Details);
            Assert.Contains(sweptBefore, details => (long)JsonNode.Parse(details)!["cloud-sync"]!["withdrawn_users"]! > 0);
            foreach (var region in d.Regions.Values)
                Assert.All((await region.SweepAsync()).Services.Values, s => Assert.Equal((0L, 0L, 0L), (s.Messages, s.Items, s.WithdrawnUsers)));
        }
        finally
        {
            await app.StopAsync();
        }
        await d.DisposeAsync();
        var rerun = await Run("demo", "--users", "5", "--dir", dir, "--no-serve", "--json");
        Assert.True(rerun.Code == 0, rerun.Err); // an earlier demo in the folder is replaced
    }

    // ---- operational commands against a live server, on each engine --------------------------

    static async Task<JsonNode> Health(LiveServer s) => await LiveServer.Json(await s.Http.GetAsync("/v1/sys/health"));

    static bool SealedIn(JsonNode health, string region) =>
        (bool)health["regions"]!.AsArray().Single(r => (string?)r!["id"] == region)!["sealed"]!;

    [Theory]
    [InlineData(Engines.Sqlite)]
    [InlineData(Engines.Postgres)]
    public async Task Unseal_with_share_files_prints_progress_until_unsealed_and_seal_wipes_the_keys(string engine)
    {
        await using var s = await LiveServer.StartAsync(engine, unsealed: false);
        var url = s.BaseAddress.ToString();
        var dir = Engines.TempDir();
        var files = s.Deployment.Shares["in-mumbai"].Select((share, i) =>
        {
            var f = Path.Combine(dir, $"custodian-{i + 1}.share");
            File.WriteAllText(f, share + "\n");
            return f;
        }).ToList();

        // Refusals first: a missing file is a usage error; another region's share is refused by the server.
        var missing = await Run("unseal", "--region", "in-mumbai", "--share-file", Path.Combine(dir, "nope.share"), "--server", url);
        Assert.Equal(2, missing.Code);
        var wrongFile = Path.Combine(dir, "beijing.share");
        await File.WriteAllTextAsync(wrongFile, s.Deployment.Shares["cn-beijing"][0]);
        var wrong = await Run("unseal", "--region", "in-mumbai", "--share-file", wrongFile, "--server", url);
        Assert.True(wrong.Code == 1, wrong.Err);
        Assert.Contains("invalid_request", wrong.Err, StringComparison.Ordinal);
        Assert.Empty(wrong.Out);

        var first = await Run("unseal", "--region", "in-mumbai", "--share-file", files[4], "--server", url);
        Assert.True(first.Code == 0, first.Err);
        Assert.Contains("1/3", first.Out, StringComparison.Ordinal);
        Assert.Contains("still sealed", first.Out, StringComparison.Ordinal);
        Assert.True(SealedIn(await Health(s), "in-mumbai"));
        var second = await Run("unseal", "--region", "in-mumbai", "--share-file", files[1], "--server", url, "--json");
        Assert.True(second.Code == 0, second.Err);
        var progress = JsonNode.Parse(second.Out)!;
        Assert.Equal(("in-mumbai", true, 2, 3), ((string)progress["region"]!, (bool)progress["sealed"]!, (int)progress["progress"]!, (int)progress["threshold"]!));
        var third = await Run("unseal", "--region", "in-mumbai", "--share-file", files[2], "--server", url);
        Assert.True(third.Code == 0, third.Err);
        Assert.Contains("3/3", third.Out, StringComparison.Ordinal);
        Assert.Contains("unsealed", third.Out, StringComparison.Ordinal);
        Assert.DoesNotContain("still sealed", third.Out, StringComparison.Ordinal);
        // Nothing of a share is ever printed back.
        foreach (var r in new[] { first, second, third })
            Assert.DoesNotContain(s.Deployment.Shares["in-mumbai"][4][25..], r.Out + r.Err, StringComparison.Ordinal);

        var health = await Health(s);
        Assert.False(SealedIn(health, "in-mumbai"));
        Assert.True(SealedIn(health, "cn-beijing") && SealedIn(health, "sg-singapore"));
        var u = await s.UserAsync(consents: "cloud-sync");
        using var device = s.Client(u.Access);
        Assert.True((await device.GetAsync("/v1/me")).IsSuccessStatusCode);

        // seal: needs a token, and a role that may seal.
        Environment.SetEnvironmentVariable("DOMICILE_TOKEN", null);
        Assert.Equal(2, (await Run("seal", "--region", "in-mumbai", "--server", url)).Code);
        var support = await Run("seal", "--region", "in-mumbai", "--server", url, "--token", await s.OperatorAsync("support"));
        Assert.Equal(1, support.Code);
        Assert.Contains("forbidden", support.Err, StringComparison.Ordinal);
        Assert.False(SealedIn(await Health(s), "in-mumbai"));

        var seal = await Run("seal", "--region", "in-mumbai", "--server", url, "--token", s.AdminToken);
        Assert.True(seal.Code == 0, seal.Err);
        Assert.Contains("in-mumbai: sealed", seal.Out, StringComparison.Ordinal);
        Assert.True(SealedIn(await Health(s), "in-mumbai"));
        Assert.True(s.Deployment["in-mumbai"].IsSealed);
        var refused = await device.GetAsync("/v1/me");
        Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, refused.StatusCode);
        Assert.Equal("sealed", (string?)(await LiveServer.Json(refused))["code"]);
        Directory.Delete(dir, recursive: true);
    }

    [Theory]
    [InlineData(Engines.Sqlite)]
    [InlineData(Engines.Postgres)]
    public async Task Audit_verify_exits_1_and_names_the_first_entry_tampered_on_disk(string engine)
    {
        await using var s = await LiveServer.StartAsync(engine);
        var url = s.BaseAddress.ToString();
        for (var i = 0; i < 3; i++) await s.UserAsync(consents: "cloud-sync");
        var intact = await Run("audit", "verify", "--region", "in-mumbai", "--server", url, "--token", s.AdminToken, "--json");
        Assert.True(intact.Code == 0, intact.Err);
        var ok = JsonNode.Parse(intact.Out)!;
        Assert.True((bool)ok["ok"]!);
        Assert.Null(ok["first_bad_seq"]);
        var entries = (long)ok["entries"]!;
        Assert.True(entries >= 6, $"sign-ups and consents are audited; got {entries} entries");

        // An insider with the disk rewrites who did something in one entry in the middle of the chain.
        var bad = entries / 2;
        var store = s.Deployment["in-mumbai"].Config.Store;
        Assert.Equal(1, await RawSql.ExecAsync(store, $"UPDATE audit SET actor = 'nobody-did-this' WHERE seq = {bad}"));

        var json = await Run("audit", "verify", "--region", "in-mumbai", "--server", url, "--token", s.AdminToken, "--json");
        Assert.True(json.Code == 1, json.Err + json.Out);
        var broken = JsonNode.Parse(json.Out)!;
        Assert.Equal(("in-mumbai", false, bad), ((string)broken["region"]!, (bool)broken["ok"]!, (long)broken["first_bad_seq"]!));
        var text = await Run("audit", "verify", "--region", "in-mumbai", "--server", url, "--token", s.AdminToken);
        Assert.Equal(1, text.Code);
        Assert.Contains($"BROKEN at entry {bad}", text.Out, StringComparison.Ordinal);
        // The other regions' chains are untouched.
        var beijing = await Run("audit", "verify", "--region", "cn-beijing", "--server", url, "--token", s.AdminToken);
        Assert.True(beijing.Code == 0, beijing.Err + beijing.Out);
        Assert.Contains("intact", beijing.Out, StringComparison.Ordinal);
    }

    /// <summary>
    /// A deployment whose Indian users signed up while the policy still put India in cn-beijing,
    /// then served under today's policy (IN: in-mumbai only): those users are now violations.
    /// </summary>
    sealed class PolicyChanged : IAsyncDisposable
    {
        public required Deployment Deployment { get; init; }
        public required WebApplication App { get; init; }
        public required string Url { get; init; }
        public required string AdminToken { get; init; }
        public required List<string> Indians { get; init; }
        public required string Dir { get; init; }

        public async ValueTask DisposeAsync()
        {
            await App.StopAsync();
            await App.DisposeAsync();
            await Deployment.DisposeAsync();
            AbandonedFolders.Delete(Dir);
        }
    }

    static async Task<PolicyChanged> AfterAPolicyChangeAsync(string engine, int indians)
    {
        var dir = Engines.TempDir();
        var today = Engines.Yaml(engine, dir); // once: on PostgreSQL each call names new databases
        var before = today.Replace("IN: [in-mumbai]", "IN: [cn-beijing]", StringComparison.Ordinal);
        Assert.NotEqual(today, before);
        InitResult init;
        var ids = new List<string>();
        await using (var old = Deployment.Open(ConfigLoader.Parse(before, dir)))
        {
            init = await old.InitializeWithAdminAsync(stayUnsealed: true);
            var beijing = old.Region("cn-beijing");
            for (var i = 0; i < indians; i++)
            {
                var a = await beijing.CreateAccountAsync($"indian-{i}@example.in", "correct horse battery", "IN");
                await beijing.SetConsentAsync(a.UserId, "cloud-sync", true, "test");
                await beijing.PutAsync(a.UserId, "cloud-sync", "notes", $"note-{i}", "text/plain", Bytes.Stream($"note {i} of an Indian user"));
                ids.Add(a.UserId);
            }
            var chinese = await beijing.CreateAccountAsync("chinese@example.cn", "correct horse battery", "CN");
            await beijing.SetConsentAsync(chinese.UserId, "cloud-sync", true, "test");
            await beijing.PutAsync(chinese.UserId, "cloud-sync", "notes", "n", "text/plain", Bytes.Stream("stays in Beijing"));
        }
        var path = Path.Combine(dir, "domicile.yaml");
        await File.WriteAllTextAsync(path, today);
        var deployment = Deployment.Open(ConfigLoader.Load(path));
        foreach (var r in deployment.Regions.Values)
            foreach (var share in init.Shares[r.Id].Take(3))
                await r.SubmitShareAsync(share);
        var app = Server.DomicileServer.Build(deployment, new Server.ServerOptions { Urls = "http://127.0.0.1:0", ConsoleLogging = false });
        await app.StartAsync();
        return new PolicyChanged { Deployment = deployment, App = app, Url = app.Urls.First(), AdminToken = init.AdminToken, Indians = ids, Dir = dir };
    }

    [Theory]
    [InlineData(Engines.Sqlite)]
    [InlineData(Engines.Postgres)]
    public async Task Report_residency_exits_1_for_users_a_policy_change_left_outside_their_regions(string engine)
    {
        await using var d = await AfterAPolicyChangeAsync(engine, indians: 3);
        var json = await Run("report", "residency", "--server", d.Url, "--token", d.AdminToken, "--json");
        Assert.True(json.Code == 1, json.Err + json.Out);
        var report = JsonNode.Parse(json.Out)!;
        Assert.Equal(3, (long)report["violation_count"]!);
        var violations = report["violations"]!.AsArray();
        Assert.Equal(d.Indians.Order(StringComparer.Ordinal), violations.Select(v => (string)v!["user_id"]!).Order(StringComparer.Ordinal));
        Assert.All(violations, v => Assert.Equal(("IN", "cn-beijing"), ((string)v!["jurisdiction"]!, (string)v["region"]!)));
        var beijing = report["regions"]!.AsArray().Single(r => (string?)r!["id"] == "cn-beijing")!;
        Assert.Equal((4L, 3L, 1L), ((long)beijing["users"]!, (long)beijing["jurisdictions"]!["IN"]!["users"]!, (long)beijing["jurisdictions"]!["CN"]!["users"]!));
        Assert.True((long)beijing["jurisdictions"]!["IN"]!["items"]! >= 3 && (long)beijing["jurisdictions"]!["IN"]!["bytes"]! > 0);

        var text = await Run("report", "residency", "--server", d.Url, "--token", d.AdminToken);
        Assert.Equal(1, text.Code);
        Assert.Contains("violations: 3 user(s)", text.Out, StringComparison.Ordinal);
        Assert.DoesNotContain("indian-", text.Out + json.Out, StringComparison.Ordinal); // pseudonymous ids only, never logins
    }

    [Theory]
    [InlineData(Engines.Sqlite)]
    [InlineData(Engines.Postgres)]
    public async Task Migrate_dry_run_only_plans_and_wait_moves_the_users_with_a_certified_summary(string engine)
    {
        await using var d = await AfterAPolicyChangeAsync(engine, indians: 3);
        string[] server = ["--server", d.Url, "--token", d.AdminToken];

        var plan = await Run(["migrate", "--jurisdiction", "IN", "--to", "in-mumbai", "--dry-run", .. server]);
        Assert.True(plan.Code == 0, plan.Err + plan.Out);
        Assert.Contains("plan: 3 user(s) to in-mumbai", plan.Out, StringComparison.Ordinal);
        Assert.Contains("from cn-beijing: 3", plan.Out, StringComparison.Ordinal);
        var planJson = await Run(["migrate", "--jurisdiction", "IN", "--to", "in-mumbai", "--dry-run", "--json", .. server]);
        Assert.True(planJson.Code == 0, planJson.Err);
        var planned = JsonNode.Parse(planJson.Out)!;
        Assert.Equal(3, (long)planned["total"]!);
        Assert.Equal(d.Indians.Order(StringComparer.Ordinal), planned["users"]!.AsArray().Select(u => (string)u!["user_id"]!).Order(StringComparer.Ordinal));
        Assert.All(planned["users"]!.AsArray(), u => Assert.Equal("cn-beijing", (string?)u!["from"]));

        // Nothing moved, and no job was recorded.
        var status = JsonNode.Parse((await Run(["status", "--json", .. server])).Out)!;
        Assert.Empty(status["migrations"]!.AsArray());
        Assert.Equal(4, (long)status["regions"]!.AsArray().Single(r => (string?)r!["id"] == "cn-beijing")!["users"]!);
        Assert.Equal(0, (long)status["regions"]!.AsArray().Single(r => (string?)r!["id"] == "in-mumbai")!["users"]!);
        Assert.Equal(1, (await Run(["report", "residency", .. server])).Code);
        foreach (var id in d.Indians) Assert.Equal("cn-beijing", (await d.Deployment.FindUserRegionAsync(id))?.Id);

        var moved = await Run(["migrate", "--jurisdiction", "IN", "--to", "in-mumbai", "--wait", "--json", .. server]);
        Assert.True(moved.Code == 0, moved.Err + moved.Out);
        var summary = JsonNode.Parse(moved.Out)!.AsObject();
        foreach (var member in new[] { "id", "users", "items", "bytes", "verified", "failed", "seconds", "certificate" })
            Assert.True(summary.ContainsKey(member), $"--json lacks '{member}': {moved.Out}");
        Assert.StartsWith("mig_", (string)summary["id"]!, StringComparison.Ordinal);
        Assert.Equal((3L, true, 0L), ((long)summary["users"]!, (bool)summary["verified"]!, (long)summary["failed"]!));
        Assert.True((long)summary["items"]! >= 3, moved.Out);
        Assert.True((long)summary["bytes"]! > 0, moved.Out);
        Assert.True((double)summary["seconds"]! >= 0, moved.Out);

        // The certificate is a JWS of the destination, checkable by anyone against the published keys.
        using var http = new HttpClient { BaseAddress = new Uri(d.Url) };
        var keys = JsonNode.Parse(await http.GetStringAsync("/.well-known/jwks.json"))!["keys"]!.AsArray().Select(k => k!.AsObject()).ToList();
        Assert.True(Jws.TryVerify((string)summary["certificate"]!, kid => keys.FirstOrDefault(k => (string?)k["kid"] == kid) is { } k ? Jws.FromJwk(k) : null, out var cert));
        Assert.Equal(("in-mumbai", (string)summary["id"]!, 3L, (long)summary["items"]!, (long)summary["bytes"]!),
            ((string)cert!["to"]!, (string)cert["migration"]!, (long)cert["users"]!, (long)cert["items"]!, (long)cert["bytes"]!));
        Assert.True((bool)cert["source_keys_destroyed"]!);

        foreach (var id in d.Indians) Assert.Equal("in-mumbai", (await d.Deployment.FindUserRegionAsync(id))?.Id);
        var after = await Run(["report", "residency", "--json", .. server]);
        Assert.True(after.Code == 0, after.Out);
        Assert.Equal(0, (long)JsonNode.Parse(after.Out)!["violation_count"]!);
        await using (var note = await d.Deployment.Region("in-mumbai").GetAsync(d.Indians[0], "cloud-sync", "notes", "note-0"))
            Assert.Equal("note 0 of an Indian user", await Bytes.TextAsync(note.Content));
        Assert.Equal(0, await RawSql.CountAsync(d.Deployment.Region("cn-beijing").Config.Store, $"SELECT COUNT(*) FROM users WHERE id IN ('{string.Join("','", d.Indians)}')"));
    }

    static long AuditOf(string[] lines)
    {
        var rows = lines.Select(Audit.AuditChain.ParseLine).ToList();
        Assert.True(Audit.AuditChain.Verify("cn-beijing", rows).Ok);
        return rows.Count;
    }
}
