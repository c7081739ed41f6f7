using System.CommandLine;
using Domicile.Server;
using Microsoft.Extensions.Hosting;

namespace Domicile.Cli;

internal static class ServeCommand
{
    public static Command Create(CliOutput output)
    {
        var urls = new Option<string>("--urls") { Description = "Where to listen", DefaultValueFactory = _ => "http://127.0.0.1:8080" };
        var region = new Option<string?>("--region") { Description = "Serve only this region (multi-node mode)" };
        var unsealWith = new Option<string?>("--unseal-with") { Description = "DEVELOPMENT ONLY: unseal from an 'init --shares-out' folder" };
        var command = new Command("serve", "Serve the HTTP API (and the web pages); regions start sealed") { urls, region, unsealWith };
        command.SetAction(async (parse, ct) =>
        {
            var config = Cli.LoadConfig(parse);
            await using var deployment = Deployment.Open(config, parse.GetValue(region));
            await deployment.CheckSchemasAsync(ct);
            if (parse.GetValue(unsealWith) is { } dir) await UnsealFromFolderAsync(deployment, dir, output, ct);
            var app = DomicileServer.Build(deployment, new ServerOptions { Urls = parse.GetValue(urls)! });
            await app.StartAsync(ct);
            output.Error.WriteLine($"domicile: serving {string.Join(", ", deployment.Regions.Keys)} on {string.Join(", ", app.Urls)}");
            foreach (var r in deployment.Regions.Values.Where(r => r.IsSealed))
                output.Error.WriteLine($"domicile: region {r.Id} is sealed; custodians unseal it with 'domicile unseal --region {r.Id}'");
            await app.WaitForShutdownAsync(ct);
            return 0;
        });
        return command;
    }

    internal static async Task UnsealFromFolderAsync(Deployment deployment, string dir, CliOutput output, CancellationToken ct)
    {
        output.Error.WriteLine("WARNING: --unseal-with reads custodian shares from disk. That defeats custody: anyone with this");
        output.Error.WriteLine("WARNING: folder can decrypt every region. Use it for development and demos only, never in production.");
        foreach (var r in deployment.Regions.Values)
        {
            var folder = Path.Combine(dir, r.Id);
            if (!Directory.Exists(folder))
                throw new UsageException($"--unseal-with: no folder '{folder}' with shares for region {r.Id}");
            foreach (var file in Directory.GetFiles(folder, "custodian-*.share").Order(StringComparer.Ordinal))
            {
                var progress = await r.SubmitShareAsync(await File.ReadAllTextAsync(file, ct), ct);
                if (!progress.Sealed) break;
            }
            output.Error.WriteLine(r.IsSealed ? $"domicile: region {r.Id} is still sealed: not enough shares in {folder}" : $"domicile: region {r.Id} unsealed");
        }
    }
}
