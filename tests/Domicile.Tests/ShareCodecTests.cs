using System.Security.Cryptography;
using CsCheck;
using Domicile.Crypto;

namespace Domicile.Tests;

public class ShareCodecTests
{
    private const string Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    private static readonly Gen<string> Region =
        Gen.Char["abcdefghijklmnopqrstuvwxyz0123456789-"].Array[1, 16].Select(c => new string(c));

    // A part: 1..64 y bytes then a non-zero x byte.
    private static readonly Gen<byte[]> Part =
        Gen.Select(Gen.Byte.Array[1, 64], Gen.Byte[1, 255], (y, x) => (byte[])[.. y, x]);

    private static string Payload(string line) => line[(line.LastIndexOf(':') + 1)..];

    [Fact]
    public void Format_matches_known_answer()
    {
        // Payload 42 43 03 + first 4 bytes of SHA-256(42 43 03).
        Assert.Equal("domicile-share:v1:eu-west-1:3:QkMDRmkA4Q", ShareCodec.Format("eu-west-1", [0x42, 0x43, 0x03]));
        Assert.True(ShareCodec.TryParse("domicile-share:v1:eu-west-1:3:QkMDRmkA4Q", out var share, out var error));
        Assert.Equal("", error);
        Assert.Equal("eu-west-1", share!.Region);
        Assert.Equal(3, share.Index);
        Assert.Equal([0x42, 0x43, 0x03], share.Part);
    }

    [Fact]
    public void Round_trips()
    {
        Gen.Select(Region, Part).Sample((region, part) =>
        {
            var line = ShareCodec.Format(region, part);
            Assert.DoesNotContain('=', line);
            Assert.True(ShareCodec.TryParse($" \t{line}\r\n", out var share, out var error), error);
            Assert.Equal(region, share!.Region);
            Assert.Equal(part[^1], share.Index);
            Assert.Equal(part, share.Part);
        }, iter: 2_000);
    }

    [Fact]
    public void Shamir_parts_survive_the_text_form()
    {
        var secret = RandomNumberGenerator.GetBytes(32);
        var lines = Shamir.Split(secret, 5, 3).Select(p => ShareCodec.Format("us", p)).ToArray();
        var parts = new[] { lines[4], lines[0], lines[2] }.Select(l =>
        {
            Assert.True(ShareCodec.TryParse(l, out var s, out _));
            return s!.Part;
        }).ToArray();
        Assert.Equal(secret, Shamir.Combine(parts));
    }

    [Fact]
    public void Any_flipped_bit_in_the_payload_is_refused()
    {
        Gen.Select(Region, Part, Gen.Int[0, int.MaxValue]).Sample((region, part, seed) =>
        {
            var line = ShareCodec.Format(region, part);
            var payload = Jws.FromBase64Url(Payload(line));
            var bit = seed % (payload.Length * 8);
            payload[bit / 8] ^= (byte)(1 << (bit % 8));
            var tampered = line[..(line.LastIndexOf(':') + 1)] + Jws.Base64Url(payload);
            Assert.False(ShareCodec.TryParse(tampered, out var share, out var error));
            Assert.Null(share);
            Assert.NotEmpty(error);
        }, iter: 5_000);
    }

    [Fact]
    public void Any_changed_character_outside_the_region_is_refused()
    {
        // The region is not covered by the checksum (the format fixes that), so only the other characters are changed.
        Gen.Select(Region, Part, Gen.Int[0, int.MaxValue], Gen.Char[Alphabet + ":+/=. "]).Sample((region, part, seed, replacement) =>
        {
            var line = ShareCodec.Format(region, part);
            var regionStart = "domicile-share:v1:".Length;
            var positions = Enumerable.Range(0, line.Length)
                .Where(i => i < regionStart || i > regionStart + region.Length).ToArray();
            var at = positions[seed % positions.Length];
            if (line[at] == replacement)
            {
                return;
            }
            var tampered = string.Concat(line.AsSpan(0, at), replacement.ToString(), line.AsSpan(at + 1));
            Assert.False(ShareCodec.TryParse(tampered, out _, out var error), $"accepted a change at {at}");
            Assert.NotEmpty(error);
        }, iter: 5_000);
    }

    [Fact]
    public void Deleted_or_inserted_payload_characters_are_refused()
    {
        Gen.Select(Region, Part, Gen.Int[0, int.MaxValue], Gen.Char[Alphabet]).Sample((region, part, seed, extra) =>
        {
            var line = ShareCodec.Format(region, part);
            var start = line.LastIndexOf(':') + 1;
            var at = start + (seed % (line.Length - start));
            Assert.False(ShareCodec.TryParse(line.Remove(at, 1), out _, out _));
            Assert.False(ShareCodec.TryParse(line.Insert(at, extra.ToString()), out _, out _));
        }, iter: 2_000);
    }

    [Fact]
    public void Checksum_error_has_the_promised_sentence_and_does_not_echo_the_share()
    {
        var line = ShareCodec.Format("eu", [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        var payload = Jws.FromBase64Url(Payload(line));
        payload[0] ^= 0x80;
        var tampered = "domicile-share:v1:eu:9:" + Jws.Base64Url(payload);
        Assert.False(ShareCodec.TryParse(tampered, out _, out var error));
        Assert.Equal("the share's checksum does not match: it was mistyped or corrupted", error);
        Assert.DoesNotContain(Payload(tampered), error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null, "empty")]
    [InlineData("   ", "empty")]
    [InlineData("domicile-shares:v1:eu:3:QkMDRmkA4Q", "does not start")]
    [InlineData("Domicile-share:v1:eu:3:QkMDRmkA4Q", "does not start")]
    [InlineData("vault-share:v1:eu:3:QkMDRmkA4Q", "does not start")]
    [InlineData("domicile-share:v2:eu:3:QkMDRmkA4Q", "version")]
    [InlineData("domicile-share:V1:eu:3:QkMDRmkA4Q", "version")]
    [InlineData("domicile-share:", "version")]
    [InlineData("domicile-share:v1:eu:3", "five colon-separated fields")]
    [InlineData("domicile-share:v1:eu:3:QkMDRmkA4Q:x", "five colon-separated fields")]
    [InlineData("domicile-share:v1:EU:3:QkMDRmkA4Q", "region")]
    [InlineData("domicile-share:v1:eu_west:3:QkMDRmkA4Q", "region")]
    [InlineData("domicile-share:v1::3:QkMDRmkA4Q", "region")]
    [InlineData("domicile-share:v1:eu:0:QkMDRmkA4Q", "index")]
    [InlineData("domicile-share:v1:eu:256:QkMDRmkA4Q", "index")]
    [InlineData("domicile-share:v1:eu:03:QkMDRmkA4Q", "index")]
    [InlineData("domicile-share:v1:eu:-3:QkMDRmkA4Q", "index")]
    [InlineData("domicile-share:v1:eu:+3:QkMDRmkA4Q", "index")]
    [InlineData("domicile-share:v1:eu::QkMDRmkA4Q", "index")]
    [InlineData("domicile-share:v1:eu:three:QkMDRmkA4Q", "index")]
    [InlineData("domicile-share:v1:eu:3:QkMDRmkA4Q==", "base64url")]
    [InlineData("domicile-share:v1:eu:3:QkMDRmk+4Q", "base64url")]
    [InlineData("domicile-share:v1:eu:3:QkMDRmkA4R", "base64url")] // non-zero unused trailing bits
    [InlineData("domicile-share:v1:eu:3:QkMDR", "base64url")]
    [InlineData("domicile-share:v1:eu:3:QkMDRmk", "too short")]
    [InlineData("domicile-share:v1:eu:3:", "too short")]
    [InlineData("domicile-share:v1:eu:3:QkMDRmkA4A", "checksum")]
    [InlineData("domicile-share:v1:eu:4:QkMDRmkA4Q", "index does not match")]
    public void Refuses_with_a_reason(string? text, string reason)
    {
        Assert.False(ShareCodec.TryParse(text, out var share, out var error));
        Assert.Null(share);
        Assert.Contains(reason, error, StringComparison.Ordinal);
        Assert.DoesNotContain("QkMD", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Format_rejects_bad_input()
    {
        Assert.Throws<ArgumentException>(() => ShareCodec.Format("EU", [1, 2]));
        Assert.Throws<ArgumentException>(() => ShareCodec.Format("", [1, 2]));
        Assert.Throws<ArgumentException>(() => ShareCodec.Format("eu", [1]));
        Assert.Throws<ArgumentException>(() => ShareCodec.Format("eu", [1, 0]));
    }
}
