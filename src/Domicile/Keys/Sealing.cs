using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Domicile.Keys;

/// <summary>
/// AES-256-GCM with associated data. Output layout: 12-byte nonce, ciphertext, 16-byte tag.
/// The associated data names the ciphertext's place, so a ciphertext moved elsewhere fails (G4).
/// </summary>
public static class Sealing
{
    public const int NonceSize = 12;
    public const int TagSize = 16;
    public const int Overhead = NonceSize + TagSize;

    public static byte[] Seal(ReadOnlySpan<byte> key, ReadOnlySpan<byte> plaintext, ReadOnlySpan<byte> aad)
    {
        using var gcm = new AesGcm(key, TagSize);
        return Seal(gcm, plaintext, aad);
    }

    static byte[] Seal(AesGcm gcm, ReadOnlySpan<byte> plaintext, ReadOnlySpan<byte> aad)
    {
        var output = new byte[Overhead + plaintext.Length];
        var nonce = output.AsSpan(0, NonceSize);
        NextNonce(nonce);
        gcm.Encrypt(nonce, plaintext, output.AsSpan(NonceSize, plaintext.Length), output.AsSpan(NonceSize + plaintext.Length), aad);
        return output;
    }

    /// <summary>
    /// One key schedule for many seals under the same key (a batch). Disposing it wipes the
    /// expanded key; use it on one thread, for the batch only.
    /// </summary>
    public sealed class Sealer(ReadOnlySpan<byte> key) : IDisposable
    {
        readonly AesGcm _gcm = new(key, TagSize);
        public byte[] Seal(ReadOnlySpan<byte> plaintext, ReadOnlySpan<byte> aad) => Sealing.Seal(_gcm, plaintext, aad);
        public byte[] Open(ReadOnlySpan<byte> sealedValue, ReadOnlySpan<byte> aad) => Sealing.Open(_gcm, sealedValue, aad);
        public void Dispose() => _gcm.Dispose();
    }

    // Random nonces drawn from a per-thread block of CSPRNG output: one RNG call per 340 nonces
    // instead of one each. Nonces are not secret; they only must not repeat.
    [ThreadStatic] static byte[]? _nonces;
    [ThreadStatic] static int _nonceAt;

    static void NextNonce(Span<byte> nonce)
    {
        var pool = _nonces ??= new byte[NonceSize * 340];
        if (_nonceAt == 0 || _nonceAt + NonceSize > pool.Length)
        {
            RandomNumberGenerator.Fill(pool);
            _nonceAt = 0;
        }
        pool.AsSpan(_nonceAt, NonceSize).CopyTo(nonce);
        _nonceAt += NonceSize;
        if (_nonceAt + NonceSize > pool.Length) _nonceAt = 0;
    }

    /// <summary>Opens a sealed value or throws <see cref="TamperedException"/>: never returns altered bytes.</summary>
    public static byte[] Open(ReadOnlySpan<byte> key, ReadOnlySpan<byte> sealedValue, ReadOnlySpan<byte> aad)
    {
        if (sealedValue.Length < Overhead) throw new TamperedException();
        using var gcm = new AesGcm(key, TagSize);
        return Open(gcm, sealedValue, aad);
    }

    static byte[] Open(AesGcm gcm, ReadOnlySpan<byte> sealedValue, ReadOnlySpan<byte> aad)
    {
        if (sealedValue.Length < Overhead) throw new TamperedException();
        var plaintext = new byte[sealedValue.Length - Overhead];
        try
        {
            gcm.Decrypt(sealedValue[..NonceSize], sealedValue.Slice(NonceSize, plaintext.Length), sealedValue[(NonceSize + plaintext.Length)..], plaintext, aad);
        }
        catch (AuthenticationTagMismatchException)
        {
            CryptographicOperations.ZeroMemory(plaintext);
            throw new TamperedException();
        }
        return plaintext;
    }

    /// <summary>Unambiguous associated data: each part length-prefixed.</summary>
    public static byte[] Aad(params ReadOnlySpan<string> parts)
    {
        var size = 0;
        foreach (var p in parts) size += 4 + Encoding.UTF8.GetByteCount(p);
        var buffer = new byte[size];
        var writer = new AadWriter(buffer);
        foreach (var p in parts) writer.Text(p);
        return buffer;
    }

    /// <summary>
    /// Writes associated data in <see cref="Aad"/>'s form, each part after its big-endian length, into
    /// a buffer the caller sized: for the hot paths that make it per value without a string per part.
    /// </summary>
    public ref struct AadWriter(Span<byte> buffer)
    {
        readonly Span<byte> _buffer = buffer;
        int _at;

        /// <summary>The bytes written so far.</summary>
        public readonly int Length => _at;

        public void Text(string text) => Close(Encoding.UTF8.GetBytes(text, Open()));

        /// <summary>A part already in UTF-8.</summary>
        public void Utf8(ReadOnlySpan<byte> text)
        {
            text.CopyTo(Open());
            Close(text.Length);
        }

        /// <summary>The part <see cref="Convert.ToHexString(byte[])"/> would give.</summary>
        public void Hex(ReadOnlySpan<byte> bytes)
        {
            Convert.TryToHexString(bytes, Open(), out var n);
            Close(n);
        }

        /// <summary>The part the invariant culture's text of <paramref name="value"/> would give.</summary>
        public void Number(long value)
        {
            value.TryFormat(Open(), out var n, default, System.Globalization.CultureInfo.InvariantCulture);
            Close(n);
        }

        readonly Span<byte> Open() => _buffer[(_at + 4)..];

        void Close(int n)
        {
            BinaryPrimitives.WriteInt32BigEndian(_buffer[_at..], n);
            _at += 4 + n;
        }
    }
}

/// <summary>A stored ciphertext failed authentication: altered, moved or swapped on disk.</summary>
public sealed class TamperedException()
    : DomicileException("tampered", "stored data failed its integrity check: it was altered or moved on disk and is refused");
