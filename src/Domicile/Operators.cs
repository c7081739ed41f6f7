using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Domicile.Audit;
using Domicile.Crypto;
using Domicile.Store;

namespace Domicile;

/// <summary>Operator roles (SPEC 6.2). Each is narrow; none can read user content.</summary>
public static class Roles
{
    public const string Admin = "admin", Custodian = "custodian", Auditor = "auditor", Support = "support", Sender = "sender";
    public static readonly IReadOnlyList<string> All = [Admin, Custodian, Auditor, Support, Sender];
}

public sealed record Operator(string Id, string Name, string Role);

/// <summary>
/// Operator credentials: a random bearer token shown once; every region keeps only its SHA-256,
/// so a request can be checked by whichever region serves it.
/// </summary>
public static class Operators
{
    public static string NewToken() => "dmo_" + Jws.Base64Url(RandomNumberGenerator.GetBytes(32));

    public static byte[] TokenHash(string token) => SHA256.HashData(Encoding.UTF8.GetBytes(token));

    /// <summary>Registers an operator in every region of the deployment; returns its token (shown once).</summary>
    public static async Task<(Operator Operator, string Token)> CreateAsync(Deployment deployment, string name, string role, string actor, CancellationToken ct = default)
    {
        if (!Roles.All.Contains(role))
            throw DomicileException.Invalid($"role must be one of {string.Join(", ", Roles.All)}");
        name = (name ?? "").Trim();
        if (name.Length is 0 or > 100)
            throw DomicileException.Invalid("name must be 1 to 100 characters");
        var token = NewToken();
        var op = new Operator("op_" + Region.NewId(8), name, role);
        var row = new OperatorRow(op.Id, op.Name, op.Role, TokenHash(token), DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), false);
        foreach (var region in deployment.Regions.Values)
        {
            await region.Store.WriteAsync(async tx =>
            {
                await tx.InsertOperatorAsync(row);
                await AuditChain.AppendAsync(tx, region.Time.GetUtcNow(), actor, "operator.create", op.Id, new JsonObject { ["role"] = role });
                return 0;
            }, ct);
        }
        return (op, token);
    }

    public static async Task<Operator?> FindAsync(Region region, string token, CancellationToken ct = default)
    {
        if (string.IsNullOrEmpty(token) || !token.StartsWith("dmo_", StringComparison.Ordinal)) return null;
        var row = await region.Store.ReadAsync(tx => tx.FindOperatorByTokenAsync(TokenHash(token)), ct);
        return row is null or { Revoked: true } ? null : new Operator(row.Id, row.Name, row.Role);
    }
}
