using System.Diagnostics;

namespace Domicile.Tests.Support;

/// <summary>
/// Temp folders named <c>{prefix}{pid}-…</c> whose process is gone: a run killed before its exit
/// handler leaves them behind (a benchmark's stores or a PostgreSQL cluster hold gigabytes), and a
/// full disk fails every later run.
/// </summary>
public static class AbandonedFolders
{
    /// <param name="beforeDelete">Called first with each folder to remove (to stop a server a killed run left running on it).</param>
    public static void Remove(string prefix, Action<string>? beforeDelete = null)
    {
        foreach (var dir in Directory.GetDirectories(Path.GetTempPath(), prefix + "*"))
        {
            var rest = Path.GetFileName(dir)[prefix.Length..];
            var dash = rest.IndexOf('-');
            if (dash <= 0 || !int.TryParse(rest[..dash], out var pid) || pid == Environment.ProcessId || Alive(pid)) continue;
            beforeDelete?.Invoke(dir);
            Delete(dir);
        }
    }

    /// <summary>Best effort: a folder still in use by someone else stays.</summary>
    public static void Delete(string dir)
    {
        try
        {
            Directory.Delete(dir, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    public static bool Alive(int pid)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            return true; // cannot tell: keep the folder
        }
    }
}
