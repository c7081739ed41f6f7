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

    const string SigningPublicMeta = "signing_public";
    volatile PublishedKey? _published;

    /// <summary>The region's public signing key and its JWK, as published whether sealed or not.</summary>
    sealed record PublishedKey(string Kid, byte[] Spki, JsonObject Jwk);

    string SigningKid(byte[] spki) => Id + "-" + Convert.ToHexStringLower(SHA256.HashData(spki))[..12];

    PublishedKey Publish(byte[] spki)
    {
        using var key = ECDsa.Create();
        key.ImportSubjectPublicKeyInfo(spki, out _);
        var kid = SigningKid(spki);
        return new PublishedKey(kid, spki, Jws.PublicJwk(key, kid));
    }

    /// <summary>
    /// Stores the public signing key in the region's meta table (stores initialised before it was
    /// kept there get it at their first unseal) and publishes it. The key that just unsealed is the
    /// authority: a stored copy that differs from it is replaced, and the replacement audited.
    /// </summary>
    async Task RecordSigningPublicKeyAsync(byte[] spki, CancellationToken ct)
    {
        var stored = await Store.ReadAsync(tx => tx.GetMetaAsync(SigningPublicMeta), ct);
        if (stored is null || !stored.AsSpan().SequenceEqual(spki))
        {
            await Store.WriteAsync(async tx =>
            {
                await tx.SetMetaAsync(SigningPublicMeta, spki);
                if (stored is not null)
                    await AuditChain.AppendAsync(tx, Now, SystemActor, "key.signing_public_replaced", Id, new JsonObject { ["kid"] = SigningKid(spki) });
                return 0;
            }, ct);
        }
        _published = Publish(spki);
    }

    /// <summary>
    /// The region's public signing key as a JWK, sealed or not (null when the region is not
    /// initialised, or was initialised before public keys were kept and has not been unsealed since).
    /// Receipts, tokens and migration certificates can be checked against it at any time.
    /// </summary>
    public async Task<JsonObject?> PublishedJwkAsync(CancellationToken ct = default)
    {
        if (_published is { } known) return (JsonObject)known.Jwk.DeepClone();
        if (await Store.SchemaVersionAsync(ct) == 0) return null;
        var spki = await Store.ReadAsync(tx => tx.GetMetaAsync(SigningPublicMeta), ct);
        if (spki is null) return null;
        PublishedKey published;
        try
        {
            published = Publish(spki);
        }
        catch (CryptographicException)
        {
            return null; // a damaged copy: published again from the real key at the next unseal
        }
        // An unseal in between is the authority; keep what it set.
        Interlocked.CompareExchange(ref _published, published, null);
        return (JsonObject)_published!.Jwk.DeepClone();
    }

    /// <summary>The public key for a key id of this region, when it is unsealed.</summary>
    public ECDsa? VerificationKey(string kid)
    {
        var ring = _keys;
        return ring is not null && ring.Kid == kid ? ring.PublicKey : null;
    }

    public string? Kid => _keys?.Kid;
}
