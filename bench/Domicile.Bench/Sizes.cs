namespace Domicile.Bench;

/// <summary>How big each measurement is: quick (under five minutes in all) or full (SPEC 7).</summary>
public sealed record Sizes(
    int Rounds, int BatchSize, int BatchesPerRound, int HttpUsers, TimeSpan HttpDuration, int HttpConnections,
    int MigrationUsers, int LargeUsers, int ItemsPerUser, int SmallUsers, int UnsealRounds, TimeSpan WarmUp, TimeSpan MaxWarmUp)
{
    public static readonly Sizes Quick = new(7, 100, 80, 200, TimeSpan.FromSeconds(3), 64, 1_500, 20_000, 5, 2_000, 5, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(18));
    public static readonly Sizes Full = new(7, 100, 150, 2_000, TimeSpan.FromSeconds(10), 64, 3_000, 1_000_000, 10, 10_000, 9, TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(60));
}
