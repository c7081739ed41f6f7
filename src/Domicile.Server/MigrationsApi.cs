using Microsoft.AspNetCore.Http.HttpResults;

namespace Domicile.Server;

/// <summary>Operators start and follow migrations: <c>/v1/sys/migrations</c>.</summary>
public static class MigrationsApi
{
    public static RouteGroupBuilder MapMigrationsApi(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/sys/migrations").WithTags("Migrations").ProducesProblems(400, 401, 403, 404, 503);
        group.MapPost("/", Start).Accepts<MigrationRequestBody>("application/json").ProducesProblems(413, 415)
            .Produces<MigrationResponse>(202).Produces<MigrationPlanResponse>(200)
            .WithSummary("Start a migration of a jurisdiction or a user (admin); dry_run only plans");
        group.MapGet("/", List).WithSummary("Every migration and its state (admin, auditor, support)");
        group.MapGet("/{id}", Get).WithSummary("A migration's progress and, when done, its certificate (admin, auditor, support)");
        return group;
    }

    static Task<Operator> Require(HttpContext context, params string[] roles) =>
        context.RequestServices.GetRequiredService<Auth>().OperatorAsync(context, roles);

    internal static MigrationResponse ToResponse(MigrationState s, Migrator migrator)
    {
        if (s.State != Migrator.Done && migrator.LiveProgress(s.Id) is { } live)
            return new MigrationResponse(s.Id, Migrator.Running, live.Done, live.Total, live.Items, live.Bytes, live.Failed, live.Done - live.Failed, live.Failed == 0, null);
        return new MigrationResponse(s.Id, s.State, s.Done, s.Total, s.Items, s.Bytes, s.Failed, s.Users, s.Verified, s.Certificate);
    }

    static async Task<IResult> Start(HttpContext context, Migrator migrator)
    {
        await Require(context, Roles.Admin);
        var body = await JsonBody.ReadAsync(context, WireJson.Default.MigrationRequestBody);
        var request = new MigrationRequest(body.Jurisdiction, body.UserId, JsonBody.Required(body.To, "to", 64));
        if (body.DryRun == true)
        {
            var plan = await migrator.PlanAsync(request, context.RequestAborted);
            return TypedResults.Ok(new MigrationPlanResponse(plan.To, plan.Users.Count, plan.Users.Select(u => new PlannedUser(u.UserId, u.From)).ToList()));
        }
        var id = await migrator.StartAsync(request, context.RequestAborted);
        var state = await migrator.GetAsync(id, context.RequestAborted);
        return TypedResults.Accepted($"/v1/sys/migrations/{id}", ToResponse(state!, migrator));
    }

    static async Task<Ok<MigrationListResponse>> List(HttpContext context, Migrator migrator)
    {
        await Require(context, Roles.Admin, Roles.Auditor, Roles.Support);
        var all = await migrator.ListAsync(context.RequestAborted);
        return TypedResults.Ok(new MigrationListResponse(all.Select(s => ToResponse(s, migrator)).ToList()));
    }

    static async Task<Ok<MigrationResponse>> Get(HttpContext context, Migrator migrator, string id)
    {
        await Require(context, Roles.Admin, Roles.Auditor, Roles.Support);
        var state = await migrator.GetAsync(id, context.RequestAborted) ?? throw new ProblemException("not_found", $"there is no migration '{id}'");
        return TypedResults.Ok(ToResponse(state, migrator));
    }
}

/// <summary>Resumes durable migration jobs at start and whenever a region is unsealed.</summary>
public sealed class MigrationResumer(Deployment deployment, Migrator migrator, ILogger<MigrationResumer> log) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        foreach (var r in deployment.Regions.Values) r.Unsealed += OnUnsealed;
        _ = ResumeAsync();
        return Task.CompletedTask;
    }

    void OnUnsealed(Region region) => _ = ResumeAsync();

    async Task ResumeAsync()
    {
        try
        {
            await migrator.ResumeAllAsync();
        }
        catch (Exception e)
        {
            log.LogWarning("resuming migrations failed ({Type}); they resume at the next unseal or restart", e.GetType().Name);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        foreach (var r in deployment.Regions.Values) r.Unsealed -= OnUnsealed;
        return Task.CompletedTask;
    }
}
