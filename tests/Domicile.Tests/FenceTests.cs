using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using Domicile.Tests.Support;

namespace Domicile.Tests;

/// <summary>
/// A fenced user (the few seconds of a migration's switch, G9) through HTTP on a live server:
/// writes get 503 <c>unavailable</c> with Retry-After and store nothing; reads keep being served
/// (<see cref="UserStates.Fenced"/>: "reads served, writes refused"); after the unfence the same
/// write succeeds.
/// </summary>
public abstract class FenceTests(string engine)
{
    [Fact]
    public async Task A_fenced_user_is_told_to_retry_writes_while_reads_go_on()
    {
        await using var s = await LiveServer.StartAsync(engine);
        var r = s.Deployment["in-mumbai"];
        var (user, access, _) = await s.UserAsync("IN", consents: "cloud-sync");
        using var device = s.Client(access);
        var first = await device.PutAsync("/v1/me/data/cloud-sync/notes/before", Text("written before the fence"));
        Assert.Equal(HttpStatusCode.Created, first.StatusCode);
        var etag = first.Headers.ETag!;
        var changes = await LiveServer.Json(await device.GetAsync("/v1/me/changes"));
        var cursor = (string?)changes["cursor"];
        var big = RandomNumberGenerator.GetBytes(Region.ChunkSize * 3 + 7);

        async Task<StoredState> StoredAsync() => new(
            await RawSql.CountAsync(r.Config.Store, $"SELECT COUNT(*) FROM items WHERE user_id = '{user}'"),
            await RawSql.CountAsync(r.Config.Store, "SELECT COUNT(*) FROM blob_chunks"),
            await RawSql.CountAsync(r.Config.Store, $"SELECT COALESCE(SUM(version), 0) FROM items WHERE user_id = '{user}'"));
        var before = await StoredAsync();

        await r.SetUserStateAsync(user, UserStates.Fenced, "test", "migration.fence");

        // Writes: a new item, an overwrite (with and without If-Match), a multi-chunk blob, a delete.
        await AssertUnavailable(await device.PutAsync("/v1/me/data/cloud-sync/notes/during", Text("written during the fence")));
        await AssertUnavailable(await device.PutAsync("/v1/me/data/cloud-sync/notes/before", Text("overwritten during the fence")));
        using (var conditional = new HttpRequestMessage(HttpMethod.Put, "/v1/me/data/cloud-sync/notes/before") { Content = Text("conditional overwrite") })
        {
            conditional.Headers.IfMatch.Add(etag);
            await AssertUnavailable(await device.SendAsync(conditional));
        }
        await AssertUnavailable(await device.PutAsync("/v1/me/data/cloud-sync/photos/big", new ByteArrayContent(big)));
        await AssertUnavailable(await device.DeleteAsync("/v1/me/data/cloud-sync/notes/before"));

        // Nothing of them is stored: no item, no chunk of the blob, no change in the feed.
        Assert.Equal(before, await StoredAsync());
        var feed = await LiveServer.Json(await device.GetAsync($"/v1/me/changes?since={Uri.EscapeDataString(cursor ?? "")}"));
        Assert.Empty(feed["changes"]!.AsArray());

        // Reads are served during the fence, and show the data as it was.
        var read = await device.GetAsync("/v1/me/data/cloud-sync/notes/before");
        Assert.Equal(HttpStatusCode.OK, read.StatusCode);
        Assert.Equal("written before the fence", await read.Content.ReadAsStringAsync());
        Assert.Equal(etag, read.Headers.ETag);
        Assert.Equal(HttpStatusCode.NotFound, (await device.GetAsync("/v1/me/data/cloud-sync/notes/during")).StatusCode);
        var list = await LiveServer.Json(await device.GetAsync("/v1/me/data/cloud-sync/notes"));
        Assert.Equal(["before"], list["items"]!.AsArray().Select(i => (string)i!["key"]!));
        Assert.Equal(HttpStatusCode.OK, (await device.GetAsync("/v1/me")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await device.GetAsync("/v1/me/consents")).StatusCode);

        await r.SetUserStateAsync(user, UserStates.Active, "test", "migration.unfence");

        // The same writes now succeed.
        Assert.Equal(HttpStatusCode.Created, (await device.PutAsync("/v1/me/data/cloud-sync/notes/during", Text("written during the fence"))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await device.PutAsync("/v1/me/data/cloud-sync/notes/before", Text("overwritten during the fence"))).StatusCode);
        Assert.Equal(HttpStatusCode.Created, (await device.PutAsync("/v1/me/data/cloud-sync/photos/big", new ByteArrayContent(big))).StatusCode);
        Assert.Equal("written during the fence", await device.GetStringAsync("/v1/me/data/cloud-sync/notes/during"));
        Assert.Equal("overwritten during the fence", await device.GetStringAsync("/v1/me/data/cloud-sync/notes/before"));
        Assert.Equal(big, await device.GetByteArrayAsync("/v1/me/data/cloud-sync/photos/big"));
        Assert.Equal(HttpStatusCode.NoContent, (await device.DeleteAsync("/v1/me/data/cloud-sync/notes/during")).StatusCode);
        Assert.True((await r.VerifyAuditAsync()).Ok);
    }

    static StringContent Text(string s) => new(s, Encoding.UTF8, "text/plain");

    static async Task AssertUnavailable(HttpResponseMessage response)
    {
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = await LiveServer.Json(response);
        Assert.Equal("unavailable", (string?)problem["code"]);
        Assert.Equal(503, (int)problem["status"]!);
        var retry = response.Headers.RetryAfter;
        Assert.NotNull(retry);
        Assert.NotNull(retry.Delta);
        Assert.InRange(retry.Delta.Value, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(60));
    }

    sealed record StoredState(long Items, long BlobChunks, long VersionSum);
}

public sealed class SqliteFenceTests() : FenceTests(Engines.Sqlite);

public sealed class PostgresFenceTests() : FenceTests(Engines.Postgres);
