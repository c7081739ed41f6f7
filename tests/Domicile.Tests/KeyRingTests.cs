using System.Collections.Concurrent;
using System.Security.Cryptography;
using CsCheck;
using Domicile.Keys;

namespace Domicile.Tests;

/// <summary>Cached DEKs are zeroed when they leave the cache, but never under an operation still using them.</summary>
public class KeyRingTests
{
    static KeyRing NewRing(int dekCacheLimit = KeyRing.DefaultDekCacheLimit) => new(RandomNumberGenerator.GetBytes(32), new Dictionary<long, byte[]> { [1] = RandomNumberGenerator.GetBytes(32) },
        RandomNumberGenerator.GetBytes(32), ECDsa.Create(ECCurve.NamedCurves.nistP256), "test-000000000000", dekCacheLimit);

    [Fact]
    public void Blind_indexes_from_reused_hmacs_equal_a_fresh_hmac_from_many_threads_and_none_survives_the_wipe()
    {
        var blindKey = RandomNumberGenerator.GetBytes(32);
        // Two kept HMACs for twelve threads: most calls find none free, make one and drop it, and
        // the kept ones pass from thread to thread.
        var ring = new KeyRing(RandomNumberGenerator.GetBytes(32), new Dictionary<long, byte[]> { [1] = RandomNumberGenerator.GetBytes(32) },
            (byte[])blindKey.Clone(), ECDsa.Create(ECCurve.NamedCurves.nistP256), "test-000000000000", hmacSlots: 2);
        var inputs = Gen.String[Gen.Char, 0, 20].Array[1, 6].Array[3000].Single();
        var expected = inputs.Select(parts => HMACSHA256.HashData(blindKey, Sealing.Aad(parts))).ToArray();
        var wrong = new int[12];
        using var start = new Barrier(wrong.Length);
        var threads = Enumerable.Range(0, wrong.Length).Select(t => new Thread(() =>
        {
            start.SignalAndWait();
            for (var i = 0; i < inputs.Length; i++)
            {
                var n = (i + t * 250) % inputs.Length;
                if (!ring.BlindIndex(inputs[n]).AsSpan().SequenceEqual(expected[n])) wrong[t]++;
            }
        }) { IsBackground = true }).ToList();
        threads.ForEach(t => t.Start());
        Assert.All(threads, t => Assert.True(t.Join(TimeSpan.FromSeconds(60))));
        Assert.All(wrong, w => Assert.Equal(0, w));

        // The index's input is pinned: length-prefixed UTF-8 parts, so stored indexes keep matching.
        Assert.Equal(Convert.FromHexString("000000046974656D00000002C3A9"), Sealing.Aad("item", "é"));

        // Once wiped, no kept HMAC answers with the old key.
        ring.BeginSeal();
        Assert.False(ring.BlindIndex(inputs[0]).AsSpan().SequenceEqual(expected[0]));
    }

    [Fact]
    public void The_cache_keeps_to_its_bound_counting_forgotten_and_duplicate_keys_right()
    {
        var ring = NewRing(dekCacheLimit: 20);
        var keys = Enumerable.Range(0, 20).Select(_ => Dek()).ToArray();
        for (var i = 0; i < 20; i++) ring.CacheDek("u" + i, "s", keys[i]);
        // A second copy of a cached key and forgotten keys leave the count where it belongs:
        // five forgotten and five more added fill the cache exactly, with no eviction.
        for (var i = 0; i < 5; i++) ring.Forget("u" + i, "s");
        var duplicate = Dek();
        ring.CacheDek("u10", "s", duplicate);
        Assert.True(Zeroed(duplicate)); // retired, not cached, and not counted
        var more = Enumerable.Range(0, 5).Select(_ => Dek()).ToArray();
        for (var i = 0; i < 5; i++) ring.CacheDek("v" + i, "s", more[i]);
        var cached = Enumerable.Range(5, 15).Select(i => "u" + i).Concat(Enumerable.Range(0, 5).Select(i => "v" + i)).ToList();
        Assert.All(cached, user => Assert.True(ring.TryGetDek(user, "s", out _), user));

        // One past the bound evicts a tenth of it (two keys), zeroed at once as no lease is held.
        var last = Dek();
        ring.CacheDek("w", "s", last);
        var evicted = cached.Where(user => !ring.TryGetDek(user, "s", out _)).ToList();
        Assert.Equal(2, evicted.Count);
        Assert.True(ring.TryGetDek("w", "s", out var w) && ReferenceEquals(w, last));
        foreach (var user in evicted)
        {
            var i = user[0] == 'u' ? int.Parse(user[1..], System.Globalization.CultureInfo.InvariantCulture) : -1;
            Assert.True(Zeroed(i >= 0 ? keys[i] : more[int.Parse(user[1..], System.Globalization.CultureInfo.InvariantCulture)]), user);
        }
    }

    [Fact]
    public void Kek_versions_added_and_destroyed_while_readers_unwrap_never_disturb_the_readers()
    {
        var ring = NewRing();
        var first = ring.Kek(1);
        var done = false;
        var reads = new long[3];
        var failures = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
        // Threads of their own: pool threads may not start before the changes are over when other tests run.
        var readers = Enumerable.Range(0, reads.Length).Select(r => new Thread(() =>
        {
            try
            {
                while (!Volatile.Read(ref done))
                {
                    if (!ReferenceEquals(first, ring.Kek(1))) throw new InvalidOperationException("a reader saw the wrong KEK");
                    // The newest version may be destroyed between the two reads; nothing else may go wrong.
                    try
                    {
                        if (ring.Kek(ring.CurrentKek).Length != 32) throw new InvalidOperationException("a reader saw a KEK of the wrong size");
                    }
                    catch (DomicileException e) when (e.Code == "unavailable")
                    {
                    }
                    Interlocked.Increment(ref reads[r]);
                }
            }
            catch (Exception e)
            {
                failures.Enqueue(e);
            }
        }) { IsBackground = true }).ToList();
        readers.ForEach(t => t.Start());
        var removed = new List<byte[]>();
        try
        {
            bool ReadersBehind() => Enumerable.Range(0, reads.Length).Any(i => Interlocked.Read(ref reads[i]) < 1000);
            var deadline = DateTime.UtcNow.AddSeconds(10);
            // First thousands of versions, so the map grows (and would be rebuilt under the readers
            // were it changed in place), then all but the first destroyed, newest last.
            long v = 2;
            for (; v < 3000 || (ReadersBehind() && DateTime.UtcNow < deadline); v++)
            {
                ring.AddKek(v, RandomNumberGenerator.GetBytes(32));
                Assert.Equal(v, ring.CurrentKek);
            }
            for (var old = 2L; old < v; old++)
            {
                var kek = ring.Kek(old);
                ring.RemoveKek(old);
                removed.Add(kek);
                Assert.Equal("unavailable", Assert.Throws<DomicileException>(() => ring.Kek(old)).Code); // destroyed by a rotation: retry
            }
            Assert.Equal(1, ring.CurrentKek);
        }
        finally
        {
            Volatile.Write(ref done, true);
            readers.ForEach(t => t.Join());
        }
        Assert.Empty(failures);
        Assert.All(reads, n => Assert.True(n >= 1000, $"a reader read {n} times"));
        Assert.All(removed, k => Assert.True(Zeroed(k))); // no lease held: zeroed at once
        Assert.False(Zeroed(first));
    }

    [Fact]
    public void A_destroyed_kek_is_zeroed_only_once_the_last_lease_ends()
    {
        var ring = NewRing();
        var kek = RandomNumberGenerator.GetBytes(32);
        ring.AddKek(2, kek);
        var copy = (byte[])kek.Clone();
        Assert.True(ring.TryLease(out var lease));
        ring.RemoveKek(2);
        Assert.Equal("unavailable", Assert.Throws<DomicileException>(() => ring.Kek(2)).Code); // a retry reads the rewrapped row
        Assert.Equal("key_missing", Assert.Throws<DomicileException>(() => ring.Kek(3)).Code); // never here: damage, not a race
        Assert.Equal(copy, kek); // an unwrap under the lease may still be using it
        lease.Dispose();
        Assert.True(Zeroed(kek));
    }

    [Fact]
    public void Keys_evicted_past_the_bound_under_a_lease_are_zeroed_only_when_it_ends()
    {
        var ring = NewRing(dekCacheLimit: 10);
        var keys = Enumerable.Range(0, 10).Select(_ => Dek()).ToArray();
        var copies = keys.Select(k => (byte[])k.Clone()).ToArray();
        Assert.True(ring.TryLease(out var lease));
        for (var i = 0; i < 10; i++) ring.CacheDek("u" + i, "s", keys[i]);
        ring.CacheDek("w", "s", Dek()); // one past the bound: one key (a tenth) evicted
        var evicted = Enumerable.Range(0, 10).Where(i => !ring.TryGetDek("u" + i, "s", out _)).ToList();
        Assert.Single(evicted);
        Assert.All(Enumerable.Range(0, 10), i => Assert.Equal(copies[i], keys[i])); // the lease holder may be using it
        lease.Dispose();
        Assert.True(Zeroed(keys[evicted[0]]));
        Assert.All(Enumerable.Range(0, 10).Except(evicted), i => Assert.Equal(copies[i], keys[i]));
    }

    static byte[] Dek() => RandomNumberGenerator.GetBytes(32);

    static bool Zeroed(byte[] b) => b.All(x => x == 0);

    [Fact]
    public void A_forgotten_dek_in_use_under_a_lease_is_zeroed_only_when_the_last_lease_ends()
    {
        var ring = NewRing();
        var dek = Dek();
        var copy = (byte[])dek.Clone();
        Assert.True(ring.TryLease(out var first));
        Assert.True(ring.TryLease(out var second));
        ring.CacheDek("u", "s", dek);
        Assert.True(ring.TryGetDek("u", "s", out var handed));
        Assert.Same(dek, handed); // the hot path hands out the cached array itself

        ring.Forget("u", "s");
        Assert.False(ring.TryGetDek("u", "s", out _));
        Assert.Equal(copy, dek); // still in use: untouched
        first.Dispose();
        Assert.Equal(copy, dek); // one lease still held
        second.Dispose();
        Assert.True(Zeroed(dek));
    }

    [Fact]
    public void Under_leases_that_never_all_end_a_forgotten_dek_is_zeroed_once_the_leases_held_when_it_left_have_ended()
    {
        var ring = NewRing();
        var (d1, d2, d3) = (Dek(), Dek(), Dek());
        Assert.True(ring.TryLease(out var a));
        ring.CacheDek("u1", "s", d1);
        ring.CacheDek("u2", "s", d2);
        ring.CacheDek("u3", "s", d3);
        Assert.True(ring.TryLease(out var b)); // overlaps a: from here on some lease is always held
        Assert.True(ring.TryGetDek("u3", "s", out var inUse)); // b is using d3
        ring.Forget("u1", "s");
        ring.Forget("u3", "s");
        Assert.True(ring.TryLease(out var c)); // taken after both left the cache
        a.Dispose();
        Assert.False(Zeroed(d1) || Zeroed(inUse)); // b was held when they left, and is using d3
        b.Dispose();
        Assert.True(Zeroed(d1)); // while c is still held
        Assert.True(ring.TryLease(out var e));
        c.Dispose();
        Assert.True(Zeroed(inUse)); // while e is still held

        ring.Forget("u2", "s");
        Assert.True(ring.TryLease(out var f));
        Assert.False(Zeroed(d2));
        e.Dispose();
        Assert.True(Zeroed(d2)); // while f is still held
        f.Dispose();
    }

    [Fact]
    public void Overlapping_readers_never_see_zeros_and_forgotten_keys_are_zeroed_while_they_go_on()
    {
        // Readers whose leases overlap without end (each takes its next before ending the last);
        // keys are forgotten under them all the time. Threads of their own: pool tasks could run the
        // readers' whole second before the forgetter got a thread.
        var ring = NewRing();
        var forgotten = new ConcurrentQueue<byte[]>();
        var stop = DateTime.UtcNow.AddSeconds(1);
        var bad = 0;
        var last = new KeyLease[4];
        using var start = new Barrier(5);
        var threads = Enumerable.Range(0, 4).Select(i => new Thread(() =>
        {
            start.SignalAndWait();
            Assert.True(ring.TryLease(out var previous));
            while (DateTime.UtcNow < stop)
            {
                Assert.True(ring.TryLease(out var lease));
                previous.Dispose();
                previous = lease;
                var user = "u" + (i % 2);
                if (!ring.TryGetDek(user, "s", out var dek))
                {
                    dek = Enumerable.Repeat((byte)0xA5, 32).ToArray();
                    ring.CacheDek(user, "s", dek);
                    forgotten.Enqueue(dek);
                }
                Thread.SpinWait(50);
                if (dek.Any(b => b != 0xA5)) Interlocked.Increment(ref bad);
            }
            last[i] = previous;
        })).Append(new Thread(() =>
        {
            start.SignalAndWait();
            while (DateTime.UtcNow < stop)
            {
                ring.Forget("u0", "s");
                ring.Forget("u1", "s");
                Thread.SpinWait(200);
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.Equal(0, bad);
        // Every reader still holds a lease, as one has at every moment since they began, and from
        // here on leases go on overlapping: none of the keys may wait for all of them to end.
        ring.Forget("u0", "s");
        ring.Forget("u1", "s");
        var keys = forgotten.ToArray();
        Assert.True(keys.Length >= 10, $"only {keys.Length} keys were forgotten");
        Assert.True(ring.TryLease(out var next));
        foreach (var lease in last) lease.Dispose();
        Assert.True(ring.TryLease(out var after));
        next.Dispose();
        // Two hand-overs: the leases held when the last keys left, then those that joined while
        // an earlier batch waited (one generation's lag), have all ended; "after" is still held.
        Assert.All(keys, k => Assert.True(Zeroed(k)));
        after.Dispose();
    }

    [Fact]
    public void A_dek_forgotten_while_no_lease_is_held_is_zeroed_at_once()
    {
        var ring = NewRing();
        var a = Dek();
        var b = Dek();
        Assert.True(ring.TryLease(out var lease));
        ring.CacheDek("u", "s1", a);
        ring.CacheDek("u", "s2", b);
        var other = Dek();
        ring.CacheDek("v", "s1", other);
        lease.Dispose();
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
        Assert.True(ring.TryLease(out var lease));
        ring.CacheDek("u", "s", first);
        ring.CacheDek("u", "s", second);
        Assert.True(ring.TryGetDek("u", "s", out var cached));
        Assert.Same(first, cached);
        Assert.False(Zeroed(second));
        lease.Dispose();
        Assert.True(Zeroed(second));
        Assert.False(Zeroed(first));
    }

    [Fact]
    public void Sealing_zeroes_cached_and_retired_deks_once_the_leases_end()
    {
        var ring = NewRing();
        var cached = Dek();
        var retired = Dek();
        Assert.True(ring.TryLease(out var lease));
        ring.CacheDek("u", "s1", cached);
        ring.CacheDek("u", "s2", retired);
        ring.Forget("u", "s2");
        ring.BeginSeal();
        Assert.False(ring.TryLease(out _));
        Assert.False(Zeroed(cached) || Zeroed(retired));
        lease.Dispose();
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
                if (!ring.TryLease(out var lease)) break;
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
                    lease.Dispose();
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
            Assert.True(ring.TryLease(out var lease));
            ring.CacheDek("u", "s", dek);
            lease.Dispose();
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
                    if (!ring.TryLease(out var lease)) return bad;
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
                        lease.Dispose();
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
            Assert.False(ring.TryLease(out _));
        }
    }
}
