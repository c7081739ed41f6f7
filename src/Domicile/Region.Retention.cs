using System.Text.Json.Nodes;
using Domicile.Audit;

namespace Domicile;

/// <summary>What one retention sweep deleted in a region, per service.</summary>
public sealed record SweepResult(string Region, IReadOnlyDictionary<string, ServiceSweep> Services, long OrphanChunks);

public sealed record ServiceSweep(long Messages, long Items, long WithdrawnUsers);

public sealed partial class Region
{
    /// <summary>Chunks of an upload that never committed are removed after this long.</summary>
    public static readonly TimeSpan OrphanChunkAge = TimeSpan.FromHours(1);

    /// <summary>
    /// One retention sweep (G5): messages past their TTL, items past the service's max_age, and
    /// the data and key of every withdrawn service past its grace period. Needs no keys, so it
    /// runs on sealed regions too. Writes one audit entry with the counts.
    /// </summary>
    public async Task<SweepResult> SweepAsync(CancellationToken ct = default)
    {
        var now = Now;
        var services = new Dictionary<string, ServiceSweep>();
        foreach (var svc in Policy.Services)
        {
            long messages = 0, items = 0, users = 0;
            // Messages exist only for the messaging service; each carries its own expiry.
            if (svc.Id == MessagingService)
                messages = await Store.WriteAsync(tx => tx.DeleteExpiredMessagesAsync(now.ToUnixTimeMilliseconds()), ct);
            if (svc.Retention.MaxAge is { } maxAge)
                items = await Store.WriteAsync(async tx =>
                {
                    var perUser = await tx.DeleteItemsOlderThanAsync(svc.Id, now.Subtract(maxAge).ToUnixTimeMilliseconds());
                    // Each person sees in their access log that the sweep removed their data.
                    foreach (var (user, n) in perUser)
                        await AuditChain.AppendAsync(tx, now, SystemActor, "retention.expired", user, new JsonObject { ["service"] = svc.Id, ["items"] = n });
                    return perUser.Sum(p => p.Items);
                }, ct);
            var before = now.Subtract(svc.Retention.AfterWithdrawal).ToUnixTimeMilliseconds();
            while (true)
            {
                var batch = await Store.ReadAsync(tx => tx.WithdrawnBeforeAsync(svc.Id, before, 500), ct);
                foreach (var user in batch)
                {
                    var purged = await Store.WriteAsync(async tx =>
                    {
                        // Re-checked inside the write: a re-grant that raced the sweep keeps the data.
                        var state = await tx.GetConsentStateAsync(user, svc.Id);
                        if (state is not { Granted: false } || state.At >= before) return false;
                        await PurgeServiceAsync(tx, user, svc.Id, "retention", now);
                        return true;
                    }, ct);
                    if (!purged) continue;
                    _keys?.Forget(user, svc.Id);
                    users++;
                }
                if (batch.Count < 500) break;
            }
            services[svc.Id] = new ServiceSweep(messages, items, users);
        }
        var orphans = await Store.WriteAsync(tx => tx.DeleteOrphanChunksAsync(now.Subtract(OrphanChunkAge).ToUnixTimeMilliseconds()), ct);
        var details = new JsonObject { ["orphan_chunks"] = orphans };
        foreach (var (id, s) in services)
            details[id] = new JsonObject { ["messages"] = s.Messages, ["items"] = s.Items, ["withdrawn_users"] = s.WithdrawnUsers };
        await Store.WriteAsync(tx => AuditChain.AppendAsync(tx, now, SystemActor, "retention.sweep", Id, details), ct);
        return new SweepResult(Id, services, orphans);
    }
}
