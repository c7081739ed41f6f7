using System.Text;
using Domicile.Store;

namespace Domicile.Demo;

/// <summary>
/// Realistic demo people: many Indian and Chinese users and others spread over a dozen
/// countries, with contacts, notes, photos, locations and messages, and the consents that
/// allowed them. Deterministic for a given seed.
/// </summary>
public static class DemoSeeder
{
    public const string Password = "demo password";

    static readonly (string Country, int Weight, string[] Names)[] Countries =
    [
        ("IN", 32, ["Asha", "Ravi", "Priya", "Arjun", "Kavya", "Vikram", "Meera", "Rahul"]),
        ("CN", 30, ["Wei", "Li Na", "Jun", "Mei", "Hao", "Xiu", "Bo", "Lan"]),
        ("ID", 6, ["Budi", "Sari", "Agus", "Dewi"]),
        ("US", 6, ["Emma", "Liam", "Olivia", "Noah"]),
        ("BR", 5, ["Ana", "João", "Lucas", "Maria"]),
        ("NG", 4, ["Chidi", "Amaka", "Tunde", "Ngozi"]),
        ("DE", 3, ["Lena", "Jonas", "Mia", "Felix"]),
        ("JP", 3, ["Yuki", "Haruto", "Sakura", "Ren"]),
        ("SG", 3, ["Wei Ling", "Arun", "Siti", "Jia Hui"]),
        ("PK", 3, ["Ayesha", "Bilal", "Fatima", "Hamza"]),
        ("FR", 2, ["Léa", "Hugo", "Chloé", "Louis"]),
        ("MX", 2, ["Sofía", "Mateo", "Valentina", "Diego"]),
        ("EG", 1, ["Nour", "Omar", "Layla", "Youssef"]),
    ];

    public static int CountryCount => Countries.Length;

    /// <summary>The package of demo user number <paramref name="n"/>.</summary>
    public static UserPackage User(int n, string passwordHash, DateTimeOffset now, int seed = 7)
    {
        // Not HashCode.Combine: its seed changes with every process, and the same demo must come out each run.
        var rnd = new Random(unchecked(seed * 1_000_003 + n));
        var (country, _, names) = Pick(rnd, n);
        var name = names[rnd.Next(names.Length)];
        var id = Convert.ToHexStringLower(BitConverter.GetBytes(rnd.NextInt64())) + Convert.ToHexStringLower(BitConverter.GetBytes(rnd.NextInt64()));
        var login = n switch
        {
            0 => "asha@example.in",
            1 => "wei@example.cn",
            _ => $"{name.ToLowerInvariant().Replace(' ', '.')}.{n}@example.{country.ToLowerInvariant()}",
        };
        var t0 = now.AddDays(-rnd.Next(30, 900)).ToUnixTimeMilliseconds();
        var ms = now.ToUnixTimeMilliseconds();
        var ledger = new List<ConsentRow>();
        var states = new List<ConsentStateRow>();
        var services = new List<string>();
        var items = new List<PackagedItem>();
        var messages = new List<PackagedMessage>();
        long version = 0;

        void Grant(string service, bool keep)
        {
            // Half a day past a whole day: every consent's age stays hours away from the whole-day
            // grace periods, so a sweep a minute later decides the same as one now.
            var at = t0 + 43_200_000L + rnd.Next(1, 100_000);
            ledger.Add(new ConsentRow(0, id, service, 1, true, at, "phone-setup"));
            if (!keep) ledger.Add(new ConsentRow(0, id, service, 1, false, at + 86_400_000L * rnd.Next(1, 20), "settings"));
            var last = ledger[^1];
            states.Add(new ConsentStateRow(id, service, 1, last.Granted, last.At));
            services.Add(service);
        }

        void Item(string service, string collection, string key, string type, byte[] body)
        {
            var at = ms - rnd.Next(60_000, 5 * 86_400_000);
            items.Add(new PackagedItem(service, collection, key, type, ++version, false, body.Length, at, at, body, null));
        }

        if (n < 2 || rnd.NextDouble() < 0.9)
        {
            Grant("cloud-sync", keep: n < 2 || rnd.NextDouble() < 0.95);
            for (var i = 0; i < rnd.Next(3, 7); i++)
            {
                var friend = Countries[rnd.Next(Countries.Length)].Names[rnd.Next(4)];
                Item("cloud-sync", "contacts", $"contact-{i}", "text/vcard",
                    Encoding.UTF8.GetBytes($"BEGIN:VCARD\nVERSION:4.0\nFN:{friend}\nTEL:+{rnd.Next(10, 99)} {rnd.Next(100000000, 999999999)}\nEND:VCARD\n"));
            }
            for (var i = 0; i < rnd.Next(1, 4); i++)
                Item("cloud-sync", "notes", $"note-{i}", "text/markdown", Encoding.UTF8.GetBytes($"# Note {i}\n{name}'s note written on day {rnd.Next(1, 365)}.\n"));
            var photo = new byte[rnd.Next(1024, 4096)];
            rnd.NextBytes(photo);
            Item("cloud-sync", "photos", $"IMG_{rnd.Next(1000, 9999)}.jpg", "image/jpeg", photo);
        }
        if (n < 2 || rnd.NextDouble() < 0.7)
        {
            Grant("cloud-messaging", keep: true);
            for (var i = 0; i < rnd.Next(1, 3); i++)
                messages.Add(new PackagedMessage($"msg_{id[..12]}{i}", "op_demo_app", $"Your backup of {rnd.Next(10, 500)} photos finished.", ms - 3_600_000, ms + 7 * 86_400_000L));
        }
        if (rnd.NextDouble() < 0.3)
        {
            Grant("find-device", keep: true);
            Item("find-device", "locations", "last-known", "application/json",
                Encoding.UTF8.GetBytes($"{{\"lat\":{rnd.Next(-60, 60)}.{rnd.Next(1000, 9999)},\"lon\":{rnd.Next(-170, 170)}.{rnd.Next(1000, 9999)}}}"));
        }
        return new UserPackage(id, login, passwordHash, country, t0, version, ledger, states, services, items, messages);
    }

    static (string Country, int Weight, string[] Names) Pick(Random rnd, int n)
    {
        if (n == 0) return Countries[0];
        if (n == 1) return Countries[1];
        var total = Countries.Sum(c => c.Weight);
        var roll = rnd.Next(total);
        foreach (var c in Countries)
        {
            if (roll < c.Weight) return c;
            roll -= c.Weight;
        }
        return Countries[^1];
    }
}
