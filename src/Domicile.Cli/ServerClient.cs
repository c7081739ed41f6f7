using System.CommandLine;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;

namespace Domicile.Cli;

/// <summary>Talks to a running <c>domicile serve</c>; turns its problem answers into CLI errors.</summary>
internal sealed class ServerClient : IDisposable
{
    internal static readonly Option<string> ServerOption = new("--server") { Description = "URL of the running server", DefaultValueFactory = _ => "http://127.0.0.1:8080", Recursive = true };
    internal static readonly Option<string?> TokenOption = new("--token") { Description = "Operator token (default: $DOMICILE_TOKEN)", Recursive = true };

    readonly HttpClient _http;
    readonly string _server;

    ServerClient(string server, string? token)
    {
        _server = server.TrimEnd('/');
        if (!Uri.TryCreate(_server, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
            throw new UsageException($"--server '{server}' is not an http(s) URL, such as http://127.0.0.1:8080");
        _http = new HttpClient { BaseAddress = uri, Timeout = TimeSpan.FromMinutes(30) };
        if (!string.IsNullOrEmpty(token)) _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
    }

    public static ServerClient From(ParseResult parse, bool needsToken = true)
    {
        var token = parse.GetValue(TokenOption) ?? Environment.GetEnvironmentVariable("DOMICILE_TOKEN");
        if (needsToken && string.IsNullOrEmpty(token))
            throw new UsageException("this command needs an operator token: pass --token or set DOMICILE_TOKEN (init printed the admin token)");
        return new ServerClient(parse.GetValue(ServerOption)!, token);
    }

    public async Task<JsonNode> GetJsonAsync(string path, CancellationToken ct) => await SendAsync(HttpMethod.Get, path, null, ct);

    public async Task<JsonNode> PostJsonAsync(string path, JsonObject? body, CancellationToken ct) => await SendAsync(HttpMethod.Post, path, body, ct);

    public async Task<Stream> GetStreamAsync(string path, CancellationToken ct)
    {
        var response = await Send(new HttpRequestMessage(HttpMethod.Get, path), HttpCompletionOption.ResponseHeadersRead, ct);
        return await response.Content.ReadAsStreamAsync(ct);
    }

    async Task<JsonNode> SendAsync(HttpMethod method, string path, JsonObject? body, CancellationToken ct)
    {
        var request = new HttpRequestMessage(method, path);
        if (body is not null) request.Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json");
        using var response = await Send(request, HttpCompletionOption.ResponseContentRead, ct);
        var text = await response.Content.ReadAsStringAsync(ct);
        return JsonNode.Parse(text) ?? new JsonObject();
    }

    async Task<HttpResponseMessage> Send(HttpRequestMessage request, HttpCompletionOption completion, CancellationToken ct)
    {
        HttpResponseMessage response;
        try
        {
            response = await _http.SendAsync(request, completion, ct);
        }
        catch (HttpRequestException e)
        {
            throw new DomicileException("unavailable", $"cannot reach the server at {_server} ({e.Message}); is 'domicile serve' running there? Use --server to point elsewhere");
        }
        if (response.IsSuccessStatusCode) return response;
        var text = await response.Content.ReadAsStringAsync(ct);
        response.Dispose();
        string code = "error", detail = $"the server answered {(int)response.StatusCode}";
        try
        {
            if (JsonNode.Parse(text) is JsonObject problem)
            {
                code = (string?)problem["code"] ?? code;
                detail = (string?)problem["detail"] ?? detail;
            }
        }
        catch (System.Text.Json.JsonException)
        {
        }
        throw new DomicileException(code, detail);
    }

    public void Dispose() => _http.Dispose();
}
