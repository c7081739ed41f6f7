using System.Text.Json.Nodes;
using Domicile.Audit;

namespace Domicile;

public sealed partial class Region
{
    /// <summary>Writes one audit entry on its own (for actions that change nothing else here).</summary>
    public Task AuditAsync(string actor, string action, string subject, JsonObject? details = null, CancellationToken ct = default) =>
        Store.WriteAsync(tx => AuditChain.AppendAsync(tx, Now, actor, action, subject, details), ct);

    /// <summary>Reads the chain in order, page by page.</summary>
    public async IAsyncEnumerable<Store.AuditRow> ReadAuditAsync([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct = default)
    {
        long after = 0;
        while (true)
        {
            var page = await Store.ReadAsync(tx => tx.ReadAuditAsync(after, 1000), ct);
            foreach (var row in page) yield return row;
            if (page.Count < 1000) yield break;
            after = page[^1].Seq;
        }
    }

    /// <summary>Recomputes the whole chain; with a checkpoint, also checks that it is on the chain.</summary>
    public async Task<AuditVerification> VerifyAuditAsync(string? checkpoint = null, CancellationToken ct = default)
    {
        var verifier = new AuditChain.Verifier(Id, checkpoint);
        await foreach (var row in ReadAuditAsync(ct))
            if (!verifier.Add(row)) break;
        return verifier.Result();
    }

    /// <summary>Writes the chain as JSON Lines (SPEC 6.4).</summary>
    public async Task ExportAuditAsync(TextWriter output, CancellationToken ct = default)
    {
        await foreach (var row in ReadAuditAsync(ct))
        {
            await output.WriteAsync(AuditChain.ExportLine(row));
            await output.WriteAsync('\n');
        }
    }
}
