using System.Security.Cryptography;

namespace Domicile.Crypto;

/// <summary>
/// Shamir secret sharing over GF(2^8) with the AES polynomial, one random polynomial per secret byte.
/// Each part is the y bytes followed by one x byte (HashiCorp Vault's layout).
/// </summary>
public static class Shamir
{
    public static byte[][] Split(ReadOnlySpan<byte> secret, int shares, int threshold)
    {
        if (secret.IsEmpty)
        {
            throw new ArgumentException("The secret must not be empty.", nameof(secret));
        }
        if (threshold < 2 || threshold > shares || shares > 255)
        {
            throw new ArgumentException(
                $"Need 2 <= threshold <= shares <= 255, got threshold {threshold} and shares {shares}.", nameof(threshold));
        }

        var parts = new byte[shares][];
        for (var i = 0; i < shares; i++)
        {
            parts[i] = new byte[secret.Length + 1];
            parts[i][secret.Length] = (byte)(i + 1);
        }

        var coefficients = new byte[threshold];
        try
        {
            for (var b = 0; b < secret.Length; b++)
            {
                RandomNumberGenerator.Fill(coefficients);
                coefficients[0] = secret[b];
                for (var i = 0; i < shares; i++)
                {
                    parts[i][b] = Evaluate(coefficients, (byte)(i + 1));
                }
            }
        }
        finally
        {
            CryptographicOperations.ZeroMemory(coefficients);
        }
        return parts;
    }

    public static byte[] Combine(IReadOnlyList<byte[]> parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        if (parts.Count < 2)
        {
            throw new ArgumentException("At least two parts are needed to combine a secret.", nameof(parts));
        }
        var length = parts[0]?.Length ?? 0;
        if (length < 2)
        {
            throw new ArgumentException("Each part must hold at least one secret byte and the x byte.", nameof(parts));
        }

        var xs = new byte[parts.Count];
        for (var i = 0; i < parts.Count; i++)
        {
            var part = parts[i];
            if (part is null || part.Length != length)
            {
                throw new ArgumentException("All parts must have the same length.", nameof(parts));
            }
            xs[i] = part[length - 1];
            if (xs[i] == 0)
            {
                throw new ArgumentException("A part has x = 0, which would be the secret itself; the part is invalid.", nameof(parts));
            }
            for (var j = 0; j < i; j++)
            {
                if (xs[j] == xs[i])
                {
                    throw new ArgumentException("Two parts have the same x coordinate; each part may be used only once.", nameof(parts));
                }
            }
        }

        // Lagrange basis at 0: l_i = prod_{j != i} x_j / (x_j - x_i); subtraction is XOR in GF(2^8).
        var basis = new byte[parts.Count];
        for (var i = 0; i < parts.Count; i++)
        {
            byte numerator = 1, denominator = 1;
            for (var j = 0; j < parts.Count; j++)
            {
                if (j != i)
                {
                    numerator = Mul(numerator, xs[j]);
                    denominator = Mul(denominator, (byte)(xs[j] ^ xs[i]));
                }
            }
            basis[i] = Mul(numerator, Inverse(denominator));
        }

        var secret = new byte[length - 1];
        for (var b = 0; b < secret.Length; b++)
        {
            byte value = 0;
            for (var i = 0; i < parts.Count; i++)
            {
                value ^= Mul(basis[i], parts[i][b]);
            }
            secret[b] = value;
        }
        return secret;
    }

    /// <summary>Horner evaluation of the polynomial with the given coefficients (constant term first) at x.</summary>
    internal static byte Evaluate(ReadOnlySpan<byte> coefficients, byte x)
    {
        byte result = 0;
        for (var i = coefficients.Length - 1; i >= 0; i--)
        {
            result = (byte)(Mul(result, x) ^ coefficients[i]);
        }
        return result;
    }

    /// <summary>GF(2^8) multiplication modulo x^8+x^4+x^3+x+1, with masks instead of data-dependent branches.</summary>
    internal static byte Mul(byte a, byte b)
    {
        int x = a, y = b, product = 0;
        for (var i = 0; i < 8; i++)
        {
            product ^= x & -(y & 1);
            x = (x << 1) ^ (0x11B & -((x >> 7) & 1));
            y >>= 1;
        }
        return (byte)product;
    }

    /// <summary>Multiplicative inverse as a^254 = a^2 * a^4 * ... * a^128; Inverse(0) is 0.</summary>
    internal static byte Inverse(byte a)
    {
        byte square = a, result = 1;
        for (var i = 1; i < 8; i++)
        {
            square = Mul(square, square);
            result = Mul(result, square);
        }
        return result;
    }
}
