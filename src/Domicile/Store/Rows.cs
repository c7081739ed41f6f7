namespace Domicile.Store;

// Rows as the stores keep them: everything personal is already ciphertext or a blind index here.

public sealed record KekRow(long Version, byte[] Sealed, long CreatedAt);

public sealed record UserRow(
    string Id, byte[] LoginIndex, byte[] LoginEnc, string PasswordHash, string Country,
    long CreatedAt, long ChangeSeq, string State);

public sealed record DekRow(string UserId, string Service, long KekVersion, byte[] Wrapped, long CreatedAt);

/// <summary>An item or its tombstone. <see cref="Head"/> seals the key, content type and blob reference.</summary>
public sealed record ItemRow(
    string UserId, string Service, string Collection, byte[] KeyIndex, byte[] Head, byte[]? Content,
    string? BlobId, long Size, long Version, bool Deleted, long CreatedAt, long UpdatedAt);

public sealed record ConsentStateRow(string UserId, string Service, long Version, bool Granted, long At);

public sealed record ConsentRow(long Id, string UserId, string Service, long Version, bool Granted, long At, string Source);

public sealed record MessageRow(string Id, string UserId, string Sender, byte[] Body, long SentAt, long ExpiresAt);

public sealed record AuditRow(long Seq, string At, string Actor, string Action, string Subject, string Details, string Prev, string Hash);

public sealed record OperatorRow(string Id, string Name, string Role, byte[] TokenHash, long CreatedAt, bool Revoked);

public sealed record RefreshTokenRow(byte[] TokenHash, string UserId, string Family, long ExpiresAt, bool Used);

/// <summary>Every row of some users that a migration packages, read with one statement per table.</summary>
public sealed record UsersRows(
    IReadOnlyList<UserRow> Users, IReadOnlyList<ConsentRow> Ledger, IReadOnlyList<ConsentStateRow> States,
    IReadOnlyList<DekRow> Keys, IReadOnlyList<MessageRow> Messages, IReadOnlyList<ItemRow> Items);
