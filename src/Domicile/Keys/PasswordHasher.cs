using System.Security.Cryptography;
using System.Text;
using Konscious.Security.Cryptography;

namespace Domicile.Keys;

/// <summary>Argon2id at the OWASP baseline (19 MiB, 2 passes, 1 lane), PHC string format.</summary>
public static class PasswordHasher
{
    const int MemoryKib = 19456, Iterations = 2, Lanes = 1, SaltSize = 16, HashSize = 32;

    public static async Task<string> HashAsync(string password)
    {
        var salt = RandomNumberGenerator.GetBytes(SaltSize);
        var hash = await DeriveAsync(password, salt, MemoryKib, Iterations, Lanes);
        return $"$argon2id$v=19$m={MemoryKib},t={Iterations},p={Lanes}${B64(salt)}${B64(hash)}";
    }

    public static async Task<bool> VerifyAsync(string password, string encoded)
    {
        var parts = encoded.Split('$');
        if (parts.Length != 6 || parts[1] != "argon2id") return false;
        var settings = parts[3].Split(',').Select(p => p.Split('=')).ToDictionary(p => p[0], p => int.Parse(p[1], System.Globalization.CultureInfo.InvariantCulture));
        var salt = Convert.FromBase64String(Pad(parts[4]));
        var expected = Convert.FromBase64String(Pad(parts[5]));
        var actual = await DeriveAsync(password, salt, settings["m"], settings["t"], settings["p"]);
        return CryptographicOperations.FixedTimeEquals(actual, expected);
    }

    // Each hash takes 19 MiB: bound how many run at once so a burst of sign-ins cannot exhaust memory.
    static readonly SemaphoreSlim Slots = new(Math.Max(2, Environment.ProcessorCount * 2));

    static async Task<byte[]> DeriveAsync(string password, byte[] salt, int memoryKib, int iterations, int lanes)
    {
        if (memoryKib > 262_144 || iterations > 10 || lanes > 8) throw new FormatException("unsupported Argon2 cost");
        var bytes = Encoding.UTF8.GetBytes(password);
        await Slots.WaitAsync();
        try
        {
            using var argon = new Argon2id(bytes) { Salt = salt, MemorySize = memoryKib, Iterations = iterations, DegreeOfParallelism = lanes };
            return await argon.GetBytesAsync(HashSize);
        }
        finally
        {
            Slots.Release();
            CryptographicOperations.ZeroMemory(bytes);
        }
    }

    static string B64(byte[] b) => Convert.ToBase64String(b).TrimEnd('=');
    static string Pad(string s) => s.PadRight(s.Length + (4 - s.Length % 4) % 4, '=');
}
