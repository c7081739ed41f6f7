using Domicile.Config;

namespace Domicile.Tests;

public class ConfigTests
{
    const string Valid = """
        regions:
          - id: cn-beijing
            country: CN
            store: sqlite:data/cn-beijing
          - id: in-mumbai
            country: IN
            store: postgres:Host=db.example;Database=in_mumbai
        jurisdictions:
          IN: [in-mumbai]
          CN: [cn-beijing]
          "*": [cn-beijing]
        services:
          - id: cloud-sync
            purpose: Back up and sync your contacts, notes and photos.
            version: 2
            retention: { after_withdrawal: 30d }
          - id: cloud-messaging
            purpose: Deliver messages.
            version: 1
            retention: { message_ttl: 90s, after_withdrawal: 0d }
        custody: { shares: 5, threshold: 3 }
        limits: { max_item_bytes: 1024, user_rps: 7 }
        """;

    [Fact]
    public void A_valid_config_is_read_with_paths_relative_to_the_file()
    {
        var c = ConfigLoader.Parse(Valid, "/srv/domicile");
        Assert.Equal(["cn-beijing", "in-mumbai"], c.Regions.Select(r => r.Id));
        Assert.Equal(new StoreLocation(StoreEngine.Sqlite, "/srv/domicile/data/cn-beijing"), c.Regions[0].Store);
        Assert.Equal(StoreEngine.Postgres, c.Regions[1].Store.Engine);
        Assert.Equal("in-mumbai", c.HomeRegion("IN"));
        Assert.Equal("in-mumbai", c.HomeRegion("in"));
        Assert.Equal("cn-beijing", c.HomeRegion("FR"));
        Assert.Equal(2, c.Service("cloud-sync")!.Version);
        Assert.Equal(TimeSpan.FromDays(30), c.Service("cloud-sync")!.Retention.AfterWithdrawal);
        Assert.Equal(TimeSpan.FromSeconds(90), c.Service("cloud-messaging")!.Retention.MessageTtl);
        Assert.Equal(new CustodyConfig(5, 3), c.Custody);
        Assert.Equal(new LimitsConfig(1024, 7), c.Limits);
        Assert.Equal(0, c.MigrationUsersPerSecond);
        Assert.Equal(40, ConfigLoader.Parse(Valid + "\nmigration: { users_per_second: 40 }\n", "/srv/domicile").MigrationUsersPerSecond);
    }

    [Fact]
    public void The_built_in_demo_policy_is_the_one_of_the_spec()
    {
        var c = ConfigLoader.Parse(ConfigLoader.DemoYaml, "/tmp/x");
        Assert.Equal(["cn-beijing", "in-mumbai", "sg-singapore"], c.Regions.Select(r => r.Id));
        Assert.Equal(["cloud-sync", "cloud-messaging", "find-device"], c.Services.Select(s => s.Id));
        Assert.Equal(TimeSpan.FromDays(7), c.Service("find-device")!.Retention.MaxAge);
        Assert.Equal(TimeSpan.FromDays(28), c.Service("cloud-messaging")!.Retention.MessageTtl);
        Assert.Equal(64L * 1024 * 1024, c.Limits.MaxItemBytes);
        Assert.Equal("sg-singapore", c.HomeRegion("DE"));
    }

    [Theory]
    [InlineData("[in-mumbai]\n  CN: [cn-beijing]", "[in-mumbai, mars-base]\n  CN: [cn-beijing]", "jurisdictions.IN: unknown region 'mars-base'")]
    [InlineData("- id: in-mumbai\n    country: IN", "- id: cn-beijing\n    country: IN", "regions[1].id: duplicate region id 'cn-beijing'")]
    [InlineData("- id: cloud-messaging", "- id: cloud-sync", "services[1].id: duplicate service id 'cloud-sync'")]
    [InlineData("country: IN", "country: India", "regions[1].country: 'India' is not an ISO 3166-1 alpha-2")]
    [InlineData("  IN: [in-mumbai]", "  IND: [in-mumbai]", "jurisdictions.IND: 'IND' is not an ISO 3166-1 alpha-2")]
    [InlineData("after_withdrawal: 30d", "after_withdrawal: 30 days", "services[0].retention.after_withdrawal: '30 days' is not a duration")]
    [InlineData("message_ttl: 90s", "message_ttl: 2w", "services[1].retention.message_ttl: '2w' is not a duration")]
    [InlineData("threshold: 3", "threshold: 6", "custody.threshold: 6 is greater than custody.shares (5)")]
    [InlineData("threshold: 3", "threshold: 1", "custody.threshold: 1 is too low")]
    [InlineData("store: sqlite:data/cn-beijing", "store: mysql://db/cn", "regions[0].store: 'mysql://db/cn' is neither a sqlite: nor a postgres: store")]
    [InlineData("- id: cn-beijing", "- id: CN_Beijing", "regions[0].id: 'CN_Beijing' is not a valid region id")]
    [InlineData("version: 2", "version: two", "services[0].version: 'two' is not a whole number")]
    [InlineData("user_rps: 7", "user_rps: -1", "limits.user_rps: must be 0")]
    [InlineData("custody:", "custodians:", "custodians: unknown field")]
    [InlineData("limits:", "migration: { users_per_second: -5 }\nlimits:", "migration.users_per_second: must be 0")]
    [InlineData("limits:", "migration: { users_per_second: fast }\nlimits:", "migration.users_per_second: 'fast' is not a whole number")]
    [InlineData("limits:", "migration: { user_per_second: 5 }\nlimits:", "migration.user_per_second: unknown field")]
    [InlineData("purpose: Deliver messages.", "purpose: \"\"", "services[1].purpose: must say in words")]
    public void Invalid_configs_are_refused_naming_the_field(string find, string replace, string expected)
    {
        Assert.Contains(find, Valid, StringComparison.Ordinal);
        var yaml = Valid.Replace(find, replace, StringComparison.Ordinal);
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(yaml, "/tmp"));
        Assert.StartsWith(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Broken_yaml_and_missing_sections_are_refused()
    {
        Assert.Contains("not valid YAML", Assert.Throws<ConfigException>(() => ConfigLoader.Parse("regions: [", "/tmp")).Message, StringComparison.Ordinal);
        Assert.StartsWith("jurisdictions: missing", Assert.Throws<ConfigException>(() => ConfigLoader.Parse(
            Valid[..Valid.IndexOf("jurisdictions:", StringComparison.Ordinal)] + Valid[Valid.IndexOf("services:", StringComparison.Ordinal)..], "/tmp")).Message, StringComparison.Ordinal);
        Assert.Contains("does not exist", Assert.Throws<ConfigException>(() => ConfigLoader.Load("/nonexistent/domicile.yaml")).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_store_error_never_echoes_a_connection_string_password()
    {
        var yaml = Valid.Replace("store: sqlite:data/cn-beijing", "store: pg://user:hunter2-secret@db/x", StringComparison.Ordinal);
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(yaml, "/tmp"));
        Assert.DoesNotContain("hunter2", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("after_withdrawal: 30d", "after_withdrawal: 999999999d", "services[0].retention.after_withdrawal: '999999999d' is too long; a duration may be at most 36500d")]
    [InlineData("message_ttl: 90s", "message_ttl: 99999999999999999999s", "services[1].retention.message_ttl: '99999999999999999999s' is too long; a duration may be at most 36500d")]
    [InlineData("message_ttl: 90s", "message_ttl: 9223372036854775807s", "services[1].retention.message_ttl: '9223372036854775807s' is too long")]
    [InlineData("after_withdrawal: 30d", "after_withdrawal: 36501d", "services[0].retention.after_withdrawal: '36501d' is too long")]
    [InlineData("after_withdrawal: 30d", "after_withdrawal: 876001h", "services[0].retention.after_withdrawal: '876001h' is too long")]
    [InlineData("limits:", "retention: { sweep_interval: 999999999d }\nlimits:", "retention.sweep_interval: '999999999d' is too long")]
    [InlineData("limits:", "retention: { sweep_interval: 60d }\nlimits:", "retention.sweep_interval: '60d' is too long; sweep at least once a day")]
    public void Huge_durations_are_refused_naming_the_field(string find, string replace, string expected)
    {
        var yaml = Valid.Replace(find, replace, StringComparison.Ordinal);
        Assert.NotEqual(Valid, yaml);
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(yaml, "/tmp"));
        Assert.StartsWith(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_longest_allowed_duration_is_36500_days_in_any_unit()
    {
        Assert.Equal(TimeSpan.FromDays(36500), ConfigLoader.Duration("36500d", "x"));
        Assert.Equal(TimeSpan.FromDays(36500), ConfigLoader.Duration("876000h", "x"));
        Assert.Equal(TimeSpan.FromDays(36500), ConfigLoader.Duration("52560000m", "x"));
        Assert.Equal(TimeSpan.FromDays(36500), ConfigLoader.Duration("3153600000s", "x"));
        Assert.StartsWith("x: '3153600001s' is too long", Assert.Throws<ConfigException>(() => ConfigLoader.Duration("3153600001s", "x")).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("  IN: [in-mumbai]", "  ? {IN: x}\n  : [in-mumbai]", "jurisdictions: each key must be a country code or \"*\", not a mapping (line")]
    [InlineData("  IN: [in-mumbai]", "  [IN, CN]: [in-mumbai]", "jurisdictions: each key must be a country code or \"*\", not a list (line")]
    [InlineData("    version: 2", "    version: 2\n    ? [a, b]\n    : x", "services[0]: each key must be a field name, not a list (line")]
    [InlineData("    version: 2", "    version: 2\n    {a: b}: x", "services[0]: each key must be a field name, not a mapping (line")]
    [InlineData("    country: CN", "    country: CN\n    [x]: y", "regions[0]: each key must be a field name, not a list (line")]
    [InlineData("retention: { after_withdrawal: 30d }", "retention: { after_withdrawal: 30d, [x]: y }", "services[0].retention: each key must be a field name, not a list (line")]
    [InlineData("custody:", "[custody]: 1\ncustody:", "the top level: each key must be a field name, not a list (line")]
    public void Keys_that_are_mappings_or_lists_are_refused_naming_where(string find, string replace, string expected)
    {
        var yaml = Valid.Replace(find, replace, StringComparison.Ordinal);
        Assert.NotEqual(Valid, yaml);
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(yaml, "/tmp"));
        Assert.StartsWith(expected, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("90s", 90)]
    [InlineData("15m", 900)]
    [InlineData("12h", 43200)]
    [InlineData("28d", 2419200)]
    [InlineData("0d", 0)]
    public void Durations_parse(string text, long seconds) =>
        Assert.Equal(TimeSpan.FromSeconds(seconds), ConfigLoader.Duration(text, "x"));
}
