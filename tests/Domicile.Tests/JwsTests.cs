using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using CsCheck;
using Domicile.Crypto;

namespace Domicile.Tests;

public sealed class JwsTests : IDisposable
{
    private const string Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    // ECDsa objects are not documented as thread-safe, so property runs that share them use one thread.
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly ECDsa _other = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public void Dispose()
    {
        _key.Dispose();
        _other.Dispose();
    }

    private static JsonObject Claims() => new() { ["sub"] = "tenant-7", ["region"] = "eu-west-1", ["n"] = 3, ["note"] = "é€\ud83d\ude00<>" };

    private ECDsa? Keys(string kid) => kid == "k1" ? _key : null;

    private static string Segment(string json) => Jws.Base64Url(Encoding.UTF8.GetBytes(json));

    private string SignRaw(string headerJson, string payloadJson, ECDsa key)
    {
        var input = Segment(headerJson) + "." + Segment(payloadJson);
        var signature = key.SignData(Encoding.ASCII.GetBytes(input), HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
        return input + "." + Jws.Base64Url(signature);
    }

    [Fact]
    public void Sign_then_verify_round_trips()
    {
        var token = Jws.Sign(_key, "k1", Claims());
        Assert.True(Jws.TryVerify(token, Keys, out var payload));
        Assert.Equal(Jcs.CanonicalString(Claims()), Jcs.CanonicalString(payload));
    }

    [Fact]
    public void Token_has_the_promised_header_and_a_p1363_signature()
    {
        var parts = Jws.Sign(_key, "k1", Claims()).Split('.');
        Assert.Equal("""{"alg":"ES256","typ":"JWT","kid":"k1"}""", Encoding.UTF8.GetString(Jws.FromBase64Url(parts[0])));
        var signature = Jws.FromBase64Url(parts[2]);
        Assert.Equal(64, signature.Length);
        Assert.True(_key.VerifyData(
            Encoding.ASCII.GetBytes(parts[0] + "." + parts[1]), signature, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation));
        Assert.DoesNotContain('=', string.Concat(parts));
    }

    [Fact]
    public void Any_changed_character_is_refused()
    {
        var token = Jws.Sign(_key, "k1", Claims());
        Gen.Select(Gen.Int[0, token.Length - 1], Gen.Char[Alphabet + ".=+/ "]).Sample((at, c) =>
        {
            if (token[at] == c)
            {
                return;
            }
            var tampered = string.Concat(token.AsSpan(0, at), c.ToString(), token.AsSpan(at + 1));
            Assert.False(Jws.TryVerify(tampered, Keys, out var payload));
            Assert.Null(payload);
        }, iter: 5_000, threads: 1);
    }

    [Fact]
    public void Any_flipped_bit_in_any_segment_is_refused()
    {
        var token = Jws.Sign(_key, "k1", Claims());
        Gen.Select(Gen.Int[0, 2], Gen.Int[0, int.MaxValue]).Sample((segment, seed) =>
        {
            var parts = token.Split('.');
            var bytes = Jws.FromBase64Url(parts[segment]);
            var bit = seed % (bytes.Length * 8);
            bytes[bit / 8] ^= (byte)(1 << (bit % 8));
            parts[segment] = Jws.Base64Url(bytes);
            Assert.False(Jws.TryVerify(string.Join('.', parts), Keys, out _));
        }, iter: 3_000, threads: 1);
    }

    [Fact]
    public void Random_claims_round_trip_and_other_keys_are_refused()
    {
        Gen.Select(Gen.String, Gen.Long, Gen.Bool).Sample((s, n, b) =>
        {
            var claims = new JsonObject { ["s"] = s, ["n"] = n, ["b"] = b };
            var token = Jws.Sign(_key, "k1", claims);
            Assert.True(Jws.TryVerify(token, Keys, out var payload));
            Assert.Equal(claims.ToJsonString(), payload!.ToJsonString());
            Assert.False(Jws.TryVerify(token, _ => _other, out _));
        }, iter: 200, threads: 1);
    }

    [Fact]
    public void Alg_none_and_other_algorithms_are_refused()
    {
        const string payload = """{"sub":"tenant-7"}""";
        Assert.False(Jws.TryVerify(Segment("""{"alg":"none","kid":"k1"}""") + "." + Segment(payload) + ".", Keys, out _));
        Assert.False(Jws.TryVerify(Segment("""{"alg":"none","typ":"JWT"}""") + "." + Segment(payload) + ".", Keys, out _));
        foreach (var alg in new[] { "none", "None", "HS256", "ES384", "RS256", "es256", "ES256 " })
        {
            Assert.False(Jws.TryVerify(SignRaw($$"""{"alg":"{{alg}}","typ":"JWT","kid":"k1"}""", payload, _key), Keys, out _), alg);
        }
        Assert.False(Jws.TryVerify(SignRaw("""{"typ":"JWT","kid":"k1"}""", payload, _key), Keys, out _));
        Assert.False(Jws.TryVerify(SignRaw("""{"alg":["ES256"],"kid":"k1"}""", payload, _key), Keys, out _));
        Assert.True(Jws.TryVerify(SignRaw("""{"alg":"ES256","kid":"k1"}""", payload, _key), Keys, out _));
    }

    [Fact]
    public void Unusual_headers_and_payloads_are_refused()
    {
        const string payload = """{"sub":"tenant-7"}""";
        Assert.False(Jws.TryVerify(SignRaw("""{"alg":"ES256","kid":"k1","crit":["exp"]}""", payload, _key), Keys, out _));
        Assert.False(Jws.TryVerify(SignRaw("""{"alg":"ES256","kid":"k1","alg":"ES256"}""", payload, _key), Keys, out _));
        Assert.False(Jws.TryVerify(SignRaw("""{"alg":"ES256","kid":"k1"}""", """{"a":1,"a":2}""", _key), Keys, out _));
        Assert.False(Jws.TryVerify(SignRaw("""{"alg":"ES256","kid":"k1"}""", "[1,2]", _key), Keys, out _));
        Assert.False(Jws.TryVerify(SignRaw("""{"alg":"ES256","kid":"k1"}""", "not json", _key), Keys, out _));
        Assert.False(Jws.TryVerify(SignRaw("""{"alg":"ES256","kid":""}""", payload, _key), _ => _key, out _));
        Assert.False(Jws.TryVerify(SignRaw("""{"alg":"ES256","kid":1}""", payload, _key), _ => _key, out _));
        Assert.False(Jws.TryVerify(SignRaw("[]", payload, _key), _ => _key, out _));
        Assert.False(Jws.TryVerify(SignRaw("""{"alg":"ES256","kid":"k1"}""", """{"a":{"b":1,"b":2}}""", _key), Keys, out _));
        Assert.False(Jws.TryVerify(SignRaw("""{"alg":"ES256","kid":"k1"}""", """{"a":["\ud800"]}""", _key), Keys, out _));
        Assert.False(Jws.TryVerify(SignRaw("""{"alg":"ES256","kid":"k1\udc00"}""", payload, _key), _ => _key, out _));
        Assert.False(Jws.TryVerify(SignRaw("""{"alg":"ES256","kid":"k1","x\udc00":1}""", payload, _key), _ => _key, out _));
        // Invalid UTF-8 in the payload.
        var input = Segment("""{"alg":"ES256","kid":"k1"}""") + "." + Jws.Base64Url("{\"a\":\""u8.ToArray().Concat(new byte[] { 0xC3, 0x28 }).Concat("\"}"u8.ToArray()).ToArray());
        var signature = _key.SignData(Encoding.ASCII.GetBytes(input), HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
        Assert.False(Jws.TryVerify(input + "." + Jws.Base64Url(signature), Keys, out _));
    }

    [Theory]
    [InlineData("")]
    [InlineData(".")]
    [InlineData("..")]
    [InlineData("...")]
    [InlineData("a.b")]
    [InlineData("a.b.c")]
    [InlineData("a.b.c.d")]
    [InlineData("eyJhbGciOiJFUzI1NiJ9")]
    [InlineData("eyJhbGciOiJFUzI1NiJ9.e30.")]
    [InlineData("eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.e30.AAAA")]
    [InlineData("eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0=.e30.AAAA")]
    [InlineData("!!!.e30.AAAA")]
    public void Malformed_input_is_refused_without_throwing(string compact)
    {
        Assert.False(Jws.TryVerify(compact, Keys, out var payload));
        Assert.Null(payload);
        Assert.False(Jws.TryVerify(null!, Keys, out _));
    }

    [Fact]
    public void Unknown_kid_and_wrong_key_are_refused()
    {
        Assert.False(Jws.TryVerify(Jws.Sign(_key, "k2", Claims()), Keys, out _));
        Assert.False(Jws.TryVerify(Jws.Sign(_other, "k1", Claims()), Keys, out _));
        using var p384 = ECDsa.Create(ECCurve.NamedCurves.nistP384);
        Assert.False(Jws.TryVerify(Jws.Sign(_key, "k1", Claims()), _ => p384, out _));
        Assert.Throws<ArgumentException>(() => Jws.Sign(p384, "k1", Claims()));
        Assert.Throws<ArgumentException>(() => Jws.Sign(_key, "", Claims()));
    }

    [Fact]
    public void Public_jwk_round_trips_and_verifies()
    {
        var jwk = Jws.PublicJwk(_key, "k1");
        Assert.Equal(["kty", "crv", "x", "y", "kid", "use", "alg"], jwk.Select(m => m.Key));
        Assert.Equal("EC", (string?)jwk["kty"]);
        Assert.Equal("P-256", (string?)jwk["crv"]);
        Assert.Equal("sig", (string?)jwk["use"]);
        Assert.Equal("ES256", (string?)jwk["alg"]);
        Assert.Equal("k1", (string?)jwk["kid"]);
        Assert.Equal(32, Jws.FromBase64Url((string)jwk["x"]!).Length);

        using var imported = Jws.FromJwk(JsonNode.Parse(jwk.ToJsonString())!.AsObject());
        Assert.NotNull(imported);
        var token = Jws.Sign(_key, "k1", Claims());
        Assert.True(Jws.TryVerify(token, kid => kid == "k1" ? imported : null, out _));
        Assert.ThrowsAny<CryptographicException>(() => imported!.SignData([1], HashAlgorithmName.SHA256));
    }

    [Fact]
    public void Bad_jwks_are_refused()
    {
        var good = Jws.PublicJwk(_key, "k1");
        JsonObject With(string name, JsonNode? value)
        {
            var copy = good.DeepClone().AsObject();
            copy[name] = value;
            return copy;
        }
        JsonObject Without(string name)
        {
            var copy = good.DeepClone().AsObject();
            copy.Remove(name);
            return copy;
        }
        var y = Jws.FromBase64Url((string)good["y"]!);
        y[31] ^= 1;

        Assert.Null(Jws.FromJwk(With("kty", "RSA")));
        Assert.Null(Jws.FromJwk(With("crv", "P-384")));
        Assert.Null(Jws.FromJwk(With("alg", "ES384")));
        Assert.Null(Jws.FromJwk(With("use", "enc")));
        Assert.Null(Jws.FromJwk(With("x", Jws.Base64Url(new byte[31]))));
        Assert.Null(Jws.FromJwk(With("x", 5)));
        Assert.Null(Jws.FromJwk(With("y", Jws.Base64Url(y)))); // off the curve
        Assert.Null(Jws.FromJwk(With("y", (string)good["y"]! + "=")));
        Assert.Null(Jws.FromJwk(Without("x")));
        Assert.Null(Jws.FromJwk(Without("kty")));
        var minimal = Without("alg");
        minimal.Remove("use");
        using var fromMinimal = Jws.FromJwk(minimal);
        Assert.NotNull(fromMinimal);
    }

    [Fact]
    public void Base64url_is_strict_and_round_trips()
    {
        Gen.Byte.Array[0, 100].Sample(bytes =>
        {
            var text = Jws.Base64Url(bytes);
            Assert.DoesNotContain('=', text);
            Assert.Equal(bytes, Jws.FromBase64Url(text));
        });
        Assert.Equal("-_8", Jws.Base64Url([0xFB, 0xFF]));
        Assert.Throws<FormatException>(() => Jws.FromBase64Url("QQ=="));
        Assert.Throws<FormatException>(() => Jws.FromBase64Url("QR"));
        Assert.Throws<FormatException>(() => Jws.FromBase64Url("+/8"));
        Assert.Throws<FormatException>(() => Jws.FromBase64Url("QUJDR"));
        Assert.Throws<FormatException>(() => Jws.FromBase64Url("QU JD"));
    }
}
