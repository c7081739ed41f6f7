using System.Text.Json;
using System.Text.Json.Nodes;
using Domicile.Bench;

// dotnet run -c Release --project bench/Domicile.Bench -- [--quick] [--json] [--only P1,P2] [--engines sqlite,postgres] [--large-users N]
var quick = args.Contains("--quick");
var json = args.Contains("--json");
var only = args.SkipWhile(a => a != "--only").Skip(1).FirstOrDefault()?.Split(',').ToHashSet(StringComparer.OrdinalIgnoreCase);
var engines = args.SkipWhile(a => a != "--engines").Skip(1).FirstOrDefault()?.Split(',') ?? ["sqlite", "postgres"];
var sizes = quick ? Sizes.Quick : Sizes.Full;
// P5's large store at another size, to look into how cost grows with it (the figure's own size is SPEC 7's).
if (args.SkipWhile(a => a != "--large-users").Skip(1).FirstOrDefault() is { } large) sizes = sizes with { LargeUsers = int.Parse(large, System.Globalization.CultureInfo.InvariantCulture) };
var bench = new Benchmarks(sizes, Console.Error) { Engines = engines };
var results = new JsonObject();
var started = DateTime.UtcNow;
foreach (var (id, run) in bench.All())
{
    if (only is not null && !only.Contains(id)) continue;
    Console.Error.WriteLine($"== {id}");
    try
    {
        // P5 reports the server's memory: in a process of its own, it is not the heap that the
        // figures before it left behind (315 MB instead of about 200 in a full run, measured).
        results[id] = id == "P5" && (only is null || only.Count > 1) ? await AloneAsync(id) : await run();
    }
    catch (Exception e) when (e is not OutOfMemoryException)
    {
        results[id] = new JsonObject { ["error"] = $"{e.GetType().Name}: {e.Message}" };
    }
    Benchmarks.CleanUp();
}
Console.Error.WriteLine($"all figures in {(DateTime.UtcNow - started).TotalSeconds:N0} s ({(quick ? "quick" : "full")} sizes)");
if (json)
{
    Console.WriteLine(results.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
}
else
{
    Report.Table(Console.Out, results, quick);
}
return 0;

async Task<JsonNode?> AloneAsync(string id)
{
    var self = Environment.ProcessPath!;
    var start = new System.Diagnostics.ProcessStartInfo(self) { RedirectStandardOutput = true };
    if (Path.GetFileNameWithoutExtension(self) == "dotnet") start.ArgumentList.Add(typeof(Benchmarks).Assembly.Location);
    foreach (var a in (string[])["--only", id, "--json", "--engines", string.Join(',', engines), "--large-users", sizes.LargeUsers.ToString(System.Globalization.CultureInfo.InvariantCulture)]) start.ArgumentList.Add(a);
    if (quick) start.ArgumentList.Add("--quick");
    using var child = System.Diagnostics.Process.Start(start)!;
    var output = await child.StandardOutput.ReadToEndAsync();
    await child.WaitForExitAsync();
    return JsonNode.Parse(output)?[id]?.DeepClone() ?? throw new InvalidOperationException($"{id} in a process of its own printed no figure (exit code {child.ExitCode})");
}
