using Microsoft.AspNetCore.Http.HttpResults;

namespace Domicile.Server;

/// <summary>App servers send messages to a user's devices: <c>POST /v1/messages</c> (role sender).</summary>
public static class MessagesApi
{
    public static RouteGroupBuilder MapMessagesApi(this IEndpointRouteBuilder app)
    {
        // 403: not a sender, or consent_required (the recipient has not granted cloud-messaging); 404: no such user.
        var group = app.MapGroup("/v1/messages").WithTags("Messaging").ProducesProblems(400, 401, 403, 404, 413, 415, 503);
        group.MapPost("/", Send).Accepts<SendMessageRequest>("application/json").Produces<MessageSent>(202)
            .WithSummary("Send a message to a user's devices (sender credential); refused without the user's consent");
        return group;
    }

    static async Task<Accepted<MessageSent>> Send(HttpContext context, Deployment deployment)
    {
        var op = await context.RequestServices.GetRequiredService<Auth>().OperatorAsync(context, Roles.Sender);
        var body = await JsonBody.ReadAsync(context, WireJson.Default.SendMessageRequest);
        var to = JsonBody.Required(body.To, "to", 64);
        var text = body.Body ?? throw new ProblemException("invalid_request", "'body' (a string) is required");
        // The recipient's home region only: nothing about the message touches another region.
        var region = await deployment.FindUserRegionAsync(to, context.RequestAborted)
            ?? throw new ProblemException("not_found", "there is no such user");
        var id = await region.SendMessageAsync(op.Id, to, text, body.TtlSeconds, context.RequestAborted);
        return TypedResults.Accepted((string?)null, new MessageSent(id));
    }
}
