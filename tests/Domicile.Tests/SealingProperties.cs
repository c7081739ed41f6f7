using System.Security.Cryptography;
using CsCheck;
using Domicile.Keys;

namespace Domicile.Tests;

/// <summary>AES-256-GCM with the place as associated data: only the exact key, place and bytes open.</summary>
public class SealingProperties
{
    static readonly Gen<string[]> Places = Gen.String[Gen.Char.AlphaNumeric, 0, 12].Array[6];

    [Fact]
    public void Sealed_values_open_only_at_their_own_place()
    {
        Gen.Select(Gen.Byte.Array[0, 300], Places, Gen.Int[0, 5]).Sample((plain, place, which) =>
        {
            var key = RandomNumberGenerator.GetBytes(32);
            var sealedValue = Sealing.Seal(key, plain, Sealing.Aad(place));
            if (!Sealing.Open(key, sealedValue, Sealing.Aad(place)).AsSpan().SequenceEqual(plain)) return false;
            var moved = (string[])place.Clone();
            moved[which] += "x"; // another user, service, collection, key, version…
            return Throws(() => Sealing.Open(key, sealedValue, Sealing.Aad(moved)))
                && Throws(() => Sealing.Open(RandomNumberGenerator.GetBytes(32), sealedValue, Sealing.Aad(place)));
        });
    }

    [Fact]
    public void Any_flipped_bit_is_refused()
    {
        Gen.Select(Gen.Byte.Array[1, 200], Gen.Int[0, int.MaxValue]).Sample((plain, bit) =>
        {
            var key = RandomNumberGenerator.GetBytes(32);
            var aad = Sealing.Aad("r", "u");
            var sealedValue = Sealing.Seal(key, plain, aad);
            var b = bit % (sealedValue.Length * 8);
            sealedValue[b / 8] ^= (byte)(1 << (b % 8));
            return Throws(() => Sealing.Open(key, sealedValue, aad));
        });
    }

    [Fact]
    public void Associated_data_is_unambiguous()
    {
        // Without length prefixes ("ab","c") and ("a","bc") would bind to the same place.
        Assert.NotEqual(Sealing.Aad("ab", "c"), Sealing.Aad("a", "bc"));
        Assert.NotEqual(Sealing.Aad("a", ""), Sealing.Aad("a"));
    }

    [Fact]
    public void An_items_associated_data_is_written_byte_for_byte_as_the_general_form()
    {
        // Stored items were sealed under Sealing.Aad of these parts: the one-pass writer must not drift from it.
        var text = Gen.String[Gen.Char, 0, 40];
        Gen.Select(Gen.Select(text, text, text, text), Gen.Bool, Gen.Byte.Array[0, 40], Gen.Long).Sample((parts, content, keyIndex, version) =>
        {
            var (region, user, service, collection) = parts;
            var expected = Sealing.Aad(content ? "item-content" : "item-head", region, user, service, collection,
                Convert.ToHexString(keyIndex), version.ToString(System.Globalization.CultureInfo.InvariantCulture));
            return Region.ItemAad(region, content, user, service, collection, keyIndex, version).SequenceEqual(expected);
        });
    }

    [Fact]
    public void Truncated_values_are_refused()
    {
        var key = RandomNumberGenerator.GetBytes(32);
        Assert.Throws<TamperedException>(() => Sealing.Open(key, new byte[Sealing.Overhead - 1], []));
        var v = Sealing.Seal(key, [1, 2, 3], []);
        Assert.Throws<TamperedException>(() => Sealing.Open(key, v[..^1], []));
    }

    static bool Throws(Action a)
    {
        try
        {
            a();
            return false;
        }
        catch (TamperedException)
        {
            return true;
        }
    }
}
