using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Domicile.Audit;
using Domicile.Keys;
using Domicile.Store;

namespace Domicile;

/// <summary>One user's data in plaintext, in memory only, on its way between regions (or seeded by the demo).</summary>
public sealed record UserPackage(
    string UserId, string Login, string PasswordHash, string Country, long CreatedAt, long ChangeSeq,
    IReadOnlyList<ConsentRow> Ledger, IReadOnlyList<ConsentStateRow> States, IReadOnlyList<string> Services,
    IReadOnlyList<PackagedItem> Items, IReadOnlyList<PackagedMessage> Messages);

/// <summary>
/// An item or tombstone; large contents are opened as a stream, never held whole. An inline item
/// read from a region carries <paramref name="SealedDigest"/>, its content's SHA-256 (lowercase hex)
/// as its sealed head records it, so that its copy and its source digest need not hash it again.
/// </summary>
public sealed record PackagedItem(
    string Service, string Collection, string Key, string ContentType, long Version, bool Deleted, long Size,
    long CreatedAt, long UpdatedAt, byte[]? Content, Func<CancellationToken, Task<Stream>>? Open, string? SealedDigest = null);

public sealed record PackagedMessage(string Id, string Sender, string Body, long SentAt, long ExpiresAt);

/// <summary>What verification compares: one digest over everything of the user, and the live totals.</summary>
public sealed record UserDigest(string Digest, long Items, long Bytes);

public sealed partial class Region
{
    /// <summary>
    /// Reads a user's account, consents, items (those changed after <paramref name="sinceVersion"/>,
    /// tombstones included) and messages, decrypted. Small contents are read now; blobs stream later.
    /// </summary>
    public async Task<UserPackage> PackageUserAsync(string userId, long sinceVersion = 0, CancellationToken ct = default) =>
        (await PackageUsersAsync([userId], _ => sinceVersion, ct))[0] ?? throw DomicileException.NotFound("no such user in this region");

    /// <summary>
    /// <see cref="PackageUserAsync"/> for many users: one read transaction (one snapshot) and one
    /// statement per table for all of them. A user who is not here is null in the result; each
    /// user's items are those changed after <paramref name="sinceVersion"/> of that user.
    /// </summary>
    public async Task<IReadOnlyList<UserPackage?>> PackageUsersAsync(IReadOnlyList<string> userIds, Func<string, long>? sinceVersion = null, CancellationToken ct = default)
    {
        using var lease = Lease();
        var ring = lease.Keys;
        var rows = await Store.ReadAsync(tx => tx.ReadUsersAsync(userIds), ct);
        var users = rows.Users.ToDictionary(u => u.Id, StringComparer.Ordinal);
        var ledgers = rows.Ledger.ToLookup(c => c.UserId, StringComparer.Ordinal);
        var states = rows.States.ToLookup(c => c.UserId, StringComparer.Ordinal);
        var keys = rows.Keys.ToLookup(k => k.UserId, StringComparer.Ordinal);
        var messages = rows.Messages.ToLookup(m => m.UserId, StringComparer.Ordinal);
        var items = rows.Items.ToLookup(i => i.UserId, StringComparer.Ordinal);
        var packages = new UserPackage?[userIds.Count];
        using var keks = new KekOpeners(ring);
        for (var n = 0; n < userIds.Count; n++)
        {
            var userId = userIds[n];
            if (!users.TryGetValue(userId, out var user)) continue;
            var since = sinceVersion?.Invoke(userId) ?? 0;
            packages[n] = Package(ring, keks, user, [.. ledgers[userId]], [.. states[userId]], [.. keys[userId]], [.. messages[userId]], items[userId].Where(i => i.Version > since));
        }
        return packages;
    }

    /// <summary>One user's rows, decrypted: small contents now, blobs as streams opened later.</summary>
    UserPackage Package(KeyRing ring, KekOpeners keks, UserRow user, IReadOnlyList<ConsentRow> ledger, IReadOnlyList<ConsentStateRow> states,
        IReadOnlyList<DekRow> keys, IReadOnlyList<MessageRow> messages, IEnumerable<ItemRow> rows)
    {
        var userId = user.Id;
        // Committed keys only (a read transaction), so they may be cached.
        var deks = keys.ToDictionary(k => k.Service, k => OpenDek(ring, k, keks: keks), StringComparer.Ordinal);
        var login = deks.TryGetValue(AccountService, out var accountDek)
            ? Encoding.UTF8.GetString(Sealing.Open(accountDek, user.LoginEnc, Sealing.Aad("login", Id, userId))) : "";
        var items = new List<PackagedItem>();
        // One key schedule per service for all of the user's rows, not one per value.
        var sealers = new Dictionary<string, Sealing.Sealer>(StringComparer.Ordinal);
        try
        {
            foreach (var r in rows)
            {
                if (!deks.TryGetValue(r.Service, out var dek)) continue; // the key is gone: so is the data, for good
                if (!sealers.TryGetValue(r.Service, out var sealer)) sealers[r.Service] = sealer = new Sealing.Sealer(dek);
                var (head, content) = OpenInline(sealer, r);
                var (svc, coll, key) = (r.Service, r.Collection, head.Key);
                items.Add(new PackagedItem(r.Service, r.Collection, head.Key, head.ContentType, r.Version, r.Deleted, r.Size, r.CreatedAt, r.UpdatedAt, content,
                    !r.Deleted && head.BlobId is not null ? async c => (await GetAsync(userId, svc, coll, key, c)).Content : null,
                    content is null ? null : head.Digest));
            }
        }
        finally
        {
            foreach (var s in sealers.Values) s.Dispose();
        }
        var packaged = new List<PackagedMessage>();
        if (messages.Count > 0 && deks.TryGetValue(MessagingService, out var messageDek))
        {
            using var sealer = new Sealing.Sealer(messageDek);
            packaged.AddRange(messages.Select(m => new PackagedMessage(m.Id, m.Sender, Encoding.UTF8.GetString(sealer.Open(m.Body, MessageAad(userId, m.Id))), m.SentAt, m.ExpiresAt)));
        }
        return new UserPackage(userId, login, user.PasswordHash, user.Country, user.CreatedAt, user.ChangeSeq, ledger, states,
            [.. deks.Keys.Where(s => s != AccountService).Order(StringComparer.Ordinal)], items, packaged);
    }

    /// <summary>The users here with at most <paramref name="maxChanges"/> changes (so at most as many items) and no blobs.</summary>
    internal async Task<HashSet<string>> SmallUsersAsync(IReadOnlyList<string> userIds, long maxChanges, CancellationToken ct = default) =>
        [.. await Store.ReadAsync(tx => tx.SmallUsersAsync(userIds, maxChanges), ct)];

    /// <summary>
    /// Writes a package into this region under this region's keys (new DEKs, new blind indexes),
    /// keeping ids and item versions so devices' ETags and sync cursors stay valid. Idempotent:
    /// importing the same package twice leaves the same state. Consent is not re-checked: the
    /// package carries the ledger that allowed the data.
    /// </summary>
    public async Task ImportUserAsync(UserPackage pkg, string state, string actor, CancellationToken ct = default) =>
        await ImportUsersAsync([pkg], state, actor, ct);

    /// <summary>
    /// <see cref="ImportUserAsync"/> for many users: those without blobs (most) arrive together in one
    /// transaction (one commit instead of one each), those new here sealed before it; a user with
    /// blobs or many items arrives alone.
    /// </summary>
    public async Task ImportUsersAsync(IReadOnlyList<UserPackage> packages, string state, string actor, CancellationToken ct = default)
    {
        // A catch-up or a tail goes to users already here, under the keys they have: sealing them
        // ahead under fresh keys would be work thrown away.
        var present = (await Store.ReadAsync(tx => tx.PresentUsersAsync([.. packages.Select(p => p.UserId)]), ct)).ToHashSet(StringComparer.Ordinal);
        using (var copies = SealCopies(packages, present))
            if (copies.Count > 0) await Store.WriteAsync(async tx => { await WriteCopiesAsync(tx, copies, state); return 0; }, ct);
        using var lease = Lease();
        var ring = lease.Keys;
        foreach (var pkg in packages.Where(p => !InOne(p)))
        {
            await Store.WriteAsync(async tx => { using var deks = new TxDeks(this, ring, tx); await ImportAccountAsync(deks, tx, pkg, state); return 0; }, ct);
            foreach (var item in pkg.Items.Where(i => i.Open is not null)) await ImportBlobItemAsync(ring, pkg.UserId, item, ct);
            foreach (var chunk in pkg.Items.Where(i => i.Open is null).Chunk(200))
                await Store.WriteAsync(async tx => { using var deks = new TxDeks(this, ring, tx); await WriteSmallItemsAsync(deks, tx, pkg.UserId, chunk); return 0; }, ct);
            await Store.WriteAsync(async tx => { using var deks = new TxDeks(this, ring, tx); await WriteMessagesAsync(deks, tx, pkg.UserId, pkg.Messages); return 0; }, ct);
        }
        ForgetAccounts(packages.Select(p => p.UserId));
    }

    /// <summary>A package small enough to arrive in one transaction with others: no blobs, few items.</summary>
    internal static bool InOne(UserPackage p) => p.Items.Count <= 500 && p.Items.All(i => i.Open is null);

    /// <summary>
    /// The packages of one transaction (see <see cref="InOne"/>), those new here sealed before the
    /// destination's write turn under fresh keys made here, and those keys wrapped: the write then
    /// holds the region's single writer for its inserts only, while the crypto of other groups runs
    /// beside it. The fresh keys are zeroed on dispose, used or not.
    /// </summary>
    internal sealed class SealedCopies(KeyLease lease) : IDisposable
    {
        /// <summary>
        /// A package and, when it was sealed ahead, its rows and the raw keys they are sealed under,
        /// each also wrapped under <see cref="KekVersion"/> (the write wraps them again under the KEK
        /// current then if a rotation came between). Without rows, it is written the one-transaction slow way.
        /// </summary>
        internal sealed record Copy(UserPackage Package, UserRow? Row, IReadOnlyList<(string Service, ReadOnlyMemory<byte> Key, byte[] Wrapped)> Keys, IReadOnlyList<ItemRow> Items, IReadOnlyList<MessageRow> Messages);

        public readonly List<Copy> Copies = [];

        /// <summary>The KEK the keys' <c>Wrapped</c> forms are sealed under (0: none, a rotation was under way); the write wraps them again if it is not the current one.</summary>
        public long KekVersion { get; set; }
        public readonly List<byte[]> Made = [];
        public KeyRing Ring => lease.Keys;
        public int Count => Copies.Count;
        public bool Holds(UserPackage p) => Copies.Exists(c => ReferenceEquals(c.Package, p));
        bool _disposed;

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var key in Made) CryptographicOperations.ZeroMemory(key);
            Made.Clear();
            lease.Dispose();
        }
    }

    /// <summary>
    /// Takes the packages that may arrive in one transaction (see <see cref="InOne"/>) and seals
    /// those of users not in <paramref name="present"/>; one naming a service it brings no key for
    /// goes unsealed, for the slow path to refuse inside the transaction (nothing of the group is then written).
    /// </summary>
    internal SealedCopies SealCopies(IEnumerable<UserPackage> packages, IReadOnlySet<string>? present = null)
    {
        var lease = Lease();
        SealedCopies? copies = null;
        // One key schedule of the KEK for the wrapping of all the fresh keys.
        Sealing.Sealer? kek = null;
        try
        {
            var ring = lease.Keys;
            copies = new SealedCopies(lease) { KekVersion = ring.CurrentKek };
            try
            {
                kek = new Sealing.Sealer(ring.Kek(copies.KekVersion));
            }
            catch (DomicileException)
            {
                copies.KekVersion = 0; // rotated away just now: the write wraps the keys under the new KEK
            }
            using var heads = new HeadEncoder();
            foreach (var pkg in packages.Where(InOne))
            {
                var userId = pkg.UserId;
                var services = pkg.Services.Prepend(AccountService).Distinct(StringComparer.Ordinal).ToList();
                if (present?.Contains(userId) == true || pkg.Items.Any(i => !services.Contains(i.Service)) || (pkg.Messages.Count > 0 && !services.Contains(MessagingService)))
                {
                    copies.Copies.Add(new SealedCopies.Copy(pkg, null, [], [], []));
                    continue;
                }
                var keys = new List<(string, ReadOnlyMemory<byte>, byte[])>();
                var sealers = new Dictionary<string, Sealing.Sealer>(StringComparer.Ordinal);
                // The user's fresh keys from one draw of the generator: each draw costs as much as its
                // first kilobyte. Made holds them until the copies are disposed, which zeroes them; each
                // key is a slice of the draw, not a copy of it.
                var fresh = RandomNumberGenerator.GetBytes(32 * services.Count);
                copies.Made.Add(fresh);
                try
                {
                    for (var k = 0; k < services.Count; k++)
                    {
                        var service = services[k];
                        var dek = fresh.AsMemory(32 * k, 32);
                        keys.Add((service, dek, kek?.Seal(dek.Span, DekAad(userId, service, copies.KekVersion)) ?? []));
                        sealers[service] = new Sealing.Sealer(dek.Span);
                    }
                    var row = new UserRow(userId, ring.BlindIndex("login", pkg.Login),
                        sealers[AccountService].Seal(Encoding.UTF8.GetBytes(pkg.Login), Sealing.Aad("login", Id, userId)),
                        pkg.PasswordHash, pkg.Country, pkg.CreatedAt, pkg.ChangeSeq, UserStates.Incoming);
                    var items = pkg.Items.Select(i => SealItem(ring, sealers[i.Service], heads, userId, i)).ToList();
                    var messages = pkg.Messages.Select(m => SealMessage(sealers[MessagingService], userId, m)).ToList();
                    copies.Copies.Add(new SealedCopies.Copy(pkg, row, keys, items, messages));
                }
                finally
                {
                    foreach (var s in sealers.Values) s.Dispose();
                }
            }
            return copies;
        }
        catch
        {
            if (copies is null) lease.Dispose();
            else copies.Dispose();
            throw;
        }
        finally
        {
            kek?.Dispose();
        }
    }

    /// <summary>
    /// Writes the copies in the caller's transaction. A user already here (an incoming copy being
    /// caught up, or resumed after a crash), whose keys outlived the account row, or not sealed
    /// ahead, is written under the keys it has (or new ones), sealed now; refuses to overwrite a
    /// user who lives here.
    /// </summary>
    internal async Task WriteCopiesAsync(IStoreTx tx, SealedCopies copies, string state)
    {
        var ring = copies.Ring;
        using var deks = new TxDeks(this, ring, tx);
        var present = (await tx.PresentUsersAsync([.. copies.Copies.Select(c => c.Package.UserId)])).ToHashSet(StringComparer.Ordinal);
        var fresh = copies.Copies.Where(c => c.Row is not null && !present.Contains(c.Package.UserId)).ToList();
        // Rows of a user with no account here can outlive it (a restore keeps some tables): the copy replaces them.
        await tx.DeleteConsentsAsync([.. fresh.Select(c => c.Package.UserId)]);
        var kekVersion = ring.CurrentKek;
        // Held until commit: a rotation cannot destroy the KEK the fresh keys are wrapped by here.
        if (fresh.Count > 0 && !await tx.LockKekAsync(kekVersion, exclusive: false))
            throw new DomicileException("unavailable", "the region's key is being rotated; retry in a moment");
        // The keys were wrapped when sealed, under the KEK current then; a rotation since wraps them again.
        using var kek = fresh.Count > 0 && kekVersion != copies.KekVersion ? new Sealing.Sealer(ring.Kek(kekVersion)) : null;
        foreach (var copy in copies.Copies)
        {
            var (pkg, userId) = (copy.Package, copy.Package.UserId);
            if (copy.Row is not { } row || present.Contains(userId))
            {
                var arrived = await ImportAccountAsync(deks, tx, pkg, state);
                await WriteSmallItemsAsync(deks, tx, userId, pkg.Items);
                await WriteMessagesAsync(deks, tx, userId, pkg.Messages, arrived);
                continue;
            }
            await tx.InsertUserAsync(row with { State = state });
            foreach (var (service, key, wrapped) in copy.Keys)
                await tx.InsertDekAsync(new DekRow(userId, service, kekVersion, kek is null ? wrapped : kek.Seal(key.Span, DekAad(userId, service, kekVersion)), NowMs));
            foreach (var c in pkg.Ledger) await tx.AppendConsentAsync(c with { UserId = userId });
            foreach (var st in pkg.States) await tx.SetConsentStateAsync(st with { UserId = userId });
            await WriteItemRowsAsync(tx, userId, copy.Items);
            foreach (var m in copy.Messages) await tx.InsertMessageAsync(m);
        }
    }

    /// <summary>
    /// The data keys one write transaction uses: each unwrapped once per user and service, not once
    /// per row; those made here are zeroed when the transaction's work is done.
    /// </summary>
    sealed class TxDeks(Region region, KeyRing ring, IStoreTx tx) : IDisposable
    {
        readonly Dictionary<(string User, string Service), (byte[] Key, bool Made)> _keys = [];
        readonly Dictionary<(string User, string Service), Sealing.Sealer> _sealers = [];
        long _heldKek = -1;

        public KeyRing Ring => ring;

        public async Task<byte[]?> GetAsync(string user, string service)
        {
            if (_keys.TryGetValue((user, service), out var k)) return k.Key;
            var dek = await region.DekAsync(ring, tx, user, service);
            if (dek is not null) _keys[(user, service)] = (dek, false);
            return dek;
        }

        /// <summary>One key schedule per user and service for the transaction's seals, not one per value.</summary>
        public async Task<Sealing.Sealer?> SealerAsync(string user, string service)
        {
            if (_sealers.TryGetValue((user, service), out var s)) return s;
            if (await GetAsync(user, service) is not { } dek) return null;
            return _sealers[(user, service)] = new Sealing.Sealer(dek);
        }

        public async Task<byte[]> CreateAsync(string user, string service)
        {
            // The KEK is locked once for the transaction, not once per key made under it.
            (var dek, _heldKek) = await region.CreateDekAsync(ring, tx, user, service, _heldKek);
            if (_sealers.Remove((user, service), out var stale)) stale.Dispose();
            _keys[(user, service)] = (dek, true);
            return dek;
        }

        public void Dispose()
        {
            foreach (var s in _sealers.Values) s.Dispose();
            foreach (var (key, made) in _keys.Values)
                if (made) CryptographicOperations.ZeroMemory(key);
        }
    }

    /// <summary>
    /// The account, its keys and its consents; refuses to overwrite a user who lives here. Returns
    /// whether the account arrived just now (then the user has no messages here: they go with the
    /// account row, in erasure and in a restore alike).
    /// </summary>
    async Task<bool> ImportAccountAsync(TxDeks deks, IStoreTx tx, UserPackage pkg, string state)
    {
        var userId = pkg.UserId;
        var existing = await tx.GetUserAsync(userId);
        if (existing is not null && existing.State != UserStates.Incoming)
            throw new DomicileException("conflict", $"the user already lives in region '{Id}'; a copy must not overwrite a home");
        // Keys are looked for in the table itself even for an account new here: a restore keeps the
        // key table, so a key may outlive its account row.
        var held = (await tx.ListDekServicesAsync(userId)).ToHashSet(StringComparer.Ordinal);
        var accountDek = held.Contains(AccountService) && await deks.GetAsync(userId, AccountService) is { } k ? k : await deks.CreateAsync(userId, AccountService);
        var loginEnc = Sealing.Seal(accountDek, Encoding.UTF8.GetBytes(pkg.Login), Sealing.Aad("login", Id, userId));
        var row = new UserRow(userId, deks.Ring.BlindIndex("login", pkg.Login), loginEnc, pkg.PasswordHash, pkg.Country, pkg.CreatedAt, pkg.ChangeSeq, existing?.State ?? state);
        if (existing is null) await tx.InsertUserAsync(row);
        else await tx.UpdateUserAsync(row);
        await tx.RaiseChangeAsync(userId, pkg.ChangeSeq);
        foreach (var service in pkg.Services)
            if (!held.Contains(service))
                await deks.CreateAsync(userId, service);
        await tx.DeleteConsentsAsync(userId);
        foreach (var c in pkg.Ledger) await tx.AppendConsentAsync(c with { UserId = userId });
        foreach (var s in pkg.States) await tx.SetConsentStateAsync(s with { UserId = userId });
        return existing is null;
    }

    async Task WriteMessagesAsync(TxDeks deks, IStoreTx tx, string userId, IReadOnlyList<PackagedMessage> messages, bool arrivedNow = false)
    {
        if (!arrivedNow) await tx.DeleteMessagesAsync(userId);
        if (messages.Count == 0) return;
        var sealer = await deks.SealerAsync(userId, MessagingService) ?? throw new DomicileException("conflict", "messages arrived without their service key");
        foreach (var m in messages) await tx.InsertMessageAsync(SealMessage(sealer, userId, m));
    }

    MessageRow SealMessage(Sealing.Sealer sealer, string userId, PackagedMessage m) =>
        new(m.Id, userId, m.Sender, sealer.Seal(Encoding.UTF8.GetBytes(m.Body), MessageAad(userId, m.Id)), m.SentAt, m.ExpiresAt);

    async Task WriteSmallItemsAsync(TxDeks deks, IStoreTx tx, string userId, IReadOnlyList<PackagedItem> items)
    {
        var rows = new List<ItemRow>(items.Count);
        using var heads = new HeadEncoder();
        foreach (var item in items)
            rows.Add(SealItem(deks.Ring, await deks.SealerAsync(userId, item.Service) ?? throw new DomicileException("conflict", $"no key for '{item.Service}' at {Id}"), heads, userId, item));
        await WriteItemRowsAsync(tx, userId, rows);
    }

    /// <summary>A small item sealed under its service's key, at its place's new blind index.</summary>
    ItemRow SealItem(KeyRing ring, Sealing.Sealer sealer, HeadEncoder heads, string userId, PackagedItem item)
    {
        var keyIndex = ring.BlindIndex("item", userId, item.Service, item.Collection, item.Key);
        var content = item.Deleted ? null : item.Content ?? [];
        var (head, sealedContent) = SealInline(sealer, heads, userId, item.Service, item.Collection, keyIndex, item.Version, item.Key, item.ContentType, content, item.SealedDigest);
        return new ItemRow(userId, item.Service, item.Collection, keyIndex, head, sealedContent, null,
            content?.Length ?? 0, item.Version, item.Deleted, item.CreatedAt, item.UpdatedAt);
    }

    /// <summary>Streams a large item into sealed chunks, then links it; never holds the whole content.</summary>
    async Task ImportBlobItemAsync(KeyRing ring, string userId, PackagedItem item, CancellationToken ct)
    {
        var dek = await Store.ReadAsync(tx => DekAsync(ring, tx, userId, item.Service), ct) ?? throw new DomicileException("conflict", $"no key for '{item.Service}' at {Id}");
        var keyIndex = ring.BlindIndex("item", userId, item.Service, item.Collection, item.Key);
        var blobId = NewId();
        var committed = false;
        var buffer = new byte[ChunkSize];
        var next = new byte[ChunkSize];
        try
        {
            await using var source = await item.Open!(ct);
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var chunks = 0;
            long size = 0;
            var curLen = await FillAsync(source, buffer, ct);
            var nxtLen = await FillAsync(source, next, ct);
            while (true)
            {
                var last = nxtLen == 0;
                sha.AppendData(buffer, 0, curLen);
                size += curLen;
                var sealedChunk = Sealing.Seal(dek, buffer.AsSpan(0, curLen), ChunkAad(userId, item.Service, blobId, chunks, last));
                var idx = chunks++;
                await Store.WriteAsync(async tx => { await tx.InsertChunkAsync(blobId, idx, sealedChunk, NowMs); return 0; }, ct);
                if (last) break;
                (buffer, next) = (next, buffer);
                curLen = nxtLen;
                nxtLen = await FillAsync(source, next, ct);
            }
            var digest = Convert.ToHexStringLower(sha.GetHashAndReset());
            await Store.WriteAsync(async tx =>
            {
                var head = Sealing.Seal(dek, EncodeHead(new Head(item.Key, item.ContentType, blobId, chunks, digest)),
                    HeadAad(userId, item.Service, item.Collection, keyIndex, item.Version));
                var old = await tx.GetItemAsync(userId, item.Service, item.Collection, keyIndex);
                await tx.UpsertItemAsync(new ItemRow(userId, item.Service, item.Collection, keyIndex, head, null, blobId, size, item.Version, false, item.CreatedAt, item.UpdatedAt));
                if (old?.BlobId is { } oldBlob && oldBlob != blobId) await tx.DeleteBlobAsync(oldBlob);
                return 0;
            }, ct);
            committed = true;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(buffer);
            CryptographicOperations.ZeroMemory(next);
            if (!committed) await Store.WriteAsync(async tx => { await tx.DeleteBlobAsync(blobId); return 0; }, CancellationToken.None);
        }
    }

    /// <summary>
    /// Makes an incoming copy hold no more than the source's full package: items, services and
    /// their keys that the source deleted without a change number (a retention sweep, a
    /// withdrawal's purge) go here too. Returns whether anything was removed.
    /// </summary>
    internal async Task<bool> DropWhatTheSourceNoLongerHasAsync(UserPackage full, CancellationToken ct = default)
    {
        using var lease = Lease();
        var ring = lease.Keys;
        var userId = full.UserId;
        var keep = full.Items.Select(i => (i.Service, i.Collection, Convert.ToHexString(ring.BlindIndex("item", userId, i.Service, i.Collection, i.Key)))).ToHashSet();
        var services = full.Services.Append(AccountService).ToHashSet(StringComparer.Ordinal);
        var removed = await Store.WriteAsync(async tx =>
        {
            if (await tx.GetUserAsync(userId) is not { State: UserStates.Incoming }) return false;
            var any = false;
            foreach (var service in await tx.ListDekServicesAsync(userId))
            {
                if (services.Contains(service)) continue;
                await tx.DeleteItemsAsync(userId, service);
                await tx.DeleteDekAsync(userId, service);
                any = true;
            }
            var drop = new List<ItemRow>();
            long after = 0;
            while (true)
            {
                var rows = await tx.ChangesAsync(userId, after, 1000);
                drop.AddRange(rows.Where(r => services.Contains(r.Service) && !keep.Contains((r.Service, r.Collection, Convert.ToHexString(r.KeyIndex)))));
                if (rows.Count < 1000) break;
                after = rows[^1].Version;
            }
            foreach (var r in drop) await tx.DeleteItemRowAsync(r);
            return any || drop.Count > 0;
        }, ct);
        if (removed) _keys?.ForgetUser(userId, KeyedServices);
        return removed;
    }

    /// <summary>
    /// One SHA-256 over everything of the user as plaintext: account, consent ledger and state,
    /// every item's place, type, version and content digest (decrypted and hashed, not taken on
    /// trust from the stored head), and messages. Equal digests in two regions mean equal data.
    /// </summary>
    public async Task<UserDigest> DigestUserAsync(string userId, CancellationToken ct = default) =>
        await DigestAsync(await PackageUserAsync(userId, 0, ct), ct: ct);

    /// <summary>The digest of a full package already read (blobs are streamed from the region again).</summary>
    /// <param name="sealedDigests">Takes each inline item's content digest from its sealed head rather
    /// than hashing the content: only for the source of a copy whose own digest hashes its contents.
    /// A head that disagrees with its content then still makes the two digests differ, and that copy
    /// fails verification.</param>
    public static async Task<UserDigest> DigestAsync(UserPackage pkg, bool sealedDigests = false, CancellationToken ct = default)
    {
        // Every line's parts length-prefixed as in Sealing.Aad, all hashed at once at the end.
        using var input = new DigestInput();
        input.Line("account").Part(pkg.UserId).Part(pkg.Login).Part(pkg.PasswordHash).Part(pkg.Country).Part(pkg.CreatedAt);
        foreach (var c in pkg.Ledger.OrderBy(c => c.At).ThenBy(c => c.Service, StringComparer.Ordinal).ThenBy(c => c.Granted))
            input.Line("consent").Part(c.Service).Part(c.Version).Part(c.Granted).Part(c.At).Part(c.Source);
        // Ordinal order, not the engine's: a PostgreSQL collation and SQLite may sort services apart.
        foreach (var s in pkg.States.OrderBy(s => s.Service, StringComparer.Ordinal))
            input.Line("state").Part(s.Service).Part(s.Version).Part(s.Granted).Part(s.At);
        long items = 0, bytes = 0;
        var contentDigest = new byte[SHA256.HashSizeInBytes];
        foreach (var i in ByVersion(pkg.Items))
        {
            if (!i.Deleted)
            {
                if (i.Open is not null)
                {
                    await using var s = await i.Open(ct);
                    (await SHA256.HashDataAsync(s, ct)).CopyTo(contentDigest);
                }
                else if (sealedDigests && i.SealedDigest is { Length: SHA256.HashSizeInBytes * 2 } sealedDigest)
                    Convert.FromHexString(sealedDigest, contentDigest, out _, out _);
                else SHA256.HashData(i.Content ?? [], contentDigest);
                items++;
                bytes += i.Size;
            }
            input.Line("item").Part(i.Service).Part(i.Collection).Part(i.Key).Part(i.Deleted ? "" : i.ContentType).Part(i.Version).Part(i.Deleted).Part(i.Size);
            if (i.Deleted) input.Part("");
            else input.HexPart(contentDigest);
        }
        foreach (var m in pkg.Messages.OrderBy(m => m.Id, StringComparer.Ordinal))
            input.Line("message").Part(m.Id).Part(m.Sender).Part(m.Body).Part(m.SentAt).Part(m.ExpiresAt);
        return new UserDigest(input.Hash(), items, bytes);
    }

    /// <summary>Items in version order; a package read from a store already is (sorting it again allocated two arrays and a comparer per item).</summary>
    static IEnumerable<PackagedItem> ByVersion(IReadOnlyList<PackagedItem> items)
    {
        for (var n = 1; n < items.Count; n++)
            if (items[n].Version < items[n - 1].Version) return items.OrderBy(i => i.Version);
        return items;
    }

    /// <summary>
    /// The bytes a user digest hashes, in one pooled buffer: logins and message bodies pass through
    /// it in plaintext, so it is zeroed before it goes back to the pool.
    /// </summary>
    sealed class DigestInput : IDisposable
    {
        byte[] _buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(4096);
        int _at;

        public DigestInput Line(string kind) => Part(kind);

        public DigestInput Part(string? text)
        {
            text ??= "";
            var n = Encoding.UTF8.GetByteCount(text);
            Encoding.UTF8.GetBytes(text, Reserve(n));
            return this;
        }

        // The text Convert.ToString gives, invariant: digits, and True or False.
        public DigestInput Part(long value)
        {
            Span<byte> digits = stackalloc byte[20];
            value.TryFormat(digits, out var n, default, System.Globalization.CultureInfo.InvariantCulture);
            digits[..n].CopyTo(Reserve(n));
            return this;
        }

        public DigestInput Part(bool value) => Part(value ? "True" : "False");

        public DigestInput HexPart(ReadOnlySpan<byte> hash)
        {
            Convert.TryToHexStringLower(hash, Reserve(hash.Length * 2), out _);
            return this;
        }

        /// <summary>Room for one part of <paramref name="size"/> bytes after its big-endian length.</summary>
        Span<byte> Reserve(int size)
        {
            if (_at + 4 + size > _buffer.Length)
            {
                var bigger = System.Buffers.ArrayPool<byte>.Shared.Rent(Math.Max(_buffer.Length * 2, _at + 4 + size));
                _buffer.AsSpan(0, _at).CopyTo(bigger);
                Return();
                _buffer = bigger;
            }
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(_buffer.AsSpan(_at), size);
            var part = _buffer.AsSpan(_at + 4, size);
            _at += 4 + size;
            return part;
        }

        public string Hash() => Convert.ToHexStringLower(SHA256.HashData(_buffer.AsSpan(0, _at)));

        void Return()
        {
            CryptographicOperations.ZeroMemory(_buffer.AsSpan(0, _at));
            System.Buffers.ArrayPool<byte>.Shared.Return(_buffer);
        }

        public void Dispose()
        {
            Return();
            _buffer = [];
            _at = 0;
        }
    }

    /// <summary>Sets a user's state here (fence, unfence, switch) with an audit entry, after in-flight writes.</summary>
    internal Task SetUserStateAsync(string userId, string state, string actor, string action, string? movedTo = null, CancellationToken ct = default) =>
        SetUsersStateAsync([userId], state, actor, action, movedTo, ct: ct);

    /// <summary>
    /// The same for many users in one transaction (a migration moves users in groups), with the
    /// caller's <paramref name="alongside"/> work (its journal lines) in that transaction too, after
    /// the state change and before its audit entries.
    /// </summary>
    internal async Task SetUsersStateAsync(IReadOnlyList<string> userIds, string state, string actor, string action, string? movedTo = null,
        Func<IStoreTx, Task>? alongside = null, CancellationToken ct = default)
    {
        await Store.WriteAsync(async tx =>
        {
            // The row locks order this after every write of the users that is already in flight.
            await tx.SetUsersStateAsync(userIds, state);
            if (movedTo is not null) await tx.UpsertDirectoryAsync(userIds, movedTo, NowMs);
            // Before the state's own audit entries: what led to the change is read first in the chain.
            if (alongside is not null) await alongside(tx);
            var details = AuditChain.Canonical(movedTo is null ? null : new JsonObject { ["to"] = movedTo });
            foreach (var userId in userIds) await AuditChain.AppendCanonicalAsync(tx, Now, actor, action, userId, details);
            return 0;
        }, ct);
        ForgetAccounts(userIds);
    }

    /// <summary>Points the directory of this region at the users' new home.</summary>
    internal Task PointDirectoryAsync(IReadOnlyList<string> userIds, string region, CancellationToken ct = default) =>
        Store.WriteAsync(async tx =>
        {
            await tx.UpsertDirectoryAsync(userIds, region, NowMs);
            return 0;
        }, ct);

    /// <summary>Leaves nothing of moved users here but the directory pointer: keys destroyed first, then rows.</summary>
    internal async Task PurgeMovedUsersAsync(IReadOnlyList<string> userIds, string movedTo, string actor, CancellationToken ct = default)
    {
        await Store.WriteAsync(async tx =>
        {
            await tx.EraseUsersAsync(userIds);
            await tx.UpsertDirectoryAsync(userIds, movedTo, NowMs);
            var details = AuditChain.Canonical(new JsonObject { ["to"] = movedTo, ["source_keys_destroyed"] = true });
            foreach (var userId in userIds) await AuditChain.AppendCanonicalAsync(tx, Now, actor, "migration.purge", userId, details);
            return 0;
        }, ct);
        foreach (var userId in userIds)
        {
            _keys?.ForgetUser(userId, KeyedServices);
            ForgetAccount(userId);
        }
    }

    /// <summary>Removes a half-copied user after a failed verification (this region was the destination).</summary>
    internal async Task DiscardIncomingUserAsync(string userId, string actor, CancellationToken ct = default)
    {
        await Store.WriteAsync(async tx =>
        {
            if (await tx.GetUserAsync(userId) is { State: UserStates.Incoming }) await tx.EraseUsersAsync([userId]);
            await AuditChain.AppendAsync(tx, Now, actor, "migration.discard", userId);
            return 0;
        }, ct);
        _keys?.ForgetUser(userId, KeyedServices);
        ForgetAccount(userId);
    }

    public Task<string?> DirectoryAsync(string userId, CancellationToken ct = default) => Store.ReadAsync(tx => tx.DirectoryAsync(userId), ct);
}
