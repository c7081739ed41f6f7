using System.Text;
using CsCheck;
using Domicile.Store;

namespace Domicile.Tests;

/// <summary>
/// The user digest a migration verifies by: the same data gives the same digest whatever order
/// it was read in, and any changed value gives another.
/// </summary>
public class DigestTests
{
    static PackagedItem Item(string key, long version, string body, bool deleted = false) =>
        new("cloud-sync", "notes", key, "text/plain", version, deleted, deleted ? 0 : Encoding.UTF8.GetByteCount(body), 1_700_000_000_000 + version, 1_700_000_000_500 + version,
            deleted ? null : Encoding.UTF8.GetBytes(body), null);

    static UserPackage Sample() => new(
        "0123456789abcdef0123456789abcdef", "asha@example.in", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", "IN", 1_690_000_000_000, 4,
        [new ConsentRow(1, "u", "cloud-sync", 1, true, 1_690_000_100_000, "phone-setup"), new ConsentRow(2, "u", "cloud-messaging", 2, false, 1_690_000_200_000, "settings")],
        [new ConsentStateRow("u", "cloud-sync", 1, true, 1_690_000_100_000), new ConsentStateRow("u", "cloud-messaging", 2, false, 1_690_000_200_000)],
        ["cloud-messaging", "cloud-sync"],
        [Item("n1", 1, "hello"), Item("n2", 2, "", deleted: true), Item("n3", 3, "नमस्ते – ünïcode")],
        [new PackagedMessage("msg_1", "op_demo_app", "Your backup finished.", 1_690_000_300_000, 1_690_600_000_000)]);

    [Fact]
    public async Task Matches_its_known_answer()
    {
        // Pinned: digests are journaled and certified, and a resumed job compares against them.
        var d = await Region.DigestAsync(Sample());
        Assert.Equal(("c09b59cd04f182492d187998f253017ddd212393632e8a2dd20c68ba2b5e16a8", 2L, 5L + Encoding.UTF8.GetByteCount("नमस्ते – ünïcode")), (d.Digest, d.Items, d.Bytes));
    }

    [Fact]
    public async Task A_source_digest_from_sealed_heads_equals_the_hashed_one_only_when_the_heads_are_right()
    {
        static UserPackage WithHeads(UserPackage p, Func<PackagedItem, string?> digest) =>
            p with { Items = [.. p.Items.Select(i => i with { SealedDigest = digest(i) })] };
        static string Sha(byte[]? content) => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(content ?? []));
        var hashed = (await Region.DigestAsync(Sample())).Digest;
        Assert.Equal(hashed, (await Region.DigestAsync(WithHeads(Sample(), i => i.Deleted ? null : Sha(i.Content)), sealedDigests: true)).Digest);
        // A head that names other content: the source digest follows the head, so the copy's
        // (hashed from the content it holds) no longer matches it.
        Assert.NotEqual(hashed, (await Region.DigestAsync(WithHeads(Sample(), i => i.Deleted ? null : Sha([.. i.Content!, 1])), sealedDigests: true)).Digest);
        // Without the flag the heads are not trusted: the digest is the content's.
        Assert.Equal(hashed, (await Region.DigestAsync(WithHeads(Sample(), i => i.Deleted ? null : Sha([.. i.Content!, 1])))).Digest);
    }

    [Fact]
    public async Task Read_order_does_not_matter_and_every_changed_value_does()
    {
        var baseline = (await Region.DigestAsync(Sample())).Digest;
        var changes = new Func<UserPackage, UserPackage>[]
        {
            p => p with { Login = p.Login + "x" },
            p => p with { PasswordHash = p.PasswordHash[..^1] },
            p => p with { Country = "CN" },
            p => p with { CreatedAt = p.CreatedAt + 1 },
            p => p with { Ledger = [p.Ledger[0] with { Granted = false }, p.Ledger[1]] },
            p => p with { Ledger = [p.Ledger[0] with { Source = "settings" }, p.Ledger[1]] },
            p => p with { States = [p.States[0] with { Version = 2 }, p.States[1]] },
            p => p with { Items = [p.Items[0] with { Content = Encoding.UTF8.GetBytes("hellO") }, p.Items[1], p.Items[2]] },
            p => p with { Items = [p.Items[0] with { Key = "n1 " }, p.Items[1], p.Items[2]] },
            p => p with { Items = [p.Items[0] with { Version = 9 }, p.Items[1], p.Items[2]] },
            p => p with { Items = [p.Items[0], p.Items[1] with { Deleted = false, Content = [] }, p.Items[2]] },
            p => p with { Items = [p.Items[0], p.Items[2]] },
            p => p with { Messages = [p.Messages[0] with { Body = "Your backup finished!" }] },
            p => p with { Messages = [p.Messages[0] with { ExpiresAt = 0 }] },
        };
        await Gen.Select(Gen.Int[0, changes.Length - 1], Gen.Int[0, 1000]).SampleAsync(async (which, seed) =>
        {
            var rnd = new Random(seed);
            UserPackage Shuffled(UserPackage p) => p with
            {
                Ledger = [.. p.Ledger.OrderBy(_ => rnd.Next())],
                States = [.. p.States.OrderBy(_ => rnd.Next())],
                Items = [.. p.Items.OrderBy(_ => rnd.Next())],
            };
            Assert.Equal(baseline, (await Region.DigestAsync(Shuffled(Sample()))).Digest);
            Assert.NotEqual(baseline, (await Region.DigestAsync(Shuffled(changes[which](Sample())))).Digest);
        });
    }
}
