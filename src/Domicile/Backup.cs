using System.IO.Compression;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Domicile.Audit;
using Domicile.Store;

namespace Domicile;

public sealed record BackupResult(string Region, long Users, long Rows);

public sealed record RestoreResult(string Region, long RestoredUsers, long SkippedUsers, long Rows);

/// <summary>
/// Data backups without data keys (G6): users, items, blob chunks, consents and messages, as
/// gzip'd JSON Lines read from one snapshot. The key table, KEKs and region metadata stay out,
/// so a restore runs against the region's current keys: users erased after the backup (their
/// keys destroyed) cannot come back and are reported as skipped.
/// </summary>
public static class Backup
{
    const string Format = "domicile-backup/v1";

    static readonly (string Table, string[] Columns)[] Tables =
    [
        ("users", ["id", "login_index", "login_enc", "password_hash", "country", "created_at", "change_seq", "state"]),
        ("consent_state", ["user_id", "service", "version", "granted", "at"]),
        ("consents", ["user_id", "at", "service", "version", "granted", "source"]),
        ("items", ["user_id", "service", "collection", "key_index", "head", "content", "blob_id", "size", "version", "deleted", "created_at", "updated_at"]),
        ("blob_chunks", ["blob_id", "idx", "data", "created_at"]),
        ("messages", ["id", "user_id", "sender", "body", "sent_at", "expires_at"]),
    ];

    static readonly (string Table, string[] Columns) KeyStamps = ("data_keys", ["user_id", "service", "created_at"]);

    public static async Task<BackupResult> WriteAsync(Region region, Stream output, CancellationToken ct = default)
    {
        await using var gzip = new GZipStream(output, CompressionLevel.Fastest, leaveOpen: true);
        await using var writer = new StreamWriter(gzip, new UTF8Encoding(false));
        await writer.WriteLineAsync(new JsonObject { ["format"] = Format, ["region"] = region.Id, ["at"] = region.Time.GetUtcNow(), ["key_stamps"] = true }.ToJsonString());
        long users = 0, rows = 0;
        // Which data key sealed each service's rows, by its creation time only (never the key): a
        // restore brings rows back only under that same key, whatever the clock did meanwhile.
        await region.Store.DumpAsync([KeyStamps, .. Tables], async (table, values) =>
        {
            if (table == KeyStamps.Table)
            {
                await writer.WriteLineAsync(new JsonObject { ["t"] = "key_stamps", ["r"] = new JsonArray((string)values[0]!, (string)values[1]!, Convert.ToInt64(values[2], System.Globalization.CultureInfo.InvariantCulture)) }.ToJsonString());
                return;
            }
            var row = new JsonArray();
            foreach (var v in values)
            {
                JsonNode? node = v switch
                {
                    null => null,
                    byte[] b => new JsonObject { ["b64"] = Convert.ToBase64String(b) },
                    long l => l,
                    int i => (long)i,
                    _ => Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture),
                };
                row.Add(node);
            }
            await writer.WriteLineAsync(new JsonObject { ["t"] = table, ["r"] = row }.ToJsonString());
            rows++;
            if (table == "users") users++;
        }, ct);
        await region.AuditAsync("system", "backup.create", region.Id, new JsonObject { ["users"] = users, ["rows"] = rows }, ct);
        return new BackupResult(region.Id, users, rows);
    }

    public static async Task<RestoreResult> RestoreAsync(Region region, Stream input, string actor, CancellationToken ct = default)
    {
        // The keys that exist now decide who can come back (with their creation time: a key made
        // after the backup replaced one that was destroyed, so that service's old items stay out).
        var keys = new Dictionary<(string User, string Service), long>();
        await region.Store.DumpAsync([("data_keys", ["user_id", "service", "created_at"])], (_, v) =>
        {
            keys[((string)v[0]!, (string)v[1]!)] = Convert.ToInt64(v[2], System.Globalization.CultureInfo.InvariantCulture);
            return Task.CompletedTask;
        }, ct);
        // Consent moves forward only: the current ledger is kept, the backup's rows are merged in.
        var ledger = new HashSet<(string, long, string)>();
        await region.Store.DumpAsync([("consents", ["user_id", "at", "service"])], (_, v) =>
        {
            ledger.Add(((string)v[0]!, Convert.ToInt64(v[1], System.Globalization.CultureInfo.InvariantCulture), (string)v[2]!));
            return Task.CompletedTask;
        }, ct);

        await using var gzip = new GZipStream(input, CompressionMode.Decompress, leaveOpen: true);
        using var reader = new StreamReader(gzip, Encoding.UTF8);
        var header = JsonNode.Parse(await reader.ReadLineAsync(ct) ?? "{}");
        if ((string?)header?["format"] != Format)
            throw DomicileException.Invalid("this file is not a Domicile backup");
        if ((string?)header["region"] != region.Id)
            throw DomicileException.Invalid($"this backup is of region '{header["region"]}', not '{region.Id}'");
        var takenAt = header["at"]!.GetValue<DateTimeOffset>().ToUnixTimeMilliseconds();
        var stamped = (bool?)header["key_stamps"] == true;
        var stamps = new Dictionary<(string, string), long>();
        // The key there now sealed the backup's rows of that service: the same key (by its stamp), or
        // in a backup without stamps one made before the backup was taken. A key made since replaced
        // one that was destroyed, so those rows stay out.
        bool SameKey(string user, string service) =>
            keys.TryGetValue((user, service), out var created)
            && (stamped ? stamps.TryGetValue((user, service), out var then) && then == created : created <= takenAt);

        var restored = new HashSet<string>();
        var skipped = new HashSet<string>();
        var skippedBlobs = new HashSet<string>();
        var result = await region.Store.ReplaceAsync(Tables, new HashSet<string> { "consent_state", "consents" }, async insert =>
        {
            long rows = 0;
            var columns = Tables.ToDictionary(t => t.Table, t => t.Columns);
            while (await reader.ReadLineAsync(ct) is { } line)
            {
                var o = JsonNode.Parse(line)!.AsObject();
                var table = (string)o["t"]!;
                if (table == "key_stamps" && o["r"] is JsonArray { Count: 3 } stamp)
                {
                    stamps[((string)stamp[0]!, (string)stamp[1]!)] = (long)stamp[2]!;
                    continue;
                }
                if (!columns.TryGetValue(table, out var cols)) throw DomicileException.Invalid($"the backup names an unknown table '{table}'");
                var values = o["r"]!.AsArray().Select(Value).ToArray();
                if (values.Length != cols.Length) throw DomicileException.Invalid($"a '{table}' row of the backup has the wrong number of columns");
                switch (table)
                {
                    case "users":
                        var id = (string)values[0]!;
                        // A backup taken mid-migration: a fenced user is home again; one half-copied in or
                        // already moved out lives elsewhere, and is not brought back here.
                        var state = (string)values[7]!;
                        if (state is UserStates.Incoming or UserStates.Moved) { skipped.Add(id); continue; }
                        if (state == UserStates.Fenced) values[7] = UserStates.Active;
                        // The account key sealed the login: one made since (the user moved away and
                        // back) cannot open this row, so the user stays as they are now.
                        if (SameKey(id, "account")) restored.Add(id);
                        else { skipped.Add(id); continue; }
                        break;
                    case "items":
                        // Only with its account: the items of a user left out (half-copied in, moved
                        // out, or sealed under an account key since replaced) would be rows of nobody.
                        if (!restored.Contains((string)values[0]!) || !SameKey((string)values[0]!, (string)values[1]!))
                        {
                            if (values[6] is string blob) skippedBlobs.Add(blob);
                            continue;
                        }
                        break;
                    case "blob_chunks":
                        if (skippedBlobs.Contains((string)values[0]!)) continue;
                        break;
                    case "consents":
                        if (!restored.Contains((string)values[0]!)
                            || ledger.Contains(((string)values[0]!, Convert.ToInt64(values[1], System.Globalization.CultureInfo.InvariantCulture), (string)values[2]!))) continue;
                        break;
                    case "messages":
                        // Like items: a message sealed under a key destroyed since the backup stays gone.
                        if (!restored.Contains((string)values[1]!) || !SameKey((string)values[1]!, Region.MessagingService)) continue;
                        break;
                    default:
                        if (!restored.Contains((string)values[0]!)) continue;
                        break;
                }
                await insert(table, values);
                rows++;
            }
            return rows;
        }, [
            "DELETE FROM consent_state WHERE user_id NOT IN (SELECT id FROM users)",
            "DELETE FROM consents WHERE user_id NOT IN (SELECT id FROM users)",
        ], ct);
        region.ForgetAllAccounts();
        await region.AuditAsync(actor, "backup.restore", region.Id, new JsonObject { ["restored_users"] = restored.Count, ["skipped_users"] = skipped.Count }, ct);
        return new RestoreResult(region.Id, restored.Count, skipped.Count, result);
    }

    static object? Value(JsonNode? n) => n switch
    {
        null => null,
        JsonObject o => Convert.FromBase64String((string)o["b64"]!),
        JsonValue v when v.GetValueKind() == JsonValueKind.Number => v.GetValue<long>(),
        JsonValue v => v.GetValue<string>(),
        _ => throw DomicileException.Invalid("the backup holds a value of an unknown shape"),
    };
}
