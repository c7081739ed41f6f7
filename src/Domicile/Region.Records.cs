using System.Buffers;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Domicile.Crypto;
using Domicile.Keys;
using Domicile.Store;

namespace Domicile;

public sealed record PutResult(bool Created, string ETag, long Size);

public sealed record ItemInfo(string Key, string ETag, long Size, DateTimeOffset UpdatedAt);

public sealed record ItemPage(IReadOnlyList<ItemInfo> Items, string? NextCursor);

public sealed record Change(string Service, string Collection, string Key, string ETag, bool Deleted);

public sealed record ChangePage(IReadOnlyList<Change> Changes, string Cursor);

/// <summary>An item read back: its content streams from the store, decrypted chunk by chunk.</summary>
public sealed record ItemContent(string Key, string ContentType, string ETag, long Size, DateTimeOffset UpdatedAt, Stream Content) : IAsyncDisposable
{
    public ValueTask DisposeAsync() => Content.DisposeAsync();
}

public sealed partial class Region
{
    /// <summary>Blobs are cut into chunks of this size, each sealed with its index.</summary>
    public const int ChunkSize = 64 * 1024;
    public const int MaxKeyBytes = 1024;
    public const int MaxContentTypeLength = 255;
    static readonly UTF8Encoding StrictUtf8 = new(false, true);

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex CollectionPattern();

    static void ValidatePlace(string collection, string key)
    {
        if (!CollectionPattern().IsMatch(collection ?? ""))
            throw DomicileException.Invalid("collection must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit");
        int bytes;
        try
        {
            bytes = StrictUtf8.GetByteCount(key ?? "");
        }
        catch (EncoderFallbackException)
        {
            throw DomicileException.Invalid("key is not valid Unicode text");
        }
        if (bytes is 0 or > MaxKeyBytes)
            throw DomicileException.Invalid($"key must be 1 to {MaxKeyBytes} bytes of UTF-8");
    }

    static string ETagOf(long version) => "\"" + version.ToString(CultureInfo.InvariantCulture) + "\"";

    static bool ETagMatches(string ifMatch, ItemRow? existing)
    {
        if (ifMatch.Trim() == "*") return existing is { Deleted: false };
        if (existing is null or { Deleted: true }) return false;
        var current = ETagOf(existing.Version);
        return ifMatch.Split(',').Select(t => t.Trim()).Any(t => t == current || (t.StartsWith("W/", StringComparison.Ordinal) && t[2..] == current));
    }

    byte[] HeadAad(string user, string service, string collection, byte[] keyIndex, long version) =>
        ItemAad(false, user, service, collection, keyIndex, version).ToArray();

    byte[] ContentAad(string user, string service, string collection, byte[] keyIndex, long version) =>
        ItemAad(true, user, service, collection, keyIndex, version).ToArray();

    /// <summary>
    /// An item head's or content's associated data, byte for byte what <see cref="Sealing.Aad"/> makes of
    /// ("item-head" or "item-content", region, user, service, collection, the key index's hex, the
    /// version's text), written in one pass into a buffer of this thread: every read and write of
    /// every item makes two, and the strings and arrays between were about a tenth of a migration's allocations.
    /// Valid until the next call on this thread.
    /// </summary>
    ReadOnlySpan<byte> ItemAad(bool content, string user, string service, string collection, ReadOnlySpan<byte> keyIndex, long version) =>
        ItemAad(Id, content, user, service, collection, keyIndex, version);

    internal static ReadOnlySpan<byte> ItemAad(string region, bool content, string user, string service, string collection, ReadOnlySpan<byte> keyIndex, long version)
    {
        // At most three bytes of UTF-8 per UTF-16 unit: a bound, not a count, so the strings are walked once.
        var size = 7 * 4 + 12 + 3 * (region.Length + user.Length + service.Length + collection.Length) + keyIndex.Length * 2 + 20;
        var buffer = _itemAad is { } b && b.Length >= size ? b : _itemAad = new byte[Math.Max(size, 512)];
        var writer = new Sealing.AadWriter(buffer);
        writer.Utf8(content ? "item-content"u8 : "item-head"u8);
        writer.Text(region);
        writer.Text(user);
        writer.Text(service);
        writer.Text(collection);
        writer.Hex(keyIndex);
        writer.Number(version);
        return buffer.AsSpan(0, writer.Length);
    }

    [ThreadStatic] static byte[]? _itemAad;

    byte[] ChunkAad(string user, string service, string blobId, int index, bool last) =>
        Sealing.Aad("chunk", Id, user, service, blobId, index.ToString(CultureInfo.InvariantCulture), last ? "last" : "more");

    sealed record Head(string Key, string ContentType, string? BlobId, int Chunks, string Digest);

    /// <summary>
    /// An inline item's head and content (none for a tombstone: null content) sealed at its place.
    /// </summary>
    /// <param name="digest">The content's digest where a sealed head already records it (a copy): the
    /// copy's verification hashes the content it reads back, so a wrong one fails there.</param>
    (byte[] Head, byte[]? Content) SealInline(Sealing.Sealer sealer, HeadEncoder heads, string user, string service, string collection,
        byte[] keyIndex, long version, string key, string contentType, byte[]? content, string? digest = null)
    {
        digest = content is null ? "" : digest ?? Convert.ToHexStringLower(SHA256.HashData(content));
        var head = sealer.Seal(heads.Encode(new Head(key, content is null ? "" : contentType, null, 0, digest)), ItemAad(false, user, service, collection, keyIndex, version));
        return (head, content is null ? null : sealer.Seal(content, ItemAad(true, user, service, collection, keyIndex, version)));
    }

    /// <summary>
    /// An item row's head, and its content when it is inline (null for a tombstone or a blob), opened
    /// at the place the row names.
    /// </summary>
    (Head Head, byte[]? Content) OpenInline(Sealing.Sealer sealer, ItemRow row)
    {
        var head = DecodeHead(sealer.Open(row.Head, ItemAad(false, row.UserId, row.Service, row.Collection, row.KeyIndex, row.Version)));
        var content = row.Deleted || head.BlobId is not null ? null
            : sealer.Open(row.Content ?? throw new TamperedException(), ItemAad(true, row.UserId, row.Service, row.Collection, row.KeyIndex, row.Version));
        return (head, content);
    }

    static byte[] EncodeHead(Head h)
    {
        using var encoder = new HeadEncoder();
        return encoder.Encode(h);
    }

    /// <summary>
    /// Encodes many heads (a batch) with one JSON writer: a writer made per head took half of an
    /// encoding's time. Its buffer (plaintext) is cleared after each head and when it is disposed.
    /// </summary>
    sealed class HeadEncoder : IDisposable
    {
        readonly System.Buffers.ArrayBufferWriter<byte> _buffer = new(256);
        readonly Utf8JsonWriter _writer;

        public HeadEncoder() => _writer = new Utf8JsonWriter(_buffer);

        public byte[] Encode(Head h)
        {
            _writer.Reset(_buffer);
            _writer.WriteStartObject();
            _writer.WriteString("k", h.Key);
            _writer.WriteString("t", h.ContentType);
            if (h.BlobId is null) _writer.WriteNull("b"); else _writer.WriteString("b", h.BlobId);
            _writer.WriteNumber("n", h.Chunks);
            _writer.WriteString("d", h.Digest);
            _writer.WriteEndObject();
            _writer.Flush();
            var encoded = _buffer.WrittenSpan.ToArray();
            _buffer.Clear();
            return encoded;
        }

        public void Dispose()
        {
            _writer.Dispose(); // flushes what a failed encoding left, then that is cleared too
            _buffer.Clear();
        }
    }

    static Head DecodeHead(byte[] json)
    {
        // A reader, not a DOM: this runs on every read of every item.
        string? key = null, type = null, blob = null, digest = null;
        var chunks = 0;
        var r = new Utf8JsonReader(json);
        while (r.Read())
        {
            if (r.TokenType != JsonTokenType.PropertyName) continue;
            var name = r.ValueSpan.Length == 1 ? (char)r.ValueSpan[0] : '?';
            r.Read();
            switch (name)
            {
                case 'k': key = r.GetString(); break;
                case 't': type = r.GetString(); break;
                case 'b': blob = r.TokenType == JsonTokenType.Null ? null : r.GetString(); break;
                case 'n': chunks = r.GetInt32(); break;
                case 'd': digest = r.GetString(); break;
            }
        }
        if (key is null || type is null || digest is null) throw new TamperedException();
        return new Head(key, type, blob, chunks, digest);
    }

    Head OpenHead(byte[] dek, ItemRow row)
    {
        using var sealer = new Sealing.Sealer(dek);
        return OpenHead(sealer, row);
    }

    /// <summary>The same with a key schedule set up once for many rows under one key.</summary>
    Head OpenHead(Sealing.Sealer sealer, ItemRow row) =>
        DecodeHead(sealer.Open(row.Head, ItemAad(false, row.UserId, row.Service, row.Collection, row.KeyIndex, row.Version)));

    /// <summary>
    /// Stores an item. Refused without active consent (checked before the body is read and
    /// again inside the committing transaction). Bodies above one chunk are streamed into
    /// sealed chunks and only linked to the item when the transaction commits; a failed or
    /// refused write leaves nothing behind.
    /// </summary>
    public async Task<PutResult> PutAsync(string userId, string service, string collection, string key, string? contentType,
        Stream body, string? ifMatch = null, CancellationToken ct = default)
    {
        var svc = RequireService(service);
        ValidatePlace(collection, key);
        contentType = string.IsNullOrWhiteSpace(contentType) ? "application/octet-stream" : contentType.Trim();
        if (contentType.Length > MaxContentTypeLength)
            throw DomicileException.Invalid($"Content-Type must be at most {MaxContentTypeLength} characters");
        using var lease = Lease();
        var ring = lease.Keys;
        var keyIndex = ring.BlindIndex("item", userId, service, collection, key);

        var dek = await Store.ReadAsync(async tx =>
        {
            await RequireUserAsync(tx, userId);
            return Active(await tx.GetConsentStateAsync(userId, service), svc) ? await DekAsync(ring, tx, userId, service) : null;
        }, ct) ?? throw await Store.ReadAsync(async tx =>
        {
            // A read's statements may each see the latest commit (PostgreSQL reads take no snapshot):
            // a migration's purge landing between them leaves the user without consent for an
            // instant. A user who is no longer here is told so, not that consent is missing.
            var state = (await tx.GetUserAsync(userId))?.State;
            return state == UserStates.Active ? ConsentRequired(service) : await UnwritableAsync(tx, userId, state);
        }, ct);

        var buffer = ArrayPool<byte>.Shared.Rent(ChunkSize);
        var next = ArrayPool<byte>.Shared.Rent(ChunkSize);
        string? blobId = null;
        byte[]? inline = null;
        var committed = false;
        try
        {
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var n = await FillAsync(body, buffer, ct);
            long size = n;
            var chunks = 0;
            var m = n < ChunkSize ? 0 : await FillAsync(body, next, ct);
            if (m == 0)
            {
                inline = buffer[..n];
                sha.AppendData(inline);
            }
            else
            {
                blobId = NewId();
                var (cur, nxt) = (buffer, next);
                var curLen = n;
                var nxtLen = m;
                while (true)
                {
                    var last = nxtLen == 0;
                    sha.AppendData(cur, 0, curLen);
                    var sealedChunk = Sealing.Seal(dek, cur.AsSpan(0, curLen), ChunkAad(userId, service, blobId, chunks, last));
                    var idx = chunks++;
                    await Store.WriteAsync(async tx => { await tx.InsertChunkAsync(blobId, idx, sealedChunk, NowMs); return 0; }, ct);
                    if (last) break;
                    size += nxtLen;
                    if (size > Policy.Limits.MaxItemBytes) throw TooLarge();
                    (cur, nxt) = (nxt, cur);
                    curLen = nxtLen;
                    nxtLen = await FillAsync(body, nxt, ct);
                }
            }
            if (size > Policy.Limits.MaxItemBytes) throw TooLarge();
            var digest = Convert.ToHexStringLower(sha.GetHashAndReset());

            var result = await Store.WriteAsync(async tx =>
            {
                var version = await BeginUserWriteAsync(tx, userId);
                if (!Active(await tx.GetConsentStateAsync(userId, service), svc)) throw ConsentRequired(service);
                var existing = await tx.GetItemAsync(userId, service, collection, keyIndex);
                if (ifMatch is not null && !ETagMatches(ifMatch, existing))
                    throw new DomicileException("conflict", "the item changed since you read it (If-Match does not match its ETag); read it again and retry");
                var head = Sealing.Seal(dek, EncodeHead(new Head(key, contentType, blobId, chunks, digest)), HeadAad(userId, service, collection, keyIndex, version));
                var content = inline is null ? null : Sealing.Seal(dek, inline, ContentAad(userId, service, collection, keyIndex, version));
                var now = NowMs;
                await tx.UpsertItemAsync(new ItemRow(userId, service, collection, keyIndex, head, content, blobId, size, version, false,
                    existing?.CreatedAt ?? now, now));
                if (existing?.BlobId is { } oldBlob) await tx.DeleteBlobAsync(oldBlob);
                return new PutResult(existing is null or { Deleted: true }, ETagOf(version), size);
            }, ct);
            committed = true;
            return result;
        }
        finally
        {
            if (inline is not null) CryptographicOperations.ZeroMemory(inline);
            CryptographicOperations.ZeroMemory(buffer.AsSpan(0, ChunkSize));
            CryptographicOperations.ZeroMemory(next.AsSpan(0, ChunkSize));
            ArrayPool<byte>.Shared.Return(buffer);
            ArrayPool<byte>.Shared.Return(next);
            if (!committed && blobId is not null)
                await Store.WriteAsync(async tx => { await tx.DeleteBlobAsync(blobId); return 0; }, CancellationToken.None);
        }
    }

    /// <summary>One small item of a batch (contacts, notes): at most one chunk.</summary>
    public sealed record BatchItem(string Collection, string Key, string? ContentType, byte[] Content);

    /// <summary>
    /// Writes many small items of one service in one transaction, as a sync client uploads them:
    /// one consent check, one write lock of the user, one audit entry. All or nothing.
    /// </summary>
    public async Task<IReadOnlyList<PutResult>> PutManyAsync(string userId, string service, IReadOnlyList<BatchItem> items, CancellationToken ct = default)
    {
        var svc = RequireService(service);
        if (items.Count is 0 or > 1000) throw DomicileException.Invalid("a batch holds 1 to 1000 items");
        foreach (var i in items)
        {
            ValidatePlace(i.Collection, i.Key);
            if (i.Content.Length > ChunkSize) throw DomicileException.Invalid($"batched items are at most {ChunkSize} bytes; send larger ones one by one");
        }
        using var lease = Lease();
        var ring = lease.Keys;
        return await Store.WriteAsync(async tx =>
        {
            // One change number per item, reserved at once; the last one is returned.
            var first = await BeginUserWriteAsync(tx, userId, items.Count) - items.Count + 1;
            if (!Active(await tx.GetConsentStateAsync(userId, service), svc)) throw ConsentRequired(service);
            var dek = await DekAsync(ring, tx, userId, service) ?? throw ConsentRequired(service);
            var indexes = items.Select(i => ring.BlindIndex("item", userId, service, i.Collection, i.Key)).ToArray();
            var hexes = Array.ConvertAll(indexes, Convert.ToHexString);
            if (new HashSet<string>(hexes).Count != hexes.Length)
                throw DomicileException.Invalid("a batch names the same item twice");
            var rows = new List<ItemRow>(items.Count);
            var now = NowMs;
            using var sealer = new Sealing.Sealer(dek);
            using var heads = new HeadEncoder();
            for (var n = 0; n < items.Count; n++)
            {
                var i = items[n];
                var version = first + n;
                var contentType = string.IsNullOrWhiteSpace(i.ContentType) ? "application/octet-stream" : i.ContentType;
                var (head, content) = SealInline(sealer, heads, userId, service, i.Collection, indexes[n], version, i.Key, contentType, i.Content);
                rows.Add(new ItemRow(userId, service, i.Collection, indexes[n], head, content, null, i.Content.Length, version, false, now, now));
            }
            var created = await WriteItemRowsAsync(tx, userId, rows);
            var results = items.Select((i, n) => new PutResult(created[n], ETagOf(first + n), i.Content.Length)).ToList();
            await Audit.AuditChain.AppendAsync(tx, Now, userId, "data.write", userId, new JsonObject { ["service"] = service, ["items"] = items.Count });
            return results;
        }, ct);
    }

    /// <summary>
    /// Writes sealed small-item rows of one user. New places (a sync upload's usual case, every place
    /// of a user who just arrived) go in with no read before; only rows already there are read, for
    /// their old blobs, and replaced, keeping their created_at. Returns, per row, whether it made a
    /// new item (nothing was there, or only a deletion).
    /// </summary>
    static async Task<bool[]> WriteItemRowsAsync(IStoreTx tx, string userId, IReadOnlyList<ItemRow> rows)
    {
        var created = new bool[rows.Count];
        Array.Fill(created, true);
        var present = await tx.InsertNewItemsAsync(rows);
        if (present.Count == 0) return created;
        foreach (var byService in present.GroupBy(n => rows[n].Service))
        {
            var existing = (await tx.GetItemsAsync(userId, byService.Key, [.. byService.Select(n => (rows[n].Collection, rows[n].KeyIndex))]))
                .ToDictionary(r => Convert.ToHexString(r.KeyIndex));
            foreach (var n in byService)
            {
                var old = existing.GetValueOrDefault(Convert.ToHexString(rows[n].KeyIndex));
                if (old?.BlobId is { } oldBlob) await tx.DeleteBlobAsync(oldBlob);
                created[n] = old is null or { Deleted: true };
            }
        }
        await tx.UpsertItemsAsync([.. present.Select(n => rows[n])]);
        return created;
    }

    DomicileException TooLarge() =>
        new("payload_too_large", $"the item is larger than the limit of {Policy.Limits.MaxItemBytes} bytes; nothing was stored");

    static async Task<int> FillAsync(Stream s, byte[] buffer, CancellationToken ct)
    {
        var total = 0;
        while (total < ChunkSize)
        {
            var n = await s.ReadAsync(buffer.AsMemory(total, ChunkSize - total), ct);
            if (n == 0) break;
            total += n;
        }
        return total;
    }

    /// <summary>Reads an item; its content is decrypted as it streams. A tampered ciphertext is refused, never returned.</summary>
    public async Task<ItemContent> GetAsync(string userId, string service, string collection, string key, CancellationToken ct = default)
    {
        RequireService(service);
        ValidatePlace(collection, key);
        var lease = Lease();
        try
        {
            var ring = lease.Keys;
            var keyIndex = ring.BlindIndex("item", userId, service, collection, key);
            var (row, dek) = await Store.ReadAsync(async tx =>
            {
                var r = await tx.GetItemAsync(userId, service, collection, keyIndex);
                return (r, r is null or { Deleted: true } ? null : await DekAsync(ring, tx, userId, service));
            }, ct);
            if (row is null or { Deleted: true } || dek is null) throw DomicileException.NotFound("no such item");
            using var sealer = new Sealing.Sealer(dek);
            var (head, plain) = OpenInline(sealer, row);
            if (head.Key != key) throw new TamperedException();
            var updated = DateTimeOffset.FromUnixTimeMilliseconds(row.UpdatedAt);
            if (plain is not null)
            {
                if (Convert.ToHexStringLower(SHA256.HashData(plain)) != head.Digest) throw new TamperedException();
                return new ItemContent(key, head.ContentType, ETagOf(row.Version), row.Size, updated, new MemoryStream(plain, writable: false));
            }
            return new ItemContent(key, head.ContentType, ETagOf(row.Version), row.Size, updated,
                new ChunkStream(this, userId, service, head, (byte[])dek.Clone()));
        }
        finally
        {
            lease.Dispose();
        }
    }

    /// <summary>Lists a collection's live items, ordered by their blind index; the cursor is opaque.</summary>
    public async Task<ItemPage> ListAsync(string userId, string service, string collection, string? cursor, int limit, CancellationToken ct = default)
    {
        RequireService(service);
        ValidatePlace(collection, "x");
        if (limit is < 1 or > 1000) throw DomicileException.Invalid("limit must be between 1 and 1000");
        byte[]? after = null;
        if (!string.IsNullOrEmpty(cursor))
        {
            try
            {
                after = Jws.FromBase64Url(cursor);
            }
            catch (FormatException)
            {
                throw DomicileException.Invalid("cursor is not one this server gave out");
            }
            if (after.Length != 32) throw DomicileException.Invalid("cursor is not one this server gave out");
        }
        using var lease = Lease();
        var ring = lease.Keys;
        var (rows, dek) = await Store.ReadAsync(async tx =>
            (await tx.ListItemsAsync(userId, service, collection, after, limit), await DekAsync(ring, tx, userId, service)), ct);
        if (rows.Count == 0 || dek is null) return new ItemPage([], null);
        var items = rows.Select(r => new ItemInfo(OpenHead(dek, r).Key, ETagOf(r.Version), r.Size, DateTimeOffset.FromUnixTimeMilliseconds(r.UpdatedAt))).ToList();
        return new ItemPage(items, rows.Count == limit ? Jws.Base64Url(rows[^1].KeyIndex) : null);
    }

    /// <summary>Deletes an item, leaving a tombstone for the sync feed.</summary>
    public async Task DeleteAsync(string userId, string service, string collection, string key, string? ifMatch = null, CancellationToken ct = default)
    {
        RequireService(service);
        ValidatePlace(collection, key);
        using var lease = Lease();
        var ring = lease.Keys;
        var keyIndex = ring.BlindIndex("item", userId, service, collection, key);
        await Store.WriteAsync(async tx =>
        {
            var version = await BeginUserWriteAsync(tx, userId);
            var existing = await tx.GetItemAsync(userId, service, collection, keyIndex);
            var dek = await DekAsync(ring, tx, userId, service);
            if (existing is null or { Deleted: true } || dek is null) throw DomicileException.NotFound("no such item");
            if (ifMatch is not null && !ETagMatches(ifMatch, existing))
                throw new DomicileException("conflict", "the item changed since you read it (If-Match does not match its ETag)");
            var head = Sealing.Seal(dek, EncodeHead(new Head(key, "", null, 0, "")), HeadAad(userId, service, collection, keyIndex, version));
            await tx.UpsertItemAsync(existing with { Head = head, Content = null, BlobId = null, Size = 0, Version = version, Deleted = true, UpdatedAt = NowMs });
            if (existing.BlobId is { } blob) await tx.DeleteBlobAsync(blob);
            return 0;
        }, ct);
    }

    /// <summary>The sync feed: every item written or deleted after the cursor, in commit order for the user.</summary>
    public async Task<ChangePage> ChangesAsync(string userId, string? since, int limit = 500, CancellationToken ct = default)
    {
        long after = 0;
        if (!string.IsNullOrEmpty(since) && !long.TryParse(since, NumberStyles.None, CultureInfo.InvariantCulture, out after))
            throw DomicileException.Invalid("since is not a cursor this server gave out");
        if (limit is < 1 or > 1000) throw DomicileException.Invalid("limit must be between 1 and 1000");
        using var lease = Lease();
        var ring = lease.Keys;
        var rows = await Store.ReadAsync(tx => tx.ChangesAsync(userId, after, limit), ct);
        var changes = new List<Change>();
        var deks = new Dictionary<string, byte[]?>();
        foreach (var r in rows)
        {
            if (!deks.TryGetValue(r.Service, out var dek))
                deks[r.Service] = dek = await Store.ReadAsync(tx => DekAsync(ring, tx, userId, r.Service), ct);
            if (dek is null) continue;
            changes.Add(new Change(r.Service, r.Collection, OpenHead(dek, r).Key, ETagOf(r.Version), r.Deleted));
        }
        var cursor = rows.Count > 0 ? rows[^1].Version : after;
        return new ChangePage(changes, cursor.ToString(CultureInfo.InvariantCulture));
    }

    /// <summary>Decrypts a chunked blob as it is read; checks order, count and the whole digest.</summary>
    sealed class ChunkStream(Region region, string user, string service, Head head, byte[] dek) : Stream
    {
        int _next;
        byte[] _current = [];
        int _offset;
        readonly IncrementalHash _sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

        public override async ValueTask<int> ReadAsync(Memory<byte> destination, CancellationToken ct = default)
        {
            if (_offset == _current.Length)
            {
                if (_next == head.Chunks) return 0;
                var idx = _next;
                var sealedChunk = await region.Store.ReadAsync(tx => tx.GetChunkAsync(head.BlobId!, idx), ct) ?? throw new TamperedException();
                CryptographicOperations.ZeroMemory(_current);
                _current = Sealing.Open(dek, sealedChunk, region.ChunkAad(user, service, head.BlobId!, idx, idx == head.Chunks - 1));
                _offset = 0;
                _next++;
                _sha.AppendData(_current);
                if (_next == head.Chunks && Convert.ToHexStringLower(_sha.GetHashAndReset()) != head.Digest) throw new TamperedException();
            }
            var n = Math.Min(destination.Length, _current.Length - _offset);
            _current.AsMemory(_offset, n).CopyTo(destination);
            _offset += n;
            return n;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) => ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                CryptographicOperations.ZeroMemory(_current);
                CryptographicOperations.ZeroMemory(dek);
                _sha.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}
