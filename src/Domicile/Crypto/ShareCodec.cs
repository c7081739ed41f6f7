using System.Globalization;
using System.Security.Cryptography;

namespace Domicile.Crypto;

/// <summary>A custodian's Shamir part; Part is the y bytes followed by the x byte, without checksum.</summary>
public sealed record CustodianShare(string Region, int Index, byte[] Part);

/// <summary>
/// Text form of a custodian share: <c>domicile-share:v1:&lt;region&gt;:&lt;index&gt;:&lt;base64url(part + checksum)&gt;</c>,
/// where checksum is the first 4 bytes of SHA-256 over the part.
/// </summary>
public static class ShareCodec
{
    private const string Prefix = "domicile-share:";
    private const string Version = "v1";
    private const int ChecksumLength = 4;

    public static string Format(string region, byte[] part)
    {
        ArgumentNullException.ThrowIfNull(part);
        if (!IsValidRegion(region))
        {
            throw new ArgumentException("The region must be non-empty lowercase letters, digits and hyphens.", nameof(region));
        }
        if (part.Length < 2 || part[^1] == 0)
        {
            throw new ArgumentException("The part must hold at least one y byte and a non-zero x byte.", nameof(part));
        }
        var payload = new byte[part.Length + ChecksumLength];
        part.CopyTo(payload, 0);
        Checksum(part).CopyTo(payload.AsSpan(part.Length));
        var index = part[^1].ToString(CultureInfo.InvariantCulture);
        return $"{Prefix}{Version}:{region}:{index}:{Jws.Base64Url(payload)}";
    }

    public static bool TryParse(string? text, out CustodianShare? share, out string error)
    {
        share = null;
        var trimmed = text?.Trim() ?? "";
        if (trimmed.Length == 0)
        {
            error = "the share is empty";
            return false;
        }
        if (!trimmed.StartsWith(Prefix, StringComparison.Ordinal))
        {
            error = $"the share does not start with \"{Prefix}\"";
            return false;
        }
        var fields = trimmed.Split(':');
        if (fields[1] != Version)
        {
            error = $"the share uses an unsupported format version; only {Version} is understood";
            return false;
        }
        if (fields.Length != 5)
        {
            error = "the share must have five colon-separated fields: domicile-share:v1:<region>:<index>:<data>";
            return false;
        }
        var region = fields[2];
        if (!IsValidRegion(region))
        {
            error = "the share's region is not valid: it must be lowercase letters, digits and hyphens";
            return false;
        }
        if (!TryParseIndex(fields[3], out var index))
        {
            error = "the share's index must be a whole number from 1 to 255";
            return false;
        }
        if (!Jws.TryFromBase64Url(fields[4], out var payload))
        {
            error = "the share's data is not valid base64url";
            return false;
        }
        if (payload.Length < 2 + ChecksumLength)
        {
            error = "the share's data is too short to be a share";
            return false;
        }
        var part = payload[..^ChecksumLength];
        if (!CryptographicOperations.FixedTimeEquals(Checksum(part), payload.AsSpan(part.Length)))
        {
            error = "the share's checksum does not match: it was mistyped or corrupted";
            return false;
        }
        if (part[^1] != index)
        {
            error = "the share's index does not match the index recorded in its data";
            return false;
        }
        share = new CustodianShare(region, index, part);
        error = "";
        return true;
    }

    private static byte[] Checksum(ReadOnlySpan<byte> part) => SHA256.HashData(part)[..ChecksumLength];

    private static bool IsValidRegion(string? region)
    {
        if (string.IsNullOrEmpty(region))
        {
            return false;
        }
        foreach (var c in region)
        {
            if (c is not ((>= 'a' and <= 'z') or (>= '0' and <= '9') or '-'))
            {
                return false;
            }
        }
        return true;
    }

    // Only the canonical decimal form (no sign, no leading zeros) is accepted, so each share has one spelling.
    private static bool TryParseIndex(string text, out int index)
    {
        index = 0;
        if (text.Length is 0 or > 3 || text[0] == '0')
        {
            return false;
        }
        foreach (var c in text)
        {
            if (c is < '0' or > '9')
            {
                return false;
            }
            index = (index * 10) + (c - '0');
        }
        return index <= 255;
    }
}
