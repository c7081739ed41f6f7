using System.CommandLine;
using System.Text.Json.Nodes;

namespace Domicile.Cli;

internal static class MigrateCommand
{
    public static Command Create(CliOutput output)
    {
        var jurisdiction = new Option<string?>("--jurisdiction") { Description = "Move every user of this country (ISO 3166-1 alpha-2)" };
        var user = new Option<string?>("--user") { Description = "Move one user (user id)" };
        var to = new Option<string>("--to") { Description = "Destination region", Required = true };
        var dryRun = new Option<bool>("--dry-run") { Description = "Print the plan; move nothing" };
        var wait = new Option<bool>("--wait") { Description = "Show progress and end with the summary" };
        var command = new Command("migrate", "Move users between regions, live, verified, leaving nothing behind") { jurisdiction, user, to, dryRun, wait };
        command.SetAction(async (parse, ct) =>
        {
            var cc = parse.GetValue(jurisdiction);
            var id = parse.GetValue(user);
            if ((cc is null) == (id is null)) throw new UsageException("give exactly one of --jurisdiction CC or --user ID");
            using var client = ServerClient.From(parse);
            var json = parse.GetValue(Cli.JsonOption);
            var body = new JsonObject { ["jurisdiction"] = cc, ["user_id"] = id, ["to"] = parse.GetValue(to), ["dry_run"] = parse.GetValue(dryRun) };
            var started = DateTime.UtcNow;
            var answer = await client.PostJsonAsync("/v1/sys/migrations", body, ct);
            if (parse.GetValue(dryRun))
            {
                if (json) output.Json(answer);
                else
                {
                    output.Out.WriteLine($"plan: {answer["total"]} user(s) to {answer["to"]}");
                    foreach (var g in answer["users"]!.AsArray().GroupBy(u => (string)u!["from"]!))
                        output.Out.WriteLine($"  from {g.Key}: {g.Count()}");
                }
                return 0;
            }
            var migration = (string)answer["id"]!;
            if (!parse.GetValue(wait))
            {
                if (json) output.Json(answer);
                else output.Out.WriteLine($"{migration} started: {answer["total"]} user(s) to {parse.GetValue(to)}; follow it with 'domicile status'");
                return 0;
            }
            var final = await ProgressView.RunAsync("migrating", async () =>
            {
                var s = await client.GetJsonAsync($"/v1/sys/migrations/{migration}", ct);
                var state = (string)s["state"]!;
                return ((long)s["done"]!, (long)s["total"]!, (long)s["items"]!, (long)s["bytes"]!, state is "done" or "failed", s);
            }, ct);
            var summary = Summary(final, (DateTime.UtcNow - started).TotalSeconds);
            if (json) output.Json(summary);
            else WriteSummary(output, summary);
            return (long)final["failed"]! > 0 ? 1 : 0;
        });
        return command;
    }

    internal static JsonObject Summary(JsonNode s, double seconds) => new()
    {
        ["id"] = (string?)s["id"],
        ["users"] = (long)s["users"]!,
        ["items"] = (long)s["items"]!,
        ["bytes"] = (long)s["bytes"]!,
        ["verified"] = (bool)s["verified"]!,
        ["failed"] = (long)s["failed"]!,
        ["seconds"] = Math.Round(seconds, 3),
        ["certificate"] = (string?)s["certificate"],
    };

    internal static void WriteSummary(CliOutput output, JsonObject s)
    {
        output.Out.WriteLine($"migration {s["id"]}: {s["users"]} users, {s["items"]} items, {(long)s["bytes"]! / 1048576.0:N1} MiB in {s["seconds"]} s; "
            + $"verified: {((bool)s["verified"]! ? "yes" : "NO")}; failed: {s["failed"]}");
        output.Out.WriteLine($"certificate (JWS, check it against /.well-known/jwks.json): {s["certificate"]}");
    }
}
