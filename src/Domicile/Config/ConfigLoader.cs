using System.Globalization;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Domicile.Config;

/// <summary>A configuration that cannot be used; the message names the field and what is wrong with it.</summary>
public sealed class ConfigException(string message) : Exception(message);

/// <summary>Reads and validates <c>domicile.yaml</c> (SPEC 5).</summary>
public static partial class ConfigLoader
{
    /// <summary>The built-in demo policy of SPEC 5, used when no configuration file exists.</summary>
    public const string DemoYaml = """
        regions:
          - id: cn-beijing
            country: CN
            store: sqlite:cn-beijing
          - id: in-mumbai
            country: IN
            store: sqlite:in-mumbai
          - id: sg-singapore
            country: SG
            store: sqlite:sg-singapore
        jurisdictions:
          IN: [in-mumbai]
          CN: [cn-beijing]
          "*": [sg-singapore]
        services:
          - id: cloud-sync
            purpose: Back up and sync your contacts, notes and photos.
            version: 1
            retention: { after_withdrawal: 30d }
          - id: cloud-messaging
            purpose: Deliver messages from apps to your devices.
            version: 1
            retention: { message_ttl: 28d, after_withdrawal: 0d }
          - id: find-device
            purpose: Locate your lost phone.
            version: 1
            retention: { max_age: 7d, after_withdrawal: 0d }
        custody: { shares: 5, threshold: 3 }
        limits: { max_item_bytes: 67108864, user_rps: 100 }
        """;

    /// <summary>
    /// Loads <paramref name="path"/>; without one, <c>./domicile.yaml</c>; without that, the demo
    /// policy with data under <c>./domicile-data</c>.
    /// </summary>
    public static DomicileConfig Load(string? path)
    {
        if (path is null && File.Exists("domicile.yaml")) path = "domicile.yaml";
        if (path is null)
            return Parse(DemoYaml, Path.GetFullPath("domicile-data"));
        if (!File.Exists(path))
            throw new ConfigException($"config file '{path}' does not exist");
        var full = Path.GetFullPath(path);
        return Parse(File.ReadAllText(full), Path.GetDirectoryName(full)!);
    }

    public static DomicileConfig Parse(string yaml, string baseDirectory)
    {
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(yaml));
        }
        catch (YamlException e)
        {
            throw new ConfigException($"the configuration is not valid YAML (line {e.Start.Line}, column {e.Start.Column}): {e.Message}");
        }
        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is not YamlMappingNode root)
            throw new ConfigException("the configuration must be a YAML mapping with regions, jurisdictions and services");

        Known(root, "", "regions", "jurisdictions", "services", "custody", "limits", "retention", "migration");
        var regions = ParseRegions(Seq(root, "regions", ""), baseDirectory);
        var jurisdictions = ParseJurisdictions(Map(root, "jurisdictions", ""), regions);
        var services = ParseServices(Seq(root, "services", ""));

        var custodyNode = OptMap(root, "custody", "");
        var shares = custodyNode is null ? 5 : Int(custodyNode, "shares", "custody.", 5);
        var threshold = custodyNode is null ? 3 : Int(custodyNode, "threshold", "custody.", 3);
        if (shares is < 2 or > 255)
            throw new ConfigException($"custody.shares: {shares} is not allowed; use between 2 and 255 custodian shares");
        if (threshold < 2)
            throw new ConfigException($"custody.threshold: {threshold} is too low; at least 2 custodians must be needed to unseal");
        if (threshold > shares)
            throw new ConfigException($"custody.threshold: {threshold} is greater than custody.shares ({shares}); the root key could never be rebuilt");

        var limitsNode = OptMap(root, "limits", "");
        var maxItem = limitsNode is null ? 64L * 1024 * 1024 : Long(limitsNode, "max_item_bytes", "limits.", 64L * 1024 * 1024);
        var rps = limitsNode is null ? 100 : Int(limitsNode, "user_rps", "limits.", 100);
        if (maxItem < 1) throw new ConfigException("limits.max_item_bytes: must be a positive number of bytes");
        if (rps < 0) throw new ConfigException("limits.user_rps: must be 0 (no limit) or a positive number of requests a second");

        var sweep = TimeSpan.FromMinutes(1);
        if (OptMap(root, "retention", "") is { } retentionNode && Scalar(retentionNode, "sweep_interval", "retention.", required: false) is { } s)
        {
            sweep = Duration(s, "retention.sweep_interval");
            if (sweep <= TimeSpan.Zero) throw new ConfigException("retention.sweep_interval: must be longer than 0s");
            // The sweeper's timer cannot wait longer than about 49 days, and a long interval would let
            // records outlive their limits by as much (G5): a day is plenty.
            if (sweep > TimeSpan.FromDays(1)) throw new ConfigException($"retention.sweep_interval: '{s}' is too long; sweep at least once a day (at most 1d)");
        }

        var pace = 0;
        if (OptMap(root, "migration", "") is { } migrationNode)
        {
            Known(migrationNode, "migration.", "users_per_second");
            pace = Int(migrationNode, "users_per_second", "migration.", 0);
            if (pace < 0) throw new ConfigException("migration.users_per_second: must be 0 (as fast as the stores allow) or a positive number of users a second");
        }

        return new DomicileConfig
        {
            Regions = regions,
            Jurisdictions = jurisdictions,
            Services = services,
            Custody = new CustodyConfig(shares, threshold),
            Limits = new LimitsConfig(maxItem, rps),
            SweepInterval = sweep,
            MigrationUsersPerSecond = pace,
            BaseDirectory = baseDirectory,
        };
    }

    /// <summary>The longest duration a configuration may state: 36500 days, about a hundred years.</summary>
    public const int MaxDurationDays = 36500;

    /// <summary>Parses <c>90s</c>, <c>15m</c>, <c>12h</c>, <c>28d</c>; at most <see cref="MaxDurationDays"/> days.</summary>
    public static TimeSpan Duration(string text, string field)
    {
        var m = DurationPattern().Match(text.Trim());
        if (!m.Success)
            throw new ConfigException($"{field}: '{Redact(text)}' is not a duration; write a number and a unit s, m, h or d, such as 90s or 28d");
        var perUnit = m.Groups[2].Value switch
        {
            "s" => 86400L,
            "m" => 1440L,
            "h" => 24L,
            _ => 1L,
        };
        // The digits may be any length; anything beyond the limit (or beyond a long) is refused here,
        // before TimeSpan could overflow.
        if (!long.TryParse(m.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n > MaxDurationDays * perUnit)
            throw new ConfigException($"{field}: '{Redact(text)}' is too long; a duration may be at most {MaxDurationDays}d (about 100 years)");
        return TimeSpan.FromSeconds(n * (86400L / perUnit));
    }

    static List<RegionConfig> ParseRegions(YamlSequenceNode node, string baseDirectory)
    {
        var list = new List<RegionConfig>();
        for (var i = 0; i < node.Children.Count; i++)
        {
            var at = $"regions[{i}].";
            if (node.Children[i] is not YamlMappingNode r)
                throw new ConfigException($"regions[{i}]: each region must be a mapping with id, country and store");
            Known(r, at, "id", "country", "store");
            var id = Scalar(r, "id", at)!;
            if (!RegionIdPattern().IsMatch(id))
                throw new ConfigException($"{at}id: '{id}' is not a valid region id; use lowercase letters, digits and '-'");
            if (list.Any(x => x.Id == id))
                throw new ConfigException($"{at}id: duplicate region id '{id}'");
            var country = Scalar(r, "country", at)!;
            if (!CountryPattern().IsMatch(country))
                throw new ConfigException($"{at}country: '{country}' is not an ISO 3166-1 alpha-2 country code (two capital letters, such as IN)");
            list.Add(new RegionConfig(id, country, ParseStore(Scalar(r, "store", at)!, $"{at}store", baseDirectory)));
        }
        if (list.Count == 0) throw new ConfigException("regions: at least one region is needed");
        return list;
    }

    static StoreLocation ParseStore(string text, string field, string baseDirectory)
    {
        if (text.StartsWith("sqlite:", StringComparison.Ordinal))
        {
            var path = text["sqlite:".Length..].Trim();
            if (path.Length == 0) throw new ConfigException($"{field}: 'sqlite:' needs a folder, such as sqlite:data/in-mumbai");
            return new StoreLocation(StoreEngine.Sqlite, Path.GetFullPath(Path.Combine(baseDirectory, path)));
        }
        if (text.StartsWith("postgres:", StringComparison.Ordinal))
        {
            var cs = text["postgres:".Length..].Trim();
            try
            {
                _ = new Npgsql.NpgsqlConnectionStringBuilder(cs);
            }
            catch (ArgumentException e)
            {
                throw new ConfigException($"{field}: the PostgreSQL connection string is not valid: {e.Message}");
            }
            if (cs.Length == 0) throw new ConfigException($"{field}: 'postgres:' needs a connection string, such as postgres:Host=db;Database=in_mumbai");
            return new StoreLocation(StoreEngine.Postgres, cs);
        }
        throw new ConfigException($"{field}: '{Redact(text)}' is neither a sqlite: nor a postgres: store");
    }

    static Dictionary<string, IReadOnlyList<string>> ParseJurisdictions(YamlMappingNode node, List<RegionConfig> regions)
    {
        var result = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        foreach (var (k, v) in node.Children)
        {
            var code = KeyName(k, "jurisdictions", "a country code or \"*\"");
            if (code != "*" && !CountryPattern().IsMatch(code))
                throw new ConfigException($"jurisdictions.{code}: '{code}' is not an ISO 3166-1 alpha-2 country code (two capital letters) or \"*\"");
            if (v is not YamlSequenceNode seq || seq.Children.Count == 0)
                throw new ConfigException($"jurisdictions.{code}: must list at least one region, such as [in-mumbai]");
            var ids = new List<string>();
            foreach (var item in seq.Children)
            {
                var id = (item as YamlScalarNode)?.Value ?? "";
                if (regions.All(r => r.Id != id))
                    throw new ConfigException($"jurisdictions.{code}: unknown region '{id}'; it is not among regions[].id");
                if (ids.Contains(id))
                    throw new ConfigException($"jurisdictions.{code}: region '{id}' is listed twice");
                ids.Add(id);
            }
            result[code] = ids;
        }
        if (result.Count == 0) throw new ConfigException("jurisdictions: at least one jurisdiction is needed (\"*\" covers everyone else)");
        return result;
    }

    static List<ServiceConfig> ParseServices(YamlSequenceNode node)
    {
        var list = new List<ServiceConfig>();
        for (var i = 0; i < node.Children.Count; i++)
        {
            var at = $"services[{i}].";
            if (node.Children[i] is not YamlMappingNode s)
                throw new ConfigException($"services[{i}]: each service must be a mapping with id, purpose, version and retention");
            Known(s, at, "id", "purpose", "version", "retention");
            var id = Scalar(s, "id", at)!;
            if (!RegionIdPattern().IsMatch(id))
                throw new ConfigException($"{at}id: '{id}' is not a valid service id; use lowercase letters, digits and '-'");
            if (id == "account")
                throw new ConfigException($"{at}id: 'account' is reserved for the account itself");
            if (list.Any(x => x.Id == id))
                throw new ConfigException($"{at}id: duplicate service id '{id}'");
            var purpose = Scalar(s, "purpose", at)!;
            if (string.IsNullOrWhiteSpace(purpose))
                throw new ConfigException($"{at}purpose: must say in words what the data is used for");
            var version = Int(s, "version", at, 1);
            if (version < 1) throw new ConfigException($"{at}version: must be 1 or more");
            var r = OptMap(s, "retention", at);
            TimeSpan? Opt(string name) => r is not null && Scalar(r, name, at + "retention.", required: false) is { } v
                ? Duration(v, $"{at}retention.{name}") : null;
            if (r is not null) Known(r, at + "retention.", "after_withdrawal", "message_ttl", "max_age");
            var retention = new RetentionConfig(Opt("after_withdrawal") ?? TimeSpan.Zero, Opt("message_ttl"), Opt("max_age"));
            list.Add(new ServiceConfig(id, purpose, version, retention));
        }
        if (list.Count == 0) throw new ConfigException("services: at least one service is needed");
        return list;
    }

    static void Known(YamlMappingNode node, string at, params string[] names)
    {
        foreach (var key in node.Children.Keys)
        {
            var name = KeyName(key, at.Length == 0 ? "the top level" : at.TrimEnd('.'), "a field name");
            if (!names.Contains(name))
                throw new ConfigException($"{at}{name}: unknown field; expected one of {string.Join(", ", names)}");
        }
    }

    // A YAML key may itself be a mapping or a list ({a: b}: x, ? [a, b] : x); only plain names are meaningful here.
    static string KeyName(YamlNode key, string where, string expected) => key switch
    {
        YamlScalarNode { Value: { } v } => v,
        YamlScalarNode => "",
        _ => throw new ConfigException(
            $"{where}: each key must be {expected}, not a {(key is YamlSequenceNode ? "list" : "mapping")} (line {key.Start.Line}, column {key.Start.Column})"),
    };

    static YamlNode? Child(YamlMappingNode node, string name) =>
        node.Children.TryGetValue(new YamlScalarNode(name), out var v) ? v : null;

    static string? Scalar(YamlMappingNode node, string name, string at, bool required = true)
    {
        var v = Child(node, name);
        if (v is null)
            return required ? throw new ConfigException($"{at}{name}: missing") : null;
        if (v is not YamlScalarNode s || s.Value is null)
            throw new ConfigException($"{at}{name}: must be a single value");
        return s.Value;
    }

    static int Int(YamlMappingNode node, string name, string at, int fallback)
    {
        var s = Scalar(node, name, at, required: false);
        if (s is null) return fallback;
        return int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n)
            ? n : throw new ConfigException($"{at}{name}: '{s}' is not a whole number");
    }

    static long Long(YamlMappingNode node, string name, string at, long fallback)
    {
        var s = Scalar(node, name, at, required: false);
        if (s is null) return fallback;
        return long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n)
            ? n : throw new ConfigException($"{at}{name}: '{s}' is not a whole number");
    }

    static YamlSequenceNode Seq(YamlMappingNode node, string name, string at) =>
        Child(node, name) switch
        {
            YamlSequenceNode s => s,
            null => throw new ConfigException($"{at}{name}: missing"),
            _ => throw new ConfigException($"{at}{name}: must be a list"),
        };

    static YamlMappingNode Map(YamlMappingNode node, string name, string at) =>
        OptMap(node, name, at) ?? throw new ConfigException($"{at}{name}: missing");

    static YamlMappingNode? OptMap(YamlMappingNode node, string name, string at) =>
        Child(node, name) switch
        {
            YamlMappingNode m => m,
            null => null,
            _ => throw new ConfigException($"{at}{name}: must be a mapping"),
        };

    // A store string may carry a password; never echo more than its scheme.
    static string Redact(string text)
    {
        if (text.Contains('@', StringComparison.Ordinal) || text.Contains("password", StringComparison.OrdinalIgnoreCase))
            return text.Split(':')[0] + ":…";
        return text.Length <= 80 ? text : text[..80] + "…";
    }

    [GeneratedRegex("^[a-z0-9-]+$")]
    private static partial Regex RegionIdPattern();

    [GeneratedRegex("^[A-Z]{2}$")]
    private static partial Regex CountryPattern();

    [GeneratedRegex(@"^([0-9]+)([smhd])$")]
    private static partial Regex DurationPattern();
}
