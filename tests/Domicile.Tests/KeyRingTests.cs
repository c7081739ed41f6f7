using System.Security.Cryptography;
using Domicile.Keys;

namespace Domicile.Tests;

/// <summary>Cached DEKs are zeroed when they leave the cache, but never under an operation still using them.</summary>
public class KeyRingTests
{
    static KeyRing NewRing() => new(RandomNumberGenerator.GetBytes(32), new Dictionary<long, byte[]> { [1] = RandomNumberGenerator.GetBytes(32) },
        RandomNumberGenerator.GetBytes(32), ECDsa.Create(ECCurve.NamedCurves.nistP256), "test-000000000000");

    static byte[] Dek() => RandomNumberGenerator.GetBytes(32);

    static bool Zeroed(byte[] b) => b.All(x => x == 0);

    [Fact]
    public void A_forgotten_dek_in_use_under_a_lease_is_zeroed_only_when_the_last_lease_ends()
    {
        var ring = NewRing();
        var dek = Dek();
        var copy = (byte[])dek.Clone();
        Assert.True(ring.TryLease());
        Assert.True(ring.TryLease());
        ring.CacheDek("u", "s", dek);
        Assert.True(ring.TryGetDek("u", "s", out var handed));
        Assert.Same(dek, handed); // the hot path hands out the cached array itself

        ring.Forget("u", "s");
        Assert.False(ring.TryGetDek("u", "s", out _));
        Assert.Equal(copy, dek); // still in use: untouched
        ring.Release();
        Assert.Equal(copy, dek); // one lease still held
        ring.Release();
        Assert.True(Zeroed(dek));
    }

    [Fact]
    public void A_dek_forgotten_while_no_lease_is_held_is_zeroed_at_once()
    {
        var ring = NewRing();
        var a = Dek();
        var b = Dek();
        Assert.True(ring.TryLease());
        ring.CacheDek("u", "s1", a);
        ring.CacheDek("u", "s2", b);
        var other = Dek();
        ring.CacheDek("v", "s1", other);
        ring.Release();
        ring.ForgetUser("u", ["s1", "s2", "s3"]);
        Assert.True(Zeroed(a));
        Assert.True(Zeroed(b));
        Assert.False(Zeroed(other));
        Assert.True(ring.TryGetDek("v", "s1", out var kept) && ReferenceEquals(kept, other));
    }

    [Fact]
    public void A_second_copy_of_a_cached_dek_is_retired_and_the_first_stays_cached()
    {
        var ring = NewRing();
        var first = Dek();
        var second = (byte[])first.Clone();
        Assert.True(ring.TryLease());
        ring.CacheDek("u", "s", first);
        ring.CacheDek("u", "s", second);
        Assert.True(ring.TryGetDek("u", "s", out var cached));
        Assert.Same(first, cached);
        Assert.False(Zeroed(second));
        ring.Release();
        Assert.True(Zeroed(second));
        Assert.False(Zeroed(first));
    }

    [Fact]
    public void Sealing_zeroes_cached_and_retired_deks_once_the_leases_end()
    {
        var ring = NewRing();
        var cached = Dek();
        var retired = Dek();
        Assert.True(ring.TryLease());
        ring.CacheDek("u", "s1", cached);
        ring.CacheDek("u", "s2", retired);
        ring.Forget("u", "s2");
        ring.BeginSeal();
        Assert.False(ring.TryLease());
        Assert.False(Zeroed(cached) || Zeroed(retired));
        ring.Release();
        Assert.True(Zeroed(cached));
        Assert.True(Zeroed(retired));
    }

    [Fact]
    public async Task Concurrent_readers_never_see_a_zeroed_key_while_keys_are_forgotten()
    {
        var ring = NewRing();
        var stop = DateTime.UtcNow.AddSeconds(1);
        var readers = Enumerable.Range(0, 4).Select(i => Task.Run(() =>
        {
            var bad = 0;
            while (DateTime.UtcNow < stop)
            {
                if (!ring.TryLease()) break;
                try
                {
                    var user = "u" + (i % 2);
                    if (!ring.TryGetDek(user, "s", out var dek))
                    {
                        dek = Enumerable.Repeat((byte)0xA5, 32).ToArray();
                        ring.CacheDek(user, "s", dek);
                    }
                    Thread.SpinWait(50);
                    if (dek.Any(b => b != 0xA5)) bad++;
                }
                finally
                {
                    ring.Release();
                }
            }
            return bad;
        })).ToArray();
        var forgetter = Task.Run(() =>
        {
            while (DateTime.UtcNow < stop) { ring.ForgetUser("u0", ["s"]); ring.Forget("u1", "s"); }
        });
        await forgetter;
        Assert.All(await Task.WhenAll(readers), bad => Assert.Equal(0, bad));
    }

    [Fact]
    public async Task Sealing_under_concurrent_leases_wipes_once_the_last_one_ends_and_no_holder_sees_zeros()
    {
        for (var attempt = 0; attempt < 20; attempt++)
        {
            var ring = NewRing();
            var dek = Enumerable.Repeat((byte)0xA5, 32).ToArray();
            Assert.True(ring.TryLease());
            ring.CacheDek("u", "s", dek);
            ring.Release();
            using var go = new ManualResetEventSlim();
            var leasesAfterSeal = 0;
            var sealedAt = 0;
            var readers = Enumerable.Range(0, 4).Select(_ => Task.Run(() =>
            {
                go.Wait();
                var bad = 0;
                var running = System.Diagnostics.Stopwatch.StartNew();
                while (true)
                {
                    if (running.Elapsed > TimeSpan.FromSeconds(10)) return -1; // leases went on being granted after the seal
                    var wasSealed = Volatile.Read(ref sealedAt) != 0;
                    if (!ring.TryLease()) return bad;
                    if (wasSealed) Interlocked.Increment(ref leasesAfterSeal);
                    try
                    {
                        if (ring.TryGetDek("u", "s", out var held))
                        {
                            Thread.SpinWait(20);
                            if (held.Any(b => b != 0xA5)) bad++;
                        }
                    }
                    finally
                    {
                        ring.Release();
                    }
                }
            })).ToArray();
            go.Set();
            Thread.SpinWait(2000 * (attempt + 1));
            ring.BeginSeal();
            Volatile.Write(ref sealedAt, 1);
            Assert.All(await Task.WhenAll(readers), bad => Assert.Equal(0, bad));
            Assert.Equal(0, leasesAfterSeal); // no lease begins once the seal has begun
            Assert.True(Zeroed(dek)); // the last lease out wiped the ring
            Assert.False(ring.TryLease());
        }
    }
}
