using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;

namespace Domicile.Keys;

/// <summary>
/// An unsealed region's keys, in memory only: the root, the KEK versions, the blind-index key,
/// the signing key and a bounded cache of unwrapped DEKs. Wiped when the region is sealed,
/// once no operation holds a lease on it.
/// </summary>
internal sealed class KeyRing
{
    // The bound is memory: about 200 bytes a cached key (the key, its user id, the map's entry), so
    // some 100 MB here, within a 300 MB server at 1,000,000 users. There (P5) a miss reads the key's
    // row and unwraps it: 100,000 keys measured 181 µs of CPU per read or write, 250,000 keys
    // 172-180 µs, 300,000 keys 143 µs, one full run each on a machine that drifts by as much.
    public const int DefaultDekCacheLimit = 500_000;
    readonly int _dekCacheLimit;

    readonly byte[] _root;
    // Every key unwrap reads this, from as many threads as are serving: a copy swapped whole on the
    // rare change (a rotation, a destroyed version), so reads take no lock. Under a lock, P5's eight
    // workers on two cores spent 6 % of their time spinning for it (200,000 users, measured).
    volatile Dictionary<long, byte[]> _keks;
    readonly Lock _kekChange = new();
    // Versions destroyed while this ring was unsealed (a few a year), for Kek's answer to a read that raced the destruction.
    readonly ConcurrentDictionary<long, bool> _destroyedKeks = new();
    readonly byte[] _blindKey;
    // HMACs keyed with the blind key, kept for reuse: a one-shot HMAC looks its algorithm up in
    // OpenSSL again on every call (3 µs against 0.8; a migration makes one per item). A few slots,
    // taken and given back without a lock; freed with the other keys when the ring is wiped.
    readonly IncrementalHash?[] _blinders;
    readonly ConcurrentDictionary<(string User, string Service), byte[]> _deks = new();
    // The dictionary's own Count takes every one of its locks; a miss at 1,000,000 users checks the bound each time.
    int _dekCount, _evicting;
    // Leases held in the low bits, sealing in the top one: every request takes and drops a lease,
    // so both are one atomic operation each and the lock is only for the last lease out.
    long _state;
    // Each lease is also counted in one of two generations, so that a key which left the cache is
    // zeroed once the leases that could have been handed it have ended, even under a load that never
    // lets every lease end. Keys retired meanwhile wait (_pending); one batch at a time waits for the
    // generation that was current when it was retired (_waiting, _waitingGeneration) to drain.
    readonly long[] _generations = new long[2];
    int _generation;
    int _waitingGeneration = -1;
    List<byte[]> _waiting = [];
    List<byte[]> _pending = [];
    const long SealingBit = 1L << 62;
    bool _wiped;

    public KeyRing(byte[] root, Dictionary<long, byte[]> keks, byte[] blindKey, ECDsa signing, string kid, int dekCacheLimit = DefaultDekCacheLimit, int hmacSlots = 0)
    {
        _root = root;
        _blinders = new IncrementalHash?[hmacSlots > 0 ? hmacSlots : Math.Max(4, Environment.ProcessorCount * 2)];
        _keks = new(keks);
        _dekCacheLimit = dekCacheLimit;
        _blindKey = blindKey;
        Signing = signing;
        Kid = kid;
        PublicKey = ECDsa.Create(signing.ExportParameters(includePrivateParameters: false));
    }

    /// <summary>Public half only: safe to hand out, survives the wipe.</summary>
    public ECDsa PublicKey { get; }

    public ECDsa Signing { get; }
    public string Kid { get; }
    public long CurrentKek => _keks.Keys.Max();
    public byte[] Root => _root;

    public byte[] Kek(long version) =>
        _keks.TryGetValue(version, out var k) ? k
        // A read that took its key's row just before the last rewrap under a rotation: the row is
        // rewrapped by now, so the request can be retried (503), not failed (500).
        : _destroyedKeks.ContainsKey(version) ? throw new DomicileException("unavailable", "the region's key was rotated while this request read it; retry in a moment")
        : throw new DomicileException("key_missing", $"KEK version {version} is not available");

    public void AddKek(long version, byte[] kek)
    {
        lock (_kekChange) _keks = new(_keks) { [version] = kek };
    }

    public void RemoveKek(long version)
    {
        byte[]? removed;
        lock (_kekChange)
        {
            var keks = new Dictionary<long, byte[]>(_keks);
            if (!keks.Remove(version, out removed)) return;
            _destroyedKeks[version] = true;
            _keks = keks;
        }
        // Zeroed like a forgotten DEK, once no operation holds a lease: a read that took the key's
        // row before the last rewrap may still be unwrapping with it, and would report tampering.
        Retire(removed);
    }

    /// <summary>Keyed HMAC so equal plaintexts can be found without storing them.</summary>
    public byte[] BlindIndex(params ReadOnlySpan<string> parts)
    {
        var data = Sealing.Aad(parts); // before renting: a throw here must not strand a keyed HMAC
        var hmac = RentBlinder() ?? IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, _blindKey);
        hmac.AppendData(data);
        var index = hmac.GetHashAndReset();
        ReturnBlinder(hmac);
        return index;
    }

    IncrementalHash? RentBlinder()
    {
        for (var i = 0; i < _blinders.Length; i++)
            if (Interlocked.Exchange(ref _blinders[i], null) is { } hmac) return hmac;
        return null;
    }

    void ReturnBlinder(IncrementalHash hmac)
    {
        for (var i = 0; i < _blinders.Length; i++)
            if (Interlocked.CompareExchange(ref _blinders[i], hmac, null) is null)
            {
                // A use after the wipe (against the lease rule) must not leave a keyed HMAC behind it.
                if (Volatile.Read(ref _wiped)) Interlocked.Exchange(ref _blinders[i], null)?.Dispose();
                return;
            }
        hmac.Dispose();
    }

    /// <summary>
    /// The cached DEK itself, not a copy (no allocation on the hot path). The caller must hold a
    /// lease on this ring for as long as it uses the array and must not keep it beyond: a DEK that
    /// leaves the cache is only zeroed once every lease held at that moment has ended
    /// (<see cref="Retire"/>), so a concurrent operation never sees its key turn to zeros under it.
    /// </summary>
    public bool TryGetDek(string user, string service, out byte[] dek) => _deks.TryGetValue((user, service), out dek!);

    /// <summary>Caches an unwrapped DEK; the caller (holding a lease) goes on using the same array.</summary>
    public void CacheDek(string user, string service, byte[] dek)
    {
        // One thread evicts at a time, walking the dictionary without its locks (its Keys would take
        // them all and copy half a million entries).
        if (Volatile.Read(ref _dekCount) >= _dekCacheLimit && Interlocked.Exchange(ref _evicting, 1) == 0)
        {
            try
            {
                foreach (var (key, _) in _deks.Take(Math.Max(1, _dekCacheLimit / 10))) Forget(key.User, key.Service);
            }
            finally
            {
                Volatile.Write(ref _evicting, 0);
            }
        }
        // Two readers may unwrap the same key at once: the first copy stays cached, the other is retired.
        if (_deks.TryAdd((user, service), dek)) Interlocked.Increment(ref _dekCount);
        else Retire(dek);
    }

    /// <summary>Drops a cached DEK (destroyed, moved away, or evicted); its bytes are zeroed as soon as no operation can be using them.</summary>
    public void Forget(string user, string service)
    {
        if (!_deks.TryRemove((user, service), out var dek)) return;
        Interlocked.Decrement(ref _dekCount);
        Retire(dek);
    }

    /// <summary>Drops every cached DEK of <paramref name="user"/>: one lookup per service, not a walk of the whole cache.</summary>
    public void ForgetUser(string user, IEnumerable<string> services)
    {
        foreach (var service in services) Forget(user, service);
    }

    /// <summary>
    /// Zeroes a DEK (or KEK) that has left the cache: at once when no lease is held, else once every
    /// lease that was held when it left has ended. Whoever received the array got it under such a
    /// lease, and nobody can receive it afterwards. Past the cache bound of keys waiting (leases that
    /// never end), a key is left to the garbage collector unzeroed.
    /// </summary>
    void Retire(byte[] dek)
    {
        lock (this)
        {
            // A lease dropping to zero meanwhile takes this lock after us and zeroes the lists.
            if ((Volatile.Read(ref _state) & ~SealingBit) == 0 || _wiped) CryptographicOperations.ZeroMemory(dek);
            else
            {
                if (_pending.Count < _dekCacheLimit) _pending.Add(dek);
                Advance();
            }
        }
    }

    /// <summary>
    /// Under the lock: zeroes the waiting batch once its generation has drained, then sends the
    /// pending keys to wait for the generation current now, which new leases leave for the other one.
    /// </summary>
    void Advance()
    {
        var waiting = Volatile.Read(ref _waitingGeneration);
        if (waiting >= 0)
        {
            if (Volatile.Read(ref _generations[waiting]) != 0) return;
            ZeroAll(_waiting);
            Volatile.Write(ref _waitingGeneration, -1);
        }
        if (_pending.Count == 0) return;
        var current = _generation;
        (_waiting, _pending) = (_pending, _waiting);
        Volatile.Write(ref _waitingGeneration, current);
        // Full fences both here and in TryLease: a lease either counted itself in the old generation
        // before this flip (and is waited for below) or takes the new one (and finds the keys gone).
        Interlocked.Exchange(ref _generation, 1 - current);
        if (Volatile.Read(ref _generations[current]) == 0)
        {
            ZeroAll(_waiting);
            Volatile.Write(ref _waitingGeneration, -1);
        }
    }

    static void ZeroAll(List<byte[]> keys)
    {
        foreach (var k in keys) CryptographicOperations.ZeroMemory(k);
        keys.Clear();
    }

    public bool TryLease(out KeyLease lease)
    {
        lease = default;
        while (true)
        {
            var state = Volatile.Read(ref _state);
            if ((state & SealingBit) != 0) return false;
            if (Interlocked.CompareExchange(ref _state, state + 1, state) == state) break;
        }
        while (true)
        {
            var generation = Volatile.Read(ref _generation);
            Interlocked.Increment(ref _generations[generation]);
            if (Volatile.Read(ref _generation) == generation)
            {
                lease = new KeyLease(this, generation);
                return true;
            }
            // Counted in a generation that was left meanwhile: count in the current one instead.
            LeaveGeneration(generation);
        }
    }

    void LeaveGeneration(int generation)
    {
        if (Interlocked.Decrement(ref _generations[generation]) == 0 && Volatile.Read(ref _waitingGeneration) == generation)
            lock (this) Advance();
    }

    internal void Release(int generation)
    {
        LeaveGeneration(generation);
        if ((Interlocked.Decrement(ref _state) & ~SealingBit) != 0) return;
        List<byte[]>? waiting = null, pending = null;
        lock (this)
        {
            // Checked again under the lock: a new lease may have been taken since.
            var state = Volatile.Read(ref _state);
            if ((state & ~SealingBit) != 0) return;
            if ((state & SealingBit) != 0) Wipe();
            else
            {
                if (_waiting.Count > 0) (waiting, _waiting) = (_waiting, []);
                if (_pending.Count > 0) (pending, _pending) = (_pending, []);
                Volatile.Write(ref _waitingGeneration, -1);
            }
        }
        // Outside the lock: none of these arrays can reach a new lease holder (they left the cache first).
        if (waiting is not null) ZeroAll(waiting);
        if (pending is not null) ZeroAll(pending);
    }

    public void BeginSeal()
    {
        lock (this)
        {
            // No lease can be taken from here on; the last one out wipes, or this does when none is held.
            if ((Interlocked.Or(ref _state, SealingBit) & ~SealingBit) == 0) Wipe();
        }
    }

    void Wipe()
    {
        if (_wiped) return;
        Volatile.Write(ref _wiped, true);
        CryptographicOperations.ZeroMemory(_root);
        CryptographicOperations.ZeroMemory(_blindKey);
        for (var i = 0; i < _blinders.Length; i++) Interlocked.Exchange(ref _blinders[i], null)?.Dispose();
        lock (_kekChange)
        {
            foreach (var k in _keks.Values) CryptographicOperations.ZeroMemory(k);
            _keks = [];
        }
        foreach (var d in _deks.Values) CryptographicOperations.ZeroMemory(d);
        _deks.Clear();
        _dekCount = 0;
        ZeroAll(_waiting);
        ZeroAll(_pending);
        _waitingGeneration = -1;
        Signing.Dispose();
    }

    public static byte[] RootCheck(ReadOnlySpan<byte> root, string region) =>
        HMACSHA256.HashData(root, Encoding.UTF8.GetBytes("domicile root check v1|" + region));
}

/// <summary>Holds a key ring for the length of one operation (one generation of its leases).</summary>
internal readonly struct KeyLease(KeyRing ring, int generation) : IDisposable
{
    public KeyRing Keys => ring;
    public void Dispose() => ring.Release(generation);
}
