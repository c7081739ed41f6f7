using System.Collections.Concurrent;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Domicile.Server;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;

namespace Domicile.Tests.Support;

/// <summary>The real server on a random loopback port over a real deployment; its log output is captured.</summary>
public sealed class LiveServer : IAsyncDisposable
{
    readonly WebApplication _app;

    LiveServer(TestDeployment deployment, WebApplication app, LogCapture logs)
    {
        Deployment = deployment;
        _app = app;
        Logs = logs;
        BaseAddress = new Uri(app.Urls.First());
        Http = new HttpClient { BaseAddress = BaseAddress };
    }

    public TestDeployment Deployment { get; }
    public Uri BaseAddress { get; }
    public HttpClient Http { get; }
    public LogCapture Logs { get; }
    public string AdminToken { get; private set; } = "";

    /// <param name="sweepInterval">When set, the YAML gets <c>retention: { sweep_interval: … }</c> (for instance <c>1s</c>), so the server's background sweeper runs that often.</param>
    /// <param name="time">The regions' clock (a <see cref="ManualTime"/> lets a test age data); the server's own timers stay on real time.</param>
    public static async Task<LiveServer> StartAsync(string engine, bool unsealed = true, long maxItemBytes = 64L * 1024 * 1024, int userRps = 0,
        string? sweepInterval = null, TimeProvider? time = null)
    {
        var dir = Engines.TempDir();
        var config = sweepInterval is null
            ? Engines.Config(engine, dir, maxItemBytes: maxItemBytes)
            : Config.ConfigLoader.Parse(Engines.Yaml(engine, dir, maxItemBytes: maxItemBytes) + $"\nretention: {{ sweep_interval: {sweepInterval} }}\n", dir);
        if (userRps > 0) config = WithRps(config, userRps);
        var deployment = Domicile.Deployment.Open(config, time: time);
        var init = await deployment.InitializeWithAdminAsync(stayUnsealed: unsealed);
        var td = new TestDeployment { Deployment = deployment, Shares = init.Shares, Dir = dir };
        var logs = new LogCapture();
        var app = DomicileServer.Build(deployment, new ServerOptions
        {
            Urls = "http://127.0.0.1:0",
            LogLevel = LogLevel.Debug,
            ConsoleLogging = false,
            Logging = b => b.AddProvider(logs),
        });
        await app.StartAsync();
        return new LiveServer(td, app, logs) { AdminToken = init.AdminToken };
    }

    static Config.DomicileConfig WithRps(Config.DomicileConfig c, int rps) => new()
    {
        Regions = c.Regions, Jurisdictions = c.Jurisdictions, Services = c.Services, Custody = c.Custody,
        Limits = c.Limits with { UserRps = rps }, SweepInterval = c.SweepInterval, MigrationUsersPerSecond = c.MigrationUsersPerSecond, BaseDirectory = c.BaseDirectory,
    };

    public HttpClient Client(string? token = null)
    {
        var c = new HttpClient { BaseAddress = BaseAddress };
        if (token is not null) c.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return c;
    }

    /// <summary>Signs up, signs in and (optionally) grants consents through the API; returns (user id, access token, refresh token).</summary>
    public async Task<(string UserId, string Access, string Refresh)> UserAsync(string country = "IN", string? login = null, params string[] consents)
    {
        login ??= $"person-{Guid.NewGuid():N}@example.com";
        var created = await Http.PostAsJsonAsync("/v1/accounts", new { login, password = "correct horse battery", country });
        created.EnsureSuccessStatusCode();
        var tokens = await Json(await Http.PostAsJsonAsync("/v1/auth/token", new { grant_type = "password", login, password = "correct horse battery", country }));
        var access = (string)tokens["access_token"]!;
        using var c = Client(access);
        foreach (var s in consents)
            (await c.PutAsJsonAsync($"/v1/me/consents/{s}", new { granted = true })).EnsureSuccessStatusCode();
        return ((string)(await Json(created))["user_id"]!, access, (string)tokens["refresh_token"]!);
    }

    public async Task<string> OperatorAsync(string role)
    {
        using var admin = Client(AdminToken);
        var r = await admin.PostAsJsonAsync("/v1/sys/operators", new { name = $"{role} person", role });
        r.EnsureSuccessStatusCode();
        return (string)(await Json(r))["token"]!;
    }

    public static async Task<JsonNode> Json(HttpResponseMessage r) => JsonNode.Parse(await r.Content.ReadAsStringAsync())!;

    public static StringContent JsonContent(string raw) => new(raw, Encoding.UTF8, "application/json");

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
        await Deployment.DisposeAsync();
    }
}

/// <summary>Everything the server logs, as text.</summary>
public sealed class LogCapture : ILoggerProvider
{
    readonly ConcurrentQueue<string> _lines = new();
    public string Text => string.Join('\n', _lines);
    public ILogger CreateLogger(string categoryName) => new Logger(categoryName, _lines);
    public void Dispose() { }

    sealed class Logger(string category, ConcurrentQueue<string> lines) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            lines.Enqueue($"{logLevel} {category}: {formatter(state, exception)} {exception}");
    }
}
