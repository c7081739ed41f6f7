using System.Collections.Concurrent;
using System.Text;
using System.Text.Json.Nodes;
using Domicile.Audit;
using Domicile.Keys;
using Domicile.Store;

namespace Domicile;

public sealed record Message(string Id, string From, string Body, DateTimeOffset SentAt);

public sealed partial class Region
{
    public const string MessagingService = "cloud-messaging";
    public const int MaxMessageBytes = 4096;
    public static readonly TimeSpan MaxLongPoll = TimeSpan.FromSeconds(60);
    readonly ConcurrentDictionary<string, TaskCompletionSource> _inboxSignals = new();

    byte[] MessageAad(string user, string id) => Sealing.Aad("message", Id, user, id);

    /// <summary>
    /// Queues a message for a user's devices. Refused, with nothing stored, unless the user has
    /// turned cloud messaging on. Lives until acknowledged or min(ttl, the service's message_ttl).
    /// </summary>
    public async Task<string> SendMessageAsync(string sender, string userId, string body, int? ttlSeconds, CancellationToken ct = default)
    {
        var svc = RequireService(MessagingService);
        if (Encoding.UTF8.GetByteCount(body) > MaxMessageBytes)
            throw new DomicileException("payload_too_large", $"a message body may be at most {MaxMessageBytes} bytes");
        if (ttlSeconds is <= 0) throw DomicileException.Invalid("ttl_seconds must be a positive number of seconds");
        var limit = svc.Retention.MessageTtl ?? TimeSpan.FromDays(28);
        var ttl = ttlSeconds is { } t && TimeSpan.FromSeconds(t) < limit ? TimeSpan.FromSeconds(t) : limit;
        using var lease = Lease();
        var ring = lease.Keys;
        var now = Now;
        var id = await Store.WriteAsync(async tx =>
        {
            await RequireUserAsync(tx, userId);
            // The user's change number orders messages sent in the same millisecond.
            var id = $"msg_{await BeginUserWriteAsync(tx, userId):x10}{NewId(6)}";
            if (!Active(await tx.GetConsentStateAsync(userId, MessagingService), svc)) throw ConsentRequired(MessagingService);
            var dek = await DekAsync(ring, tx, userId, MessagingService) ?? throw ConsentRequired(MessagingService);
            await tx.InsertMessageAsync(new MessageRow(id, userId, sender, Sealing.Seal(dek, Encoding.UTF8.GetBytes(body), MessageAad(userId, id)),
                now.ToUnixTimeMilliseconds(), now.Add(ttl).ToUnixTimeMilliseconds()));
            await AuditChain.AppendAsync(tx, now, sender, "message.send", userId, new JsonObject { ["message"] = id, ["ttl_seconds"] = (long)ttl.TotalSeconds });
            return id;
        }, ct);
        if (_inboxSignals.TryRemove(userId, out var signal)) signal.TrySetResult();
        return id;
    }

    /// <summary>The user's waiting messages; with a wait, blocks until one arrives or the wait ends (capped).</summary>
    public async Task<IReadOnlyList<Message>> ReceiveMessagesAsync(string userId, TimeSpan wait, CancellationToken ct = default)
    {
        if (wait > MaxLongPoll) wait = MaxLongPoll;
        var deadline = Time.GetUtcNow() + wait;
        while (true)
        {
            // Register before reading so a message sent in between still wakes us.
            var signal = _inboxSignals.GetOrAdd(userId, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
            var messages = await ReadMessagesAsync(userId, 100, ct);
            var left = deadline - Time.GetUtcNow();
            if (messages.Count > 0 || left <= TimeSpan.Zero) return messages;
            try
            {
                await signal.Task.WaitAsync(left, Time, ct);
            }
            catch (TimeoutException)
            {
                return await ReadMessagesAsync(userId, 100, ct);
            }
        }
    }

    async Task<IReadOnlyList<Message>> ReadMessagesAsync(string userId, int limit, CancellationToken ct)
    {
        using var lease = Lease();
        var ring = lease.Keys;
        return await Store.ReadAsync(async tx =>
        {
            var rows = await tx.ListMessagesAsync(userId, NowMs, limit);
            if (rows.Count == 0) return (IReadOnlyList<Message>)[];
            var dek = await DekAsync(ring, tx, userId, MessagingService);
            if (dek is null) return [];
            return rows.Select(r => new Message(r.Id, r.Sender, Encoding.UTF8.GetString(Sealing.Open(dek, r.Body, MessageAad(userId, r.Id))),
                DateTimeOffset.FromUnixTimeMilliseconds(r.SentAt))).ToList();
        }, ct);
    }

    /// <summary>Acknowledges a message: it is deleted.</summary>
    public async Task AcknowledgeAsync(string userId, string messageId, CancellationToken ct = default)
    {
        var deleted = await Store.WriteAsync(async tx =>
        {
            await BeginUserWriteAsync(tx, userId); // an ack is a write: fenced and moved users are told so
            return await tx.DeleteMessageAsync(userId, messageId);
        }, ct);
        if (!deleted) throw DomicileException.NotFound("no such message (already acknowledged or expired)");
    }
}
