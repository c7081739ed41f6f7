using System.Globalization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;

namespace Domicile.Server;

/// <summary>A person's own account, consents, data and sync feed: <c>/v1/me/*</c>.</summary>
public static class MeApi
{
    public static RouteGroupBuilder MapMeApi(this IEndpointRouteBuilder app)
    {
        // Every /v1/me call: a token (401), the account may have moved (409) or its region be sealed (503), per-user rate limit (429).
        var group = app.MapGroup("/v1/me").WithTags("Me").ProducesProblems(400, 401, 409, 429, 503);
        group.AddEndpointFilter(async (ctx, next) =>
        {
            var http = ctx.HttpContext;
            var caller = await http.RequestServices.GetRequiredService<Auth>().UserAsync(http);
            http.RequestServices.GetRequiredService<UserRateLimiter>().Check(caller.UserId);
            return await next(ctx);
        });
        group.MapGet("/", (Delegate)Me).WithSummary("Who am I: user id, country, home region");
        group.MapGet("/consents", (Delegate)Consents).WithSummary("Consent to every service, granted or not");
        group.MapPut("/consents/{service}", SetConsent).Accepts<ConsentRequest>("application/json").ProducesProblems(404, 413, 415)
            .WithSummary("Grant or withdraw consent; answered with a receipt signed by the region");
        group.MapGet("/data/{service}/{collection}", List).ProducesProblems(403, 404).WithSummary("List a collection's items (cursor paging)");
        group.MapPut("/data/{service}/{collection}/{**key}", Put).Produces<PutResponse>(201).Produces<PutResponse>(200)
            .ProducesProblems(403, 404, 413).DescribeItem(OpenApiDocs.Item.Put) // 409 (ETag mismatch) is declared by the group
            .WithSummary("Store an item: any body, Content-Type kept; optional If-Match");
        group.MapGet("/data/{service}/{collection}/{**key}", Get).Produces(200, contentType: "application/octet-stream").Produces(304)
            .ProducesProblems(403, 404).DescribeItem(OpenApiDocs.Item.Get)
            .WithSummary("Read an item back with its Content-Type and ETag");
        group.MapDelete("/data/{service}/{collection}/{**key}", Delete).Produces(204).ProducesProblems(403, 404).DescribeItem(OpenApiDocs.Item.Delete)
            .WithSummary("Delete an item");
        group.MapGet("/changes", Changes).WithSummary("The sync feed: changes after a cursor");
        group.MapGet("/messages", Messages).WithSummary("Waiting messages; long poll with ?wait=S (capped at 60 s)");
        group.MapPost("/messages/{id}/ack", Ack).ProducesProblems(404).WithSummary("Acknowledge a message: it is deleted");
        group.MapGet("/export", (Delegate)Export).Produces(200, contentType: "application/zip").WithSummary("Everything held about me, as a zip");
        group.MapDelete("/", (Delegate)Erase).WithSummary("Erase my account: keys destroyed first, then every row");
        group.MapGet("/access-log", (Delegate)AccessLogOf).WithSummary("Who touched my data, other than me");
        return group;
    }

    static async Task<UserCaller> Caller(HttpContext context) =>
        await context.RequestServices.GetRequiredService<Auth>().UserAsync(context);

    static async Task<Ok<MeResponse>> Me(HttpContext context)
    {
        var c = await Caller(context);
        var account = await c.Region.GetAccountAsync(c.UserId, context.RequestAborted) ?? throw new ProblemException("unauthenticated", "the account no longer exists");
        return TypedResults.Ok(new MeResponse(account.UserId, account.Country, account.Region));
    }

    static async Task<Ok<List<ConsentEntry>>> Consents(HttpContext context)
    {
        var c = await Caller(context);
        var views = await c.Region.GetConsentsAsync(c.UserId, context.RequestAborted);
        return TypedResults.Ok(views.Select(v => new ConsentEntry(v.Service, v.Purpose, v.Version, v.Granted, v.At)).ToList());
    }

    static async Task<Ok<ConsentResponse>> SetConsent(HttpContext context, string service)
    {
        var c = await Caller(context);
        var body = await JsonBody.ReadAsync(context, WireJson.Default.ConsentRequest);
        if (body.Granted is not { } granted) throw new ProblemException("invalid_request", "'granted' (true or false) is required");
        var change = await c.Region.SetConsentAsync(c.UserId, service, granted, "api", context.RequestAborted);
        return TypedResults.Ok(new ConsentResponse(change.Service, change.Version, change.Granted, change.At, change.Receipt));
    }

    /// <summary>
    /// The item key from the raw request target, decoded once here: the router leaves %2F
    /// encoded, which would make "a/b" and "a%2Fb" the same key.
    /// </summary>
    internal static string RawKey(HttpContext context)
    {
        var raw = context.Features.Get<IHttpRequestFeature>()?.RawTarget ?? context.Request.Path.Value ?? "";
        var q = raw.IndexOf('?', StringComparison.Ordinal);
        if (q >= 0) raw = raw[..q];
        if (!raw.StartsWith("/v1/me/data/", StringComparison.Ordinal))
            throw new ProblemException("invalid_request", "send the request target in origin form: /v1/me/data/{service}/{collection}/{key}");
        for (var i = raw.IndexOf('%', StringComparison.Ordinal); i >= 0; i = raw.IndexOf('%', i + 1))
            if (i + 2 >= raw.Length || !char.IsAsciiHexDigit(raw[i + 1]) || !char.IsAsciiHexDigit(raw[i + 2]))
                throw new ProblemException("invalid_request", "the key is not correctly percent-encoded");
        var segments = raw.Split('/');
        // "", "v1", "me", "data", service, collection, key…
        if (segments.Length < 7) throw new ProblemException("invalid_request", "the path must be /v1/me/data/{service}/{collection}/{key}");
        return string.Join('/', segments.Skip(6).Select(PercentDecode));
    }

    static readonly System.Text.UTF8Encoding StrictUtf8 = new(false, true);

    /// <summary>Percent-decodes to bytes, then UTF-8 strictly: "%FF" is refused, never kept as three characters.</summary>
    static string PercentDecode(string segment)
    {
        var bytes = new List<byte>(segment.Length);
        for (var i = 0; i < segment.Length; i++)
        {
            if (segment[i] == '%')
            {
                bytes.Add(Convert.ToByte(segment.Substring(i + 1, 2), 16));
                i += 2;
            }
            else
            {
                bytes.AddRange(System.Text.Encoding.UTF8.GetBytes(segment[i].ToString()));
            }
        }
        try
        {
            return StrictUtf8.GetString(bytes.ToArray());
        }
        catch (System.Text.DecoderFallbackException)
        {
            throw new ProblemException("invalid_request", "the key is not valid UTF-8 once percent-decoded");
        }
    }

    static async Task<IResult> Put(HttpContext context, string service, string collection)
    {
        var c = await Caller(context);
        var max = c.Region.Policy.Limits.MaxItemBytes;
        if (context.Request.ContentLength > max)
            throw new ProblemException("payload_too_large", $"the item is larger than the limit of {max} bytes; nothing was stored");
        var feature = context.Features.Get<IHttpMaxRequestBodySizeFeature>();
        if (feature is { IsReadOnly: false }) feature.MaxRequestBodySize = max + 1;
        var ifMatch = context.Request.Headers.IfMatch.ToString() is { Length: > 0 } m ? m : null;
        var result = await c.Region.PutAsync(c.UserId, service, collection, RawKey(context), context.Request.ContentType,
            context.Request.Body, ifMatch, context.RequestAborted);
        context.Response.Headers.ETag = result.ETag;
        var payload = new PutResponse(result.ETag, result.Size);
        return TypedResults.Json(payload, statusCode: result.Created ? 201 : 200);
    }

    static async Task Get(HttpContext context, string service, string collection)
    {
        var c = await Caller(context);
        await using var item = await c.Region.GetAsync(c.UserId, service, collection, RawKey(context), context.RequestAborted);
        if (context.Request.Headers.IfNoneMatch.ToString() == item.ETag)
        {
            context.Response.StatusCode = 304;
            context.Response.Headers.ETag = item.ETag;
            return;
        }
        context.Response.ContentType = item.ContentType;
        context.Response.Headers.ETag = item.ETag;
        context.Response.Headers.LastModified = item.UpdatedAt.ToString("R", CultureInfo.InvariantCulture);
        context.Response.Headers.CacheControl = "private, no-store";
        context.Response.ContentLength = item.Size;
        await item.Content.CopyToAsync(context.Response.Body, Region.ChunkSize, context.RequestAborted);
    }

    static async Task<NoContent> Delete(HttpContext context, string service, string collection)
    {
        var c = await Caller(context);
        var ifMatch = context.Request.Headers.IfMatch.ToString() is { Length: > 0 } m ? m : null;
        await c.Region.DeleteAsync(c.UserId, service, collection, RawKey(context), ifMatch, context.RequestAborted);
        return TypedResults.NoContent();
    }

    static async Task<Ok<ItemList>> List(HttpContext context, string service, string collection, string? cursor, string? limit)
    {
        var c = await Caller(context);
        var page = await c.Region.ListAsync(c.UserId, service, collection, cursor, ParseLimit(limit, 100), context.RequestAborted);
        return TypedResults.Ok(new ItemList(page.Items.Select(i => new ItemEntry(i.Key, i.ETag, i.Size, i.UpdatedAt)).ToList(), page.NextCursor));
    }

    static async Task<Ok<ChangeList>> Changes(HttpContext context, string? since, string? limit)
    {
        var c = await Caller(context);
        var page = await c.Region.ChangesAsync(c.UserId, since, ParseLimit(limit, 500), context.RequestAborted);
        return TypedResults.Ok(new ChangeList(page.Changes.Select(x => new ChangeEntry(x.Service, x.Collection, x.Key, x.ETag, x.Deleted)).ToList(), page.Cursor));
    }

    static async Task<Ok<MessageList>> Messages(HttpContext context, string? wait)
    {
        var c = await Caller(context);
        var seconds = 0;
        if (!string.IsNullOrEmpty(wait) && (!int.TryParse(wait, NumberStyles.None, CultureInfo.InvariantCulture, out seconds) || seconds > 3600))
            throw new ProblemException("invalid_request", "'wait' must be a whole number of seconds (it is capped at 60)");
        var messages = await c.Region.ReceiveMessagesAsync(c.UserId, TimeSpan.FromSeconds(seconds), context.RequestAborted);
        return TypedResults.Ok(new MessageList(messages.Select(m => new MessageEntry(m.Id, m.From, m.Body, m.SentAt)).ToList()));
    }

    static async Task<NoContent> Ack(HttpContext context, string id)
    {
        var c = await Caller(context);
        await c.Region.AcknowledgeAsync(c.UserId, id, context.RequestAborted);
        return TypedResults.NoContent();
    }

    static async Task Export(HttpContext context)
    {
        var c = await Caller(context);
        context.Response.ContentType = "application/zip";
        context.Response.Headers.ContentDisposition = "attachment; filename=\"domicile-export.zip\"";
        context.Response.Headers.CacheControl = "private, no-store";
        // ZipArchive still writes some headers synchronously; the export must never touch a temp file instead.
        var io = context.Features.Get<IHttpBodyControlFeature>();
        if (io is not null) io.AllowSynchronousIO = true;
        await c.Region.ExportAsync(c.UserId, context.Response.Body, context.RequestAborted);
    }

    static async Task<Accepted> Erase(HttpContext context)
    {
        var c = await Caller(context);
        await c.Region.EraseAccountAsync(c.UserId, c.UserId, context.RequestAborted);
        return TypedResults.Accepted((string?)null);
    }

    static async Task<Ok<AccessLog>> AccessLogOf(HttpContext context)
    {
        var c = await Caller(context);
        var entries = await c.Region.AccessLogAsync(c.UserId, context.RequestAborted);
        return TypedResults.Ok(new AccessLog(entries.Select(e => new AccessLogEntry(e.At, e.Actor, e.Role, e.Action, e.Details)).ToList()));
    }

    internal static int ParseLimit(string? text, int fallback)
    {
        if (string.IsNullOrEmpty(text)) return fallback;
        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is >= 1 and <= 1000
            ? n : throw new ProblemException("invalid_request", "'limit' must be a whole number from 1 to 1000");
    }
}
