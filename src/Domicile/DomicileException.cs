namespace Domicile;

/// <summary>
/// A refusal the caller can act on, with a stable <see cref="Code"/> from SPEC 6.2 and a sentence
/// for a person. It never carries user content.
/// </summary>
public class DomicileException(string code, string message) : Exception(message)
{
    public string Code { get; } = code;

    /// <summary>For <c>moved</c>: the region the user now lives in.</summary>
    public string? Region { get; init; }

    public static DomicileException Invalid(string message) => new("invalid_request", message);
    public static DomicileException NotFound(string message) => new("not_found", message);
}
