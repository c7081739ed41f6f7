using System.IO.Compression;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Domicile.Audit;
using Domicile.Store;

namespace Domicile;

/// <summary>One touch of a user's data by someone other than the user.</summary>
public sealed record AccessEntry(DateTimeOffset At, string Actor, string Role, string Action, JsonNode? Details);

public sealed partial class Region
{
    /// <summary>
    /// Every touch of the user's data by anyone but the user (operators, migrations, sweeps,
    /// exports), read from the audit chain.
    /// </summary>
    public async Task<IReadOnlyList<AccessEntry>> AccessLogAsync(string userId, CancellationToken ct = default)
    {
        var roles = await RolesAsync(ct);
        var entries = new List<AccessEntry>();
        var rows = await AuditAboutAsync(userId, ct);
        // A migration resumed after a crash may have carried the history twice: the last one counts.
        var lastCarried = rows.Where(r => r.Action == HistoryAction).GroupBy(r => r.Actor).Select(g => g.Max(r => r.Seq)).ToHashSet();
        foreach (var r in rows)
        {
            if (r.Actor == userId) continue;
            var details = JsonNode.Parse(r.Details);
            // Touches recorded in the regions the person lived in before, carried over by the migration.
            if (r.Action == HistoryAction && lastCarried.Contains(r.Seq) && details?["touches"] is JsonArray carried)
                foreach (var t in carried.OfType<JsonObject>())
                    entries.Add(new AccessEntry(DateTimeOffset.Parse((string)t["at"]!, System.Globalization.CultureInfo.InvariantCulture),
                        (string)t["actor"]!, (string)t["role"]!, (string)t["action"]!, t["details"]?.DeepClone()));
            entries.Add(new AccessEntry(DateTimeOffset.Parse(r.At, System.Globalization.CultureInfo.InvariantCulture), r.Actor, RoleOf(roles, r.Actor), r.Action, details));
        }
        return entries;
    }

    async Task<Dictionary<string, string>> RolesAsync(CancellationToken ct) =>
        (await Store.ReadAsync(tx => tx.ListOperatorsAsync(), ct)).ToDictionary(o => o.Id, o => o.Role);

    static string RoleOf(Dictionary<string, string> roles, string actor) =>
        roles.GetValueOrDefault(actor, actor.StartsWith("migration", StringComparison.Ordinal) ? "migration" : "system");

    async Task<List<AuditRow>> AuditAboutAsync(string userId, CancellationToken ct)
    {
        var rows = new List<AuditRow>();
        while (true)
        {
            var after = rows.Count == 0 ? 0 : rows[^1].Seq;
            var page = await Store.ReadAsync(tx => tx.AuditBySubjectAsync(userId, after, 5000), ct);
            rows.AddRange(page);
            if (page.Count < 5000) break;
        }
        return rows;
    }

    internal const string HistoryAction = "migration.history";

    /// <summary>
    /// The summary of each user's audit trail here that a migration carries to the new region: how
    /// many entries of each action, the span, a digest over the entries' chain hashes, and every
    /// touch by someone other than the user in full (so the person's access log stays whole).
    /// The migration's own entries (<paramref name="excludeActor"/>) are left out: they keep growing.
    /// </summary>
    internal async Task<Dictionary<string, JsonObject>> HistorySummariesAsync(IReadOnlyList<string> userIds, string excludeActor, int page = 2000, CancellationToken ct = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(page, 1);
        var roles = await RolesAsync(ct);
        var summaries = userIds.Distinct(StringComparer.Ordinal).ToDictionary(u => u, u => new HistorySummary(this, u, excludeActor, roles), StringComparer.Ordinal);
        try
        {
            // In pages, so that a user with years of entries is summed up, not held. On SQLite the
            // pages share one snapshot; on PostgreSQL each reads what is committed then, so an entry
            // written meanwhile (the user is fenced: an operator's, say) may or may not be counted.
            await Store.ReadAsync(async tx =>
            {
                var (afterSubject, afterSeq) = ("", 0L);
                while (true)
                {
                    var rows = await tx.AuditBySubjectsAsync(userIds, afterSubject, afterSeq, page);
                    foreach (var r in rows) summaries[r.Subject].Add(r);
                    if (rows.Count < page) return 0;
                    (afterSubject, afterSeq) = (rows[^1].Subject, rows[^1].Seq);
                }
            }, ct);
            return summaries.ToDictionary(s => s.Key, s => s.Value.ToJson(), StringComparer.Ordinal);
        }
        finally
        {
            foreach (var s in summaries.Values) s.Dispose();
        }
    }

    /// <summary>One user's audit summary, entry by entry (see <see cref="HistorySummariesAsync"/>).</summary>
    sealed class HistorySummary(Region region, string userId, string excludeActor, Dictionary<string, string> roles) : IDisposable
    {
        readonly SortedDictionary<string, long> _actions = new(StringComparer.Ordinal);
        readonly JsonArray _touches = [];
        readonly System.Security.Cryptography.IncrementalHash _hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        long _count;
        string? _first, _last;

        public void Add(AuditRow r)
        {
            if (r.Actor == excludeActor) return;
            _count++;
            _first ??= r.At;
            _last = r.At;
            _actions[r.Action] = _actions.GetValueOrDefault(r.Action) + 1;
            _hash.AppendData(Encoding.ASCII.GetBytes(r.Hash));
            if (r.Actor == userId) return;
            if (r.Action == HistoryAction && JsonNode.Parse(r.Details)?["touches"] is JsonArray older)
                foreach (var t in older) _touches.Add(t?.DeepClone());
            else
                _touches.Add(new JsonObject { ["at"] = r.At, ["actor"] = r.Actor, ["role"] = RoleOf(roles, r.Actor), ["action"] = r.Action, ["details"] = JsonNode.Parse(r.Details), ["region"] = region.Id });
        }

        public JsonObject ToJson()
        {
            var actionCounts = new JsonObject();
            foreach (var (a, n) in _actions) actionCounts[a] = n;
            return new JsonObject
            {
                ["from"] = region.Id, ["entries"] = _count, ["first_at"] = _first, ["last_at"] = _last, ["actions"] = actionCounts,
                ["digest"] = Convert.ToHexStringLower(_hash.GetHashAndReset()), ["touches"] = _touches,
            };
        }

        public void Dispose() => _hash.Dispose();
    }

    /// <summary>Records in this region's chain the audit summary a migration brought with each user.</summary>
    internal Task CarryHistoriesAsync(IReadOnlyDictionary<string, JsonObject> histories, string actor, CancellationToken ct = default)
    {
        var canonical = CanonicalHistories(histories);
        return Store.WriteAsync(async tx => { await CarryHistoriesAsync(tx, canonical, actor); return 0; }, ct);
    }

    /// <param name="histories">Each user's summary in its <see cref="AuditChain.Canonical"/> form, made before the write turn (see <see cref="CanonicalHistories"/>).</param>
    internal async Task CarryHistoriesAsync(IStoreTx tx, IReadOnlyList<(string UserId, string Summary)> histories, string actor)
    {
        foreach (var (userId, summary) in histories) await AuditChain.AppendCanonicalAsync(tx, Now, actor, HistoryAction, userId, summary);
    }

    internal static List<(string UserId, string Summary)> CanonicalHistories(IReadOnlyDictionary<string, JsonObject> histories) =>
        [.. histories.Select(h => (h.Key, AuditChain.Canonical(h.Value)))];

    /// <summary>The digest of the last audit summary <paramref name="actor"/> recorded here for each user that has one.</summary>
    internal async Task<Dictionary<string, string?>> CarriedHistoryDigestsAsync(IReadOnlyList<string> userIds, string actor, CancellationToken ct = default) =>
        (await Store.ReadAsync(tx => tx.LastAuditsAsync(userIds, actor, HistoryAction), ct))
            .ToDictionary(r => r.Subject, r => Migrator.JournalFields.Read(r.Details).Digest, StringComparer.Ordinal);

    /// <summary>
    /// Erases an account: the user's data keys are destroyed first (crypto-shredding), then
    /// every row of the user is deleted, in one transaction. Audited with the pseudonymous id only.
    /// </summary>
    public async Task EraseAccountAsync(string userId, string actor, CancellationToken ct = default)
    {
        await Store.WriteAsync(async tx =>
        {
            await RequireUserAsync(tx, userId);
            await BeginUserWriteAsync(tx, userId);
            var n = await tx.EraseUsersAsync([userId]);
            await AuditChain.AppendAsync(tx, Now, actor, "account.erase", userId, new JsonObject { ["rows"] = n });
            return 0;
        }, ct);
        _keys?.ForgetUser(userId, KeyedServices);
        ForgetAccount(userId);
    }

    static readonly JsonSerializerOptions ExportJson = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>
    /// Writes a zip of everything the region holds about the user: account, every item with
    /// its content type, messages, the consent ledger and the access log, with a manifest.
    /// Entry names are generated (keys are user text and could be hostile paths); the manifest maps them.
    /// </summary>
    public async Task ExportAsync(string userId, Stream output, CancellationToken ct = default)
    {
        var account = await GetAccountAsync(userId, ct) ?? throw DomicileException.NotFound("no such user in this region");
        await Store.WriteAsync(tx => AuditChain.AppendAsync(tx, Now, userId, "account.export", userId), ct);
        await using var zip = await ZipArchive.CreateAsync(output, ZipArchiveMode.Create, leaveOpen: true, entryNameEncoding: null, ct);
        var manifestItems = new JsonArray();
        var n = 0;
        foreach (var svc in Policy.Services)
        {
            foreach (var collection in await CollectionsAsync(userId, svc.Id, ct))
            {
                string? cursor = null;
                do
                {
                    var page = await ListAsync(userId, svc.Id, collection, cursor, 500, ct);
                    foreach (var info in page.Items)
                    {
                        await using var item = await GetAsync(userId, svc.Id, collection, info.Key, ct);
                        var name = $"items/{svc.Id}/{collection}/{++n:D6}";
                        var entry = zip.CreateEntry(name, CompressionLevel.Fastest);
                        await using (var s = await entry.OpenAsync(ct)) await item.Content.CopyToAsync(s, ct);
                        manifestItems.Add(new JsonObject
                        {
                            ["file"] = name, ["service"] = svc.Id, ["collection"] = collection, ["key"] = info.Key,
                            ["content_type"] = item.ContentType, ["etag"] = item.ETag, ["size"] = item.Size, ["updated_at"] = item.UpdatedAt,
                        });
                    }
                    cursor = page.NextCursor;
                } while (cursor is not null);
            }
        }
        var messageList = await ReadMessagesAsync(userId, int.MaxValue, ct);
        var consents = await ConsentHistoryAsync(userId, ct);
        var access = await AccessLogAsync(userId, ct);
        await WriteJson(zip, "account.json", new JsonObject
        {
            ["user_id"] = userId, ["login"] = await LoginOfAsync(userId, ct), ["country"] = account.Country, ["region"] = Id,
        }, ct);
        await WriteJson(zip, "messages.json", new JsonArray([.. messageList.Select(m => new JsonObject { ["id"] = m.Id, ["from"] = m.From, ["body"] = m.Body, ["sent_at"] = m.SentAt })]), ct);
        await WriteJson(zip, "consents.json", new JsonArray([.. consents.Select(c => new JsonObject
        {
            ["service"] = c.Service, ["version"] = c.Version, ["granted"] = c.Granted, ["at"] = DateTimeOffset.FromUnixTimeMilliseconds(c.At), ["source"] = c.Source,
        })]), ct);
        await WriteJson(zip, "access-log.json", new JsonArray([.. access.Select(a => new JsonObject
        {
            ["at"] = a.At, ["actor"] = a.Actor, ["role"] = a.Role, ["action"] = a.Action, ["details"] = a.Details?.DeepClone(),
        })]), ct);
        await WriteJson(zip, "manifest.json", new JsonObject
        {
            ["format"] = "domicile-export/v1", ["user_id"] = userId, ["region"] = Id, ["exported_at"] = Now,
            ["items"] = manifestItems, ["messages"] = messageList.Count, ["consent_records"] = consents.Count, ["access_log_entries"] = access.Count,
        }, ct);
    }

    static async Task WriteJson(ZipArchive zip, string name, JsonNode node, CancellationToken ct)
    {
        var entry = zip.CreateEntry(name, CompressionLevel.Fastest);
        await using var s = await entry.OpenAsync(ct);
        await s.WriteAsync(Encoding.UTF8.GetBytes(node.ToJsonString(ExportJson)), ct);
    }

    async Task<IReadOnlyList<string>> CollectionsAsync(string userId, string service, CancellationToken ct)
    {
        var all = new SortedSet<string>(StringComparer.Ordinal);
        long after = 0;
        while (true)
        {
            var rows = await Store.ReadAsync(tx => tx.ChangesAsync(userId, after, 1000), ct);
            foreach (var r in rows) if (r.Service == service && !r.Deleted) all.Add(r.Collection);
            if (rows.Count < 1000) break;
            after = rows[^1].Version;
        }
        return [.. all];
    }
}
