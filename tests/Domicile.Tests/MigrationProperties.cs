using System.Text.Json.Nodes;
using CsCheck;

namespace Domicile.Tests;

/// <summary>
/// How a migration cuts its users into groups (all of them once, in order, the tail in smaller
/// groups), and how it reads its journal lines back.
/// </summary>
public class MigrationProperties
{
    [Fact]
    public void Journal_lines_read_back_the_fields_they_were_written_with_whatever_else_they_hold()
    {
        var text = Gen.String[Gen.Char, 0, 70];
        Gen.Select(Gen.Select(text, text), Gen.Long[0, long.MaxValue], Gen.Long[0, long.MaxValue], Gen.Bool).Sample((strings, items, bytes, nested) =>
        {
            var (digest, from) = strings;
            var line = new JsonObject { ["digest"] = digest, ["items"] = items };
            // A carried audit summary nests fields of the same names: only the top level counts.
            if (nested) line["audit_digest"] = new JsonObject { ["digest"] = "other", ["items"] = 1, ["from"] = "elsewhere" };
            line["bytes"] = bytes;
            line["from"] = from;
            var read = Migrator.JournalFields.Read(line.ToJsonString());
            return read == new Migrator.JournalFields(digest, items, bytes, from);
        });
        Assert.Equal(new Migrator.JournalFields(null, 0, 0, null), Migrator.JournalFields.Read("{}"));
    }

    [Fact]
    public void Every_user_is_in_one_group_in_order_and_only_the_tail_is_cut_smaller()
    {
        Gen.Select(Gen.Int[0, 3000], Gen.Int[1, 200], Gen.Int[1, 16]).Sample((count, size, workers) =>
        {
            var users = Enumerable.Range(0, count).ToArray();
            var groups = Migrator.Groups(users, size, workers).ToList();
            if (!groups.SelectMany(g => g).SequenceEqual(users)) return false;
            if (groups.Any(g => g.Length == 0 || g.Length > size)) return false;
            // Full groups until two rounds of them are left; after that none grows again.
            var at = 0;
            for (var n = 0; n < groups.Count; n++)
            {
                var left = count - at;
                if (left > 2 * workers * size && groups[n].Length != size) return false;
                if (n > 0 && groups[n].Length > groups[n - 1].Length) return false;
                at += groups[n].Length;
            }
            return true;
        });
    }

    [Fact]
    public void The_last_groups_are_small_enough_for_the_workers_to_finish_together()
    {
        var groups = Migrator.Groups(Enumerable.Range(0, 1500).ToArray(), 50, 4).ToList();
        Assert.Equal(50, groups[0].Length);
        Assert.Equal(8, groups[^2].Length);
        Assert.True(groups[^1].Length <= 8);
    }
}
