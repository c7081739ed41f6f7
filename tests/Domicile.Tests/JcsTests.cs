using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using CsCheck;
using Domicile.Crypto;

namespace Domicile.Tests;

public class JcsTests
{
    private static readonly Gen<string> Text = Gen.OneOf(
        Gen.Char.Where(c => !char.IsSurrogate(c)).Array[0, 8].Select(c => new string(c)),
        Gen.Char["ab\"\\/\u0000\u001f\u007f\b\t\n\f\r\u20ac\u00f6"].Array[0, 6].Select(c => new string(c)),
        Gen.Const("\ud83d\ude00"));

    private static readonly Gen<JsonNode?> Leaf = Gen.OneOf(
        Gen.Const((JsonNode?)null),
        Gen.Bool.Select(b => (JsonNode?)JsonValue.Create(b)),
        Gen.Double.Where(double.IsFinite).Select(d => (JsonNode?)JsonValue.Create(d)),
        Gen.Int.Select(i => (JsonNode?)JsonValue.Create(i)),
        Text.Select(s => (JsonNode?)JsonValue.Create(s)));

    private static Gen<JsonNode?> Node(int depth) => depth == 0
        ? Leaf
        : Gen.Frequency(
            (3, Leaf),
            (1, Node(depth - 1).Array[0, 4].Select(items => (JsonNode?)new JsonArray(items))),
            (1, Gen.Select(Text, Node(depth - 1)).Array[0, 5].Select(members =>
            {
                var obj = new JsonObject();
                foreach (var (name, value) in members)
                {
                    obj[name] = value;
                }
                return (JsonNode?)obj;
            })));

    private static JsonNode? Reordered(JsonNode? node) => node switch
    {
        JsonObject obj => new JsonObject(obj.Reverse().Select(m => KeyValuePair.Create(m.Key, Reordered(m.Value)))),
        JsonArray array => new JsonArray(array.Select(Reordered).ToArray()),
        _ => node?.DeepClone(),
    };

    private static string Canonical(string json) => Jcs.CanonicalString(JsonNode.Parse(json));

    [Theory]
    // RFC 8785 appendix B: IEEE-754 bit patterns and their canonical text.
    [InlineData("0000000000000000", "0")]
    [InlineData("8000000000000000", "0")]
    [InlineData("0000000000000001", "5e-324")]
    [InlineData("8000000000000001", "-5e-324")]
    [InlineData("7fefffffffffffff", "1.7976931348623157e+308")]
    [InlineData("ffefffffffffffff", "-1.7976931348623157e+308")]
    [InlineData("4340000000000000", "9007199254740992")]
    [InlineData("c340000000000000", "-9007199254740992")]
    [InlineData("4430000000000000", "295147905179352830000")]
    [InlineData("44b52d02c7e14af5", "9.999999999999997e+22")]
    [InlineData("44b52d02c7e14af6", "1e+23")]
    [InlineData("44b52d02c7e14af7", "1.0000000000000001e+23")]
    [InlineData("444b1ae4d6e2ef4e", "999999999999999700000")]
    [InlineData("444b1ae4d6e2ef4f", "999999999999999900000")]
    [InlineData("444b1ae4d6e2ef50", "1e+21")]
    [InlineData("3eb0c6f7a0b5ed8c", "9.999999999999997e-7")]
    [InlineData("3eb0c6f7a0b5ed8d", "0.000001")]
    [InlineData("41b3de4355555553", "333333333.3333332")]
    [InlineData("41b3de4355555554", "333333333.33333325")]
    [InlineData("41b3de4355555555", "333333333.3333333")]
    [InlineData("41b3de4355555556", "333333333.3333334")]
    [InlineData("41b3de4355555557", "333333333.33333343")]
    [InlineData("becbf647612f3696", "-0.0000033333333333333333")]
    [InlineData("43143ff3c1cb0959", "1424953923781206.2")]
    public void Numbers_match_rfc8785_appendix_b(string bits, string expected)
    {
        var value = BitConverter.Int64BitsToDouble(Convert.ToInt64(bits, 16));
        Assert.Equal(expected, Jcs.CanonicalString(JsonValue.Create(value)));
    }

    [Theory]
    [InlineData("1e21", "1e+21")]
    [InlineData("1e20", "100000000000000000000")]
    [InlineData("1e-7", "1e-7")]
    [InlineData("1e-6", "0.000001")]
    [InlineData("1.5e-7", "1.5e-7")]
    [InlineData("4.50", "4.5")]
    [InlineData("2e-3", "0.002")]
    [InlineData("1E30", "1e+30")]
    [InlineData("-0", "0")]
    [InlineData("-0.0", "0")]
    [InlineData("1.0", "1")]
    [InlineData("100", "100")]
    [InlineData("-12.5e1", "-125")]
    [InlineData("9007199254740991", "9007199254740991")]
    [InlineData("333333333.33333329", "333333333.3333333")]
    [InlineData("0.000000000000000000000000001", "1e-27")]
    [InlineData("123456789012345678901234567890", "1.2345678901234568e+29")]
    public void Json_number_text_is_canonicalized(string json, string expected)
    {
        Assert.Equal(expected, Canonical(json));
    }

    [Fact]
    public void Rfc8785_section_3_2_2_example()
    {
        const string input = """
            {
              "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
              "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
              "literals": [null, true, false]
            }
            """;
        const string expected = """{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}""";
        Assert.Equal(expected, Canonical(input));
        Assert.Equal(Encoding.UTF8.GetBytes(expected), Jcs.Canonicalize(JsonNode.Parse(input)));
    }

    [Fact]
    public void Rfc8785_member_sorting_example()
    {
        const string input = """
            {
              "\u20ac": "Euro Sign",
              "\r": "Carriage Return",
              "\ufb33": "Hebrew Letter Dalet With Dagesh",
              "1": "One",
              "\ud83d\ude00": "Emoji: Grinning Face",
              "\u0080": "Control",
              "\u00f6": "Latin Small Letter O With Diaeresis"
            }
            """;
        const string expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\","
            + "\"\u00f6\":\"Latin Small Letter O With Diaeresis\",\"\u20ac\":\"Euro Sign\","
            + "\"\ud83d\ude00\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}";
        Assert.Equal(expected, Canonical(input));
        // U+1F600 sorts by its UTF-16 surrogates (D83D) before U+FB33, unlike code point order.
        Assert.Equal(Encoding.UTF8.GetBytes(expected), Jcs.Canonicalize(JsonNode.Parse(input)));
    }

    [Fact]
    public void Strings_escape_only_what_rfc8785_requires()
    {
        var value = JsonValue.Create("\"\\\b\t\n\f\r\u0000\u0001\u001f\u007f/<>&'é€\ud83d\ude00");
        Assert.Equal("\"\\\"\\\\\\b\\t\\n\\f\\r\\u0000\\u0001\\u001f\u007f/<>&'é€\ud83d\ude00\"", Jcs.CanonicalString(value));
    }

    [Fact]
    public void Unpaired_surrogates_and_non_finite_numbers_are_refused()
    {
        Assert.Throws<ArgumentException>(() => Jcs.Canonicalize(JsonValue.Create("a\ud800b")));
        Assert.Throws<ArgumentException>(() => Jcs.Canonicalize(JsonValue.Create("\udc00")));
        Assert.Throws<ArgumentException>(() => Jcs.Canonicalize(new JsonObject { ["\ud83d"] = 1 }));
        Assert.Throws<ArgumentException>(() => Jcs.Canonicalize(JsonValue.Create(double.NaN)));
        Assert.Throws<ArgumentException>(() => Jcs.Canonicalize(JsonValue.Create(double.PositiveInfinity)));
        Assert.Throws<ArgumentException>(() => Jcs.Canonicalize(JsonValue.Create(float.NegativeInfinity)));
        Assert.Throws<ArgumentException>(() => Canonical("1e400"));
        Assert.Throws<ArgumentException>(() => Canonical("""["\ud800"]"""));
        Assert.Throws<ArgumentException>(() => Canonical("""{"\udc00":1}"""));
    }

    [Fact]
    public void Duplicate_member_names_are_refused()
    {
        Assert.ThrowsAny<ArgumentException>(() => Canonical("""{"a":1,"a":2}"""));
        // Extension data can repeat a declared property's name in the serialized JSON.
        var clash = new WithExtensionData { A = 1, Extra = new Dictionary<string, object> { ["A"] = 2 } };
        Assert.Throws<ArgumentException>(() => Jcs.Canonicalize(JsonValue.Create(clash)));
    }

    [Fact]
    public void Clr_values_are_canonicalized_as_their_json()
    {
        var guid = Guid.Parse("0f8fad5b-d9cb-469f-a165-70867728950e");
        var node = new JsonObject
        {
            ["long"] = 1234567890123L,
            ["int"] = -7,
            ["decimal"] = 1.50m,
            ["float"] = 0.1f,
            ["double"] = 0.1,
            ["bool"] = true,
            ["string"] = "x",
            ["null"] = null,
            ["guid"] = guid,
            ["when"] = new DateTimeOffset(2024, 1, 2, 3, 4, 5, TimeSpan.Zero),
            ["element"] = JsonValue.Create(JsonDocument.Parse(" 1.0e0 ").RootElement),
            ["poco"] = JsonValue.Create(new Poco("y", [1.0, 2.5])),
            ["array"] = new JsonArray(1, "two", false),
            ["bigLong"] = 9007199254740993L,
        };
        Assert.Equal(
            """{"array":[1,"two",false],"bigLong":9007199254740992,"bool":true,"decimal":1.5,"double":0.1,"element":1,"float":0.1,"guid":"0f8fad5b-d9cb-469f-a165-70867728950e","int":-7,"long":1234567890123,"null":null,"poco":{"A":[1,2.5],"B":"y"},"string":"x","when":"2024-01-02T03:04:05+00:00"}""",
            Jcs.CanonicalString(node));
        Assert.Equal("null", Jcs.CanonicalString(null));
        Assert.Equal("[]", Jcs.CanonicalString(new JsonArray()));
        Assert.Equal("{}", Jcs.CanonicalString(new JsonObject()));
    }

    [Fact]
    public void Canonicalization_is_idempotent()
    {
        Node(3).Sample(node =>
        {
            var once = Jcs.Canonicalize(node);
            var twice = Jcs.Canonicalize(JsonNode.Parse(once));
            Assert.Equal(once, twice);
        }, iter: 2_000);
    }

    [Fact]
    public void Canonicalization_ignores_member_order()
    {
        Node(3).Sample(node => Assert.Equal(Jcs.Canonicalize(node), Jcs.Canonicalize(Reordered(node))), iter: 2_000);
    }

    [Fact]
    public void Canonical_form_is_valid_compact_json_with_the_same_value()
    {
        Node(3).Sample(node =>
        {
            var canonical = Jcs.CanonicalString(node);
            var reparsed = JsonNode.Parse(canonical);
            if (!HasNumbers(node))
            {
                Assert.True(JsonNode.DeepEquals(JsonNode.Parse(node?.ToJsonString() ?? "null"), reparsed));
            }
            Assert.Equal(canonical, Jcs.CanonicalString(Reordered(reparsed)));
        }, iter: 1_000);
    }

    [Fact]
    public void Numbers_round_trip_exactly()
    {
        Gen.Double.Where(double.IsFinite).Sample(d =>
        {
            var text = Jcs.CanonicalString(JsonValue.Create(d));
            Assert.Equal(d == 0 ? 0 : d, double.Parse(text, System.Globalization.CultureInfo.InvariantCulture));
            Assert.Equal(text, Canonical(text));
            Assert.DoesNotContain("E", text, StringComparison.Ordinal);
            Assert.DoesNotContain(" ", text, StringComparison.Ordinal);
        }, iter: 100_000);
    }

    private sealed record Poco(string B, double[] A);

    private sealed class WithExtensionData
    {
        public int A { get; set; }

        [System.Text.Json.Serialization.JsonExtensionData]
        public Dictionary<string, object>? Extra { get; set; }
    }

    // JsonNode.DeepEquals compares number text, which canonicalization rewrites (e.g. 1.0 -> 1).
    private static bool HasNumbers(JsonNode? node) => node switch
    {
        JsonObject obj => obj.Any(m => HasNumbers(m.Value)),
        JsonArray array => array.Any(HasNumbers),
        JsonValue value => value.GetValueKind() == JsonValueKind.Number,
        _ => false,
    };
}
