using System.Text.Json.Nodes;
using Domicile.Crypto;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;

namespace Domicile.Server;

/// <summary>
/// Operators' endpoints: <c>/v1/sys/*</c>. Narrow roles; none of these answers carries user
/// content or logins (G8).
/// </summary>
public static class SysApi
{
    public static RouteGroupBuilder MapSysApi(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/sys").WithTags("Operators");
        // Operator-token endpoints: 401 without a valid token, 403 with the wrong role, 503 when no store can vouch for the token.
        int[] operatorOnly = [400, 401, 403, 503];
        int[] jsonBody = [413, 415];
        group.MapGet("/health", Health).WithSummary("Regions and whether they are sealed (no token)");
        group.MapPost("/unseal", Unseal).Accepts<UnsealRequest>("application/json").ProducesProblems([400, 404, 503, .. jsonBody])
            .WithSummary("Submit one custodian share (the share is the credential)");
        group.MapPost("/seal", Seal).Accepts<SealRequest>("application/json").ProducesProblems([.. operatorOnly, 404, .. jsonBody])
            .WithSummary("Wipe a region's keys from memory (admin or custodian)");
        group.MapPost("/operators", CreateOperator).Accepts<OperatorRequest>("application/json").ProducesProblems([.. operatorOnly, .. jsonBody])
            .WithSummary("Create an operator credential (admin)");
        group.MapGet("/status", Status).ProducesProblems(operatorOnly).WithSummary("Regions, users per region, running migrations (admin, auditor, support)");
        group.MapGet("/residency", ResidencyReport).ProducesProblems(operatorOnly).WithSummary("Users, items and bytes per region and jurisdiction; violations (admin, auditor)");
        group.MapGet("/audit/{region}/verify", VerifyAudit).ProducesProblems([.. operatorOnly, 404]).WithSummary("Recompute a region's audit chain (admin, auditor)");
        group.MapGet("/audit/{region}/export", ExportAudit).Produces(200, contentType: "application/jsonl").ProducesProblems([.. operatorOnly, 404])
            .WithSummary("The audit log as JSON Lines (admin, auditor)");
        group.MapPost("/retention/run", RunRetention).ProducesProblems(operatorOnly).WithSummary("One retention sweep now, every region (admin)");
        group.MapPost("/keys/{region}/rotate", Rotate).ProducesProblems([.. operatorOnly, 404, 409])
            .WithSummary("New KEK version; re-wrap every DEK; destroy the old version (admin)");
        return group;
    }

    static Task<Operator> Require(HttpContext context, params string[] roles) =>
        context.RequestServices.GetRequiredService<Auth>().OperatorAsync(context, roles);

    static Region RegionOf(Deployment deployment, string? id) =>
        deployment.Regions.TryGetValue(JsonBody.Required(id, "region", 64), out var r)
            ? r : throw new ProblemException("not_found", $"there is no region '{id}' on this server; regions: {string.Join(", ", deployment.Regions.Keys)}");

    static Ok<HealthResponse> Health(Deployment deployment) =>
        TypedResults.Ok(new HealthResponse(deployment.Regions.Values.Select(r => new RegionHealth(r.Id, r.IsSealed)).ToList()));

    static async Task<Ok<UnsealResponse>> Unseal(HttpContext context, Deployment deployment)
    {
        var body = await JsonBody.ReadAsync(context, WireJson.Default.UnsealRequest);
        var region = RegionOf(deployment, body.Region);
        var p = await region.SubmitShareAsync(JsonBody.Required(body.Share, "share", 1000), context.RequestAborted);
        return TypedResults.Ok(new UnsealResponse(p.Region, p.Sealed, p.Progress, p.Threshold));
    }

    static async Task<Ok<HealthResponse>> Seal(HttpContext context, Deployment deployment)
    {
        var op = await Require(context, Roles.Admin, Roles.Custodian);
        var body = await JsonBody.ReadAsync(context, WireJson.Default.SealRequest);
        await RegionOf(deployment, body.Region).SealAsync(op.Id, context.RequestAborted);
        return Health(deployment);
    }

    static async Task<Created<OperatorCreated>> CreateOperator(HttpContext context, Deployment deployment)
    {
        var op = await Require(context, Roles.Admin);
        var body = await JsonBody.ReadAsync(context, WireJson.Default.OperatorRequest);
        var (created, token) = await Operators.CreateAsync(deployment, JsonBody.Required(body.Name, "name", 100), JsonBody.Required(body.Role, "role", 20), op.Id, context.RequestAborted);
        return TypedResults.Created($"/v1/sys/operators/{created.Id}", new OperatorCreated(created.Id, created.Name, created.Role, token));
    }

    static async Task<Ok<StatusResponse>> Status(HttpContext context, Deployment deployment, Migrator migrator)
    {
        await Require(context, Roles.Admin, Roles.Auditor, Roles.Support);
        var regions = new List<RegionStatus>();
        foreach (var r in deployment.Regions.Values)
            regions.Add(new RegionStatus(r.Id, r.IsSealed, await r.CountUsersAsync(context.RequestAborted)));
        var migrations = (await migrator.ListAsync(context.RequestAborted))
            .Select(m => MigrationsApi.ToResponse(m, migrator))
            .Select(m => new MigrationStatus(m.Id, m.State, m.Done, m.Total)).ToList();
        return TypedResults.Ok(new StatusResponse(regions, migrations));
    }

    static async Task<Ok<ResidencyReport>> ResidencyReport(HttpContext context, Deployment deployment)
    {
        var op = await Require(context, Roles.Admin, Roles.Auditor);
        var report = await Residency.ReportAsync(deployment, context.RequestAborted);
        return TypedResults.Ok(report);
    }

    static async Task<Ok<AuditVerifyResponse>> VerifyAudit(HttpContext context, Deployment deployment, string region, string? checkpoint)
    {
        await Require(context, Roles.Admin, Roles.Auditor);
        if (checkpoint is not null && (checkpoint.Length != 64 || !checkpoint.All(char.IsAsciiHexDigit)))
            throw new ProblemException("invalid_request", "'checkpoint' must be an entry hash: 64 hexadecimal characters");
        var v = await RegionOf(deployment, region).VerifyAuditAsync(checkpoint, context.RequestAborted);
        return TypedResults.Ok(new AuditVerifyResponse(v.Region, v.Entries, v.Ok, v.FirstBadSeq, v.Problem));
    }

    static async Task ExportAudit(HttpContext context, Deployment deployment, string region)
    {
        await Require(context, Roles.Admin, Roles.Auditor);
        var r = RegionOf(deployment, region);
        context.Response.ContentType = "application/jsonl; charset=utf-8";
        await using var writer = new StreamWriter(context.Response.Body, new System.Text.UTF8Encoding(false), 64 * 1024);
        await r.ExportAuditAsync(writer, context.RequestAborted);
    }

    static async Task<Ok<RetentionRunResponse>> RunRetention(HttpContext context, Deployment deployment)
    {
        await Require(context, Roles.Admin);
        var results = new List<RegionSweepResult>();
        foreach (var r in deployment.Regions.Values)
        {
            var sweep = await r.SweepAsync(context.RequestAborted);
            results.Add(new RegionSweepResult(sweep.Region,
                sweep.Services.ToDictionary(kv => kv.Key, kv => new ServiceSweepResult(kv.Value.Messages, kv.Value.Items, kv.Value.WithdrawnUsers)), sweep.OrphanChunks));
        }
        return TypedResults.Ok(new RetentionRunResponse(results));
    }

    static async Task<Ok<KeyRotationResponse>> Rotate(HttpContext context, Deployment deployment, string region)
    {
        var op = await Require(context, Roles.Admin);
        var result = await RegionOf(deployment, region).RotateKekAsync(op.Id, ct: context.RequestAborted);
        return TypedResults.Ok(new KeyRotationResponse(result.Region, result.NewVersion, result.Rewrapped, result.DestroyedVersions));
    }

    /// <summary>
    /// <c>/.well-known/jwks.json</c>: the signing key of every region, sealed or not, so receipts and
    /// migration certificates can be checked at any time (the public keys are kept in each region's store).
    /// </summary>
    public static IEndpointRouteBuilder MapJwks(this IEndpointRouteBuilder app)
    {
        app.MapGet("/.well-known/jwks.json", async (Deployment deployment, HttpContext context) =>
        {
            var keys = new List<JsonObject>();
            foreach (var r in deployment.Regions.Values)
            {
                try
                {
                    if (await r.PublishedJwkAsync(context.RequestAborted) is { } jwk) keys.Add(jwk);
                }
                catch (Domicile.Store.StoreException)
                {
                    // A region whose store cannot be reached right now is left out; the others are still published.
                }
            }
            return TypedResults.Ok(new Jwks(keys));
        }).WithTags("Keys").WithSummary("Public keys that sign tokens, receipts and certificates");
        return app;
    }
}
