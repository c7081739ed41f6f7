using Spectre.Console;

namespace Domicile.Cli;

/// <summary>Progress bars on stderr (stdout stays clean for results and --json).</summary>
internal static class ProgressView
{
    public static IAnsiConsole Console { get; } = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(System.Console.Error) });

    /// <summary>Polls <paramref name="poll"/> until it reports completion, drawing users, items, bytes, rate and ETA.</summary>
    public static async Task<T> RunAsync<T>(string title, Func<Task<(long Done, long Total, long Items, long Bytes, bool Finished, T Result)>> poll, CancellationToken ct)
    {
        T result = default!;
        var started = DateTime.UtcNow;
        await Console.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .StartAsync(async ctx =>
            {
                var task = ctx.AddTask(title, maxValue: 1);
                while (true)
                {
                    var (done, total, items, bytes, finished, r) = await poll();
                    result = r;
                    var seconds = Math.Max(0.001, (DateTime.UtcNow - started).TotalSeconds);
                    task.MaxValue = Math.Max(1, total);
                    task.Value = done;
                    task.Description = $"{title}: {done:N0}/{total:N0} users, {items:N0} items, {bytes / 1048576.0:N1} MiB, {done / seconds:N0} users/s";
                    if (finished) break;
                    await Task.Delay(250, ct);
                }
                task.Value = task.MaxValue;
            });
        return result;
    }
}
