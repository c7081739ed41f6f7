using System.CommandLine;

namespace Domicile.Cli;

internal static class DemoCommand
{
    public static Command Create(CliOutput output)
    {
        var users = new Option<int>("--users") { Description = "How many users to seed", DefaultValueFactory = _ => 10_000 };
        var dir = new Option<string>("--dir") { Description = "Folder of the demo deployment", DefaultValueFactory = _ => "domicile-demo" };
        var noServe = new Option<bool>("--no-serve") { Description = "Stop after the report instead of serving the dashboards" };
        var command = new Command("demo", "The whole story on the embedded default: seed, show violations, migrate, verify, serve") { users, dir, noServe };
        command.SetAction(_ =>
        {
            output.Error.WriteLine("domicile demo: not available yet. The demo arrives with live migration (issue 5);");
            output.Error.WriteLine("until then, use 'domicile init' to create a deployment and './test.sh' to see the engine at work.");
            return 2;
        });
        return command;
    }
}
