using System.CommandLine;
using System.Text;
using System.Text.Json.Nodes;

namespace Domicile.Cli;

/// <summary>Operational commands: they talk to a running server.</summary>
internal static class OpsCommands
{
    static Option<string> RegionOption() => new("--region") { Description = "Region id", Required = true };

    public static IEnumerable<Command> Create(CliOutput output)
    {
        yield return Unseal(output);
        yield return Seal(output);
        yield return Status(output);
        yield return Report(output);
        yield return Audit(output);
        yield return Keys(output);
        yield return Operators(output);
        yield return Retention(output);
        yield return BackupCommand(output);
        yield return RestoreCommand(output);
    }

    static Command Retention(CliOutput output)
    {
        var run = new Command("run", "One retention sweep now; prints what was deleted per service");
        run.SetAction(async (parse, ct) =>
        {
            using var client = ServerClient.From(parse);
            var answer = await client.PostJsonAsync("/v1/sys/retention/run", null, ct);
            if (parse.GetValue(Cli.JsonOption)) { output.Json(answer); return 0; }
            output.Out.WriteLine($"{"region",-16} {"service",-18} {"messages",9} {"items",9} {"withdrawn",10}");
            foreach (var r in answer["regions"]!.AsArray())
                foreach (var (svc, counts) in r!["services"]!.AsObject())
                    output.Out.WriteLine($"{(string?)r["id"],-16} {svc,-18} {(long)counts!["messages"]!,9} {(long)counts["items"]!,9} {(long)counts["withdrawn_users"]!,10}");
            return 0;
        });
        return new Command("retention", "Retention of data past its limits") { run };
    }

    // Backup and restore work on the region's store directly (no keys needed, none written).
    static Command BackupCommand(CliOutput output)
    {
        var region = RegionOption();
        var outFile = new Option<string>("--out") { Description = "File to write (gzip'd JSON Lines)", Required = true };
        var command = new Command("backup", "Data backup of a region, without data keys") { region, outFile };
        command.SetAction(async (parse, ct) =>
        {
            await using var deployment = Deployment.Open(Cli.LoadConfig(parse), parse.GetValue(region));
            await deployment.CheckSchemasAsync(ct);
            var path = parse.GetValue(outFile)!;
            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            BackupResult result;
            try
            {
                await using var file = new FileStream(path, options);
                result = await Backup.WriteAsync(deployment.Region(parse.GetValue(region)!), file, ct);
            }
            catch (IOException e) when (File.Exists(path) && e is not EndOfStreamException)
            {
                throw new UsageException($"--out: '{path}' already exists; choose a new file name");
            }
            if (parse.GetValue(Cli.JsonOption)) output.Json(new JsonObject { ["region"] = result.Region, ["users"] = result.Users, ["rows"] = result.Rows, ["file"] = path });
            else output.Out.WriteLine($"{result.Region}: {result.Users} users, {result.Rows} rows written to {path} (no data keys inside)");
            return 0;
        });
        return command;
    }

    static Command RestoreCommand(CliOutput output)
    {
        var region = RegionOption();
        var from = new Option<string>("--from") { Description = "Backup file written by 'domicile backup'", Required = true };
        var command = new Command("restore", "Restore a region's data from a backup, against its current keys") { region, from };
        command.SetAction(async (parse, ct) =>
        {
            var path = parse.GetValue(from)!;
            if (!File.Exists(path)) throw new UsageException($"--from: '{path}' does not exist");
            await using var deployment = Deployment.Open(Cli.LoadConfig(parse), parse.GetValue(region));
            await deployment.CheckSchemasAsync(ct);
            await using var file = File.OpenRead(path);
            var result = await Backup.RestoreAsync(deployment.Region(parse.GetValue(region)!), file, "cli", ct);
            if (parse.GetValue(Cli.JsonOption))
                output.Json(new JsonObject { ["region"] = result.Region, ["restored_users"] = result.RestoredUsers, ["skipped_users"] = result.SkippedUsers, ["rows"] = result.Rows });
            else output.Out.WriteLine($"{result.Region}: {result.RestoredUsers} users restored; {result.SkippedUsers} skipped (erased since the backup: their keys are gone)");
            return 0;
        });
        return command;
    }

    static Command Unseal(CliOutput output)
    {
        var region = RegionOption();
        var shareFile = new Option<string?>("--share-file") { Description = "File holding your share (otherwise you are prompted; nothing is echoed)" };
        var command = new Command("unseal", "Submit one custodian share to a sealed region") { region, shareFile };
        command.SetAction(async (parse, ct) =>
        {
            string share;
            if (parse.GetValue(shareFile) is { } file)
            {
                if (!File.Exists(file)) throw new UsageException($"--share-file: '{file}' does not exist");
                share = (await File.ReadAllTextAsync(file, ct)).Trim();
            }
            else
            {
                share = ReadSecret(output, $"Share for {parse.GetValue(region)}: ");
            }
            using var client = ServerClient.From(parse, needsToken: false);
            var answer = await client.PostJsonAsync("/v1/sys/unseal", new JsonObject { ["region"] = parse.GetValue(region), ["share"] = share }, ct);
            if (parse.GetValue(Cli.JsonOption)) output.Json(answer);
            else
            {
                var sealedNow = (bool)answer["sealed"]!;
                output.Out.WriteLine($"{answer["region"]}: {answer["progress"]}/{answer["threshold"]} shares; {(sealedNow ? "still sealed" : "unsealed, serving")}");
            }
            return 0;
        });
        return command;
    }

    static string ReadSecret(CliOutput output, string prompt)
    {
        output.Error.Write(prompt);
        if (Console.IsInputRedirected) return (Console.ReadLine() ?? "").Trim();
        var sb = new StringBuilder();
        while (true)
        {
            var key = Console.ReadKey(intercept: true);
            if (key.Key == ConsoleKey.Enter) break;
            if (key.Key == ConsoleKey.Backspace) { if (sb.Length > 0) sb.Length--; continue; }
            sb.Append(key.KeyChar);
        }
        output.Error.WriteLine();
        return sb.ToString().Trim();
    }

    static Command Seal(CliOutput output)
    {
        var region = RegionOption();
        var command = new Command("seal", "Wipe a region's keys from memory; it refuses data requests until unsealed") { region };
        command.SetAction(async (parse, ct) =>
        {
            using var client = ServerClient.From(parse);
            var answer = await client.PostJsonAsync("/v1/sys/seal", new JsonObject { ["region"] = parse.GetValue(region) }, ct);
            if (parse.GetValue(Cli.JsonOption)) output.Json(answer);
            else output.Out.WriteLine($"{parse.GetValue(region)}: sealed");
            return 0;
        });
        return command;
    }

    static Command Status(CliOutput output)
    {
        var command = new Command("status", "Regions, sealed or not, users per region, running migrations");
        command.SetAction(async (parse, ct) =>
        {
            using var client = ServerClient.From(parse);
            var answer = await client.GetJsonAsync("/v1/sys/status", ct);
            if (parse.GetValue(Cli.JsonOption)) { output.Json(answer); return 0; }
            output.Out.WriteLine($"{"region",-20} {"state",-9} {"users",10}");
            foreach (var r in answer["regions"]!.AsArray())
                output.Out.WriteLine($"{(string?)r!["id"],-20} {((bool)r["sealed"]! ? "sealed" : "unsealed"),-9} {(long)r["users"]!,10}");
            var migrations = answer["migrations"]!.AsArray();
            output.Out.WriteLine(migrations.Count == 0 ? "no migrations running" : $"{migrations.Count} migration(s):");
            foreach (var m in migrations) output.Out.WriteLine($"  {m!["id"]} {m["state"]} {m["done"]}/{m["total"]}");
            return 0;
        });
        return command;
    }

    static Command Report(CliOutput output)
    {
        var residency = new Command("residency", "Users, items and bytes per region and jurisdiction; exit 1 on any violation");
        residency.SetAction(async (parse, ct) =>
        {
            using var client = ServerClient.From(parse);
            var answer = await client.GetJsonAsync("/v1/sys/residency", ct);
            var count = (long)answer["violation_count"]!;
            if (parse.GetValue(Cli.JsonOption)) output.Json(answer);
            else ResidencyText.Write(output.Out, answer);
            return count > 0 ? 1 : 0;
        });
        return new Command("report", "Reports for operators and auditors") { residency };
    }

    static Command Audit(CliOutput output)
    {
        var region = RegionOption();
        var checkpoint = new Option<string?>("--checkpoint") { Description = "An entry hash published earlier: it must still be on the chain" };
        var verify = new Command("verify", "Recompute a region's audit chain; exit 1 on any break") { region, checkpoint };
        verify.SetAction(async (parse, ct) =>
        {
            using var client = ServerClient.From(parse);
            var path = $"/v1/sys/audit/{Uri.EscapeDataString(parse.GetValue(region)!)}/verify";
            if (parse.GetValue(checkpoint) is { } cp) path += "?checkpoint=" + Uri.EscapeDataString(cp);
            var answer = await client.GetJsonAsync(path, ct);
            var ok = (bool)answer["ok"]!;
            if (parse.GetValue(Cli.JsonOption)) output.Json(answer);
            else output.Out.WriteLine(ok
                ? $"{answer["region"]}: audit chain intact, {answer["entries"]} entries"
                : $"{answer["region"]}: audit chain BROKEN at entry {answer["first_bad_seq"]}: {answer["problem"]}");
            return ok ? 0 : 1;
        });
        var region2 = RegionOption();
        var export = new Command("export", "The audit log as JSON Lines on stdout") { region2 };
        export.SetAction(async (parse, ct) =>
        {
            using var client = ServerClient.From(parse);
            await using var stream = await client.GetStreamAsync($"/v1/sys/audit/{Uri.EscapeDataString(parse.GetValue(region2)!)}/export", ct);
            using var reader = new StreamReader(stream);
            while (await reader.ReadLineAsync(ct) is { } line) await output.Out.WriteLineAsync(line);
            return 0;
        });
        return new Command("audit", "Check or export a region's hash-chained audit log") { verify, export };
    }

    static Command Keys(CliOutput output)
    {
        var region = RegionOption();
        var rotate = new Command("rotate", "New KEK version; re-wraps every DEK online; destroys the old version once unused") { region };
        rotate.SetAction(async (parse, ct) =>
        {
            using var client = ServerClient.From(parse);
            output.Error.WriteLine($"rotating the KEK of {parse.GetValue(region)}…");
            var answer = await client.PostJsonAsync($"/v1/sys/keys/{Uri.EscapeDataString(parse.GetValue(region)!)}/rotate", null, ct);
            if (parse.GetValue(Cli.JsonOption)) output.Json(answer);
            else output.Out.WriteLine($"{answer["region"]}: KEK version {answer["new_version"]}; {answer["rewrapped"]} data keys re-wrapped; destroyed versions: {string.Join(", ", answer["destroyed_versions"]!.AsArray())}");
            return 0;
        });
        return new Command("keys", "Key management") { rotate };
    }

    static Command Operators(CliOutput output)
    {
        var name = new Option<string>("--name") { Description = "Who the credential is for", Required = true };
        var role = new Option<string>("--role") { Description = "admin, custodian, auditor, support or sender", Required = true };
        var create = new Command("create", "Create an operator credential (admin only); prints its token once") { name, role };
        create.SetAction(async (parse, ct) =>
        {
            using var client = ServerClient.From(parse);
            var answer = await client.PostJsonAsync("/v1/sys/operators", new JsonObject { ["name"] = parse.GetValue(name), ["role"] = parse.GetValue(role) }, ct);
            if (parse.GetValue(Cli.JsonOption)) output.Json(answer);
            else output.Out.WriteLine($"{answer["id"]} ({answer["role"]}) token: {answer["token"]}");
            return 0;
        });
        return new Command("operator", "Operator credentials") { create };
    }
}

internal static class ResidencyText
{
    public static void Write(TextWriter w, JsonNode report)
    {
        w.WriteLine($"{"region",-16} {"jurisdiction",-12} {"users",10} {"items",12} {"bytes",14}");
        foreach (var r in report["regions"]!.AsArray())
        {
            foreach (var (cc, counts) in r!["jurisdictions"]!.AsObject())
                w.WriteLine($"{(string?)r["id"],-16} {cc,-12} {(long)counts!["users"]!,10} {(long)counts["items"]!,12} {(long)counts["bytes"]!,14}");
            w.WriteLine($"{(string?)r["id"],-16} {"all",-12} {(long)r["users"]!,10} {(long)r["items"]!,12} {(long)r["bytes"]!,14}");
        }
        var count = (long)report["violation_count"]!;
        w.WriteLine(count == 0 ? "violations: none" : $"violations: {count} user(s) stored outside the regions their jurisdiction allows");
    }
}
