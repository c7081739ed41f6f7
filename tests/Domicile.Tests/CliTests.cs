using System.Text.Json.Nodes;
using Domicile.Cli;
using Domicile.Config;
using Domicile.Tests.Support;

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

    static long AuditOf(string[] lines)
    {
        var rows = lines.Select(Audit.AuditChain.ParseLine).ToList();
        Assert.True(Audit.AuditChain.Verify("cn-beijing", rows).Ok);
        return rows.Count;
    }
}
