using System.Text.Json.Nodes;

namespace Domicile.Bench;

/// <summary>The human table: each figure, its target, and whether it holds.</summary>
public static class Report
{
    static readonly (string Id, string Path, string Measure, string Target, Func<double, bool> Holds)[] Rows =
    [
        ("P1", "sqlite", "vault writes / plain inserts, SQLite", "≥ 0.7×", r => r >= 0.7),
        ("P1", "postgres", "vault writes / plain inserts, PostgreSQL", "≥ 0.7×", r => r >= 0.7),
        ("P2", "", "HTTP GET 1 KiB / bare Kestrel (64 connections)", "≥ 0.35×", r => r >= 0.35),
        ("P3", "", "migration / plain copy, items/s", "≥ 0.5×", r => r >= 0.5),
        ("P4", "", "vault writes / pgcrypto pgp_sym_encrypt", "≥ 3×", r => r >= 3),
        ("P5", "", "throughput, large store / small store", "≥ 0.75×", r => r >= 0.75),
    ];

    public static void Table(TextWriter w, JsonObject results, bool quick)
    {
        w.WriteLine($"Domicile benchmarks ({(quick ? "quick" : "full")} sizes), {Environment.ProcessorCount} cores, {Environment.OSVersion}");
        w.WriteLine($"{"id",-4} {"measure",-50} {"ours/s",12} {"baseline/s",12} {"ratio",8} {"target",8}  ok");
        foreach (var (id, path, measure, target, holds) in Rows)
        {
            var node = results[id];
            if (node is null) continue;
            if (path.Length > 0) node = node[path];
            if (node?["ratio"] is not { } ratio)
            {
                w.WriteLine($"{id,-4} {measure,-50} {"",12} {"",12} {"—",8} {target,8}  {node?["error"]}");
                continue;
            }
            var r = (double)ratio;
            w.WriteLine($"{id,-4} {measure,-50} {(double)node["ours_per_s"]!,12:N0} {(double)node["baseline_per_s"]!,12:N0} {r,8:N2} {target,8}  {(holds(r) ? "yes" : "NO")}");
        }
        foreach (var engine in new[] { "sqlite", "postgres" })
            if (results["P1"]?[engine]?["schema_floor_ratio"] is { } floor)
                w.WriteLine($"P1   {engine}: raw inserts into the vault's table shape / plain inserts: {(double)floor:N2} (the schema's own cost; no target)");
        if (results["P2"]?["p99_ms"] is { } p99) w.WriteLine($"P2   p99 latency at 64 connections: {(double)p99:N2} ms (target ≤ 10 ms)  {((double)p99 <= 10 ? "yes" : "NO")}");
        if (results["P5"]?["rss_mb"] is { } rss) w.WriteLine($"P5   process RSS: {(double)rss:N0} MB (target ≤ 300 MB)  {((double)rss <= 300 ? "yes" : "NO")}");
        if (results["P6"]?["seconds"] is { } s) w.WriteLine($"P6   last unseal share → serving: {(double)s:N3} s (target ≤ 1 s)  {((double)s <= 1 ? "yes" : "NO")}");
    }
}
