namespace Domicile.Server;

/// <summary>Runs the retention sweep every <c>retention.sweep_interval</c> (default one minute).</summary>
public sealed class RetentionSweeper(Deployment deployment, ILogger<RetentionSweeper> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(deployment.Config.SweepInterval);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            foreach (var region in deployment.Regions.Values)
            {
                try
                {
                    var result = await region.SweepAsync(stoppingToken);
                    var deleted = result.Services.Values.Sum(s => s.Messages + s.Items + s.WithdrawnUsers);
                    if (deleted > 0) log.LogInformation("retention sweep of {Region}: {Deleted} records removed", region.Id, deleted);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    log.LogWarning("retention sweep of {Region} failed ({Type}); it runs again next interval", region.Id, e.GetType().Name);
                }
            }
        }
    }
}
