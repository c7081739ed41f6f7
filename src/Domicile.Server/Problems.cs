using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace Domicile.Server;

/// <summary>
/// Every refusal as RFC 9457 problem+json with a stable <c>code</c> and a sentence for a person.
/// </summary>
public static class Problems
{
    public static int StatusOf(string code) => code switch
    {
        "invalid_request" => 400,
        "unauthenticated" => 401,
        "forbidden" or "consent_required" or "residency_violation" => 403,
        "not_found" or "unknown_service" => 404,
        "conflict" or "moved" => 409,
        "precondition_failed" => 412,
        "payload_too_large" => 413,
        "unsupported_media_type" => 415,
        "rate_limited" => 429,
        "sealed" or "not_initialized" or "unavailable" => 503,
        _ => 500,
    };

    static readonly Dictionary<int, string> Titles = new()
    {
        [400] = "Bad request", [401] = "Unauthenticated", [403] = "Forbidden", [404] = "Not found", [405] = "Method not allowed", [408] = "Request timeout", [411] = "Length required",
        [409] = "Conflict", [412] = "Precondition failed", [413] = "Payload too large", [414] = "Request line too long", [415] = "Unsupported media type",
        [429] = "Too many requests", [431] = "Request headers too large", [500] = "Server error", [503] = "Service unavailable",
    };

    static string TitleOf(int status) => Titles.GetValueOrDefault(status, "Error");

    public static async Task WriteAsync(HttpContext context, string code, string detail, int? status = null, string? region = null, TimeSpan? retryAfter = null)
    {
        var s = status ?? StatusOf(code);
        if (context.Response.HasStarted) return;
        context.Response.Clear();
        context.Response.StatusCode = s;
        context.Response.ContentType = "application/problem+json";
        if (retryAfter is { } ra) context.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(ra.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (code == "unauthenticated") context.Response.Headers.WWWAuthenticate = "Bearer";
        await using var w = new Utf8JsonWriter(context.Response.Body, BodyOptions);
        WriteBody(w, code, detail, s, region);
    }

    static readonly JsonWriterOptions BodyOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The problem document itself, for answers written without an <see cref="HttpContext"/> too.</summary>
    public static void WriteBody(Utf8JsonWriter w, string code, string detail, int status, string? region = null)
    {
        w.WriteStartObject();
        w.WriteString("type", $"https://domicile.example/problems/{code}");
        w.WriteString("title", TitleOf(status));
        w.WriteNumber("status", status);
        w.WriteString("code", code);
        w.WriteString("detail", detail);
        if (region is not null) w.WriteString("region", region);
        w.WriteEndObject();
    }

    /// <summary>The problem document as UTF-8 bytes.</summary>
    public static byte[] Body(string code, string detail, int status)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(512);
        using (var w = new Utf8JsonWriter(buffer, BodyOptions)) WriteBody(w, code, detail, status);
        return buffer.WrittenSpan.ToArray();
    }
}

/// <summary>A refusal raised inside the server (auth, limits, parsing).</summary>
public sealed class ProblemException(string code, string detail, int? status = null) : DomicileException(code, detail)
{
    public int? Status { get; } = status;
    public TimeSpan? RetryAfter { get; init; }
}
