using System.Threading.RateLimiting;
using Domicile.Crypto;
using Microsoft.AspNetCore.Http;

namespace Domicile.Server;

/// <summary>The caller of a <c>/v1/me</c> request: a verified user of a region served here.</summary>
public sealed record UserCaller(string UserId, Region Region);

/// <summary>
/// Authentication for people (ES256 access tokens signed by their home region) and for
/// operators (random bearer tokens kept as hashes). Every failure is a 401/403 problem.
/// </summary>
public sealed class Auth(Deployment deployment, TimeProvider time)
{
    const string UserKey = "domicile.user", OperatorKey = "domicile.operator";
    const int VerifiedLimit = 100_000;

    // A token whose signature verified once verifies again: keep (region, subject, expiry) by the
    // token's SHA-256 so a device's steady stream of requests costs one ECDSA check, not one each.
    readonly System.Collections.Concurrent.ConcurrentDictionary<string, (string Region, string Subject, long Expires)> _verified = new();

    public static string? BearerToken(HttpContext context)
    {
        var header = context.Request.Headers.Authorization.ToString();
        return header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header[7..].Trim() : null;
    }

    static ProblemException Unauthenticated(string detail) => new("unauthenticated", detail);

    /// <summary>Verifies the access token and finds the user in the region that signed it.</summary>
    public async Task<UserCaller> UserAsync(HttpContext context)
    {
        if (context.Items[UserKey] is UserCaller cached) return cached;
        var token = BearerToken(context) ?? throw Unauthenticated("this request needs 'Authorization: Bearer <access token>'; get one from POST /v1/auth/token");
        var now = time.GetUtcNow().ToUnixTimeSeconds();
        var cacheKey = Convert.ToBase64String(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(token)));
        if (_verified.TryGetValue(cacheKey, out var known) && known.Expires > now && deployment.Regions.TryGetValue(known.Region, out var knownRegion) && !knownRegion.IsSealed)
            return await CallerAsync(context, knownRegion, known.Subject);
        var parts = token.Split('.');
        if (parts.Length != 3) throw Unauthenticated("the bearer token is not an access token");
        string? kid;
        try
        {
            var header = System.Text.Json.Nodes.JsonNode.Parse(Jws.FromBase64Url(parts[0]));
            kid = (string?)header?["kid"];
        }
        catch (Exception e) when (e is FormatException or System.Text.Json.JsonException or InvalidOperationException or ArgumentException)
        {
            throw Unauthenticated("the bearer token is not an access token");
        }
        // Key ids are "<region>-<12 hex digits>"; the signature check below then needs the exact key.
        var regionId = kid is { Length: > 13 } && kid[^13] == '-' ? kid[..^13] : null;
        var region = regionId is null ? null : deployment.Regions.GetValueOrDefault(regionId);
        if (region is null) throw Unauthenticated("the access token was not issued by this service");
        if (region.IsSealed) throw new ProblemException("sealed", $"region '{region.Id}' is sealed; custodians must unseal it before it serves data") { RetryAfter = TimeSpan.FromSeconds(5) };
        if (!Jws.TryVerify(token, k => region.VerificationKey(k), out var claims) || claims is null)
            throw Unauthenticated("the access token's signature does not verify");
        if ((string?)claims["typ"] != "access" || (string?)claims["iss"] != Region.Issuer || (string?)claims["region"] != region.Id)
            throw Unauthenticated("the bearer token is not an access token of this service");
        if (claims["exp"] is not { } exp || exp.GetValueKind() != System.Text.Json.JsonValueKind.Number || exp.GetValue<long>() <= now)
            throw Unauthenticated("the access token has expired; use your refresh token at POST /v1/auth/token");
        var sub = (string?)claims["sub"] ?? throw Unauthenticated("the access token names no user");
        if (_verified.Count >= VerifiedLimit) _verified.Clear();
        _verified[cacheKey] = (region.Id, sub, exp.GetValue<long>());
        return await CallerAsync(context, region, sub);
    }

    /// <summary>The user of a verified token, found in the region that signed it or where they moved.</summary>
    async Task<UserCaller> CallerAsync(HttpContext context, Region region, string sub)
    {
        var account = await region.GetAccountCachedAsync(sub, context.RequestAborted);
        if (account is null or { State: UserStates.Moved })
        {
            // Migrated since the token was issued: serve from the new home when it is here, else say where it is.
            var home = await region.DirectoryAsync(sub, context.RequestAborted)
                ?? throw Unauthenticated("the account of this token no longer exists");
            if (!deployment.Regions.TryGetValue(home, out var moved) || moved == region)
                throw new ProblemException("moved", $"this account now lives in region '{home}'; sign in there") { Region = home };
            if (moved.IsSealed) throw new ProblemException("sealed", $"region '{home}' is sealed; custodians must unseal it before it serves data") { RetryAfter = TimeSpan.FromSeconds(5) };
            account = await moved.GetAccountAsync(sub, context.RequestAborted);
            // The instant between the source letting go and the destination taking over: come back shortly.
            if (account is { State: UserStates.Incoming })
                throw new ProblemException("unavailable", "this account is being moved to its new region; try again in a moment") { RetryAfter = TimeSpan.FromSeconds(1) };
            if (account is not { State: UserStates.Active or UserStates.Fenced }) throw Unauthenticated("the account of this token no longer exists");
            region = moved;
        }
        if (account.State == UserStates.Incoming) throw Unauthenticated("the account of this token no longer exists");
        var caller = new UserCaller(sub, region);
        context.Items[UserKey] = caller;
        return caller;
    }

    /// <summary>Operators are registered in every region; any region that answers can vouch for one.</summary>
    async Task<Operator?> FindOperatorAsync(string token, CancellationToken ct)
    {
        Store.StoreException? last = null;
        foreach (var region in deployment.Regions.Values)
        {
            try
            {
                return await Operators.FindAsync(region, token, ct);
            }
            catch (Store.StoreException e)
            {
                last = e;
            }
        }
        throw last!;
    }

    /// <summary>Finds the operator of a bearer token and checks the role.</summary>
    public async Task<Operator> OperatorAsync(HttpContext context, params string[] roles)
    {
        if (context.Items[OperatorKey] is not Operator op)
        {
            var token = BearerToken(context) ?? throw Unauthenticated("this request needs an operator token: 'Authorization: Bearer dmo_…'");
            op = await FindOperatorAsync(token, context.RequestAborted) ?? throw Unauthenticated("the operator token is not valid");
            context.Items[OperatorKey] = op;
        }
        if (roles.Length > 0 && !roles.Contains(op.Role))
            throw new ProblemException("forbidden", $"the role '{op.Role}' may not do this; it needs {string.Join(" or ", roles)}");
        return op;
    }
}

/// <summary>Per-user request budget (<c>limits.user_rps</c>); answers 429 with Retry-After.</summary>
public sealed class UserRateLimiter(int perSecond) : IDisposable
{
    readonly PartitionedRateLimiter<string>? _limiter = perSecond <= 0 ? null : PartitionedRateLimiter.Create<string, string>(user =>
        RateLimitPartition.GetTokenBucketLimiter(user, _ => new TokenBucketRateLimiterOptions
        {
            TokenLimit = perSecond,
            TokensPerPeriod = perSecond,
            ReplenishmentPeriod = TimeSpan.FromSeconds(1),
            QueueLimit = 0,
            AutoReplenishment = true,
        }));

    public void Check(string userId)
    {
        if (_limiter is null) return;
        using var lease = _limiter.AttemptAcquire(userId);
        if (!lease.IsAcquired)
            throw new ProblemException("rate_limited", "too many requests for this account; wait a moment and retry") { RetryAfter = TimeSpan.FromSeconds(1) };
    }

    public void Dispose() => _limiter?.Dispose();
}
