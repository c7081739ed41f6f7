using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Domicile.Crypto;

/// <summary>RFC 8785 JSON Canonicalization Scheme. Numbers are IEEE-754 doubles, printed as ECMAScript does.</summary>
public static class Jcs
{
    public static byte[] Canonicalize(JsonNode? node) => Encoding.UTF8.GetBytes(CanonicalString(node));

    public static string CanonicalString(JsonNode? node)
    {
        var sb = new StringBuilder();
        try
        {
            Write(sb, node);
        }
        catch (InvalidOperationException e)
        {
            // Parsed nodes decode lazily; a lone surrogate escape such as "\ud800" fails only here.
            throw new ArgumentException("The JSON contains a string that cannot be decoded (unpaired surrogate).", nameof(node), e);
        }
        return sb.ToString();
    }

    private static void Write(StringBuilder sb, JsonNode? node)
    {
        switch (node)
        {
            case null:
                sb.Append("null");
                break;
            case JsonObject obj:
                var members = obj.ToList();
                members.Sort((a, b) => string.CompareOrdinal(a.Key, b.Key));
                sb.Append('{');
                for (var i = 0; i < members.Count; i++)
                {
                    if (i > 0)
                    {
                        sb.Append(',');
                    }
                    WriteString(sb, members[i].Key);
                    sb.Append(':');
                    Write(sb, members[i].Value);
                }
                sb.Append('}');
                break;
            case JsonArray array:
                sb.Append('[');
                for (var i = 0; i < array.Count; i++)
                {
                    if (i > 0)
                    {
                        sb.Append(',');
                    }
                    Write(sb, array[i]);
                }
                sb.Append(']');
                break;
            case JsonValue value:
                WriteValue(sb, value);
                break;
            default:
                throw new ArgumentException($"Unsupported JSON node type {node.GetType().Name}.", nameof(node));
        }
    }

    private static void WriteValue(StringBuilder sb, JsonValue value)
    {
        if (value.TryGetValue<JsonElement>(out var element))
        {
            WriteElement(sb, element);
        }
        else if (value.TryGetValue<double>(out var d))
        {
            WriteNumber(sb, d);
        }
        else if (value.TryGetValue<float>(out var f))
        {
            // JSON text of a float is its shortest float spelling, which a JSON reader then takes as a double.
            WriteNumber(sb, float.IsFinite(f) ? double.Parse(f.ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture) : f);
        }
        else if (value.TryGetValue<string>(out var s))
        {
            WriteString(sb, s);
        }
        else if (value.TryGetValue<bool>(out var b))
        {
            sb.Append(b ? "true" : "false");
        }
        else
        {
            // Other CLR values (long, decimal, Guid, DateTimeOffset, ...) are canonicalized as their JSON text.
            using var doc = JsonDocument.Parse(value.ToJsonString());
            WriteElement(sb, doc.RootElement);
        }
    }

    private static void WriteElement(StringBuilder sb, JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var members = element.EnumerateObject().ToList();
                members.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
                sb.Append('{');
                for (var i = 0; i < members.Count; i++)
                {
                    if (i > 0)
                    {
                        if (members[i].Name == members[i - 1].Name)
                        {
                            throw new ArgumentException("JSON object has a duplicate member name; it has no canonical form.");
                        }
                        sb.Append(',');
                    }
                    WriteString(sb, members[i].Name);
                    sb.Append(':');
                    WriteElement(sb, members[i].Value);
                }
                sb.Append('}');
                break;
            case JsonValueKind.Array:
                sb.Append('[');
                var first = true;
                foreach (var item in element.EnumerateArray())
                {
                    if (!first)
                    {
                        sb.Append(',');
                    }
                    first = false;
                    WriteElement(sb, item);
                }
                sb.Append(']');
                break;
            case JsonValueKind.String:
                WriteString(sb, element.GetString()!);
                break;
            case JsonValueKind.Number:
                if (!element.TryGetDouble(out var d))
                {
                    throw new ArgumentException("JSON number is outside the range of an IEEE-754 double.");
                }
                WriteNumber(sb, d);
                break;
            case JsonValueKind.True:
                sb.Append("true");
                break;
            case JsonValueKind.False:
                sb.Append("false");
                break;
            case JsonValueKind.Null:
                sb.Append("null");
                break;
            default:
                throw new ArgumentException($"Unsupported JSON value kind {element.ValueKind}.");
        }
    }

    /// <summary>ECMAScript Number.prototype.toString, from .NET's shortest round-trip digits.</summary>
    internal static void WriteNumber(StringBuilder sb, double value)
    {
        if (!double.IsFinite(value))
        {
            throw new ArgumentException("NaN and Infinity have no JSON representation.", nameof(value));
        }
        if (value == 0)
        {
            sb.Append('0'); // also -0
            return;
        }
        if (value < 0)
        {
            sb.Append('-');
            value = -value;
        }

        // "R" gives the shortest digits that round-trip, as "d.dddE+xx" or "ddd.ddd"; decompose as 0.digits * 10^n.
        var r = value.ToString("R", CultureInfo.InvariantCulture);
        var exponent = 0;
        var ePos = r.IndexOf('E', StringComparison.Ordinal);
        if (ePos >= 0)
        {
            exponent = int.Parse(r.AsSpan(ePos + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            r = r[..ePos];
        }
        var dot = r.IndexOf('.', StringComparison.Ordinal);
        var digits = dot >= 0 ? string.Concat(r.AsSpan(0, dot), r.AsSpan(dot + 1)) : r;
        var n = (dot >= 0 ? dot : r.Length) + exponent;
        var lead = 0;
        while (digits[lead] == '0')
        {
            lead++;
        }
        digits = digits[lead..].TrimEnd('0');
        n -= lead;
        var k = digits.Length;

        if (k <= n && n <= 21)
        {
            sb.Append(digits).Append('0', n - k);
        }
        else if (0 < n && n <= 21)
        {
            sb.Append(digits, 0, n).Append('.').Append(digits, n, k - n);
        }
        else if (-6 < n && n <= 0)
        {
            sb.Append("0.").Append('0', -n).Append(digits);
        }
        else
        {
            var e = n - 1;
            sb.Append(digits[0]);
            if (k > 1)
            {
                sb.Append('.').Append(digits, 1, k - 1);
            }
            sb.Append('e').Append(e < 0 ? '-' : '+').Append(Math.Abs(e).ToString(CultureInfo.InvariantCulture));
        }
    }

    /// <summary>Appends <paramref name="s"/> as a canonical JSON string.</summary>
    public static void AppendString(StringBuilder sb, string s) => WriteString(sb, s);

    private static void WriteString(StringBuilder sb, string s)
    {
        sb.Append('"');
        for (var i = 0; i < s.Length; i++)
        {
            var c = s[i];
            switch (c)
            {
                case '"':
                    sb.Append("\\\"");
                    break;
                case '\\':
                    sb.Append("\\\\");
                    break;
                case '\b':
                    sb.Append("\\b");
                    break;
                case '\t':
                    sb.Append("\\t");
                    break;
                case '\n':
                    sb.Append("\\n");
                    break;
                case '\f':
                    sb.Append("\\f");
                    break;
                case '\r':
                    sb.Append("\\r");
                    break;
                case < ' ':
                    sb.Append("\\u00").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
                    break;
                case >= '\uD800' and <= '\uDBFF' when i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]):
                    sb.Append(c).Append(s[++i]);
                    break;
                case >= '\uD800' and <= '\uDFFF':
                    // A lone surrogate has no UTF-8 form; RFC 8785 requires rejecting it.
                    throw new ArgumentException("JSON string contains an unpaired surrogate.");
                default:
                    sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }
}
