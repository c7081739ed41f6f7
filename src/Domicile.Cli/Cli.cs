using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Domicile.Config;

namespace Domicile.Cli;

/// <summary>
/// The <c>domicile</c> command. Exit codes: 0 success, 1 the operation failed or a check found a
/// violation, 2 usage error. Results go to stdout (one JSON document with <c>--json</c>);
/// progress and logs go to stderr.
/// </summary>
public static class Cli
{
    internal static readonly Option<string?> ConfigOption = new("--config") { Description = "Path to domicile.yaml (default: ./domicile.yaml, else the built-in demo policy)", Recursive = true };
    internal static readonly Option<bool> JsonOption = new("--json") { Description = "Print one JSON document to stdout instead of text", Recursive = true };

    internal static readonly JsonSerializerOptions JsonOut = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static async Task<int> RunAsync(string[] args, TextWriter? stdout = null, TextWriter? stderr = null)
    {
        var output = new CliOutput(stdout ?? Console.Out, stderr ?? Console.Error);
        var root = new RootCommand("Domicile: each person's data in their own country, with consent, for no longer than needed.");
        root.Options.Add(ConfigOption);
        root.Options.Add(JsonOption);
        root.Options.Add(ServerClient.ServerOption);
        root.Options.Add(ServerClient.TokenOption);
        root.Subcommands.Add(InitCommand.Create(output));
        root.Subcommands.Add(ServeCommand.Create(output));
        foreach (var c in OpsCommands.Create(output)) root.Subcommands.Add(c);
        root.Subcommands.Add(DemoCommand.Create(output));
        root.Subcommands.Add(MigrateCommand.Create(output));

        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var e in parse.Errors) output.Error.WriteLine($"domicile: {e.Message}");
            output.Error.WriteLine("Run 'domicile --help' to see the commands and their options.");
            return 2;
        }
        try
        {
            return await parse.InvokeAsync(new InvocationConfiguration { Output = output.Out, Error = output.Error, EnableDefaultExceptionHandler = false });
        }
        catch (ConfigException e)
        {
            output.Error.WriteLine($"domicile: the configuration is not usable: {e.Message}");
            return 2;
        }
        catch (UsageException e)
        {
            output.Error.WriteLine($"domicile: {e.Message}");
            return 2;
        }
        catch (DomicileException e)
        {
            output.Error.WriteLine($"domicile: {e.Message} ({e.Code})");
            return 1;
        }
        catch (Store.StoreException e)
        {
            output.Error.WriteLine($"domicile: {e.Message}");
            return 1;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The type only: a message could carry data we must not print.
            output.Error.WriteLine($"domicile: the command failed unexpectedly ({e.GetType().Name}); nothing more is shown to avoid printing data");
            return 1;
        }
    }

    internal static DomicileConfig LoadConfig(ParseResult parse) => ConfigLoader.Load(parse.GetValue(ConfigOption));
}

/// <summary>A mistake in how the command was called; the message says what to do instead.</summary>
public sealed class UsageException(string message) : Exception(message);

public sealed class CliOutput(TextWriter @out, TextWriter error)
{
    public TextWriter Out { get; } = @out;
    public TextWriter Error { get; } = error;

    public void Json(JsonNode node) => Out.WriteLine(node.ToJsonString(Cli.JsonOut));
}
