using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Domicile.Keys;
using Domicile.Server;
using Domicile.Tests.Support;

namespace Domicile.Tests;

/// <summary>After a migration, requests aimed at the old region are routed (embedded) or answered `moved` (one region per process).</summary>
public sealed class MovedTests
{
    /// <summary>An Indian user still in cn-beijing, as an older policy left them, with one note, signed in there.</summary>
    static async Task<(string Id, UserPackage Package, JsonNode Tokens)> SeedInBeijingAsync(LiveServer s, string login)
    {
        var d = s.Deployment;
        var hash = await PasswordHasher.HashAsync("moving password");
        var id = Region.NewId();
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var pkg = new UserPackage(id, login, hash, "IN", now, 1,
            [new(0, id, "cloud-sync", 1, true, now, "seed")], [new(id, "cloud-sync", 1, true, now)], ["cloud-sync"],
            [new PackagedItem("cloud-sync", "notes", "n", "text/plain", 1, false, 5, now, now, "hello"u8.ToArray(), null)], []);
        await d["cn-beijing"].ImportUserAsync(pkg, UserStates.Active, "seed");
        var tokens = await LiveServer.Json(await s.Http.PostAsJsonAsync("/v1/auth/token", new { grant_type = "password", login, password = "moving password", country = "IN" }));
        return (id, pkg, tokens);
    }

    [Fact]
    public async Task Stale_tokens_follow_the_user_or_learn_where_they_moved()
    {
        await using var s = await LiveServer.StartAsync(Engines.Sqlite);
        var d = s.Deployment;
        // Signed in while still in cn-beijing: the token is signed by cn-beijing.
        var (id, _, tokens) = await SeedInBeijingAsync(s, "mover@example.in");
        Assert.Equal("cn-beijing", (string?)tokens["region"]);
        using var device = s.Client((string)tokens["access_token"]!);
        Assert.Equal("cn-beijing", (string?)(await LiveServer.Json(await device.GetAsync("/v1/me")))["region"]);

        using (var admin = s.Client(s.AdminToken))
        {
            var started = await LiveServer.Json(await admin.PostAsJsonAsync("/v1/sys/migrations", new { user_id = id, to = "in-mumbai" }));
            var migration = (string)started["id"]!;
            JsonNode state;
            do
            {
                await Task.Delay(50);
                state = await LiveServer.Json(await admin.GetAsync($"/v1/sys/migrations/{migration}"));
            } while ((string?)state["state"] != "done");
            Assert.Equal((1L, 0L), ((long)state["users"]!, (long)state["failed"]!));
        }

        // Embedded: the same stale token is served from the new home, reads and writes.
        Assert.Equal("in-mumbai", (string?)(await LiveServer.Json(await device.GetAsync("/v1/me")))["region"]);
        Assert.Equal("hello", await device.GetStringAsync("/v1/me/data/cloud-sync/notes/n"));
        (await device.PutAsync("/v1/me/data/cloud-sync/notes/after", new StringContent("written after the move"))).EnsureSuccessStatusCode();
        await using (var item = await d["in-mumbai"].GetAsync(id, "cloud-sync", "notes", "after"))
            Assert.Equal("written after the move", await Bytes.TextAsync(item.Content));

        // One region per process: a server holding only cn-beijing answers `moved` and names the region.
        await using var beijingOnly = Deployment.Open(d.Config, "cn-beijing");
        foreach (var share in d.Shares["cn-beijing"].Take(3)) await beijingOnly.Region("cn-beijing").SubmitShareAsync(share);
        var app = DomicileServer.Build(beijingOnly, new ServerOptions { Urls = "http://127.0.0.1:0" });
        await app.StartAsync();
        try
        {
            using var stale = new HttpClient { BaseAddress = new Uri(app.Urls.First()) };
            stale.DefaultRequestHeaders.Authorization = new("Bearer", (string)tokens["access_token"]!);
            var r = await stale.GetAsync("/v1/me");
            Assert.Equal(HttpStatusCode.Conflict, r.StatusCode);
            var problem = await LiveServer.Json(r);
            Assert.Equal(("moved", "in-mumbai"), ((string?)problem["code"], (string?)problem["region"]));
        }
        finally
        {
            await app.StopAsync();
        }
    }

    [Fact]
    public async Task In_the_instant_of_the_switch_a_device_is_told_to_retry_not_to_sign_out()
    {
        await using var s = await LiveServer.StartAsync(Engines.Sqlite);
        var d = s.Deployment;
        var (id, pkg, tokens) = await SeedInBeijingAsync(s, "switching@example.in");
        using var device = s.Client((string)tokens["access_token"]!);

        // The source has let go, the destination has not yet taken over (a crash here leaves it so until the resume).
        await d["in-mumbai"].ImportUserAsync(pkg, UserStates.Incoming, "test");
        await d["cn-beijing"].SetUserStateAsync(id, UserStates.Moved, "test", "migration.switch", movedTo: "in-mumbai");
        var r = await device.GetAsync("/v1/me/data/cloud-sync/notes/n");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, r.StatusCode);
        Assert.NotNull(r.Headers.RetryAfter);
        Assert.Equal("unavailable", (string?)(await LiveServer.Json(r))["code"]);

        await d["in-mumbai"].SetUserStateAsync(id, UserStates.Active, "test", "migration.switch", movedTo: "in-mumbai");
        Assert.Equal("hello", await device.GetStringAsync("/v1/me/data/cloud-sync/notes/n"));
    }
}
