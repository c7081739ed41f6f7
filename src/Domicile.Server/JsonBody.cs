using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.AspNetCore.Http;

namespace Domicile.Server;

/// <summary>Reads a small JSON body strictly: size-capped, typed, every failure a 400 that says what is wrong.</summary>
public static class JsonBody
{
    public const int MaxBytes = 64 * 1024;

    public static async Task<T> ReadAsync<T>(HttpContext context, JsonTypeInfo<T> type) where T : class
    {
        var mediaType = context.Request.ContentType?.Split(';')[0].Trim();
        if (mediaType is not null && !mediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase) && !mediaType.EndsWith("+json", StringComparison.OrdinalIgnoreCase))
            throw new ProblemException("invalid_request", "the body must be JSON (Content-Type: application/json)", 415);
        if (context.Request.ContentLength > MaxBytes)
            throw new ProblemException("payload_too_large", $"a JSON body may be at most {MaxBytes} bytes");
        using var buffer = new MemoryStream();
        var chunk = new byte[8192];
        int n;
        while ((n = await context.Request.Body.ReadAsync(chunk, context.RequestAborted)) > 0)
        {
            if (buffer.Length + n > MaxBytes) throw new ProblemException("payload_too_large", $"a JSON body may be at most {MaxBytes} bytes");
            buffer.Write(chunk, 0, n);
        }
        if (buffer.Length == 0) throw new ProblemException("invalid_request", "the request needs a JSON body");
        try
        {
            return JsonSerializer.Deserialize(buffer.GetBuffer().AsSpan(0, (int)buffer.Length), type)
                ?? throw new ProblemException("invalid_request", "the body must be a JSON object, not null");
        }
        catch (JsonException e)
        {
            var where = e.Path is { Length: > 0 } p && p != "$" ? $" at {p}" : "";
            throw new ProblemException("invalid_request", $"the body is not the JSON this endpoint expects{where}: check the field types and the syntax");
        }
    }

    public static string Required(string? value, string field, int max = 1024)
    {
        if (string.IsNullOrWhiteSpace(value)) throw new ProblemException("invalid_request", $"'{field}' is required");
        if (value.Length > max) throw new ProblemException("invalid_request", $"'{field}' is too long (at most {max} characters)");
        return value;
    }
}
