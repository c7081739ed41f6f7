using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Domicile.Crypto;
using Domicile.Store;

namespace Domicile.Audit;

/// <summary>Outcome of checking a chain: <see cref="FirstBadSeq"/> names where it first breaks.</summary>
public sealed record AuditVerification(string Region, long Entries, bool Ok, long? FirstBadSeq, string? Problem)
{
    public JsonObject ToJson() => new()
    {
        ["region"] = Region,
        ["entries"] = Entries,
        ["ok"] = Ok,
        ["first_bad_seq"] = FirstBadSeq,
        ["problem"] = Problem,
    };
}

/// <summary>
/// The per-region hash chain of SPEC 6.4: hash = SHA-256 over the RFC 8785 form of the entry
/// without its hash; prev links each entry to the one before; entry 1 links to 64 zeros.
/// </summary>
public static class AuditChain
{
    public static readonly string Genesis = new('0', 64);

    public static string FormatTime(DateTimeOffset at) =>
        at.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    /// <summary>Appends one entry inside the caller's transaction, so it commits with the action it records.</summary>
    public static Task<AuditRow> AppendAsync(IStoreTx tx, DateTimeOffset now, string actor, string action, string subject, JsonObject? details = null) =>
        AppendCanonicalAsync(tx, now, actor, action, subject, Canonical(details));

    /// <summary>The details' RFC 8785 text, as an entry stores it: made once for many entries with the same details.</summary>
    public static string Canonical(JsonObject? details) => details is null ? "{}" : Jcs.CanonicalString(details);

    /// <summary><see cref="AppendAsync"/> with details already in their <see cref="Canonical"/> form.</summary>
    public static async Task<AuditRow> AppendCanonicalAsync(IStoreTx tx, DateTimeOffset now, string actor, string action, string subject, string detailsText)
    {
        var head = await tx.AuditHeadAsync();
        var seq = (head?.Seq ?? 0) + 1;
        var prev = head?.Hash ?? Genesis;
        var at = FormatTime(now);
        var row = new AuditRow(seq, at, actor, action, subject, detailsText, prev, "");
        row = row with { Hash = HashCanonical(row) };
        await tx.AppendAuditAsync(row);
        return row;
    }

    /// <summary>The entry as exported: every member, hash last.</summary>
    public static JsonObject ToJson(AuditRow row, bool withHash = true)
    {
        var o = new JsonObject
        {
            ["seq"] = row.Seq,
            ["at"] = row.At,
            ["actor"] = row.Actor,
            ["action"] = row.Action,
            ["subject"] = row.Subject,
            ["details"] = ParseDetails(row.Details),
            ["prev"] = row.Prev,
        };
        if (withHash) o["hash"] = row.Hash;
        return o;
    }

    /// <summary>
    /// <see cref="Hash"/> of an entry whose details are already canonical, as every appended entry's
    /// are: the same RFC 8785 bytes written directly (members in their sorted order), without
    /// parsing the details back. Verification keeps the general path. (Sequence numbers stay below
    /// 2^53, where JCS prints a number as the same digits.)
    /// </summary>
    internal static string HashCanonical(AuditRow row)
    {
        // One builder and one byte buffer per thread: an entry's text is made, hashed and dropped.
        var sb = _canonical ??= new StringBuilder(512);
        sb.Clear();
        sb.Append("{\"action\":");
        Jcs.AppendString(sb, row.Action);
        sb.Append(",\"actor\":");
        Jcs.AppendString(sb, row.Actor);
        sb.Append(",\"at\":");
        Jcs.AppendString(sb, row.At);
        sb.Append(",\"details\":").Append(row.Details).Append(",\"prev\":");
        Jcs.AppendString(sb, row.Prev);
        sb.Append(",\"seq\":").Append(row.Seq.ToString(CultureInfo.InvariantCulture)).Append(",\"subject\":");
        Jcs.AppendString(sb, row.Subject);
        sb.Append('}');
        var chars = System.Buffers.ArrayPool<char>.Shared.Rent(sb.Length);
        var bytes = System.Buffers.ArrayPool<byte>.Shared.Rent(Encoding.UTF8.GetMaxByteCount(sb.Length));
        try
        {
            sb.CopyTo(0, chars, sb.Length);
            var n = Encoding.UTF8.GetBytes(chars, 0, sb.Length, bytes, 0);
            Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
            SHA256.HashData(bytes.AsSpan(0, n), hash);
            return Convert.ToHexStringLower(hash);
        }
        finally
        {
            System.Buffers.ArrayPool<char>.Shared.Return(chars);
            System.Buffers.ArrayPool<byte>.Shared.Return(bytes);
            if (sb.Capacity > 16_384) _canonical = null; // a huge entry's buffer is not kept
        }
    }

    [ThreadStatic] static StringBuilder? _canonical;

    public static string Hash(AuditRow row)
    {
        var bytes = Jcs.Canonicalize(ToJson(row, withHash: false));
        return Convert.ToHexStringLower(SHA256.HashData(bytes));
    }

    static JsonNode ParseDetails(string text)
    {
        try
        {
            return JsonNode.Parse(text) ?? new JsonObject();
        }
        catch (JsonException)
        {
            // A corrupted details column must still hash (to a value that will not match), not crash verification.
            return JsonValue.Create(text);
        }
    }

    /// <summary>Checks a sequence of entries in order; stops at the first break.</summary>
    public sealed class Verifier(string region, string? checkpoint = null)
    {
        long _expected = 1;
        string _prev = Genesis;
        bool _checkpointSeen = checkpoint is null;

        public long Entries { get; private set; }
        public long? FirstBad { get; private set; }
        public string? Problem { get; private set; }

        /// <summary>Feeds the next entry; false once the chain is broken.</summary>
        public bool Add(AuditRow row)
        {
            if (FirstBad is not null) return false;
            Entries++;
            string? problem = null;
            if (row.Seq != _expected) problem = $"entry {_expected} is missing or out of order (found seq {row.Seq})";
            else if (!string.Equals(row.Prev, _prev, StringComparison.Ordinal)) problem = $"entry {_expected} does not link to the entry before it";
            else if (!string.Equals(Hash(row), row.Hash, StringComparison.Ordinal)) problem = $"entry {_expected} was modified: its hash does not match its content";
            if (problem is not null)
            {
                FirstBad = _expected;
                Problem = problem;
                return false;
            }
            if (!_checkpointSeen && string.Equals(row.Hash, checkpoint, StringComparison.OrdinalIgnoreCase)) _checkpointSeen = true;
            _prev = row.Hash;
            _expected++;
            return true;
        }

        public AuditVerification Result()
        {
            if (FirstBad is null && !_checkpointSeen)
                return new AuditVerification(region, Entries, false, _expected,
                    "the checkpoint is not on the chain: entries after it were removed, or it belongs to another log");
            return new AuditVerification(region, Entries, FirstBad is null, FirstBad, Problem);
        }
    }

    public static AuditVerification Verify(string region, IEnumerable<AuditRow> rows, string? checkpoint = null)
    {
        var v = new Verifier(region, checkpoint);
        foreach (var r in rows)
            if (!v.Add(r)) break;
        return v.Result();
    }

    /// <summary>Parses one exported line back into a row (for auditors' tools and tests).</summary>
    public static AuditRow ParseLine(string line)
    {
        var o = JsonNode.Parse(line)!.AsObject();
        return new AuditRow(
            o["seq"]!.GetValue<long>(), o["at"]!.GetValue<string>(), o["actor"]!.GetValue<string>(), o["action"]!.GetValue<string>(),
            o["subject"]!.GetValue<string>(), Jcs.CanonicalString(o["details"]), o["prev"]!.GetValue<string>(), o["hash"]!.GetValue<string>());
    }

    public static string ExportLine(AuditRow row) => ToJson(row).ToJsonString(new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });

    internal static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);
}
