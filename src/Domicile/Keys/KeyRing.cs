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
    const int DekCacheLimit = 100_000;

    readonly byte[] _root;
    readonly Dictionary<long, byte[]> _keks;
    readonly byte[] _blindKey;
    readonly ConcurrentDictionary<(string User, string Service), byte[]> _deks = new();
    int _leases;
    bool _sealing;
    bool _wiped;

    public KeyRing(byte[] root, Dictionary<long, byte[]> keks, byte[] blindKey, ECDsa signing, string kid)
    {
        _root = root;
        _keks = keks;
        _blindKey = blindKey;
        Signing = signing;
        Kid = kid;
        PublicKey = ECDsa.Create(signing.ExportParameters(includePrivateParameters: false));
    }

    /// <summary>Public half only: safe to hand out, survives the wipe.</summary>
    public ECDsa PublicKey { get; }

    public ECDsa Signing { get; }
    public string Kid { get; }
    public long CurrentKek { get { lock (_keks) return _keks.Keys.Max(); } }
    public byte[] Root => _root;

    public byte[] Kek(long version)
    {
        lock (_keks)
            return _keks.TryGetValue(version, out var k) ? k : throw new DomicileException("key_missing", $"KEK version {version} is not available");
    }

    public void AddKek(long version, byte[] kek) { lock (_keks) _keks[version] = kek; }

    public void RemoveKek(long version)
    {
        lock (_keks)
            if (_keks.Remove(version, out var k)) CryptographicOperations.ZeroMemory(k);
    }

    /// <summary>Keyed HMAC so equal plaintexts can be found without storing them.</summary>
    public byte[] BlindIndex(params string[] parts) => HMACSHA256.HashData(_blindKey, Sealing.Aad(parts));

    public bool TryGetDek(string user, string service, out byte[] dek) => _deks.TryGetValue((user, service), out dek!);

    public void CacheDek(string user, string service, byte[] dek)
    {
        if (_deks.Count >= DekCacheLimit)
            foreach (var key in _deks.Keys.Take(DekCacheLimit / 10)) Forget(key.User, key.Service);
        _deks[(user, service)] = dek;
    }

    public void Forget(string user, string service)
    {
        // Not zeroed here: a concurrent operation may still be using the array; it becomes garbage.
        _deks.TryRemove((user, service), out _);
    }

    public void ForgetUser(string user)
    {
        foreach (var key in _deks.Keys.Where(k => k.User == user)) Forget(key.User, key.Service);
    }

    public bool TryLease()
    {
        lock (this)
        {
            if (_sealing) return false;
            _leases++;
            return true;
        }
    }

    public void Release()
    {
        lock (this)
        {
            _leases--;
            if (_sealing && _leases == 0) Wipe();
        }
    }

    public void BeginSeal()
    {
        lock (this)
        {
            _sealing = true;
            if (_leases == 0) Wipe();
        }
    }

    void Wipe()
    {
        if (_wiped) return;
        _wiped = true;
        CryptographicOperations.ZeroMemory(_root);
        CryptographicOperations.ZeroMemory(_blindKey);
        lock (_keks)
        {
            foreach (var k in _keks.Values) CryptographicOperations.ZeroMemory(k);
            _keks.Clear();
        }
        foreach (var d in _deks.Values) CryptographicOperations.ZeroMemory(d);
        _deks.Clear();
        Signing.Dispose();
    }

    public static byte[] RootCheck(ReadOnlySpan<byte> root, string region) =>
        HMACSHA256.HashData(root, Encoding.UTF8.GetBytes("domicile root check v1|" + region));
}

/// <summary>Holds a key ring for the length of one operation.</summary>
internal readonly struct KeyLease(KeyRing ring) : IDisposable
{
    public KeyRing Keys => ring;
    public void Dispose() => ring.Release();
}
