using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Domicile.Server;

/// <summary>Options of the HTTP server; defaults in code.</summary>
public sealed class ServerOptions
{
    public string Urls { get; set; } = "http://127.0.0.1:8080";
    public LogLevel LogLevel { get; set; } = LogLevel.Warning;
    public bool ConsoleLogging { get; set; } = true;

    /// <summary>The migrator to use (the demo shares its own); a new one by default.</summary>
    public Migrator? Migrator { get; set; }

    /// <summary>Extra logging setup (tests capture the server's log output through this).</summary>
    public Action<ILoggingBuilder>? Logging { get; set; }
}

/// <summary>Composition of the HTTP API over a <see cref="Deployment"/>.</summary>
public static class DomicileServer
{
    public static WebApplication Build(Deployment deployment, ServerOptions options)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls(options.Urls);
        // Request logs would carry item keys and other personal data in their paths: keep them off.
        builder.Logging.ClearProviders();
        if (options.ConsoleLogging) builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
        builder.Logging.SetMinimumLevel(options.LogLevel);
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        options.Logging?.Invoke(builder.Logging);
        var limits = new ProtocolLimits();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = deployment.Config.Limits.MaxItemBytes + 1;
            k.Limits.MaxRequestHeadersTotalSize = limits.MaxHeaderBytes;
            k.Limits.MaxRequestLineSize = limits.MaxRequestLineBytes;
            k.Limits.MaxRequestHeaderCount = limits.MaxHeaderCount;
            k.ConfigureEndpointDefaults(l => l.Use(next => ProtocolErrors.Wrap(next, limits)));
        });
        builder.Services.ConfigureHttpJsonOptions(o =>
        {
            o.SerializerOptions.PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.SnakeCaseLower;
            o.SerializerOptions.DictionaryKeyPolicy = null;
            o.SerializerOptions.Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping;
            o.SerializerOptions.TypeInfoResolverChain.Insert(0, WireJson.Default);
        });
        builder.Services.AddSingleton(deployment);
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<Auth>();
        builder.Services.AddSingleton(new UserRateLimiter(deployment.Config.Limits.UserRps));
        builder.Services.AddOpenApi(o => o.AddDomicileTransformers());
        builder.Services.AddHostedService<RetentionSweeper>();
        builder.Services.AddSingleton(options.Migrator ?? new Migrator(deployment));
        builder.Services.AddHostedService<MigrationResumer>();

        var app = builder.Build();
        app.UseProtocolErrors();
        app.UseExceptionHandler(new ExceptionHandlerOptions { ExceptionHandler = HandleException, SuppressDiagnosticsCallback = _ => true });
        app.UseStatusCodePages(async ctx =>
        {
            var http = ctx.HttpContext;
            var (code, detail) = http.Response.StatusCode switch
            {
                404 => ("not_found", "there is no such endpoint; see /openapi/v1.json"),
                405 => ("invalid_request", "this endpoint does not accept that method; see /openapi/v1.json"),
                413 => ("payload_too_large", "the request body is too large"),
                415 => ("invalid_request", "this endpoint takes a JSON body: send Content-Type: application/json"),
                _ => ("invalid_request", "the request was refused"),
            };
            await Problems.WriteAsync(http, code, detail, http.Response.StatusCode);
        });
        app.MapOpenApi();
        app.MapJwks();
        app.MapAccountsApi();
        app.MapMeApi();
        app.MapSysApi();
        app.MapMessagesApi();
        app.MapMigrationsApi();
        app.MapPages();
        return app;
    }

    static async Task HandleException(HttpContext context)
    {
        var error = context.Features.Get<IExceptionHandlerFeature>()?.Error;
        switch (error)
        {
            case ProblemException p:
                await Problems.WriteAsync(context, p.Code, p.Message, p.Status, region: p.Region, retryAfter: p.RetryAfter);
                break;
            case DomicileException d:
                await Problems.WriteAsync(context, d.Code, d.Message, region: d.Region,
                    retryAfter: d.Code switch { "sealed" => TimeSpan.FromSeconds(5), "unavailable" => TimeSpan.FromSeconds(1), _ => null });
                break;
            case Microsoft.AspNetCore.Http.BadHttpRequestException b:
                await Problems.WriteAsync(context, b.StatusCode == 413 ? "payload_too_large" : "invalid_request",
                    b.StatusCode == 413 ? "the request body is larger than allowed; nothing was stored" : "the request is malformed", b.StatusCode);
                break;
            case Store.StoreException:
                await Problems.WriteAsync(context, "unavailable", "the region's store cannot be reached right now; retry shortly", 503, retryAfter: TimeSpan.FromSeconds(5));
                break;
            case OperationCanceledException when context.RequestAborted.IsCancellationRequested:
                break;
            default:
                // Never the message: it might carry data. The type is enough to find it.
                context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("Domicile.Server")
                    .LogError("unhandled {Type} on {Method} {Endpoint}", error?.GetType().Name, context.Request.Method, context.GetEndpoint()?.DisplayName);
                await Problems.WriteAsync(context, "server_error", "something went wrong on our side; nothing partial was kept", 500);
                break;
        }
    }
}
