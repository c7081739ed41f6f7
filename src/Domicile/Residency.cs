namespace Domicile;

public sealed record ResidencyCounts(long Users, long Items, long Bytes);

public sealed record RegionResidency(string Id, long Users, long Items, long Bytes, IReadOnlyDictionary<string, ResidencyCounts> Jurisdictions);

public sealed record ResidencyViolation(string UserId, string Jurisdiction, string Region);

public sealed record ResidencyReport(IReadOnlyList<RegionResidency> Regions, IReadOnlyList<ResidencyViolation> Violations, long ViolationCount);

/// <summary>
/// Where every user's data is, per region and jurisdiction, against the current policy: a user
/// stored in a region that the policy does not allow for their jurisdiction is a violation.
/// </summary>
public static class Residency
{
    /// <summary>At most this many violating users are listed; <see cref="ResidencyReport.ViolationCount"/> counts them all.</summary>
    public const int MaxListed = 100_000;

    public static async Task<ResidencyReport> ReportAsync(Deployment deployment, CancellationToken ct = default)
    {
        var regions = new List<RegionResidency>();
        var violations = new List<ResidencyViolation>();
        long count = 0;
        foreach (var region in deployment.Regions.Values)
        {
            var rows = await region.Store.ReadAsync(tx => tx.ResidencyAsync(), ct);
            var jurisdictions = rows.ToDictionary(r => r.Country, r => new ResidencyCounts(r.Users, r.Items, r.Bytes));
            regions.Add(new RegionResidency(region.Id, rows.Sum(r => r.Users), rows.Sum(r => r.Items), rows.Sum(r => r.Bytes), jurisdictions));
            foreach (var (country, users, _, _) in rows)
            {
                if (deployment.Config.AllowedRegions(country).Contains(region.Id)) continue;
                count += users;
                var room = MaxListed - violations.Count;
                if (room <= 0) continue;
                var ids = await region.Store.ReadAsync(tx => tx.ListUserIdsByCountryAsync(country, room), ct);
                violations.AddRange(ids.Select(id => new ResidencyViolation(id, country, region.Id)));
            }
        }
        return new ResidencyReport(regions, violations, count);
    }
}
