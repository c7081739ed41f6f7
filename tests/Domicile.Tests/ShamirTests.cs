using CsCheck;
using Domicile.Crypto;

namespace Domicile.Tests;

public class ShamirTests
{
    // (n, k, the indices of a random subset of `size` shares in random order), k <= size <= n.
    private static Gen<(int N, int K, int[] Chosen)> SharesAndSubset(int minK, Func<int, int, int> size) =>
        from n in Gen.Int[minK, 10]
        from k in Gen.Int[minK, n]
        from chosen in Gen.Shuffle(Enumerable.Range(0, n).ToArray(), size(n, k))
        select (n, k, chosen);

    [Theory]
    [InlineData(0x57, 0x83, 0xC1)] // FIPS-197 section 4.2
    [InlineData(0x57, 0x13, 0xFE)] // FIPS-197 section 4.2.1
    [InlineData(0x53, 0xCA, 0x01)] // inverse pair
    [InlineData(0x02, 0x80, 0x1B)] // reduction by 0x11B
    [InlineData(0x00, 0xFF, 0x00)]
    [InlineData(0x01, 0xAB, 0xAB)]
    public void Mul_matches_known_products(int a, int b, int expected)
    {
        Assert.Equal((byte)expected, Shamir.Mul((byte)a, (byte)b));
        Assert.Equal((byte)expected, Shamir.Mul((byte)b, (byte)a));
    }

    [Fact]
    public void Every_nonzero_element_has_an_inverse()
    {
        Assert.Equal(0xCA, Shamir.Inverse(0x53));
        Assert.Equal(0, Shamir.Inverse(0));
        for (var a = 1; a < 256; a++)
        {
            Assert.Equal(1, Shamir.Mul((byte)a, Shamir.Inverse((byte)a)));
        }
    }

    [Fact]
    public void Field_laws_hold()
    {
        Gen.Select(Gen.Byte, Gen.Byte, Gen.Byte).Sample((a, b, c) =>
            Shamir.Mul(a, b) == Shamir.Mul(b, a)
            && Shamir.Mul(Shamir.Mul(a, b), c) == Shamir.Mul(a, Shamir.Mul(b, c))
            && Shamir.Mul(a, (byte)(b ^ c)) == (Shamir.Mul(a, b) ^ Shamir.Mul(a, c))
            && Shamir.Mul(a, 1) == a
            && Shamir.Mul(a, 0) == 0, iter: 20_000);
    }

    [Fact]
    public void Evaluate_is_the_polynomial()
    {
        // f(x) = 0x42 + x + x^2: f(1) = 0x42, f(2) = 0x42 ^ 2 ^ 4, f(3) = 0x42 ^ 3 ^ 5 (3*3 = 5 in GF(2^8)).
        byte[] f = [0x42, 0x01, 0x01];
        Assert.Equal(0x42, Shamir.Evaluate(f, 0));
        Assert.Equal(0x42, Shamir.Evaluate(f, 1));
        Assert.Equal(0x44, Shamir.Evaluate(f, 2));
        Assert.Equal(0x44, Shamir.Evaluate(f, 3));
    }

    [Fact]
    public void Combine_matches_hand_computed_example()
    {
        // Threshold 2, f(x) = 0x42 + 0x01 x: f(1) = 0x43, f(2) = 0x40.
        Assert.Equal([0x42], Shamir.Combine([[0x43, 1], [0x40, 2]]));
        Assert.Equal([0x42], Shamir.Combine([[0x40, 2], [0x43, 1]]));
        // Threshold 3, two secret bytes: f(x) = 0x42 + x + x^2 and g(x) = 0x07 + 0x10 x + 0x00 x^2.
        // g(1) = 0x17, g(2) = 0x27, g(3) = 0x37 (0x10 * 3 = 0x30).
        byte[][] parts = [[0x42, 0x17, 1], [0x44, 0x27, 2], [0x44, 0x37, 3]];
        Assert.Equal([0x42, 0x07], Shamir.Combine(parts));
        Assert.Equal([0x42, 0x07], Shamir.Combine([parts[2], parts[0], parts[1]]));
    }

    [Fact]
    public void Split_uses_vault_layout_with_x_from_one()
    {
        var parts = Shamir.Split([1, 2, 3], 5, 3);
        Assert.Equal(5, parts.Length);
        for (var i = 0; i < parts.Length; i++)
        {
            Assert.Equal(4, parts[i].Length);
            Assert.Equal(i + 1, parts[i][3]);
        }
    }

    [Theory]
    [InlineData(3, 1)]
    [InlineData(2, 3)]
    [InlineData(1, 1)]
    [InlineData(256, 2)]
    [InlineData(0, 0)]
    public void Split_rejects_bad_parameters(int shares, int threshold)
    {
        Assert.Throws<ArgumentException>(() => Shamir.Split([1, 2], shares, threshold));
    }

    [Fact]
    public void Split_accepts_the_limits_and_rejects_empty_secret()
    {
        Assert.Equal(255, Shamir.Split([9], 255, 255).Length);
        Assert.Equal([9], Shamir.Combine(Shamir.Split([9], 255, 255)));
        Assert.Throws<ArgumentException>(() => Shamir.Split([], 3, 2));
    }

    [Fact]
    public void Combine_rejects_bad_parts()
    {
        Assert.Contains("two parts", Assert.Throws<ArgumentException>(() => Shamir.Combine([[1, 1]])).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => Shamir.Combine([]));
        Assert.Contains("same length", Assert.Throws<ArgumentException>(() => Shamir.Combine([[1, 1], [1, 2, 2]])).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => Shamir.Combine([[1], [2]]));
        Assert.Contains("same x", Assert.Throws<ArgumentException>(() => Shamir.Combine([[1, 5], [2, 5]])).Message, StringComparison.Ordinal);
        Assert.Contains("x = 0", Assert.Throws<ArgumentException>(() => Shamir.Combine([[1, 0], [2, 1]])).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Any_threshold_subset_in_any_order_recovers_the_secret()
    {
        Gen.Select(Gen.Byte.Array[1, 64], SharesAndSubset(2, (n, k) => k)).Sample((secret, setup) =>
        {
            Assert.Equal(setup.K, setup.Chosen.Length);
            var parts = Shamir.Split(secret, setup.N, setup.K);
            Assert.Equal(secret, Shamir.Combine(setup.Chosen.Select(i => parts[i]).ToArray()));
        }, iter: 2_000);
    }

    [Fact]
    public void More_than_threshold_shares_also_recover_the_secret()
    {
        Gen.Select(Gen.Byte.Array[1, 16], SharesAndSubset(2, (n, k) => n)).Sample((secret, setup) =>
        {
            var parts = Shamir.Split(secret, setup.N, setup.K);
            Assert.Equal(secret, Shamir.Combine(setup.Chosen.Select(i => parts[i]).ToArray()));
        }, iter: 500);
    }

    [Fact]
    public void Fewer_than_threshold_shares_do_not_give_the_secret()
    {
        // With k-1 shares the interpolated value is uniformly random: a 32-byte match has probability 2^-256.
        Gen.Select(Gen.Byte.Array[32], SharesAndSubset(3, (n, k) => k - 1)).Sample((secret, setup) =>
        {
            var parts = Shamir.Split(secret, setup.N, setup.K);
            Assert.NotEqual(secret, Shamir.Combine(setup.Chosen.Select(i => parts[i]).ToArray()));
        }, iter: 1_000);
    }

    [Fact]
    public void Splitting_twice_gives_different_shares()
    {
        var secret = new byte[32];
        Assert.NotEqual(Shamir.Split(secret, 3, 2)[0], Shamir.Split(secret, 3, 2)[0]);
    }
}
