using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace Domicile.Tests.Support;

/// <summary>
/// A throwaway PostgreSQL cluster for the whole test run: initdb into a temp folder, a random
/// loopback port, started as the <c>postgres</c> OS user when the tests run as root, and
/// removed when the process exits. Nothing is mocked.
/// </summary>
public sealed class PostgresServer
{
    static readonly Lazy<PostgresServer> Shared = new(Start, LazyThreadSafetyMode.ExecutionAndPublication);
    static int _databases;

    readonly string _dir;
    readonly string _bin;
    readonly bool _asPostgresUser;

    PostgresServer(string dir, string bin, int port, bool asPostgresUser)
    {
        _dir = dir;
        _bin = bin;
        Port = port;
        _asPostgresUser = asPostgresUser;
    }

    public static PostgresServer Instance => Shared.Value;
    public int Port { get; }
    public string DataDirectory => Path.Combine(_dir, "data");

    /// <summary>A connection string for a database no test has used yet (the store creates it).</summary>
    public string NewDatabase(string prefix = "region")
    {
        var n = Interlocked.Increment(ref _databases);
        return $"Host=127.0.0.1;Port={Port};Username=postgres;Database={prefix}_{Environment.ProcessId}_{n};Pooling=true;Maximum Pool Size=20";
    }

    public string AdminConnectionString => $"Host=127.0.0.1;Port={Port};Username=postgres;Database=postgres;Pooling=false";

    /// <summary>Forces dirty pages to disk so a scan of the data directory sees what was written.</summary>
    public async Task CheckpointAsync()
    {
        await using var c = new NpgsqlConnection(AdminConnectionString);
        await c.OpenAsync();
        await using var cmd = new NpgsqlCommand("CHECKPOINT", c);
        await cmd.ExecuteNonQueryAsync();
    }

    static PostgresServer Start()
    {
        var bin = FindBin() ?? throw new InvalidOperationException(
            "PostgreSQL server binaries were not found (looked for /usr/lib/postgresql/*/bin/initdb). Install them with 'apt-get install postgresql' or run ./test.sh, which does it.");
        var asPostgres = Environment.UserName == "root";
        // A killed run's postmaster outlives it: stop it before its folder goes, or the space stays taken.
        AbandonedFolders.Remove("domicile-pg-", old =>
        {
            var pidFile = Path.Combine(old, "data", "postmaster.pid");
            if (File.Exists(pidFile) && int.TryParse(File.ReadLines(pidFile).FirstOrDefault(), out var postmaster) && AbandonedFolders.Alive(postmaster))
            {
                try
                {
                    Run(Path.Combine(bin, "pg_ctl"), $"-D {Path.Combine(old, "data")} -m immediate -w stop", asPostgres);
                }
                catch (InvalidOperationException)
                {
                }
            }
        });
        var dir = Path.Combine(Path.GetTempPath(), $"domicile-pg-{Environment.ProcessId}-{Guid.NewGuid():N}"[..40]);
        Directory.CreateDirectory(dir);
        if (asPostgres)
        {
            Run("chown", $"postgres {dir}", asUser: false);
            Run("chmod", $"700 {dir}", asUser: false);
        }
        var data = Path.Combine(dir, "data");
        Run(Path.Combine(bin, "initdb"), $"-D {data} -U postgres --auth=trust -E UTF8 --no-sync", asPostgres);
        var port = Ports.OutsideEphemeral();
        var server = new PostgresServer(dir, bin, port, asPostgres);
        Run(Path.Combine(bin, "pg_ctl"),
            $"-D {data} -l {Path.Combine(dir, "log.txt")} -w -t 60 -o \"-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=300\" start", asPostgres);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => server.Stop();
        return server;
    }

    void Stop()
    {
        try
        {
            Run(Path.Combine(_bin, "pg_ctl"), $"-D {DataDirectory} -m immediate -w stop", _asPostgresUser);
        }
        catch (InvalidOperationException)
        {
            // Already gone; the folder is removed below either way.
        }
        AbandonedFolders.Delete(_dir);
    }

    static string? FindBin() =>
        Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql")
                .Select(d => Path.Combine(d, "bin"))
                .Where(b => File.Exists(Path.Combine(b, "initdb")))
                .OrderByDescending(b => int.TryParse(Path.GetFileName(Path.GetDirectoryName(b)), out var v) ? v : 0)
                .FirstOrDefault()
            : null;

    static void Run(string file, string args, bool asUser)
    {
        var psi = asUser
            ? new ProcessStartInfo("runuser", $"-u postgres -- {file} {args}")
            : new ProcessStartInfo(file, args);
        psi.RedirectStandardOutput = true;
        psi.RedirectStandardError = true;
        psi.WorkingDirectory = "/tmp";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"{Path.GetFileName(file)} failed ({p.ExitCode}): {stderr}{stdout.Result}");
    }
}
