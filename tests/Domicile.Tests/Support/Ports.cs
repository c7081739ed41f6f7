using System.Net;
using System.Net.Sockets;

namespace Domicile.Tests.Support;

/// <summary>Ports for servers the tests start as processes, and start again on the same port.</summary>
public static class Ports
{
    /// <summary>
    /// A free loopback port below the kernel's ephemeral range: the port the system hands out for
    /// outgoing connections (and for port 0) never lands on it, so a server killed and started again
    /// finds its port still free.
    /// </summary>
    public static int OutsideEphemeral()
    {
        var low = 32768;
        try
        {
            var range = File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[])['\t', ' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
            low = int.Parse(range[0], System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
        }
        var floor = Math.Min(10_000, low / 2);
        for (var attempt = 0; attempt < 200; attempt++)
        {
            var port = Random.Shared.Next(floor, low);
            try
            {
                using var l = new TcpListener(IPAddress.Loopback, port);
                l.Start();
                return port;
            }
            catch (SocketException)
            {
                // Taken: try another.
            }
        }
        throw new InvalidOperationException($"no free loopback port between {floor} and {low}");
    }
}
