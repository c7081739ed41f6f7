using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Domicile.Audit;
using Domicile.Crypto;
using Domicile.Store;

namespace Domicile;

public sealed record IssuedTokens(string AccessToken, int ExpiresIn, string RefreshToken, string Region);

/// <summary>
/// Access tokens: ES256 JWTs signed by the user's home region (15 minutes). Refresh tokens:
/// random, stored only as a hash, good for one use; a replayed one revokes its whole family.
/// </summary>
public sealed partial class Region
{
    public static readonly TimeSpan AccessTokenLifetime = TimeSpan.FromMinutes(15);
    public static readonly TimeSpan RefreshTokenLifetime = TimeSpan.FromDays(30);
    public const string Issuer = "domicile";

    public async Task<IssuedTokens> IssueTokensAsync(string userId, string? family = null, CancellationToken ct = default)
    {
        var now = Now;
        var access = Sign(new JsonObject
        {
            ["iss"] = Issuer,
            ["sub"] = userId,
            ["region"] = Id,
            ["typ"] = "access",
            ["iat"] = now.ToUnixTimeSeconds(),
            ["exp"] = now.Add(AccessTokenLifetime).ToUnixTimeSeconds(),
            ["jti"] = NewId(8),
        });
        var refresh = $"dmr_{Id}_{Jws.Base64Url(RandomNumberGenerator.GetBytes(32))}";
        await Store.WriteAsync(async tx =>
        {
            await tx.InsertRefreshTokenAsync(new RefreshTokenRow(Operators.TokenHash(refresh), userId, family ?? NewId(12),
                now.Add(RefreshTokenLifetime).ToUnixTimeMilliseconds(), false));
            return 0;
        }, ct);
        return new IssuedTokens(access, (int)AccessTokenLifetime.TotalSeconds, refresh, Id);
    }

    /// <summary>The region a refresh token belongs to, read from its prefix; null when it has none.</summary>
    public static string? RegionOfRefreshToken(string token)
    {
        if (!token.StartsWith("dmr_", StringComparison.Ordinal)) return null;
        // Region ids never hold '_'; the random part may.
        var end = token.IndexOf('_', 4);
        return end > 4 ? token[4..end] : null;
    }

    /// <summary>Exchanges a refresh token for new tokens (rotation). A replay revokes the family.</summary>
    public async Task<IssuedTokens> RedeemRefreshTokenAsync(string token, CancellationToken ct = default)
    {
        using var lease = Lease();
        var hash = Operators.TokenHash(token);
        var (row, fresh) = await Store.WriteAsync(async tx =>
        {
            var r = await tx.GetRefreshTokenAsync(hash);
            if (r is null) return ((RefreshTokenRow?)null, false);
            var ok = await tx.UseRefreshTokenAsync(hash);
            if (!ok)
            {
                await tx.DeleteRefreshFamilyAsync(r.Family);
                await AuditChain.AppendAsync(tx, Now, SystemActor, "auth.refresh_replayed", r.UserId, new JsonObject { ["family_revoked"] = true });
            }
            return (r, ok);
        }, ct);
        if (row is null || !fresh || row.ExpiresAt < NowMs || await GetAccountAsync(row.UserId, ct) is null)
            throw new DomicileException("unauthenticated", "the refresh token is not valid (unknown, expired or already used); sign in again");
        return await IssueTokensAsync(row.UserId, row.Family, ct);
    }

    /// <summary>The public key for a key id of this region, when it is unsealed.</summary>
    public ECDsa? VerificationKey(string kid)
    {
        var ring = _keys;
        return ring is not null && ring.Kid == kid ? ring.PublicKey : null;
    }

    public string? Kid => _keys?.Kid;
}
