using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using Domicile.Tests.Support;

namespace Domicile.Tests;

/// <summary>
/// Requests Kestrel refuses before the API sees them, sent as raw bytes on a socket (HttpClient would
/// refuse to send most of them): each gets problem+json with a code, like every other refusal.
/// </summary>
public abstract class ProtocolErrorTests(string engine)
{
    sealed record Answer(int Status, Dictionary<string, string> Headers, byte[] Body)
    {
        public string Text => Encoding.UTF8.GetString(Body);
    }

    /// <summary>Sends <paramref name="request"/> and reads <paramref name="answers"/> responses off the same connection.</summary>
    static async Task<List<Answer>> SendRawAsync(LiveServer s, byte[] request, int answers = 1)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(s.BaseAddress.Host, s.BaseAddress.Port);
        var stream = tcp.GetStream();
        await stream.WriteAsync(request);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var buffer = new List<byte>();
        var chunk = new byte[8192];
        var result = new List<Answer>();
        var offset = 0;
        while (result.Count < answers)
        {
            if (TryParse(buffer, ref offset, out var a)) { result.Add(a!); continue; }
            int n;
            try { n = await stream.ReadAsync(chunk, cts.Token); }
            catch (IOException) { n = 0; }
            if (n == 0) break;
            buffer.AddRange(chunk.AsSpan(0, n));
        }
        return result;
    }

    static bool TryParse(List<byte> buffer, ref int offset, out Answer? answer)
    {
        answer = null;
        var bytes = buffer.ToArray();
        var text = Encoding.Latin1.GetString(bytes, offset, bytes.Length - offset);
        var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        if (end < 0) return false;
        var lines = text[..end].Split("\r\n");
        var headers = lines.Skip(1).Select(l => l.Split(": ", 2)).ToDictionary(p => p[0], p => p[1], StringComparer.OrdinalIgnoreCase);
        var at = end + 4;
        var body = new List<byte>();
        if (headers.TryGetValue("Transfer-Encoding", out var te) && te == "chunked")
        {
            while (true)
            {
                var eol = text.IndexOf("\r\n", at, StringComparison.Ordinal);
                if (eol < 0) return false;
                var size = Convert.ToInt32(text[at..eol], 16);
                if (text.Length < eol + 2 + size + 2) return false;
                body.AddRange(bytes.AsSpan(offset + eol + 2, size));
                at = eol + 2 + size + 2;
                if (size == 0) break;
            }
        }
        else
        {
            var length = headers.TryGetValue("Content-Length", out var cl) ? int.Parse(cl) : 0;
            if (text.Length < at + length) return false;
            body.AddRange(bytes.AsSpan(offset + at, length));
            at += length;
        }
        answer = new Answer(int.Parse(lines[0].Split(' ')[1]), headers, [.. body]);
        offset += at;
        return true;
    }

    static JsonObject AssertProblem(Answer a, int status, string code)
    {
        Assert.True(a.Status == status, $"expected {status}, got {a.Status}: {a.Text}");
        Assert.Equal("application/problem+json", a.Headers["Content-Type"]);
        var p = JsonNode.Parse(a.Text)!.AsObject();
        Assert.Equal(code, (string?)p["code"]);
        Assert.Equal(status, (int)p["status"]!);
        Assert.True(((string?)p["detail"])?.Length > 20, a.Text);
        return p;
    }

    static byte[] Ascii(string s) => Encoding.Latin1.GetBytes(s);

    [Fact]
    public async Task Requests_Kestrel_refuses_get_problem_json_with_a_code_and_store_nothing()
    {
        await using var s = await LiveServer.StartAsync(engine);
        var u = await s.UserAsync(consents: ["cloud-sync"]);
        var auth = $"Authorization: Bearer {u.Access}\r\n";
        string Put(string path) => $"PUT {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 4\r\n\r\nbody";

        var cases = new (string Name, byte[] Request, int Status, string Code, string Mentions)[]
        {
            ("raw NUL in the path", Ascii(Put("/v1/me/data/cloud-sync/notes/a\0b")), 400, "invalid_request", "NUL"),
            ("%00 in the path", Ascii(Put("/v1/me/data/cloud-sync/notes/a%00b")), 400, "invalid_request", "NUL"),
            ("request line over 8 KiB", Ascii(Put("/v1/me/data/cloud-sync/notes/" + new string('k', 9000))), 414, "invalid_request", "8 KiB"),
            ("headers over 32 KiB", Ascii($"PUT /v1/me/data/cloud-sync/notes/big HTTP/1.1\r\nHost: x\r\n{auth}X-Pad: {new string('p', 33 * 1024)}\r\nContent-Length: 4\r\n\r\nbody"), 431, "invalid_request", "32 KiB"),
            ("more than 64 headers", Ascii($"PUT /v1/me/data/cloud-sync/notes/many HTTP/1.1\r\nHost: x\r\n{auth}{string.Concat(Enumerable.Range(0, 70).Select(i => $"X-H{i}: v\r\n"))}Content-Length: 4\r\n\r\nbody"), 431, "invalid_request", "64 headers"),
            ("a header line without a colon", Ascii($"PUT /v1/me/data/cloud-sync/notes/nocolon HTTP/1.1\r\nHost: x\r\n{auth}NoColonHere\r\nContent-Length: 4\r\n\r\nbody"), 400, "invalid_request", "header"),
            ("not HTTP at all", Ascii("HELLO THERE\r\n\r\n"), 400, "invalid_request", "HTTP/1.1"),
            ("an HTTP version nobody speaks", Ascii("GET /v1/sys/health HTTP/1.7\r\nHost: x\r\n\r\n"), 400, "invalid_request", "HTTP/1.1"),
        };
        foreach (var (name, request, status, code, mentions) in cases)
        {
            var answers = await SendRawAsync(s, request);
            Assert.True(answers.Count == 1, $"{name}: no answer");
            var p = AssertProblem(answers[0], status, code);
            Assert.Contains(mentions, (string)p["detail"]!);
            Assert.Equal("close", answers[0].Headers["Connection"]);
        }

        // Nothing of any of them was stored, and the server still serves the person.
        using var c = s.Client(u.Access);
        var listed = (await LiveServer.Json(await c.GetAsync("/v1/me/data/cloud-sync/notes")))["items"]!.AsArray();
        Assert.Empty(listed);
        Assert.Equal(0, await RawSql.CountAsync(s.Deployment["in-mumbai"].Config.Store, "SELECT COUNT(*) FROM items"));
        // The refused request lines held a token and keys: none of it reaches the log.
        Assert.DoesNotContain(u.Access, s.Logs.Text);
        Assert.DoesNotContain("kkkkkkkk", s.Logs.Text);
    }

    [Fact]
    public async Task A_keep_alive_connection_gets_its_good_answers_untouched_and_then_the_refusal()
    {
        await using var s = await LiveServer.StartAsync(engine);
        var u = await s.UserAsync(consents: ["cloud-sync"]);
        using var c = s.Client(u.Access);
        // Content that looks exactly like the bare answer the rewriter replaces must still come back byte for byte.
        const string lookalike = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        (await c.PutAsync("/v1/me/data/cloud-sync/notes/lookalike", new StringContent(lookalike))).EnsureSuccessStatusCode();

        var auth = $"Authorization: Bearer {u.Access}\r\n";
        var pipelined = Ascii(
            "GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n" +
            $"GET /v1/me/data/cloud-sync/notes/lookalike HTTP/1.1\r\nHost: x\r\n{auth}\r\n" +
            $"DELETE /v1/me/data/cloud-sync/notes/gone HTTP/1.1\r\nHost: x\r\n{auth}\r\n" +
            "GET /v1/sys/health\0 HTTP/1.1\r\nHost: x\r\n\r\n");
        var answers = await SendRawAsync(s, pipelined, answers: 4);
        Assert.Equal(4, answers.Count);
        Assert.Equal(200, answers[0].Status);
        Assert.Equal("application/json; charset=utf-8", answers[0].Headers["Content-Type"]);
        Assert.NotNull(JsonNode.Parse(answers[0].Text)!["regions"]);
        Assert.Equal(200, answers[1].Status);
        Assert.Equal(lookalike, answers[1].Text);
        Assert.Equal(404, answers[2].Status); // not_found is the API's own answer, passed through as it was written
        Assert.Equal("not_found", (string?)JsonNode.Parse(answers[2].Text)!["code"]);
        AssertProblem(answers[3], 400, "invalid_request");
    }
}

public sealed class SqliteProtocolErrorTests() : ProtocolErrorTests(Engines.Sqlite);

public sealed class PostgresProtocolErrorTests() : ProtocolErrorTests(Engines.Postgres);
