using System.CommandLine;
using System.Text.Json.Nodes;
using Domicile.Config;
using Domicile.Demo;
using Domicile.Keys;
using Domicile.Server;
using Microsoft.Extensions.Hosting;

namespace Domicile.Cli;

/// <summary>
/// The whole story on the embedded default: a fresh deployment, users of many countries all in
/// cn-beijing as before the policy, the violations, the live migration of Indian users to
/// in-mumbai, the clean report and intact audit chains, then the server.
/// </summary>
internal static class DemoCommand
{
    const string Marker = ".domicile-demo";

    // The demo's policy: the spec's demo policy with its data under data/, where India requires
    // localisation and everyone else may stay where they were.
    static readonly string PolicyYaml = ConfigLoader.DemoYaml
        .Replace("store: sqlite:", "store: sqlite:data/", StringComparison.Ordinal)
        .Replace("\"*\": [sg-singapore]", "\"*\": [sg-singapore, cn-beijing]", StringComparison.Ordinal);

    // Before the localisation law: one data centre for everyone.
    static readonly string OldPolicyYaml = PolicyYaml
        .Replace("  IN: [in-mumbai]\n", "", StringComparison.Ordinal)
        .Replace("\"*\": [sg-singapore, cn-beijing]", "\"*\": [cn-beijing]", StringComparison.Ordinal);

    public static Command Create(CliOutput output)
    {
        var users = new Option<int>("--users") { Description = "How many users to seed", DefaultValueFactory = _ => 10_000 };
        var dir = new Option<string>("--dir") { Description = "Folder of the demo deployment", DefaultValueFactory = _ => "domicile-demo" };
        var noServe = new Option<bool>("--no-serve") { Description = "Stop after the report instead of serving the dashboards" };
        var urls = new Option<string>("--urls") { Description = "Where to serve afterwards", DefaultValueFactory = _ => "http://127.0.0.1:8080" };
        var command = new Command("demo", "The whole story on the embedded default: seed, show violations, migrate, verify, serve") { users, dir, noServe, urls };
        command.SetAction((parse, ct) => RunAsync(output, parse.GetValue(users), parse.GetValue(dir)!, parse.GetValue(noServe), parse.GetValue(urls)!, parse.GetValue(Cli.JsonOption), ct));
        return command;
    }

    static async Task<int> RunAsync(CliOutput output, int userCount, string dir, bool noServe, string urls, bool json, CancellationToken ct)
    {
        if (userCount is < 1 or > 2_000_000) throw new UsageException("--users must be between 1 and 2,000,000");
        var root = Path.GetFullPath(dir);
        Prepare(root);
        var log = output.Error;
        var started = DateTime.UtcNow;
        log.WriteLine($"Domicile demo in {root}");

        var policyFile = Path.Combine(root, "domicile.yaml");
        await File.WriteAllTextAsync(policyFile, OldPolicyYaml + "\n", ct);
        InitResult init;
        await using (var old = Deployment.Open(ConfigLoader.Load(policyFile)))
        {
            init = await old.InitializeWithAdminAsync(stayUnsealed: true, ct: ct);
            InitCommand.WriteShares(Path.Combine(root, "shares"), init.Shares);
            WriteSecret(Path.Combine(root, "admin.token"), init.AdminToken);
            log.WriteLine($"1/6 created regions {string.Join(", ", old.Regions.Keys)} under the old policy (everyone in cn-beijing); custodian shares in {Path.Combine(dir, "shares")}, admin token in {Path.Combine(dir, "admin.token")}");
            await SeedAsync(old, userCount, ct);
            var sweep = await old.Region("cn-beijing").SweepAsync(ct);
            var oldReport = await Residency.ReportAsync(old, ct);
            log.WriteLine($"3/6 under the old policy: {oldReport.ViolationCount:N0} violations; retention sweep removed "
                + string.Join("; ", sweep.Services.Select(kv => $"{kv.Key}: {kv.Value.Items:N0} expired items, {kv.Value.Messages:N0} expired messages, data of {kv.Value.WithdrawnUsers:N0} withdrawn users")));
        }

        // The law changes: Indian users' data must live in India. The new policy is accepted at once;
        // the users it leaves outside their allowed regions show up as violations until migrated.
        await File.WriteAllTextAsync(policyFile, PolicyYaml + "\n", ct);
        await using var deployment = Deployment.Open(ConfigLoader.Load(policyFile));
        foreach (var r in deployment.Regions.Values)
            foreach (var share in init.Shares[r.Id].Take(deployment.Config.Custody.Threshold))
                await r.SubmitShareAsync(share, ct);
        var before = await Residency.ReportAsync(deployment, ct);
        log.WriteLine($"4/6 residency under the new policy (IN: in-mumbai only): {before.ViolationCount:N0} violations");
        ResidencyText.Write(log, Report(before));

        var migrator = new Migrator(deployment);
        var id = await migrator.StartAsync(new MigrationRequest("IN", null, "in-mumbai"), ct);
        var migStarted = DateTime.UtcNow;
        var job = migrator.Run(id);
        var final = await ProgressView.RunAsync("5/6 migrating IN users to in-mumbai", async () =>
        {
            if (job.IsCompleted)
            {
                var s = await job;
                return (s.Done, s.Total, s.Items, s.Bytes, true, (MigrationState?)s);
            }
            var p = migrator.LiveProgress(id) ?? (0, 0, 0, 0, 0);
            return (p.Done, p.Total, p.Items, p.Bytes, false, (MigrationState?)null);
        }, ct) ?? await job;
        var migration = MigrateCommand.Summary(JsonNode.Parse(System.Text.Json.JsonSerializer.Serialize(new
        {
            id = final.Id, users = final.Users, items = final.Items, bytes = final.Bytes, verified = final.Verified, failed = final.Failed, certificate = final.Certificate,
        }))!, (DateTime.UtcNow - migStarted).TotalSeconds);

        var after = await Residency.ReportAsync(deployment, ct);
        var audits = new List<Audit.AuditVerification>();
        foreach (var r in deployment.Regions.Values) audits.Add(await r.VerifyAuditAsync(ct: ct));
        var auditOk = audits.All(a => a.Ok);
        log.WriteLine($"6/6 residency after: {after.ViolationCount} violations; audit chains: "
            + string.Join(", ", audits.Select(a => $"{a.Region} {(a.Ok ? "intact" : "BROKEN")} ({a.Entries:N0} entries)")));
        ResidencyText.Write(log, Report(after));
        log.WriteLine($"done in {(DateTime.UtcNow - started).TotalSeconds:N1} s");

        if (json)
        {
            output.Json(new JsonObject
            {
                ["users"] = userCount,
                ["before"] = new JsonObject { ["violation_count"] = before.ViolationCount },
                ["migration"] = migration,
                ["after"] = new JsonObject { ["violation_count"] = after.ViolationCount },
                ["audit_ok"] = auditOk,
                ["dir"] = root,
            });
        }
        else
        {
            MigrateCommand.WriteSummary(output, migration);
            output.Out.WriteLine($"violations before: {before.ViolationCount:N0}; after: {after.ViolationCount}; audit chains intact: {(auditOk ? "yes" : "NO")}");
        }
        var ok = after.ViolationCount == 0 && auditOk && final.Failed == 0;
        if (noServe || !ok) return ok ? 0 : 1;

        var app = DomicileServer.Build(deployment, new ServerOptions { Urls = urls, Migrator = migrator });
        try
        {
            await app.StartAsync(ct);
        }
        catch (IOException e)
        {
            log.WriteLine($"domicile demo: cannot listen on {urls} ({e.Message}); the deployment is ready in {root}: serve it with");
            log.WriteLine($"  dotnet run --project src/Domicile.Cli -- serve --config {Path.Combine(dir, "domicile.yaml")} --unseal-with {Path.Combine(dir, "shares")} --urls http://127.0.0.1:8081");
            return 1;
        }
        log.WriteLine($"serving the dashboards and the API at {urls} (Ctrl+C to stop)");
        log.WriteLine($"  privacy dashboard: {urls}/  (sign in as asha@example.in / \"{DemoSeeder.Password}\")");
        log.WriteLine($"  operator console:  {urls}/console  (admin token in {Path.Combine(dir, "admin.token")})");
        await app.WaitForShutdownAsync(ct);
        return 0;
    }

    /// <summary>Users of many countries, all imported into cn-beijing as the old single data centre held them.</summary>
    static async Task SeedAsync(Deployment old, int userCount, CancellationToken ct)
    {
        var beijing = old.Region("cn-beijing");
        var hash = await PasswordHasher.HashAsync(DemoSeeder.Password); // one hash for every demo user: seeding 10,000 Argon2 hashes would take minutes
        var seeded = 0;
        var seedTask = Task.Run(async () =>
        {
            var now = DateTimeOffset.UtcNow;
            await Parallel.ForEachAsync(Enumerable.Range(0, userCount), new ParallelOptions { MaxDegreeOfParallelism = 4, CancellationToken = ct }, async (n, c) =>
            {
                await beijing.ImportUserAsync(DemoSeeder.User(n, hash, now), UserStates.Active, "legacy-import", c);
                Interlocked.Increment(ref seeded);
            });
        }, ct);
        await ProgressView.RunAsync($"2/6 seeding {userCount:N0} users of {DemoSeeder.CountryCount} countries into cn-beijing", () =>
            Task.FromResult(((long)Volatile.Read(ref seeded), (long)userCount, 0L, 0L, seedTask.IsCompleted, 0)), ct);
        await seedTask;
    }

    static JsonNode Report(ResidencyReport report) =>
        JsonNode.Parse(System.Text.Json.JsonSerializer.Serialize(report, WireJson.Default.ResidencyReport))!;

    /// <summary>A fresh folder: an earlier demo there is replaced; anything else is left alone.</summary>
    static void Prepare(string root)
    {
        if (Directory.Exists(root) && Directory.EnumerateFileSystemEntries(root).Any())
        {
            if (!File.Exists(Path.Combine(root, Marker)))
                throw new UsageException($"--dir: '{root}' exists and is not an earlier demo; give a new folder");
            Directory.Delete(root, recursive: true);
        }
        Directory.CreateDirectory(root);
        File.WriteAllText(Path.Combine(root, Marker), "created by 'domicile demo'; the next demo run in this folder replaces it\n");
    }

    static void WriteSecret(string path, string value)
    {
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using var w = new StreamWriter(path, System.Text.Encoding.ASCII, options);
        w.WriteLine(value);
    }
}
