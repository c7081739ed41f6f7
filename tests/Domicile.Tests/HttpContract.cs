using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Domicile.Crypto;
using Domicile.Tests.Support;

namespace Domicile.Tests;

/// <summary>The HTTP API on a real Kestrel server on loopback, over each engine.</summary>
public abstract class HttpContract(string engine)
{
    Task<LiveServer> Start(bool unsealed = true, long maxItemBytes = 64L * 1024 * 1024, int userRps = 0) =>
        LiveServer.StartAsync(engine, unsealed, maxItemBytes, userRps);

    static async Task<JsonObject> Problem(HttpResponseMessage r, HttpStatusCode status, string code)
    {
        var body = await r.Content.ReadAsStringAsync();
        Assert.True(status == r.StatusCode, $"expected {(int)status} {code}, got {(int)r.StatusCode}: {body}");
        Assert.Equal("application/problem+json", r.Content.Headers.ContentType?.MediaType);
        var p = JsonNode.Parse(body)!.AsObject();
        Assert.Equal(code, (string?)p["code"]);
        Assert.False(string.IsNullOrWhiteSpace((string?)p["detail"]));
        return p;
    }

    static string B64(string json) => Jws.Base64Url(Encoding.UTF8.GetBytes(json));

    // ---- authorisation matrix -------------------------------------------------------------

    // Paths and bodies may name things made just before the matrix runs: {user} (the user's id),
    // {login} (their login), {message} (a message waiting for them), {migration} (a migration's id),
    // and {n} (a number new for every request, so that a sign-up never collides with an earlier one).
    sealed record Call(HttpMethod Method, string Path, string? Body, params string[] Allowed);

    static readonly string[] Anyone = ["none", "garbage", "alg-none", "forged-sub", "expired", "user", .. Roles.All];

    static readonly Call[] Calls =
    [
        new(HttpMethod.Post, "/v1/accounts", """{"login":"matrix-{n}@example.in","password":"correct horse battery","country":"IN"}""", Anyone),
        new(HttpMethod.Post, "/v1/auth/token", """{"grant_type":"password","login":"{login}","password":"correct horse battery","country":"IN"}""", Anyone),
        new(HttpMethod.Get, "/v1/me", null, "user"),
        new(HttpMethod.Get, "/v1/me/consents", null, "user"),
        new(HttpMethod.Put, "/v1/me/consents/cloud-sync", """{"granted":true}""", "user"),
        new(HttpMethod.Put, "/v1/me/data/cloud-sync/notes/matrix", "body", "user"),
        new(HttpMethod.Get, "/v1/me/data/cloud-sync/notes/matrix", null, "user"),
        new(HttpMethod.Get, "/v1/me/data/cloud-sync/notes", null, "user"),
        new(HttpMethod.Delete, "/v1/me/data/cloud-sync/notes/matrix", null, "user"),
        new(HttpMethod.Get, "/v1/me/changes", null, "user"),
        new(HttpMethod.Get, "/v1/sys/health", null, Anyone),
        new(HttpMethod.Post, "/v1/messages", """{"to":"{user}","body":"matrix message","ttl_seconds":600}""", "sender"),
        new(HttpMethod.Get, "/v1/me/messages", null, "user"),
        new(HttpMethod.Post, "/v1/me/messages/{message}/ack", null, "user"),
        // Migrations before the seal below: a migration plans over every region.
        new(HttpMethod.Post, "/v1/sys/migrations", """{"jurisdiction":"IN","to":"in-mumbai"}""", "admin"),
        new(HttpMethod.Get, "/v1/sys/migrations/{migration}", null, "admin", "auditor", "support"),
        new(HttpMethod.Post, "/v1/sys/seal", """{"region":"sg-singapore"}""", "admin", "custodian"),
        new(HttpMethod.Post, "/v1/sys/operators", """{"name":"x","role":"support"}""", "admin"),
        new(HttpMethod.Get, "/v1/sys/status", null, "admin", "auditor", "support"),
        new(HttpMethod.Get, "/v1/sys/residency", null, "admin", "auditor"),
        new(HttpMethod.Get, "/v1/sys/audit/in-mumbai/verify", null, "admin", "auditor"),
        new(HttpMethod.Get, "/v1/sys/audit/in-mumbai/export", null, "admin", "auditor"),
        new(HttpMethod.Post, "/v1/sys/keys/cn-beijing/rotate", null, "admin"),
        new(HttpMethod.Post, "/v1/sys/retention/run", null, "admin"),
        new(HttpMethod.Get, "/v1/me/access-log", null, "user"),
        new(HttpMethod.Get, "/v1/me/export", null, "user"),
        // Last: the user's own cell erases the account, and every cell after it would then refuse the user.
        new(HttpMethod.Delete, "/v1/me", null, "user"),
    ];

    [Fact]
    public async Task Only_the_allowed_caller_gets_through_each_endpoint()
    {
        await using var s = await Start();
        const string login = "matrix-user@example.in";
        var user = await s.UserAsync(login: login, consents: ["cloud-sync", "cloud-messaging"]);
        var region = s.Deployment["in-mumbai"];
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var parts = user.Access.Split('.');
        var claims = JsonNode.Parse(Jws.FromBase64Url(parts[1]))!.AsObject();
        var other = await s.UserAsync();
        var forged = parts[0] + "." + B64(claims.ToJsonString().Replace(user.UserId, other.UserId, StringComparison.Ordinal)) + "." + parts[2];
        var noneHeader = B64("""{"alg":"none","typ":"JWT","kid":"X"}""".Replace("X", (string)JsonNode.Parse(Jws.FromBase64Url(parts[0]))!["kid"]!, StringComparison.Ordinal));
        var algNone = noneHeader + "." + parts[1] + ".";
        var expired = region.Sign(new JsonObject
        {
            ["iss"] = "domicile", ["sub"] = user.UserId, ["region"] = "in-mumbai", ["typ"] = "access",
            ["iat"] = now - 3600, ["exp"] = now - 60,
        });
        var tokens = new Dictionary<string, string?>
        {
            ["none"] = null,
            ["garbage"] = "garbage.garbage.garbage",
            ["alg-none"] = algNone,
            ["forged-sub"] = forged,
            ["expired"] = expired,
            ["user"] = user.Access,
        };
        foreach (var role in Roles.All) tokens[role] = await s.OperatorAsync(role);
        Assert.Equal(Anyone, tokens.Keys);

        // Things for the single-item cells to act on: a message waiting for the user, a migration.
        string message, migration;
        using (var app = s.Client(tokens["sender"]))
        {
            var sent = await app.PostAsJsonAsync("/v1/messages", new { to = user.UserId, body = "for the ack cell", ttl_seconds = 600 });
            Assert.Equal(HttpStatusCode.Accepted, sent.StatusCode);
            message = (string)(await LiveServer.Json(sent))["id"]!;
        }
        using (var admin = s.Client(s.AdminToken))
        {
            var started = await admin.PostAsJsonAsync("/v1/sys/migrations", new { jurisdiction = "IN", to = "in-mumbai" });
            Assert.Equal(HttpStatusCode.Accepted, started.StatusCode);
            migration = (string)(await LiveServer.Json(started))["id"]!;
        }
        var n = 0;
        string Fill(string text) => text
            .Replace("{user}", user.UserId, StringComparison.Ordinal)
            .Replace("{login}", login, StringComparison.Ordinal)
            .Replace("{message}", message, StringComparison.Ordinal)
            .Replace("{migration}", migration, StringComparison.Ordinal)
            .Replace("{n}", (++n).ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);

        var failures = new List<string>();
        foreach (var call in Calls)
        {
            foreach (var (who, token) in tokens)
            {
                using var c = s.Client(token);
                var req = new HttpRequestMessage(call.Method, Fill(call.Path));
                if (call.Body is not null)
                    req.Content = new StringContent(Fill(call.Body), Encoding.UTF8, call.Path.Contains("/data/", StringComparison.Ordinal) ? "text/plain" : "application/json");
                using var r = await c.SendAsync(req);
                var allowed = call.Allowed.Contains(who);
                var code = (int)r.StatusCode;
                if (allowed && code is < 200 or >= 300) failures.Add($"{who} {call.Method} {call.Path}: expected success, got {code} {await r.Content.ReadAsStringAsync()}");
                if (!allowed && code is not (401 or 403)) failures.Add($"{who} {call.Method} {call.Path}: expected 401/403, got {code}");
                if (!allowed && r.Content.Headers.ContentType?.MediaType != "application/problem+json") failures.Add($"{who} {call.Path}: refusal is not problem+json");
            }
        }
        Assert.True(failures.Count == 0, string.Join('\n', failures));
        // The user's own DELETE /v1/me went through: the account is gone.
        Assert.Null(await region.GetAccountAsync(user.UserId));
    }

    [Fact]
    public async Task Another_users_token_never_reaches_this_users_data()
    {
        await using var s = await Start();
        var a = await s.UserAsync(consents: "cloud-sync");
        var b = await s.UserAsync(consents: "cloud-sync");
        using var ca = s.Client(a.Access);
        using var cb = s.Client(b.Access);
        (await ca.PutAsync("/v1/me/data/cloud-sync/notes/private", new StringContent("a's secret"))).EnsureSuccessStatusCode();
        await Problem(await cb.GetAsync("/v1/me/data/cloud-sync/notes/private"), HttpStatusCode.NotFound, "not_found");
        Assert.Empty((await LiveServer.Json(await cb.GetAsync("/v1/me/data/cloud-sync/notes")))["items"]!.AsArray());
        Assert.Empty((await LiveServer.Json(await cb.GetAsync("/v1/me/changes")))["changes"]!.AsArray());
        Assert.Equal(b.UserId, (string?)(await LiveServer.Json(await cb.GetAsync("/v1/me")))["user_id"]);
    }

    // ---- people ---------------------------------------------------------------------------

    [Fact]
    public async Task Accounts_tokens_and_refresh_rotation()
    {
        await using var s = await Start();
        var created = await s.Http.PostAsJsonAsync("/v1/accounts", new { login = "Ravi@Example.in", password = "correct horse battery", country = "IN" });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var account = await LiveServer.Json(created);
        Assert.Equal("in-mumbai", (string?)account["region"]);
        await Problem(await s.Http.PostAsJsonAsync("/v1/accounts", new { login = "ravi@example.in", password = "another password", country = "IN" }), HttpStatusCode.Conflict, "conflict");
        await Problem(await s.Http.PostAsJsonAsync("/v1/auth/token", new { grant_type = "password", login = "ravi@example.in", password = "wrong password", country = "IN" }), HttpStatusCode.Unauthorized, "unauthenticated");
        await Problem(await s.Http.PostAsJsonAsync("/v1/auth/token", new { grant_type = "password", login = "nobody@example.in", password = "wrong password", country = "IN" }), HttpStatusCode.Unauthorized, "unauthenticated");

        var t1 = await LiveServer.Json(await s.Http.PostAsJsonAsync("/v1/auth/token", new { grant_type = "password", login = "ravi@example.in", password = "correct horse battery", country = "IN" }));
        Assert.Equal("Bearer", (string?)t1["token_type"]);
        Assert.Equal(900, (int)t1["expires_in"]!);
        Assert.Equal("in-mumbai", (string?)t1["region"]);
        var r1 = (string)t1["refresh_token"]!;
        var t2 = await LiveServer.Json(await s.Http.PostAsJsonAsync("/v1/auth/token", new { grant_type = "refresh_token", refresh_token = r1 }));
        var r2 = (string)t2["refresh_token"]!;
        Assert.NotEqual(r1, r2);
        using (var c = s.Client((string)t2["access_token"]!))
        {
            var me = await c.GetAsync("/v1/me");
            var meText = await me.Content.ReadAsStringAsync();
            Assert.True(me.IsSuccessStatusCode, meText);
            Assert.Equal((string?)account["user_id"], (string?)JsonNode.Parse(meText)!["user_id"]);
        }
        // Replaying r1 is refused and revokes the family: r2 stops working too.
        await Problem(await s.Http.PostAsJsonAsync("/v1/auth/token", new { grant_type = "refresh_token", refresh_token = r1 }), HttpStatusCode.Unauthorized, "unauthenticated");
        await Problem(await s.Http.PostAsJsonAsync("/v1/auth/token", new { grant_type = "refresh_token", refresh_token = r2 }), HttpStatusCode.Unauthorized, "unauthenticated");

        // The JWT is ES256, names the user and region, verifies against the published JWKS.
        var jwks = await LiveServer.Json(await s.Http.GetAsync("/.well-known/jwks.json"));
        var keys = jwks["keys"]!.AsArray().Select(k => k!.AsObject()).ToList();
        Assert.True(Jws.TryVerify((string)t1["access_token"]!, kid => keys.FirstOrDefault(k => (string?)k["kid"] == kid) is { } k ? Jws.FromJwk(k) : null, out var claims));
        Assert.Equal("in-mumbai", (string?)claims!["region"]);
    }

    [Fact]
    public async Task Consent_gates_writes_and_receipts_verify_against_the_jwks()
    {
        await using var s = await Start();
        var u = await s.UserAsync();
        using var c = s.Client(u.Access);
        await Problem(await c.PutAsync("/v1/me/data/cloud-sync/notes/n", new StringContent("x")), HttpStatusCode.Forbidden, "consent_required");
        var consents = (await LiveServer.Json(await c.GetAsync("/v1/me/consents"))).AsArray();
        Assert.Equal(["cloud-sync", "cloud-messaging", "find-device"], consents.Select(x => (string)x!["service"]!));
        Assert.All(consents, x => Assert.False((bool)x!["granted"]!));
        Assert.Contains("contacts", (string?)consents[0]!["purpose"], StringComparison.Ordinal);

        var grant = await c.PutAsJsonAsync("/v1/me/consents/cloud-sync", new { granted = true });
        Assert.Equal(HttpStatusCode.OK, grant.StatusCode);
        var receipt = (string)(await LiveServer.Json(grant))["receipt"]!;
        var keys = (await LiveServer.Json(await s.Http.GetAsync("/.well-known/jwks.json")))["keys"]!.AsArray();
        Assert.True(Jws.TryVerify(receipt, kid => keys.Select(k => k!.AsObject()).FirstOrDefault(k => (string?)k["kid"] == kid) is { } k ? Jws.FromJwk(k) : null, out var payload));
        Assert.Equal(u.UserId, (string?)payload!["sub"]);
        Assert.True((bool)payload["granted"]!);

        var put = await c.PutAsync("/v1/me/data/cloud-sync/notes/n", new StringContent("note", Encoding.UTF8, "text/markdown"));
        Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        (await c.PutAsJsonAsync("/v1/me/consents/cloud-sync", new { granted = false })).EnsureSuccessStatusCode();
        await Problem(await c.PutAsync("/v1/me/data/cloud-sync/notes/m", new StringContent("x")), HttpStatusCode.Forbidden, "consent_required");
        await Problem(await c.PutAsJsonAsync("/v1/me/consents/telemetry", new { granted = true }), HttpStatusCode.NotFound, "unknown_service");
    }

    [Fact]
    public async Task A_sealed_regions_key_stays_in_the_jwks_and_earlier_receipts_still_verify()
    {
        await using var s = await Start();
        var u = await s.UserAsync();
        using var c = s.Client(u.Access);
        var receipt = (string)(await LiveServer.Json(await c.PutAsJsonAsync("/v1/me/consents/cloud-sync", new { granted = true })))["receipt"]!;
        var before = (await LiveServer.Json(await s.Http.GetAsync("/.well-known/jwks.json")))["keys"]!.AsArray().Select(k => k!.AsObject()).ToList();
        Assert.Equal(3, before.Count);

        using var admin = s.Client(s.AdminToken);
        foreach (var region in new[] { "in-mumbai", "cn-beijing" })
            (await admin.PostAsJsonAsync("/v1/sys/seal", new { region })).EnsureSuccessStatusCode();
        Assert.True(s.Deployment["in-mumbai"].IsSealed);

        var jwks = await s.Http.GetAsync("/.well-known/jwks.json");
        Assert.Equal(HttpStatusCode.OK, jwks.StatusCode);
        var after = (await LiveServer.Json(jwks))["keys"]!.AsArray().Select(k => k!.AsObject()).ToList();
        Assert.Equal(before.Select(k => k.ToJsonString()).Order(StringComparer.Ordinal), after.Select(k => k.ToJsonString()).Order(StringComparer.Ordinal));
        Assert.Contains(after, k => ((string)k["kid"]!).StartsWith("in-mumbai-", StringComparison.Ordinal));
        Assert.All(after, k => Assert.False(k.ContainsKey("d"))); // public halves only
        Assert.True(Jws.TryVerify(receipt, kid => after.FirstOrDefault(k => (string?)k["kid"] == kid) is { } k ? Jws.FromJwk(k) : null, out var payload));
        Assert.Equal(u.UserId, (string?)payload!["sub"]);
        Assert.Equal("cloud-sync", (string?)payload["service"]);
    }

    // ---- data -----------------------------------------------------------------------------

    [Fact]
    public async Task Data_round_trips_with_etags_listing_and_the_change_feed()
    {
        await using var s = await Start();
        var u = await s.UserAsync(consents: "cloud-sync");
        using var c = s.Client(u.Access);
        var put = await c.PutAsync("/v1/me/data/cloud-sync/contacts/alice", new StringContent("BEGIN:VCARD", Encoding.UTF8, "text/vcard"));
        Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        var etag = put.Headers.ETag!.Tag;
        var get = await c.GetAsync("/v1/me/data/cloud-sync/contacts/alice");
        Assert.Equal("BEGIN:VCARD", await get.Content.ReadAsStringAsync());
        Assert.Equal("text/vcard", get.Content.Headers.ContentType!.MediaType);
        Assert.Equal(etag, get.Headers.ETag!.Tag);

        var stale = new HttpRequestMessage(HttpMethod.Put, "/v1/me/data/cloud-sync/contacts/alice") { Content = new StringContent("v2") };
        stale.Headers.TryAddWithoutValidation("If-Match", etag);
        Assert.Equal(HttpStatusCode.OK, (await c.SendAsync(stale)).StatusCode);
        var lost = new HttpRequestMessage(HttpMethod.Put, "/v1/me/data/cloud-sync/contacts/alice") { Content = new StringContent("v3") };
        lost.Headers.TryAddWithoutValidation("If-Match", etag);
        await Problem(await c.SendAsync(lost), HttpStatusCode.Conflict, "conflict");
        Assert.Equal("v2", await c.GetStringAsync("/v1/me/data/cloud-sync/contacts/alice"));

        for (var i = 0; i < 5; i++) await c.PutAsync($"/v1/me/data/cloud-sync/contacts/c{i}", new StringContent($"{i}"));
        var page1 = await LiveServer.Json(await c.GetAsync("/v1/me/data/cloud-sync/contacts?limit=4"));
        var page2 = await LiveServer.Json(await c.GetAsync($"/v1/me/data/cloud-sync/contacts?limit=4&cursor={page1["next_cursor"]}"));
        var keys = page1["items"]!.AsArray().Concat(page2["items"]!.AsArray()).Select(i => (string)i!["key"]!).Order(StringComparer.Ordinal);
        Assert.Equal(["alice", "c0", "c1", "c2", "c3", "c4"], keys);
        Assert.Null(page2["next_cursor"]);

        var feed = await LiveServer.Json(await c.GetAsync("/v1/me/changes"));
        Assert.Equal(6, feed["changes"]!.AsArray().Count);
        Assert.Equal(HttpStatusCode.NoContent, (await c.DeleteAsync("/v1/me/data/cloud-sync/contacts/c0")).StatusCode);
        var delta = await LiveServer.Json(await c.GetAsync($"/v1/me/changes?since={feed["cursor"]}"));
        var change = Assert.Single(delta["changes"]!.AsArray())!;
        Assert.Equal(("c0", true), ((string)change["key"]!, (bool)change["deleted"]!));
        await Problem(await c.GetAsync("/v1/me/data/cloud-sync/contacts/c0"), HttpStatusCode.NotFound, "not_found");
    }

    [Fact]
    public async Task Hostile_keys_round_trip_as_plain_data()
    {
        await using var s = await Start();
        var u = await s.UserAsync(consents: "cloud-sync");
        using var c = s.Client(u.Access);
        string[] keys = ["../../etc/passwd", "a/b", "a%2Fb", "quote\"s'", "'; DROP TABLE items; --", "ключ 🔑 鍵", "?query#frag", " ", "tab\tand\u0001control"];
        foreach (var k in keys)
        {
            var r = await c.PutAsync("/v1/me/data/cloud-sync/notes/" + Uri.EscapeDataString(k), new StringContent("v:" + k));
            Assert.True(r.IsSuccessStatusCode, $"{k}: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
        }
        foreach (var k in keys)
            Assert.Equal("v:" + k, await c.GetStringAsync("/v1/me/data/cloud-sync/notes/" + Uri.EscapeDataString(k)));
        var listed = (await LiveServer.Json(await c.GetAsync("/v1/me/data/cloud-sync/notes")))["items"]!.AsArray().Select(i => (string)i!["key"]!);
        Assert.Equal(keys.Order(StringComparer.Ordinal), listed.Order(StringComparer.Ordinal));
        // Kestrel itself refuses a NUL in the path (%00) before any of our code runs; the answer is still
        // problem+json (ProtocolErrors) and nothing is stored. Such keys work through the engine
        // (RegionContract.Hostile_keys_are_plain_data).
        var nul = await c.PutAsync("/v1/me/data/cloud-sync/notes/nul%00byte", new StringContent("x"));
        await Problem(nul, HttpStatusCode.BadRequest, "invalid_request");
        Assert.Equal(keys.Length, (await LiveServer.Json(await c.GetAsync("/v1/me/data/cloud-sync/notes")))["items"]!.AsArray().Count);
    }

    [Fact]
    public async Task Bad_input_gets_a_4xx_problem_and_nothing_partial_is_stored()
    {
        await using var s = await Start(maxItemBytes: 200_000);
        var u = await s.UserAsync(consents: ["cloud-sync", "cloud-messaging"]);
        var region = s.Deployment["in-mumbai"];
        using var c = s.Client(u.Access);
        using var admin = s.Client(s.AdminToken);
        using var app = s.Client(await s.OperatorAsync("sender"));
        var usersBefore = await region.CountUsersAsync();
        var operatorsBefore = await RawSql.CountAsync(region.Config.Store, "SELECT COUNT(*) FROM operators");
        var huge = new string('x', 70_000);

        (string Method, string Path, HttpContent? Body, int Status, string Code)[] cases =
        [
            ("POST", "/v1/accounts", LiveServer.JsonContent("{\"login\":"), 400, "invalid_request"),
            ("POST", "/v1/accounts", LiveServer.JsonContent("{\"login\":5,\"password\":\"correct horse\",\"country\":\"IN\"}"), 400, "invalid_request"),
            ("POST", "/v1/accounts", LiveServer.JsonContent("{\"login\":\"\",\"password\":\"correct horse\",\"country\":\"IN\"}"), 400, "invalid_request"),
            ("POST", "/v1/accounts", LiveServer.JsonContent("{\"login\":\"a@b\",\"password\":\"short\",\"country\":\"IN\"}"), 400, "invalid_request"),
            ("POST", "/v1/accounts", LiveServer.JsonContent("{\"login\":\"a@b\",\"password\":\"correct horse\",\"country\":\"India\"}"), 400, "invalid_request"),
            ("POST", "/v1/accounts", LiveServer.JsonContent($"{{\"login\":\"{new string('l', 5000)}\",\"password\":\"correct horse\",\"country\":\"IN\"}}"), 400, "invalid_request"),
            ("POST", "/v1/accounts", LiveServer.JsonContent($"{{\"login\":\"{huge}\",\"password\":\"correct horse\",\"country\":\"IN\"}}"), 413, "payload_too_large"),
            ("POST", "/v1/accounts", LiveServer.JsonContent("[]"), 400, "invalid_request"),
            ("POST", "/v1/accounts", LiveServer.JsonContent("null"), 400, "invalid_request"),
            ("POST", "/v1/accounts", null, 400, "invalid_request"),
            ("POST", "/v1/accounts", new StringContent("login=a", Encoding.UTF8, "application/x-www-form-urlencoded"), 415, "invalid_request"),
            ("POST", "/v1/auth/token", LiveServer.JsonContent("{\"grant_type\":\"client_credentials\"}"), 400, "invalid_request"),
            ("POST", "/v1/auth/token", LiveServer.JsonContent("{\"grant_type\":\"refresh_token\",\"refresh_token\":\"dmr_in-mumbai_forged\"}"), 401, "unauthenticated"),
            ("PUT", "/v1/me/consents/cloud-sync", LiveServer.JsonContent("{\"granted\":\"yes\"}"), 400, "invalid_request"),
            ("PUT", "/v1/me/consents/cloud-sync", LiveServer.JsonContent("{}"), 400, "invalid_request"),
            ("PUT", "/v1/me/consents/no-such-service", LiveServer.JsonContent("{\"granted\":true}"), 404, "unknown_service"),
            ("PUT", "/v1/me/data/no-such-service/notes/k", new StringContent("x"), 404, "unknown_service"),
            ("PUT", "/v1/me/data/cloud-sync/..%2Fnotes/k", new StringContent("x"), 400, "invalid_request"),
            ("PUT", "/v1/me/data/cloud-sync/notes/" + new string('k', 1100), new StringContent("x"), 400, "invalid_request"),
            ("PUT", "/v1/me/data/cloud-sync/notes/big", new ByteArrayContent(new byte[200_001]), 413, "payload_too_large"),
            ("PUT", "/v1/me/data/cloud-sync/notes/k", new StringContent("x") { Headers = { ContentType = null } }, 0, ""),
            ("GET", "/v1/me/data/cloud-sync/notes?limit=abc", null, 400, "invalid_request"),
            ("GET", "/v1/me/data/cloud-sync/notes?limit=0", null, 400, "invalid_request"),
            ("GET", "/v1/me/data/cloud-sync/notes?cursor=%%%", null, 400, "invalid_request"),
            ("GET", "/v1/me/data/cloud-sync/notes?cursor=AAAA", null, 400, "invalid_request"),
            ("GET", "/v1/me/changes?since=yesterday", null, 400, "invalid_request"),
            ("GET", "/v1/me/data/cloud-sync/notes/never-written", null, 404, "not_found"),
            ("DELETE", "/v1/me/data/cloud-sync/notes/never-written", null, 404, "not_found"),
            ("POST", "/v1/sys/unseal", LiveServer.JsonContent("{\"region\":\"in-mumbai\",\"share\":\"domicile-share:v1:in-mumbai:1:AAAA\"}"), 400, "invalid_request"),
            ("POST", "/v1/sys/unseal", LiveServer.JsonContent("{\"region\":\"mars\",\"share\":\"x\"}"), 404, "not_found"),
            ("DELETE", "/v1/sys/health", null, 405, "invalid_request"),
            ("GET", "/v1/nothing-here", null, 404, "not_found"),
            ("GET", "/v1/me/messages?wait=abc", null, 400, "invalid_request"),
            ("GET", "/v1/me/messages?wait=-1", null, 400, "invalid_request"),
            ("GET", "/v1/me/messages?wait=1.5", null, 400, "invalid_request"),
            ("GET", "/v1/me/messages?wait=99999999999999999999", null, 400, "invalid_request"),
            ("POST", "/v1/me/messages/msg_00000000000000000000/ack", null, 404, "not_found"),
            ("POST", "/v1/me/messages/" + Uri.EscapeDataString("'; DROP TABLE messages; --") + "/ack", null, 404, "not_found"),
            ("POST", "/v1/me/messages/" + new string('m', 3000) + "/ack", null, 404, "not_found"),
        ];
        var recipient = u.UserId; // has granted cloud-messaging: each refusal below is for the input alone
        // Operators' and app servers' endpoints, each with the credential that may call it.
        (HttpClient Client, string Method, string Path, HttpContent? Body, int Status, string Code)[] operatorCases =
        [
            (admin, "POST", "/v1/sys/operators", LiveServer.JsonContent("{\"name\":\"x\",\"role\":\"root\"}"), 400, "invalid_request"),
            (admin, "POST", "/v1/sys/operators", LiveServer.JsonContent("{\"name\":\"x\",\"role\":\"\"}"), 400, "invalid_request"),
            (admin, "POST", "/v1/sys/operators", LiveServer.JsonContent("{\"name\":\"x\",\"role\":5}"), 400, "invalid_request"),
            (admin, "POST", "/v1/sys/operators", LiveServer.JsonContent("{\"name\":\"x\"}"), 400, "invalid_request"),
            (admin, "POST", "/v1/sys/operators", LiveServer.JsonContent("{\"name\":\"\",\"role\":\"support\"}"), 400, "invalid_request"),
            (admin, "POST", "/v1/sys/operators", LiveServer.JsonContent("{\"name\":\"   \",\"role\":\"support\"}"), 400, "invalid_request"),
            (admin, "POST", "/v1/sys/operators", LiveServer.JsonContent("{\"role\":\"support\"}"), 400, "invalid_request"),
            (admin, "POST", "/v1/sys/operators", LiveServer.JsonContent($"{{\"name\":\"{new string('n', 5000)}\",\"role\":\"support\"}}"), 400, "invalid_request"),
            (admin, "POST", "/v1/sys/operators", LiveServer.JsonContent($"{{\"name\":\"{huge}\",\"role\":\"support\"}}"), 413, "payload_too_large"),
            (admin, "POST", "/v1/sys/operators", LiveServer.JsonContent("{\"name\":"), 400, "invalid_request"),
            (admin, "POST", "/v1/sys/operators", LiveServer.JsonContent("[\"x\",\"admin\"]"), 400, "invalid_request"),
            (admin, "POST", "/v1/sys/operators", null, 400, "invalid_request"),
            (admin, "POST", "/v1/sys/seal", LiveServer.JsonContent("{\"region\":\"mars\"}"), 404, "not_found"),
            (admin, "POST", "/v1/sys/seal", LiveServer.JsonContent("{\"region\":"), 400, "invalid_request"),
            (admin, "POST", "/v1/sys/seal", LiveServer.JsonContent("{\"region\":[\"in-mumbai\"]}"), 400, "invalid_request"),
            (admin, "POST", "/v1/sys/seal", LiveServer.JsonContent("{}"), 400, "invalid_request"),
            (admin, "POST", "/v1/sys/seal", null, 400, "invalid_request"),
            (admin, "GET", "/v1/sys/audit/in-mumbai/verify?checkpoint=zz", null, 400, "invalid_request"),
            (admin, "GET", "/v1/sys/audit/in-mumbai/verify?checkpoint=" + new string('z', 64), null, 400, "invalid_request"),
            (admin, "GET", "/v1/sys/audit/mars/verify", null, 404, "not_found"),
            (admin, "GET", "/v1/sys/audit/mars/verify?checkpoint=zz", null, 400, "invalid_request"),
            (admin, "GET", "/v1/sys/audit/mars/export", null, 404, "not_found"),
            (app, "POST", "/v1/messages", LiveServer.JsonContent($"{{\"to\":\"{recipient}\",\"body\":\"hi\",\"ttl_seconds\":\"soon\"}}"), 400, "invalid_request"),
            (app, "POST", "/v1/messages", LiveServer.JsonContent($"{{\"to\":\"{recipient}\",\"body\":\"hi\",\"ttl_seconds\":0}}"), 400, "invalid_request"),
            (app, "POST", "/v1/messages", LiveServer.JsonContent($"{{\"to\":\"{recipient}\",\"body\":\"hi\",\"ttl_seconds\":-5}}"), 400, "invalid_request"),
            (app, "POST", "/v1/messages", LiveServer.JsonContent($"{{\"to\":\"{recipient}\",\"body\":\"hi\",\"ttl_seconds\":1.5}}"), 400, "invalid_request"),
            (app, "POST", "/v1/messages", LiveServer.JsonContent($"{{\"to\":\"{recipient}\",\"body\":\"hi\",\"ttl_seconds\":99999999999}}"), 400, "invalid_request"),
            (app, "POST", "/v1/messages", LiveServer.JsonContent("{\"body\":\"hi\",\"ttl_seconds\":60}"), 400, "invalid_request"),
            (app, "POST", "/v1/messages", LiveServer.JsonContent("{\"to\":\"\",\"body\":\"hi\"}"), 400, "invalid_request"),
            (app, "POST", "/v1/messages", LiveServer.JsonContent("{\"to\":\"usr_nobody_here\",\"body\":\"hi\",\"ttl_seconds\":60}"), 404, "not_found"),
            (app, "POST", "/v1/messages", LiveServer.JsonContent($"{{\"to\":\"{recipient}\"}}"), 400, "invalid_request"),
            (app, "POST", "/v1/messages", LiveServer.JsonContent($"{{\"to\":\"{recipient}\",\"body\":\"{new string('b', 5000)}\"}}"), 413, "payload_too_large"),
            (app, "POST", "/v1/messages", LiveServer.JsonContent("{\"to\":"), 400, "invalid_request"),
            (app, "POST", "/v1/messages", null, 400, "invalid_request"),
        ];
        foreach (var (client, method, path, body, status, code) in cases.Select(x => (c, x.Method, x.Path, x.Body, x.Status, x.Code)).Concat(operatorCases))
        {
            using var r = await client.SendAsync(new HttpRequestMessage(new HttpMethod(method), path) { Content = body });
            if (status == 0)
            {
                Assert.True((int)r.StatusCode < 500, $"{method} {path}: {(int)r.StatusCode}");
                continue;
            }
            var text = await r.Content.ReadAsStringAsync();
            var shown = path.Length > 120 ? path[..120] + "…" : path;
            Assert.True(status == (int)r.StatusCode, $"{method} {shown}: expected {status}, got {(int)r.StatusCode} {text}");
            Assert.True("application/problem+json" == r.Content.Headers.ContentType?.MediaType, $"{method} {shown}: not problem+json: {text}");
            var problem = JsonNode.Parse(text)!;
            Assert.True(code == (string?)problem["code"], $"{method} {shown}: expected code {code}: {text}");
            Assert.False(string.IsNullOrWhiteSpace((string?)problem["detail"]), $"{method} {shown}: no detail: {text}");
        }
        Assert.Equal(usersBefore, await region.CountUsersAsync());
        Assert.Equal(operatorsBefore, await RawSql.CountAsync(region.Config.Store, "SELECT COUNT(*) FROM operators"));
        Assert.Equal(0, await RawSql.CountAsync(region.Config.Store, "SELECT COUNT(*) FROM messages"));
        Assert.All(s.Deployment.Deployment.Regions.Values, r => Assert.False(r.IsSealed));
        Assert.Equal(0, await RawSql.CountAsync(region.Config.Store, "SELECT COUNT(*) FROM blob_chunks"));
        var stored = (await LiveServer.Json(await c.GetAsync("/v1/me/data/cloud-sync/notes")))["items"]!.AsArray().Select(i => (string)i!["key"]!).ToList();
        Assert.DoesNotContain("big", stored);
    }

    [Fact]
    public async Task A_streamed_body_over_the_limit_without_content_length_leaves_nothing()
    {
        await using var s = await Start(maxItemBytes: 300_000);
        var u = await s.UserAsync(consents: "cloud-sync");
        using var c = s.Client(u.Access);
        var content = new StreamContent(new MemoryStream(RandomNumberGenerator.GetBytes(400_000)));
        content.Headers.ContentLength = null;
        var req = new HttpRequestMessage(HttpMethod.Put, "/v1/me/data/cloud-sync/photos/too-big") { Content = content };
        req.Headers.TransferEncodingChunked = true;
        await Problem(await c.SendAsync(req), HttpStatusCode.RequestEntityTooLarge, "payload_too_large");
        Assert.Equal(0, await RawSql.CountAsync(s.Deployment["in-mumbai"].Config.Store, "SELECT COUNT(*) FROM blob_chunks"));
        var ok = RandomNumberGenerator.GetBytes(250_000);
        (await c.PutAsync("/v1/me/data/cloud-sync/photos/fits", new ByteArrayContent(ok))).EnsureSuccessStatusCode();
        Assert.Equal(ok, await c.GetByteArrayAsync("/v1/me/data/cloud-sync/photos/fits"));
    }

    [Fact]
    public async Task Requests_beyond_the_per_user_rate_get_429_with_retry_after()
    {
        await using var s = await Start(userRps: 3);
        var u = await s.UserAsync();
        using var c = s.Client(u.Access);
        Assert.Equal(HttpStatusCode.OK, (await c.GetAsync("/v1/me")).StatusCode);
        // Twelve at once: well past three a second however slow this machine is.
        var burst = await Task.WhenAll(Enumerable.Range(0, 12).Select(_ => c.GetAsync("/v1/me")));
        var limited = burst.FirstOrDefault(r => r.StatusCode == HttpStatusCode.TooManyRequests);
        Assert.NotNull(limited);
        await Problem(limited!, HttpStatusCode.TooManyRequests, "rate_limited");
        Assert.NotNull(limited!.Headers.RetryAfter);
        Assert.All(burst, r => Assert.Contains(r.StatusCode, new[] { HttpStatusCode.OK, HttpStatusCode.TooManyRequests }));
    }

    // ---- messaging, rights ----------------------------------------------------------------

    [Fact]
    public async Task App_servers_message_consenting_users_only_and_the_person_sees_it_in_the_access_log()
    {
        await using var s = await Start();
        var sender = await s.OperatorAsync("sender");
        var support = await s.OperatorAsync("support");
        var refuser = await s.UserAsync();
        var listener = await s.UserAsync(consents: "cloud-messaging");
        using var app = s.Client(sender);
        await Problem(await app.PostAsJsonAsync("/v1/messages", new { to = refuser.UserId, body = "hi", ttl_seconds = 60 }), HttpStatusCode.Forbidden, "consent_required");
        Assert.Equal(0, await RawSql.CountAsync(s.Deployment["in-mumbai"].Config.Store, "SELECT COUNT(*) FROM messages"));
        using (var other = s.Client(support))
            await Problem(await other.PostAsJsonAsync("/v1/messages", new { to = listener.UserId, body = "hi" }), HttpStatusCode.Forbidden, "forbidden");
        await Problem(await app.PostAsJsonAsync("/v1/messages", new { to = "no-such-user", body = "hi" }), HttpStatusCode.NotFound, "not_found");
        await Problem(await app.PostAsJsonAsync("/v1/messages", new { to = listener.UserId, body = 5 }), HttpStatusCode.BadRequest, "invalid_request");

        using var device = s.Client(listener.Access);
        var poll = device.GetAsync("/v1/me/messages?wait=30");
        await Task.Delay(200);
        var sent = await app.PostAsJsonAsync("/v1/messages", new { to = listener.UserId, body = "your backup finished", ttl_seconds = 600 });
        Assert.Equal(HttpStatusCode.Accepted, sent.StatusCode);
        var id = (string)(await LiveServer.Json(sent))["id"]!;
        var inbox = await LiveServer.Json(await poll);
        var m = Assert.Single(inbox["messages"]!.AsArray())!;
        Assert.Equal((id, "your backup finished"), ((string)m["id"]!, (string)m["body"]!));
        Assert.Equal(HttpStatusCode.NoContent, (await device.PostAsync($"/v1/me/messages/{id}/ack", null)).StatusCode);
        Assert.Empty((await LiveServer.Json(await device.GetAsync("/v1/me/messages")))["messages"]!.AsArray());
        await Problem(await device.PostAsync($"/v1/me/messages/{id}/ack", null), HttpStatusCode.NotFound, "not_found");

        var log = (await LiveServer.Json(await device.GetAsync("/v1/me/access-log")))["entries"]!.AsArray();
        var send = Assert.Single(log, e => (string?)e!["action"] == "message.send")!;
        Assert.Equal("sender", (string?)send["role"]);
        Assert.DoesNotContain(log, e => (string?)e!["actor"] == listener.UserId);
    }

    [Fact]
    public async Task Export_then_erase_through_the_api()
    {
        await using var s = await Start();
        var u = await s.UserAsync(consents: "cloud-sync");
        using var c = s.Client(u.Access);
        var photo = RandomNumberGenerator.GetBytes(300_000);
        (await c.PutAsync("/v1/me/data/cloud-sync/photos/p1", new ByteArrayContent(photo) { Headers = { ContentType = new("image/png") } })).EnsureSuccessStatusCode();
        var export = await c.GetAsync("/v1/me/export");
        Assert.Equal("application/zip", export.Content.Headers.ContentType!.MediaType);
        using (var zip = new System.IO.Compression.ZipArchive(new MemoryStream(await export.Content.ReadAsByteArrayAsync())))
        {
            var manifest = JsonNode.Parse(zip.GetEntry("manifest.json")!.Open())!;
            var item = Assert.Single(manifest["items"]!.AsArray())!;
            Assert.Equal("image/png", (string?)item["content_type"]);
            using var body = zip.GetEntry((string)item["file"]!)!.Open();
            Assert.Equal(photo, await Bytes.ReadAllAsync(body));
        }
        Assert.Equal(HttpStatusCode.Accepted, (await c.DeleteAsync("/v1/me")).StatusCode);
        await Problem(await c.GetAsync("/v1/me"), HttpStatusCode.Unauthorized, "unauthenticated");
        await Problem(await s.Http.PostAsJsonAsync("/v1/auth/token", new { grant_type = "refresh_token", refresh_token = u.Refresh }), HttpStatusCode.Unauthorized, "unauthenticated");
        var store = s.Deployment["in-mumbai"].Config.Store;
        Assert.Equal(0, await RawSql.CountAsync(store, $"SELECT COUNT(*) FROM data_keys WHERE user_id = '{u.UserId}'"));
        Assert.Equal(0, await RawSql.CountAsync(store, "SELECT COUNT(*) FROM blob_chunks"));
        using var admin = s.Client(s.AdminToken);
        var retention = await LiveServer.Json(await admin.PostAsync("/v1/sys/retention/run", null));
        Assert.Equal(3, retention["regions"]!.AsArray().Count);
        Assert.NotNull(retention["regions"]![0]!["services"]!["cloud-messaging"]!["messages"]);
    }

    // ---- custody --------------------------------------------------------------------------

    [Fact]
    public async Task A_sealed_region_answers_503_and_unseals_through_the_api()
    {
        await using var s = await Start(unsealed: false);
        var health = await LiveServer.Json(await s.Http.GetAsync("/v1/sys/health"));
        Assert.All(health["regions"]!.AsArray(), r => Assert.True((bool)r!["sealed"]!));
        var sealedAnswer = await s.Http.PostAsJsonAsync("/v1/accounts", new { login = "x@example.in", password = "correct horse battery", country = "IN" });
        await Problem(sealedAnswer, HttpStatusCode.ServiceUnavailable, "sealed");
        Assert.NotNull(sealedAnswer.Headers.RetryAfter);

        var shares = s.Deployment.Shares["in-mumbai"];
        var wrong = s.Deployment.Shares["cn-beijing"][0];
        await Problem(await s.Http.PostAsJsonAsync("/v1/sys/unseal", new { region = "in-mumbai", share = wrong }), HttpStatusCode.BadRequest, "invalid_request");
        var corrupted = shares[0][..^2] + (shares[0][^2] == 'A' ? "B" : "A") + shares[0][^1];
        await Problem(await s.Http.PostAsJsonAsync("/v1/sys/unseal", new { region = "in-mumbai", share = corrupted }), HttpStatusCode.BadRequest, "invalid_request");
        var p1 = await LiveServer.Json(await s.Http.PostAsJsonAsync("/v1/sys/unseal", new { region = "in-mumbai", share = shares[3] }));
        Assert.Equal((true, 1, 3), ((bool)p1["sealed"]!, (int)p1["progress"]!, (int)p1["threshold"]!));
        await s.Http.PostAsJsonAsync("/v1/sys/unseal", new { region = "in-mumbai", share = shares[0] });
        var p3 = await LiveServer.Json(await s.Http.PostAsJsonAsync("/v1/sys/unseal", new { region = "in-mumbai", share = shares[4] }));
        Assert.False((bool)p3["sealed"]!);
        Assert.Equal(HttpStatusCode.Created, (await s.Http.PostAsJsonAsync("/v1/accounts", new { login = "x@example.in", password = "correct horse battery", country = "IN" })).StatusCode);

        var u = await s.UserAsync(consents: "cloud-sync");
        using var admin = s.Client(s.AdminToken);
        (await admin.PostAsJsonAsync("/v1/sys/seal", new { region = "in-mumbai" })).EnsureSuccessStatusCode();
        using var c = s.Client(u.Access);
        await Problem(await c.GetAsync("/v1/me"), HttpStatusCode.ServiceUnavailable, "sealed");
        Assert.DoesNotContain(shares[3][25..], s.Logs.Text, StringComparison.Ordinal);
    }

    // ---- operators never see content ------------------------------------------------------

    [Fact]
    public async Task Operator_answers_carry_no_user_content_or_logins()
    {
        await using var s = await Start();
        const string login = "operator-canary-3k9@example.in";
        var u = await s.UserAsync(login: login, consents: "cloud-sync");
        using (var c = s.Client(u.Access))
            (await c.PutAsync("/v1/me/data/cloud-sync/notes/op-canary-key", new StringContent("op-canary-content"))).EnsureSuccessStatusCode();
        using var admin = s.Client(s.AdminToken);
        var all = new StringBuilder();
        foreach (var path in new[] { "/v1/sys/status", "/v1/sys/residency", "/v1/sys/audit/in-mumbai/verify", "/v1/sys/audit/in-mumbai/export", "/v1/sys/health" })
        {
            var r = await admin.GetAsync(path);
            r.EnsureSuccessStatusCode();
            all.Append(await r.Content.ReadAsStringAsync());
        }
        var text = all.ToString();
        Assert.Contains(u.UserId, text, StringComparison.Ordinal); // pseudonymous ids are fine
        foreach (var secret in new[] { login, "op-canary-key", "op-canary-content", "correct horse" })
            Assert.DoesNotContain(secret, text, StringComparison.Ordinal);
    }

    // Every method and path of SPEC 6.2 (the item key is the catch-all {key}).
    static readonly (string Method, string Path)[] SpecEndpoints =
    [
        ("post", "/v1/accounts"), ("post", "/v1/auth/token"), ("get", "/v1/me"), ("get", "/v1/me/consents"), ("put", "/v1/me/consents/{service}"),
        ("put", "/v1/me/data/{service}/{collection}/{key}"), ("get", "/v1/me/data/{service}/{collection}/{key}"),
        ("get", "/v1/me/data/{service}/{collection}"), ("delete", "/v1/me/data/{service}/{collection}/{key}"), ("get", "/v1/me/changes"),
        ("get", "/v1/me/messages"), ("post", "/v1/me/messages/{id}/ack"), ("get", "/v1/me/export"), ("delete", "/v1/me"), ("get", "/v1/me/access-log"),
        ("post", "/v1/messages"),
        ("get", "/v1/sys/health"), ("post", "/v1/sys/unseal"), ("post", "/v1/sys/seal"), ("get", "/v1/sys/residency"), ("post", "/v1/sys/migrations"),
        ("get", "/v1/sys/migrations/{id}"), ("get", "/v1/sys/audit/{region}/verify"), ("get", "/v1/sys/audit/{region}/export"),
        ("post", "/v1/sys/retention/run"), ("post", "/v1/sys/keys/{region}/rotate"), ("post", "/v1/sys/operators"),
        ("get", "/.well-known/jwks.json"),
    ];

    [Fact]
    public async Task The_openapi_document_describes_every_endpoint()
    {
        await using var s = await Start();
        var doc = (await LiveServer.Json(await s.Http.GetAsync("/openapi/v1.json"))).AsObject();
        var paths = doc["paths"]!.AsObject();
        foreach (var (method, path) in SpecEndpoints)
        {
            Assert.True(paths.ContainsKey(path), $"{path} is missing from the OpenAPI document");
            Assert.True(paths[path]!.AsObject().ContainsKey(method), $"{method.ToUpperInvariant()} {path} is missing from the OpenAPI document");
        }
        Assert.True(paths.ContainsKey("/v1/sys/status"));
        var schemas = doc["components"]!["schemas"]!.AsObject();
        Assert.True(schemas.ContainsKey("TokenResponse"));
        Assert.Contains("access_token", schemas["TokenResponse"]!["properties"]!.AsObject().Select(p => p.Key));

        // Refusals are declared as problem+json, whose schema carries the stable code.
        var problem = schemas["ProblemDetails"]!.AsObject();
        Assert.Contains("code", problem["properties"]!.AsObject().Select(p => p.Key));
        Assert.Contains("code", problem["required"]!.AsArray().Select(x => (string?)x));
        static JsonObject? ProblemOf(JsonNode operation, string status) =>
            operation["responses"]?[status]?["content"]?["application/problem+json"]?.AsObject();
        var put = paths["/v1/me/data/{service}/{collection}/{key}"]!["put"]!;
        foreach (var status in new[] { "400", "401", "403", "404", "409", "413", "429", "503" })
        {
            var content = ProblemOf(put, status);
            Assert.True(content is not null, $"PUT item does not declare a {status} problem+json answer");
            Assert.Equal("#/components/schemas/ProblemDetails", (string?)content["schema"]!["$ref"]);
        }
        // Every endpoint but the public key set declares at least one problem answer.
        foreach (var (method, path) in SpecEndpoints.Where(e => e.Path != "/.well-known/jwks.json" && e.Path != "/v1/sys/health"))
        {
            var responses = paths[path]![method]!["responses"]!.AsObject();
            Assert.True(responses.Any(r => r.Value?["content"]?["application/problem+json"] is not null), $"{method.ToUpperInvariant()} {path} declares no problem+json answer");
        }
        // The PUT body is any content type, binary; the key, If-Match and the GET's binary answer are declared too.
        var body = put["requestBody"]!;
        Assert.Equal(["*/*"], body["content"]!.AsObject().Select(c => c.Key));
        Assert.Equal(("string", "binary"), ((string?)body["content"]!["*/*"]!["schema"]!["type"], (string?)body["content"]!["*/*"]!["schema"]!["format"]));
        Assert.Contains(put["parameters"]!.AsArray(), p => (string?)p!["name"] == "key" && (string?)p["in"] == "path");
        Assert.Contains(put["parameters"]!.AsArray(), p => (string?)p!["name"] == "If-Match" && (string?)p["in"] == "header");
        Assert.Equal("binary", (string?)paths["/v1/me/data/{service}/{collection}/{key}"]!["get"]!["responses"]!["200"]!["content"]!["*/*"]!["schema"]!["format"]);
    }

    // ---- confidentiality through the HTTP path --------------------------------------------

    [Fact]
    public async Task Disk_canary_through_http_nothing_plain_on_disk_or_in_logs()
    {
        await using var s = await Start();
        // Lowercase: logins are normalised (trimmed, lowercased) before anything is derived from them,
        // so a plaintext login on disk would be the lowercase form; a mixed-case needle could miss it.
        const string login = "http-canary-login-z81@example.in", password = "http-canary-password-55";
        const string key = "http-canary-key-7QW", content = "http-canary-content-MM3";
        (await s.Http.PostAsJsonAsync("/v1/accounts", new { login, password, country = "IN" })).EnsureSuccessStatusCode();
        var tokens = await LiveServer.Json(await s.Http.PostAsJsonAsync("/v1/auth/token", new { grant_type = "password", login, password, country = "IN" }));
        var access = (string)tokens["access_token"]!;
        var refresh = (string)tokens["refresh_token"]!;
        using var c = s.Client(access);
        (await c.PutAsJsonAsync("/v1/me/consents/cloud-sync", new { granted = true })).EnsureSuccessStatusCode();
        (await c.PutAsync($"/v1/me/data/cloud-sync/notes/{key}", new StringContent(content))).EnsureSuccessStatusCode();
        var marker = Encoding.ASCII.GetBytes("http-canary-blob-B7");
        var blob = new byte[1024 * 1024];
        for (var i = 0; i + marker.Length <= blob.Length; i += 1000) marker.CopyTo(blob, i);
        (await c.PutAsync("/v1/me/data/cloud-sync/photos/blob", new ByteArrayContent(blob))).EnsureSuccessStatusCode();
        Assert.Equal(content, await c.GetStringAsync($"/v1/me/data/cloud-sync/notes/{key}"));
        await c.GetAsync("/v1/me/data/cloud-sync/notes/does-not-exist-" + key);

        // Every region's store, not only the user's home: nothing of the user may be anywhere else either (G1).
        string[] folders = engine == Engines.Sqlite
            ? [.. s.Deployment.Deployment.Regions.Values.Select(r => r.Config.Store.Target).Distinct()]
            : [PostgresServer.Instance.DataDirectory];
        if (engine == Engines.Sqlite) Assert.Equal(["cn-beijing", "in-mumbai", "sg-singapore"], folders.Select(Path.GetFileName).Order(StringComparer.Ordinal));
        if (engine == Engines.Postgres) await PostgresServer.Instance.CheckpointAsync();
        var needles = new[] { login, password, key, content, access, refresh }.Select(Encoding.UTF8.GetBytes).Append(marker).ToList();
        foreach (var file in folders.SelectMany(f => Directory.EnumerateFiles(f, "*", SearchOption.AllDirectories)))
        {
            byte[] bytes;
            try { bytes = await File.ReadAllBytesAsync(file); }
            catch (IOException) { continue; }
            foreach (var n in needles)
                Assert.True(bytes.AsSpan().IndexOf(n) < 0, $"'{Encoding.UTF8.GetString(n)[..Math.Min(20, n.Length)]}' found in {file}");
        }
        var logs = s.Logs.Text;
        foreach (var n in new[] { login, password, key, content, access, refresh, "http-canary-blob" })
            Assert.DoesNotContain(n, logs, StringComparison.Ordinal);
    }
}

public sealed class SqliteHttpContract() : HttpContract(Engines.Sqlite);

public sealed class PostgresHttpContract() : HttpContract(Engines.Postgres);
