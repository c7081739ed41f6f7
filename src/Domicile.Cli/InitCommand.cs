using System.CommandLine;
using System.Text.Json.Nodes;

namespace Domicile.Cli;

internal static class InitCommand
{
    public static Command Create(CliOutput output)
    {
        var sharesOut = new Option<string?>("--shares-out") { Description = "Write each custodian's share to DIR/<region>/custodian-<i>.share (mode 0600) instead of printing them" };
        var command = new Command("init", "Create every region's store, schema and root key; print the admin token and the custodian shares")
        {
            sharesOut,
        };
        command.SetAction(async (parse, ct) =>
        {
            var config = Cli.LoadConfig(parse);
            var json = parse.GetValue(Cli.JsonOption);
            var dir = parse.GetValue(sharesOut);
            if (dir is not null && Directory.Exists(dir) && Directory.EnumerateFileSystemEntries(dir).Any())
                throw new UsageException($"--shares-out: '{dir}' is not empty; give a new or empty folder so no share is overwritten");
            await using var deployment = Deployment.Open(config);
            var result = await deployment.InitializeWithAdminAsync(ct: ct,
                onRegion: dir is null ? null : (region, shares) => WriteShares(dir, new Dictionary<string, IReadOnlyList<string>> { [region] = shares }));

            if (json)
            {
                var regions = new JsonArray();
                foreach (var (id, shares) in result.Shares)
                {
                    // SPEC 6.5 requires the shares in the JSON even when they were also written to files.
                    var o = new JsonObject { ["id"] = id, ["shares"] = new JsonArray([.. shares.Select(s => JsonValue.Create(s))]) };
                    if (dir is not null) o["share_files"] = new JsonArray([.. shares.Select((_, i) => JsonValue.Create(ShareFile(dir, id, i + 1)))]);
                    regions.Add(o);
                }
                output.Json(new JsonObject { ["admin_token"] = result.AdminToken, ["regions"] = regions });
                return 0;
            }
            output.Out.WriteLine($"Initialised {result.Shares.Count} region(s): {string.Join(", ", result.Shares.Keys)}. Every region starts sealed.");
            output.Out.WriteLine();
            output.Out.WriteLine("Admin token (shown once; keep it secret):");
            output.Out.WriteLine($"  {result.AdminToken}");
            output.Out.WriteLine();
            var threshold = config.Custody.Threshold;
            foreach (var (id, shares) in result.Shares)
            {
                output.Out.WriteLine($"Region {id}: {shares.Count} custodian shares, any {threshold} unseal it.");
                for (var i = 0; i < shares.Count; i++)
                    output.Out.WriteLine(dir is null ? $"  custodian {i + 1}: {shares[i]}" : $"  custodian {i + 1}: {ShareFile(dir, id, i + 1)}");
            }
            output.Out.WriteLine();
            output.Out.WriteLine("Hand each share to a different custodian. Domicile keeps none of them: lose more than "
                + $"{config.Custody.Shares - threshold} and the region's data is gone for good.");
            return 0;
        });
        return command;
    }

    static string ShareFile(string dir, string region, int index) => Path.Combine(dir, region, $"custodian-{index}.share");

    internal static void WriteShares(string dir, IReadOnlyDictionary<string, IReadOnlyList<string>> shares)
    {
        foreach (var (region, list) in shares)
        {
            var folder = Path.Combine(dir, region);
            Directory.CreateDirectory(folder);
            if (!OperatingSystem.IsWindows())
                File.SetUnixFileMode(folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            for (var i = 0; i < list.Count; i++)
            {
                var path = ShareFile(dir, region, i + 1);
                var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
                if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
                using var w = new StreamWriter(path, System.Text.Encoding.ASCII, options);
                w.WriteLine(list[i]);
            }
        }
    }
}
