using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Unicode;
using B64 = System.Buffers.Text.Base64Url;

namespace Domicile.Crypto;

/// <summary>Compact JWS with ES256 only (ECDSA P-256, SHA-256, IEEE P1363 signature).</summary>
public static class Jws
{
    private const string Algorithm = "ES256";
    private const string P256Oid = "1.2.840.10045.3.1.7";
    private const int CoordinateLength = 32;
    private static readonly JsonDocumentOptions StrictJson = new() { AllowDuplicateProperties = false };

    public static string Sign(ECDsa key, string kid, JsonObject payload)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentException.ThrowIfNullOrEmpty(kid);
        ArgumentNullException.ThrowIfNull(payload);
        if (!IsP256(key))
        {
            throw new ArgumentException("ES256 needs a P-256 key.", nameof(key));
        }
        var header = new JsonObject { ["alg"] = Algorithm, ["typ"] = "JWT", ["kid"] = kid };
        var signingInput = Base64Url(Encoding.UTF8.GetBytes(header.ToJsonString())) + "."
            + Base64Url(Encoding.UTF8.GetBytes(payload.ToJsonString()));
        var signature = key.SignData(
            Encoding.ASCII.GetBytes(signingInput), HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
        return signingInput + "." + Base64Url(signature);
    }

    public static bool TryVerify(string compact, Func<string, ECDsa?> keyForKid, out JsonObject? payload)
    {
        ArgumentNullException.ThrowIfNull(keyForKid);
        payload = null;
        var segments = compact?.Split('.');
        if (segments is not { Length: 3 }
            || !TryFromBase64Url(segments[0], out var headerBytes)
            || !TryParseObject(headerBytes, out var header)
            || GetString(header, "alg") != Algorithm
            || header.ContainsKey("crit")
            || GetString(header, "kid") is not { Length: > 0 } kid
            || !TryFromBase64Url(segments[2], out var signature)
            || signature.Length != 2 * CoordinateLength
            || !TryFromBase64Url(segments[1], out var payloadBytes))
        {
            return false;
        }
        var key = keyForKid(kid);
        if (key is null || !IsP256(key))
        {
            return false;
        }
        var signingInput = Encoding.ASCII.GetBytes(segments[0] + "." + segments[1]);
        if (!key.VerifyData(signingInput, signature, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation)
            || !TryParseObject(payloadBytes, out var body))
        {
            return false;
        }
        payload = body;
        return true;
    }

    public static JsonObject PublicJwk(ECDsa key, string kid)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentException.ThrowIfNullOrEmpty(kid);
        if (!IsP256(key))
        {
            throw new ArgumentException("ES256 needs a P-256 key.", nameof(key));
        }
        var q = key.ExportParameters(false).Q;
        return new JsonObject
        {
            ["kty"] = "EC",
            ["crv"] = "P-256",
            ["x"] = Base64Url(q.X),
            ["y"] = Base64Url(q.Y),
            ["kid"] = kid,
            ["use"] = "sig",
            ["alg"] = Algorithm,
        };
    }

    /// <summary>Public P-256 key from a JWK, or null if the JWK is not a valid ES256 signing key. Private parts are ignored.</summary>
    public static ECDsa? FromJwk(JsonObject jwk)
    {
        ArgumentNullException.ThrowIfNull(jwk);
        if (GetString(jwk, "kty") != "EC"
            || GetString(jwk, "crv") != "P-256"
            || (jwk.ContainsKey("alg") && GetString(jwk, "alg") != Algorithm)
            || (jwk.ContainsKey("use") && GetString(jwk, "use") != "sig")
            || !TryFromBase64Url(GetString(jwk, "x"), out var x) || x.Length != CoordinateLength
            || !TryFromBase64Url(GetString(jwk, "y"), out var y) || y.Length != CoordinateLength)
        {
            return null;
        }
        try
        {
            // Import checks that the point lies on the curve.
            return ECDsa.Create(new ECParameters { Curve = ECCurve.NamedCurves.nistP256, Q = new ECPoint { X = x, Y = y } });
        }
        catch (CryptographicException)
        {
            return null;
        }
    }

    public static string Base64Url(ReadOnlySpan<byte> data) => B64.EncodeToString(data);

    public static byte[] FromBase64Url(string text) =>
        TryFromBase64Url(text, out var bytes) ? bytes : throw new FormatException("The text is not canonical unpadded base64url.");

    /// <summary>Strict decoding: unpadded, URL alphabet only, and unused trailing bits must be zero, so each byte string has one spelling.</summary>
    internal static bool TryFromBase64Url(string? text, [NotNullWhen(true)] out byte[]? bytes)
    {
        bytes = null;
        if (text is null || text.Length % 4 == 1)
        {
            return false;
        }
        foreach (var c in text)
        {
            if (c is not ((>= 'A' and <= 'Z') or (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-' or '_'))
            {
                return false;
            }
        }
        byte[] decoded;
        try
        {
            // The decoder throws (rather than returning false) on non-zero trailing bits.
            decoded = B64.DecodeFromChars(text);
        }
        catch (FormatException)
        {
            return false;
        }
        if (B64.EncodeToString(decoded) != text)
        {
            return false;
        }
        bytes = decoded;
        return true;
    }

    private static bool TryParseObject(byte[] utf8, [NotNullWhen(true)] out JsonObject? obj)
    {
        obj = null;
        if (!Utf8.IsValid(utf8))
        {
            return false;
        }
        try
        {
            if (JsonNode.Parse(utf8, null, StrictJson) is not JsonObject parsed)
            {
                return false;
            }
            Materialize(parsed);
            obj = parsed;
            return true;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or ArgumentException)
        {
            return false;
        }
    }

    // JsonNode decodes names and strings lazily; force it here so bad input (e.g. a lone surrogate escape)
    // is refused now instead of throwing later in the caller.
    private static void Materialize(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject obj:
                foreach (var member in obj)
                {
                    Materialize(member.Value);
                }
                break;
            case JsonArray array:
                foreach (var item in array)
                {
                    Materialize(item);
                }
                break;
            case JsonValue value when value.GetValueKind() == JsonValueKind.String:
                _ = value.GetValue<string>();
                break;
        }
    }

    private static string? GetString(JsonObject obj, string name) =>
        obj[name] is JsonValue v && v.GetValueKind() == JsonValueKind.String && v.TryGetValue<string>(out var s) ? s : null;

    private static bool IsP256(ECDsa key)
    {
        if (key.KeySize != 256)
        {
            return false;
        }
        var curve = key.ExportParameters(false).Curve;
        return curve.IsNamed && (curve.Oid.Value == P256Oid || curve.Oid.FriendlyName is "nistP256" or "ECDSA_P256" or "secp256r1");
    }
}
