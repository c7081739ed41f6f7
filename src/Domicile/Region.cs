using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Domicile.Audit;
using Domicile.Config;
using Domicile.Crypto;
using Domicile.Keys;
using Domicile.Store;

namespace Domicile;

/// <summary>Unseal progress, as <c>POST /v1/sys/unseal</c> answers it.</summary>
public sealed record UnsealProgress(string Region, bool Sealed, int Progress, int Threshold);

/// <summary>
/// One region: its store and its key hierarchy. Every read and write of personal data goes
/// through here, so consent, encryption and audit cannot be bypassed by a caller.
/// </summary>
public sealed partial class Region : IAsyncDisposable
{
    const string SystemActor = "system";
    readonly Lock _unsealLock = new();
    readonly Dictionary<int, byte[]> _pending = [];
    volatile KeyRing? _keys;
    CustodyMeta? _custody;

    public Region(RegionConfig config, DomicileConfig policy, SqlRegionStore store, TimeProvider? time = null)
    {
        Config = config;
        Policy = policy;
        Store = store;
        Time = time ?? TimeProvider.System;
    }

    public string Id => Config.Id;
    public RegionConfig Config { get; }
    public DomicileConfig Policy { get; }
    public SqlRegionStore Store { get; }
    public TimeProvider Time { get; }
    public bool IsSealed => _keys is null;

    /// <summary>Raised after the region has been unsealed (for jobs waiting on it).</summary>
    public event Action<Region>? Unsealed;

    DateTimeOffset Now => Time.GetUtcNow();
    long NowMs => Now.ToUnixTimeMilliseconds();

    sealed record CustodyMeta(int Shares, int Threshold, byte[] RootCheck, byte[][] ShareDigests);

    // ---- initialisation and custody -------------------------------------------------------

    public async Task<bool> IsInitializedAsync(CancellationToken ct = default) =>
        await Store.SchemaVersionAsync(ct) > 0 && await Store.ReadAsync(tx => tx.GetMetaAsync("region"), ct) is not null;

    /// <summary>
    /// Creates the schema and the key hierarchy: a random root key split into the custody
    /// shares (returned, never stored), the first KEK, the blind-index key and the signing key.
    /// Refuses a store that is already initialised.
    /// </summary>
    public async Task<IReadOnlyList<string>> InitializeAsync(bool stayUnsealed = false, CancellationToken ct = default)
    {
        await Store.UpgradeAsync(ct);
        if (await Store.ReadAsync(tx => tx.GetMetaAsync("region"), ct) is not null)
            throw new DomicileException("conflict", $"region '{Id}' is already initialised; refusing to create a second root key over it");

        var (n, k) = (Policy.Custody.Shares, Policy.Custody.Threshold);
        var root = RandomNumberGenerator.GetBytes(32);
        var kek = RandomNumberGenerator.GetBytes(32);
        var blind = RandomNumberGenerator.GetBytes(32);
        using var signing = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var pkcs8 = signing.ExportPkcs8PrivateKey();
        var parts = Shamir.Split(root, n, k);
        try
        {
            var digests = new byte[n * 32];
            for (var i = 0; i < n; i++) ShareDigest(parts[i]).CopyTo(digests, i * 32);
            await Store.WriteAsync(async tx =>
            {
                await tx.SetMetaAsync("region", Encoding.UTF8.GetBytes(Id));
                await tx.SetMetaAsync("custody", Encoding.UTF8.GetBytes($"{n}/{k}"));
                await tx.SetMetaAsync("root_check", KeyRing.RootCheck(root, Id));
                await tx.SetMetaAsync("share_digests", digests);
                await tx.SetMetaAsync("blind_key", Sealing.Seal(root, blind, Sealing.Aad("blind-key", Id)));
                await tx.SetMetaAsync("signing_key", Sealing.Seal(root, pkcs8, Sealing.Aad("signing-key", Id)));
                // The public half only (SubjectPublicKeyInfo), in clear: it is published even while sealed.
                await tx.SetMetaAsync(SigningPublicMeta, signing.ExportSubjectPublicKeyInfo());
                await tx.InsertKekAsync(new KekRow(1, Sealing.Seal(root, kek, KekAad(1)), NowMs));
                await AuditChain.AppendAsync(tx, Now, SystemActor, "region.init", Id, new JsonObject { ["shares"] = n, ["threshold"] = k, ["kek_version"] = 1 });
                return 0;
            }, ct);
            var shares = parts.Select(p => ShareCodec.Format(Id, p)).ToList();
            if (stayUnsealed) await LoadKeysAsync((byte[])root.Clone(), ct);
            return shares;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(root);
            CryptographicOperations.ZeroMemory(kek);
            CryptographicOperations.ZeroMemory(blind);
            CryptographicOperations.ZeroMemory(pkcs8);
            foreach (var p in parts) CryptographicOperations.ZeroMemory(p);
        }
    }

    byte[] KekAad(long version) => Sealing.Aad("kek", Id, version.ToString(CultureInfo.InvariantCulture));

    byte[] ShareDigest(byte[] part) => SHA256.HashData(Sealing.Aad("share", Id, Convert.ToHexString(part)));

    async Task<CustodyMeta> CustodyAsync(CancellationToken ct)
    {
        if (_custody is not null) return _custody;
        if (!await IsInitializedAsync(ct))
            throw new DomicileException("not_initialized", $"region '{Id}' is not initialised; run 'domicile init' first");
        var (custody, check, digests) = await Store.ReadAsync(async tx =>
            (await tx.GetMetaAsync("custody"), await tx.GetMetaAsync("root_check"), await tx.GetMetaAsync("share_digests")), ct);
        var nk = Encoding.UTF8.GetString(custody!).Split('/');
        var n = int.Parse(nk[0], CultureInfo.InvariantCulture);
        _custody = new CustodyMeta(n, int.Parse(nk[1], CultureInfo.InvariantCulture), check!,
            Enumerable.Range(0, n).Select(i => digests![(i * 32)..((i + 1) * 32)]).ToArray());
        return _custody;
    }

    public async Task<UnsealProgress> UnsealProgressAsync(CancellationToken ct = default)
    {
        var custody = await CustodyAsync(ct);
        lock (_unsealLock) return new UnsealProgress(Id, IsSealed, IsSealed ? _pending.Count : custody.Threshold, custody.Threshold);
    }

    /// <summary>
    /// Accepts one custodian share. A share that is malformed, corrupted, of another region or not
    /// one of those issued for this root key is refused before it counts. Once the threshold is
    /// reached the root is rebuilt, checked and the region serves.
    /// </summary>
    public async Task<UnsealProgress> SubmitShareAsync(string shareText, CancellationToken ct = default)
    {
        if (!ShareCodec.TryParse(shareText, out var share, out var error))
            throw DomicileException.Invalid($"the share was refused: {error}");
        if (share!.Region != Id)
            throw DomicileException.Invalid($"the share belongs to region '{share.Region}', not '{Id}'");
        var custody = await CustodyAsync(ct);
        if (share.Index > custody.Shares || !CryptographicOperations.FixedTimeEquals(ShareDigest(share.Part), custody.ShareDigests[share.Index - 1]))
            throw DomicileException.Invalid($"the share was refused: it is not one of the shares issued for region '{Id}''s current root key");

        byte[]? root = null;
        int[] indexes;
        lock (_unsealLock)
        {
            if (!IsSealed) return new UnsealProgress(Id, false, custody.Threshold, custody.Threshold);
            if (_pending.Remove(share.Index, out var old)) CryptographicOperations.ZeroMemory(old);
            _pending[share.Index] = share.Part;
            indexes = [.. _pending.Keys.Order()];
            if (_pending.Count < custody.Threshold)
                return new UnsealProgress(Id, true, _pending.Count, custody.Threshold);
            try
            {
                root = Shamir.Combine([.. _pending.Values]);
            }
            finally
            {
                foreach (var p in _pending.Values) CryptographicOperations.ZeroMemory(p);
                _pending.Clear();
            }
            if (!CryptographicOperations.FixedTimeEquals(KeyRing.RootCheck(root, Id), custody.RootCheck))
            {
                CryptographicOperations.ZeroMemory(root);
                throw DomicileException.Invalid("the shares do not combine to this region's root key; progress was reset, submit the shares again");
            }
        }
        await LoadKeysAsync(root, ct);
        await Store.WriteAsync(tx => AuditChain.AppendAsync(tx, Now, "custodians", "region.unseal", Id,
            new JsonObject { ["share_indexes"] = new JsonArray([.. indexes.Select(i => JsonValue.Create(i))]) }), ct);
        Unsealed?.Invoke(this);
        return new UnsealProgress(Id, false, custody.Threshold, custody.Threshold);
    }

    async Task LoadKeysAsync(byte[] root, CancellationToken ct)
    {
        var (keks, blindSealed, signingSealed) = await Store.ReadAsync(async tx =>
            (await tx.ListKeksAsync(), await tx.GetMetaAsync("blind_key"), await tx.GetMetaAsync("signing_key")), ct);
        var kekMap = keks.ToDictionary(k => k.Version, k => Sealing.Open(root, k.Sealed, KekAad(k.Version)));
        var blind = Sealing.Open(root, blindSealed!, Sealing.Aad("blind-key", Id));
        var pkcs8 = Sealing.Open(root, signingSealed!, Sealing.Aad("signing-key", Id));
        var signing = ECDsa.Create();
        signing.ImportPkcs8PrivateKey(pkcs8, out _);
        CryptographicOperations.ZeroMemory(pkcs8);
        var spki = signing.ExportSubjectPublicKeyInfo();
        var kid = SigningKid(spki);
        var ring = new KeyRing(root, kekMap, blind, signing, kid);
        var previous = Interlocked.Exchange(ref _keys, ring);
        previous?.BeginSeal();
        await RecordSigningPublicKeyAsync(spki, ct);
    }

    /// <summary>Wipes every key from memory; data requests are refused until the next unseal.</summary>
    public async Task SealAsync(string actor, CancellationToken ct = default)
    {
        var ring = Interlocked.Exchange(ref _keys, null);
        lock (_unsealLock)
        {
            foreach (var p in _pending.Values) CryptographicOperations.ZeroMemory(p);
            _pending.Clear();
        }
        if (ring is null) return;
        ring.BeginSeal();
        await Store.WriteAsync(tx => AuditChain.AppendAsync(tx, Now, actor, "region.seal", Id), ct);
    }

    internal KeyLease Lease()
    {
        var ring = _keys;
        if (ring is null || !ring.TryLease(out var lease))
            throw new DomicileException("sealed", $"region '{Id}' is sealed; custodians must unseal it before it serves data");
        return lease;
    }

    /// <summary>The region's public signing key as a JWK (receipts, tokens, certificates).</summary>
    public JsonObject PublicJwk()
    {
        using var lease = Lease();
        return Jws.PublicJwk(lease.Keys.Signing, lease.Keys.Kid);
    }

    public string Sign(JsonObject payload)
    {
        using var lease = Lease();
        return Jws.Sign(lease.Keys.Signing, lease.Keys.Kid, payload);
    }

    // ---- key rotation -----------------------------------------------------------------------

    /// <summary>
    /// Creates a new KEK version and re-wraps every DEK under it in batches, online. The old
    /// versions are destroyed only once no DEK uses them any more.
    /// </summary>
    public async Task<KeyRotation> RotateKekAsync(string actor, IProgress<(long Done, long Total)>? progress = null, CancellationToken ct = default)
    {
        if (!await _rotation.WaitAsync(0, ct))
            throw new DomicileException("conflict", $"a key rotation of region '{Id}' is already running");
        try
        {
            return await RotateKekOnceAsync(actor, progress, ct);
        }
        finally
        {
            _rotation.Release();
        }
    }

    readonly SemaphoreSlim _rotation = new(1, 1);

    async Task<KeyRotation> RotateKekOnceAsync(string actor, IProgress<(long Done, long Total)>? progress, CancellationToken ct)
    {
        using var lease = Lease();
        var ring = lease.Keys;
        var old = (await Store.ReadAsync(tx => tx.ListKeksAsync(), ct)).Select(k => k.Version).ToList();
        var version = old.Max() + 1;
        var kek = RandomNumberGenerator.GetBytes(32);
        await Store.WriteAsync(async tx =>
        {
            await tx.InsertKekAsync(new KekRow(version, Sealing.Seal(ring.Root, kek, KekAad(version)), NowMs));
            await AuditChain.AppendAsync(tx, Now, actor, "key.kek_created", Id, new JsonObject { ["kek_version"] = version });
            return 0;
        }, ct);
        ring.AddKek(version, kek);

        long total = 0;
        foreach (var v in old) total += await Store.ReadAsync(tx => tx.CountDeksByKekAsync(v), ct);
        long done = 0;
        foreach (var v in old)
        {
            while (true)
            {
                ct.ThrowIfCancellationRequested();
                var batch = await Store.WriteAsync(async tx =>
                {
                    var rows = await tx.ListDeksByKekAsync(v, 500);
                    foreach (var row in rows)
                    {
                        var dek = Sealing.Open(ring.Kek(v), row.Wrapped, DekAad(row.UserId, row.Service, v));
                        await tx.UpdateDekAsync(row with { KekVersion = version, Wrapped = Sealing.Seal(kek, dek, DekAad(row.UserId, row.Service, version)) });
                        CryptographicOperations.ZeroMemory(dek);
                    }
                    return rows.Count;
                }, ct);
                done += batch;
                progress?.Report((done, total));
                if (batch == 0) break;
            }
        }
        var destroyed = new List<long>();
        foreach (var v in old)
        {
            var left = await Store.WriteAsync(async tx =>
            {
                if (!await tx.LockKekAsync(v, exclusive: true)) return 0L;
                var n = await tx.CountDeksByKekAsync(v);
                if (n == 0)
                {
                    await tx.DeleteKekAsync(v);
                    await AuditChain.AppendAsync(tx, Now, actor, "key.kek_destroyed", Id, new JsonObject { ["kek_version"] = v });
                }
                return n;
            }, ct);
            if (left == 0)
            {
                ring.RemoveKek(v);
                destroyed.Add(v);
            }
        }
        return new KeyRotation(Id, version, done, destroyed);
    }

    public ValueTask DisposeAsync()
    {
        Interlocked.Exchange(ref _keys, null)?.BeginSeal();
        return Store.DisposeAsync();
    }

    // ---- shared helpers -----------------------------------------------------------------------

    byte[] DekAad(string user, string service, long kekVersion) =>
        Sealing.Aad("dek", Id, user, service, kekVersion.ToString(CultureInfo.InvariantCulture));

    /// <summary>The user's DEK for a service, unwrapped (cached); null when none exists.</summary>
    internal async Task<byte[]?> DekAsync(KeyRing ring, IStoreTx tx, string user, string service)
    {
        if (ring.TryGetDek(user, service, out var cached)) return cached;
        var row = await tx.GetDekAsync(user, service);
        return row is null ? null : OpenDek(ring, row, tx);
    }

    /// <summary>
    /// A key row unwrapped, or its cached key. Only committed keys of services the policy names are
    /// cached (read outside a write, or as a package's rows): a key read inside a write may be
    /// rolled back with it, so that one serves its transaction only and is zeroed when it ends.
    /// </summary>
    /// <param name="keks">The batch's KEK schedules, when it unwraps many keys: one per version, not one per key.</param>
    byte[] OpenDek(KeyRing ring, DekRow row, IStoreTx? tx = null, KekOpeners? keks = null)
    {
        if (ring.TryGetDek(row.UserId, row.Service, out var cached)) return cached;
        var aad = DekAad(row.UserId, row.Service, row.KekVersion);
        var dek = keks is null ? Sealing.Open(ring.Kek(row.KekVersion), row.Wrapped, aad) : keks.For(row.KekVersion).Open(row.Wrapped, aad);
        if (tx is { Writes: true }) tx.ZeroOnEnd(dek);
        else if (KeyedServices.Contains(row.Service)) ring.CacheDek(row.UserId, row.Service, dek);
        return dek;
    }

    /// <summary>
    /// KEK key schedules for a batch of unwraps (a package of many users reads some four keys each),
    /// made on first use per version and wiped when the batch ends. One thread, one batch.
    /// </summary>
    internal sealed class KekOpeners(KeyRing ring) : IDisposable
    {
        readonly Dictionary<long, Sealing.Sealer> _sealers = [];

        public Sealing.Sealer For(long version)
        {
            if (!_sealers.TryGetValue(version, out var sealer)) _sealers[version] = sealer = new Sealing.Sealer(ring.Kek(version));
            return sealer;
        }

        public void Dispose()
        {
            foreach (var s in _sealers.Values) s.Dispose();
            _sealers.Clear();
        }
    }

    /// <param name="heldKek">A KEK version this transaction already holds the lock of (it made another key under it).</param>
    async Task<(byte[] Dek, long KekVersion)> CreateDekAsync(KeyRing ring, IStoreTx tx, string user, string service, long heldKek)
    {
        var dek = RandomNumberGenerator.GetBytes(32);
        var kekVersion = ring.CurrentKek;
        // Held until commit: a rotation cannot destroy this KEK while a key wrapped by it is being written.
        if (kekVersion != heldKek && !await tx.LockKekAsync(kekVersion, exclusive: false))
            throw new DomicileException("unavailable", "the region's key is being rotated; retry in a moment");
        await tx.InsertDekAsync(new DekRow(user, service, kekVersion, Sealing.Seal(ring.Kek(kekVersion), dek, DekAad(user, service, kekVersion)), NowMs));
        return (dek, kekVersion);
    }

    async Task<byte[]> CreateDekAsync(KeyRing ring, IStoreTx tx, string user, string service) =>
        (await CreateDekAsync(ring, tx, user, service, heldKek: -1)).Dek;

    /// <summary>A random lowercase-hex identifier (user ids, blob ids).</summary>
    public static string NewId(int bytes = 16) => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(bytes));

    internal static byte[] Int64Bytes(long v)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteInt64BigEndian(b, v);
        return b;
    }
}

public sealed record KeyRotation(string Region, long NewVersion, long Rewrapped, IReadOnlyList<long> DestroyedVersions);
