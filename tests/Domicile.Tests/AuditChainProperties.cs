using System.Text.Json.Nodes;
using CsCheck;
using Domicile.Audit;
using Domicile.Store;

namespace Domicile.Tests;

/// <summary>Verification catches every modified, inserted, deleted or reordered entry.</summary>
public class AuditChainProperties
{
    static List<AuditRow> Chain(int length, uint seed)
    {
        var rows = new List<AuditRow>();
        var prev = AuditChain.Genesis;
        var rnd = new Random((int)seed);
        for (var i = 1; i <= length; i++)
        {
            var details = new JsonObject { ["n"] = rnd.Next(), ["service"] = "cloud-sync", ["ünï"] = "\u20ac" };
            var row = new AuditRow(i, AuditChain.FormatTime(DateTimeOffset.UnixEpoch.AddSeconds(rnd.Next())), $"actor-{rnd.Next(5)}",
                $"action.{rnd.Next(9)}", $"subject-{rnd.Next(100)}", Crypto.Jcs.CanonicalString(details), prev, "");
            row = row with { Hash = AuditChain.Hash(row) };
            rows.Add(row);
            prev = row.Hash;
        }
        return rows;
    }

    static readonly Gen<(int Length, uint Seed)> Chains = Gen.Select(Gen.Int[2, 40], Gen.UInt);

    [Fact]
    public void The_append_hash_equals_the_general_canonical_hash() =>
        Gen.Select(Gen.String, Gen.String, Gen.String, Gen.Long[1, 1L << 53], Gen.Dictionary(Gen.String, Gen.Int)[0, 5]).Sample((actor, action, subject, seq, map) =>
        {
            var details = new JsonObject();
            foreach (var (k, v) in map) details[k] = v;
            var row = new AuditRow(seq, AuditChain.FormatTime(DateTimeOffset.UnixEpoch.AddSeconds(seq % 4_000_000_000)), actor, action, subject,
                Crypto.Jcs.CanonicalString(details), AuditChain.Genesis, "");
            return AuditChain.HashCanonical(row) == AuditChain.Hash(row);
        });

    [Fact]
    public void An_untouched_chain_verifies() =>
        Chains.Sample(c => AuditChain.Verify("r", Chain(c.Length, c.Seed)) is { Ok: true, FirstBadSeq: null } v && v.Entries == c.Length);

    [Fact]
    public void Any_modified_field_is_caught_at_that_entry() =>
        Gen.Select(Chains, Gen.Int[0, 1000], Gen.Int[0, 5]).Sample((c, pos, field) =>
        {
            var rows = Chain(c.Length, c.Seed);
            var i = pos % rows.Count;
            rows[i] = field switch
            {
                0 => rows[i] with { Actor = rows[i].Actor + "x" },
                1 => rows[i] with { Action = "forged" },
                2 => rows[i] with { Subject = rows[i].Subject + "0" },
                3 => rows[i] with { Details = "{\"n\":0}" },
                4 => rows[i] with { At = "2000-01-01T00:00:00.000Z" },
                _ => rows[i] with { Hash = new string('a', 64) },
            };
            var v = AuditChain.Verify("r", rows);
            return !v.Ok && v.FirstBadSeq == i + 1;
        });

    [Fact]
    public void A_modified_entry_with_a_recomputed_hash_breaks_the_next_link() =>
        Gen.Select(Chains, Gen.Int[0, 1000]).Sample((c, pos) =>
        {
            var rows = Chain(c.Length, c.Seed);
            var i = pos % (rows.Count - 1); // not the last: that needs a checkpoint (below)
            rows[i] = rows[i] with { Actor = "insider" };
            rows[i] = rows[i] with { Hash = AuditChain.Hash(rows[i]) };
            var v = AuditChain.Verify("r", rows);
            return !v.Ok && v.FirstBadSeq == i + 2;
        });

    [Fact]
    public void Deleted_inserted_and_reordered_entries_are_caught() =>
        Gen.Select(Chains, Gen.Int[0, 1000], Gen.Int[0, 2]).Sample((c, pos, kind) =>
        {
            var rows = Chain(c.Length, c.Seed);
            var i = pos % (rows.Count - 1);
            switch (kind)
            {
                case 0:
                    rows.RemoveAt(i);
                    break;
                case 1:
                    var forged = rows[i] with { Action = "inserted" };
                    rows.Insert(i + 1, forged with { Hash = AuditChain.Hash(forged) });
                    break;
                default:
                    (rows[i], rows[i + 1]) = (rows[i + 1], rows[i]);
                    break;
            }
            return !AuditChain.Verify("r", rows).Ok;
        });

    [Fact]
    public void Truncation_after_a_checkpoint_is_caught_and_a_foreign_checkpoint_too() =>
        Gen.Select(Chains, Gen.Int[1, 1000]).Sample((c, cut) =>
        {
            var rows = Chain(c.Length, c.Seed);
            var checkpoint = rows[^1].Hash;
            var kept = rows.Take(rows.Count - 1 - cut % (rows.Count - 1)).ToList();
            return AuditChain.Verify("r", rows, checkpoint).Ok
                && !AuditChain.Verify("r", kept, checkpoint).Ok
                && !AuditChain.Verify("r", rows, new string('b', 64)).Ok;
        });

    [Fact]
    public void Exported_lines_parse_back_to_the_same_chain() =>
        Chains.Sample(c =>
        {
            var rows = Chain(c.Length, c.Seed);
            var parsed = rows.Select(AuditChain.ExportLine).Select(AuditChain.ParseLine).ToList();
            return parsed.SequenceEqual(rows) && AuditChain.Verify("r", parsed).Ok;
        });
}
