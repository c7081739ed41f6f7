using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Domicile.Audit;
using Domicile.Config;
using Domicile.Crypto;
using Domicile.Store;

namespace Domicile;

/// <summary>A user's consent to one service as it stands now.</summary>
public sealed record ConsentView(string Service, string Purpose, int Version, bool Granted, DateTimeOffset? At);

/// <summary>The answer to a consent change, with the region-signed receipt.</summary>
public sealed record ConsentChange(string Service, int Version, bool Granted, DateTimeOffset At, string Receipt);

public sealed partial class Region
{
    ServiceConfig RequireService(string service) =>
        Policy.Service(service) ?? throw new DomicileException("unknown_service", $"there is no service '{Truncate(service)}'; known services: {string.Join(", ", Policy.Services.Select(s => s.Id))}");

    static string Truncate(string s) => s.Length <= 64 ? s : s[..64] + "…";

    static bool Active(ConsentStateRow? state, ServiceConfig svc) => state is { Granted: true } && state.Version == svc.Version;

    /// <summary>
    /// Grants or withdraws consent. Appended to the ledger with the purpose version, time and
    /// source, audited in the same transaction, answered with a signed receipt. The first grant
    /// creates the service's DEK; a withdrawal with zero grace deletes the data and destroys the DEK at once.
    /// </summary>
    public async Task<ConsentChange> SetConsentAsync(string userId, string service, bool granted, string source, CancellationToken ct = default)
    {
        var svc = RequireService(service);
        using var lease = Lease();
        var ring = lease.Keys;
        var at = Now;
        var destroyed = false;
        var consentId = await Store.WriteAsync(async tx =>
        {
            await RequireUserAsync(tx, userId);
            await BeginUserWriteAsync(tx, userId);
            if (granted && await tx.GetDekAsync(userId, service) is null)
                CryptographicOperations.ZeroMemory(await CreateDekAsync(ring, tx, userId, service));
            var id = await tx.AppendConsentAsync(new ConsentRow(0, userId, service, svc.Version, granted, at.ToUnixTimeMilliseconds(), source));
            await tx.SetConsentStateAsync(new ConsentStateRow(userId, service, svc.Version, granted, at.ToUnixTimeMilliseconds()));
            await AuditChain.AppendAsync(tx, at, userId, granted ? "consent.grant" : "consent.withdraw", userId,
                new JsonObject { ["service"] = service, ["version"] = svc.Version, ["source"] = source });
            if (!granted && svc.Retention.AfterWithdrawal <= TimeSpan.Zero)
            {
                await PurgeServiceAsync(tx, userId, service, "withdrawal", at);
                destroyed = true;
            }
            return id;
        }, ct);
        if (destroyed) ring.Forget(userId, service);
        var receipt = Jws.Sign(ring.Signing, ring.Kid, new JsonObject
        {
            ["iss"] = $"domicile:{Id}",
            ["sub"] = userId,
            ["jti"] = $"{Id}:consent:{consentId}",
            ["iat"] = at.ToUnixTimeSeconds(),
            ["service"] = service,
            ["purpose"] = svc.Purpose,
            ["version"] = svc.Version,
            ["granted"] = granted,
            ["at"] = AuditChain.FormatTime(at),
        });
        return new ConsentChange(service, svc.Version, granted, at, receipt);
    }

    /// <summary>Deletes a user's data of one service and destroys its DEK, in the caller's transaction.</summary>
    async Task<int> PurgeServiceAsync(IStoreTx tx, string userId, string service, string reason, DateTimeOffset at)
    {
        var blobs = await tx.DeleteItemsAsync(userId, service);
        await tx.DeleteDekAsync(userId, service);
        await AuditChain.AppendAsync(tx, at, SystemActor, "key.dek_destroyed", userId, new JsonObject { ["service"] = service, ["reason"] = reason });
        return blobs.Count;
    }

    public async Task<IReadOnlyList<ConsentView>> GetConsentsAsync(string userId, CancellationToken ct = default)
    {
        var states = await Store.ReadAsync(async tx =>
        {
            await RequireUserAsync(tx, userId);
            var list = new List<ConsentStateRow?>();
            foreach (var s in Policy.Services) list.Add(await tx.GetConsentStateAsync(userId, s.Id));
            return list;
        }, ct);
        return Policy.Services.Select((s, i) => new ConsentView(s.Id, s.Purpose, s.Version, Active(states[i], s),
            states[i] is { } st ? DateTimeOffset.FromUnixTimeMilliseconds(st.At) : null)).ToList();
    }

    /// <summary>The append-only ledger of one user's consent changes, oldest first.</summary>
    public Task<IReadOnlyList<ConsentRow>> ConsentHistoryAsync(string userId, CancellationToken ct = default) =>
        Store.ReadAsync(tx => tx.ListConsentsAsync(userId), ct);

    public async Task<bool> HasConsentAsync(string userId, string service, CancellationToken ct = default)
    {
        var svc = RequireService(service);
        return Active(await Store.ReadAsync(tx => tx.GetConsentStateAsync(userId, service), ct), svc);
    }

    DomicileException ConsentRequired(string service) =>
        new("consent_required", $"the user has not turned on '{service}' for its current purpose; nothing was stored");
}
