using System.Text.Json;
using System.Text.Json.Nodes;
using Domicile.Bench;

// dotnet run -c Release --project bench/Domicile.Bench -- [--quick] [--json] [--only P1,P2] [--engines sqlite,postgres]
var quick = args.Contains("--quick");
var json = args.Contains("--json");
var only = args.SkipWhile(a => a != "--only").Skip(1).FirstOrDefault()?.Split(',').ToHashSet(StringComparer.OrdinalIgnoreCase);
var engines = args.SkipWhile(a => a != "--engines").Skip(1).FirstOrDefault()?.Split(',') ?? ["sqlite", "postgres"];
var bench = new Benchmarks(quick ? Sizes.Quick : Sizes.Full, Console.Error) { Engines = engines };
var results = new JsonObject();
var started = DateTime.UtcNow;
foreach (var (id, run) in bench.All())
{
    if (only is not null && !only.Contains(id)) continue;
    Console.Error.WriteLine($"== {id}");
    try
    {
        results[id] = await run();
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
