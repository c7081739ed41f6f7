using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.WebUtilities;

namespace Domicile.Server;

/// <summary>
/// Gives the requests Kestrel refuses before any application code runs (a NUL in the path, a request
/// line or headers over the limits, a malformed request line, an unknown HTTP version, a header
/// timeout) the same problem+json answer as every other refusal, instead of Kestrel's bare status line.
/// </summary>
/// <remarks>
/// Kestrel writes those answers itself, on a connection where the application has no request in
/// flight. A connection middleware wraps the output: while the application serves a request (from
/// the first middleware to the response's OnCompleted) every write passes straight through, without
/// a copy. Only what Kestrel writes between requests is looked at, and only a bodiless HTTP/1.x error
/// answer is replaced; anything else written then (a TLS alert, an HTTP/2 frame) passes unchanged.
/// </remarks>
public static class ProtocolErrors
{
    /// <summary>The connection middleware for <c>ListenOptions.Use</c>.</summary>
    public static ConnectionDelegate Wrap(ConnectionDelegate next, ProtocolLimits limits) => async connection =>
    {
        var state = new ConnectionState();
        var transport = connection.Transport;
        var output = new RewritingWriter(transport.Output, state, limits);
        connection.Features.Set(state);
        connection.Transport = new DuplexPipe(transport.Input, output);
        try { await next(connection); }
        finally { connection.Transport = transport; }
    };

    /// <summary>Marks the application's requests on the connection; must be the first middleware.</summary>
    public static IApplicationBuilder UseProtocolErrors(this IApplicationBuilder app) => app.Use(static (context, next) =>
    {
        if (context.Features.Get<ConnectionState>() is { } state)
        {
            // HTTP/2 and later multiplex requests on one connection and frame their own answers:
            // "between requests" means nothing there, so such a connection is left alone for good.
            if (!HttpProtocol.IsHttp11(context.Request.Protocol) && !HttpProtocol.IsHttp10(context.Request.Protocol)) state.Multiplexed = true;
            Interlocked.Increment(ref state.InFlight);
            context.Response.OnCompleted(static s => { Interlocked.Decrement(ref ((ConnectionState)s).InFlight); return Task.CompletedTask; }, state);
        }
        return next(context);
    });

    /// <summary>The answer that replaces Kestrel's: status, code and a sentence saying what to change.</summary>
    internal static (int Status, string Code, string Detail) Explain(int status, ProtocolLimits limits) => status switch
    {
        400 => (400, "invalid_request", "the request is not well-formed HTTP/1.1: its request line or a header is malformed or holds a character that is not allowed (such as a NUL byte, raw or as %00); nothing was stored"),
        408 => (408, "invalid_request", "the request headers did not arrive in time; send the whole request at once"),
        411 => (411, "invalid_request", "a request with a body must say how long it is (Content-Length or Transfer-Encoding: chunked)"),
        413 => (413, "payload_too_large", "the request body is larger than allowed; nothing was stored"),
        414 => (414, "invalid_request", $"the request line (method, path and query) is longer than {limits.MaxRequestLineBytes / 1024} KiB; use shorter keys or fewer query parameters"),
        431 => (431, "invalid_request", $"the request headers are too large: at most {limits.MaxHeaderBytes / 1024} KiB and {limits.MaxHeaderCount} headers in all"),
        >= 500 => (400, "invalid_request", "the request is not one this server speaks: send HTTP/1.1"),
        _ => (status, "invalid_request", "the request was refused before it reached the API; check its request line and headers"),
    };

    internal sealed class ConnectionState
    {
        public int InFlight;
        public volatile bool Multiplexed;
    }

    sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;
        public PipeWriter Output { get; } = output;
    }

    sealed class RewritingWriter(PipeWriter inner, ConnectionState state, ProtocolLimits limits) : PipeWriter
    {
        // Between requests Kestrel writes only short answers; anything longer is not one of them.
        const int MaxHeld = 1024;
        Memory<byte> _lent;
        byte[]? _held;
        int _heldCount;

        bool Idle => Volatile.Read(ref state.InFlight) == 0 && !state.Multiplexed;

        public override Memory<byte> GetMemory(int sizeHint = 0)
        {
            if (!Idle)
            {
                if (_held is not null) Release(rewrite: false);
                return inner.GetMemory(sizeHint);
            }
            return _lent = inner.GetMemory(sizeHint);
        }

        public override Span<byte> GetSpan(int sizeHint = 0) => GetMemory(sizeHint).Span;

        public override void Advance(int bytes)
        {
            if (!Idle) { inner.Advance(bytes); return; }
            _held ??= ArrayPool<byte>.Shared.Rent(MaxHeld);
            if (_heldCount + bytes > MaxHeld)
            {
                // Not a short answer after all: hand on what was held, then this write, untouched.
                var lent = _lent[..bytes].ToArray();
                Release(rewrite: false);
                inner.Write(lent);
                return;
            }
            _lent.Span[..bytes].CopyTo(_held.AsSpan(_heldCount));
            _heldCount += bytes;
        }

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
        {
            if (_held is not null) Release(rewrite: true);
            return inner.FlushAsync(cancellationToken);
        }

        public override void Complete(Exception? exception = null)
        {
            if (_held is not null) Release(rewrite: true);
            inner.Complete(exception);
        }

        public override async ValueTask CompleteAsync(Exception? exception = null)
        {
            if (_held is not null) { Release(rewrite: true); await inner.FlushAsync(); }
            await inner.CompleteAsync(exception);
        }

        public override void CancelPendingFlush() => inner.CancelPendingFlush();
        public override bool CanGetUnflushedBytes => inner.CanGetUnflushedBytes;
        public override long UnflushedBytes => inner.UnflushedBytes + _heldCount;

        void Release(bool rewrite)
        {
            var held = _held.AsSpan(0, _heldCount);
            if (!(rewrite && TryRewrite(held))) inner.Write(held);
            ArrayPool<byte>.Shared.Return(_held!);
            _held = null;
            _heldCount = 0;
        }

        bool TryRewrite(ReadOnlySpan<byte> held)
        {
            var end = held.IndexOf("\r\n\r\n"u8);
            // A bodiless HTTP/1.x error answer, whole: "HTTP/1.1 431 …\r\n…Content-Length: 0\r\n…\r\n\r\n".
            if (end < 0 || end + 4 != held.Length || held.Length < 13 || !held.StartsWith("HTTP/1."u8) || held[8] != (byte)' '
                || held[9] is < (byte)'4' or > (byte)'5' || !int.TryParse(held.Slice(9, 3), out var status)
                || held.IndexOf("\r\nContent-Length: 0\r\n"u8) < 0)
                return false;

            var (answer, code, detail) = Explain(status, limits);
            var body = Problems.Body(code, detail, answer);
            var head = new StringBuilder()
                .Append("HTTP/1.1 ").Append(answer).Append(' ').Append(ReasonPhrases.GetReasonPhrase(answer)).Append("\r\n")
                .Append("Content-Type: application/problem+json\r\n")
                .Append("Content-Length: ").Append(body.Length).Append("\r\n")
                .Append("Connection: close\r\n");
            var date = held.IndexOf("\r\nDate: "u8);
            if (date >= 0)
            {
                var line = held[(date + 2)..];
                head.Append(Encoding.ASCII.GetString(line[..line.IndexOf("\r\n"u8)])).Append("\r\n");
            }
            head.Append("\r\n");
            inner.Write(Encoding.ASCII.GetBytes(head.ToString()));
            inner.Write(body);
            return true;
        }
    }
}

/// <summary>The request-line and header limits Kestrel enforces, named in the answers that refuse them.</summary>
public sealed record ProtocolLimits(int MaxRequestLineBytes = 8 * 1024, int MaxHeaderBytes = 32 * 1024, int MaxHeaderCount = 64);
