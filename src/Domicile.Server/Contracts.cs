using System.Text.Json.Serialization;

namespace Domicile.Server;

// The wire shapes of SPEC 6.2, snake_case through the source-generated context below.

public sealed record CreateAccountRequest(string? Login, string? Password, string? Country);
public sealed record AccountCreated(string UserId, string Region);
public sealed record TokenRequest(string? GrantType, string? Login, string? Password, string? Country, string? RefreshToken);
public sealed record TokenResponse(string AccessToken, string TokenType, int ExpiresIn, string RefreshToken, string Region);
public sealed record MeResponse(string UserId, string Country, string Region);
public sealed record ConsentEntry(string Service, string Purpose, int Version, bool Granted, DateTimeOffset? At);
public sealed record ConsentRequest(bool? Granted);
public sealed record ConsentResponse(string Service, int Version, bool Granted, DateTimeOffset At, string Receipt);
public sealed record PutResponse(string Etag, long Size);
public sealed record ItemEntry(string Key, string Etag, long Size, DateTimeOffset UpdatedAt);
public sealed record ItemList(IReadOnlyList<ItemEntry> Items, string? NextCursor);
public sealed record ChangeEntry(string Service, string Collection, string Key, string Etag, bool Deleted);
public sealed record ChangeList(IReadOnlyList<ChangeEntry> Changes, string Cursor);
public sealed record RegionHealth(string Id, bool Sealed);
public sealed record HealthResponse(IReadOnlyList<RegionHealth> Regions);
public sealed record UnsealRequest(string? Region, string? Share);
public sealed record UnsealResponse(string Region, bool Sealed, int Progress, int Threshold);
public sealed record SealRequest(string? Region);
public sealed record OperatorRequest(string? Name, string? Role);
public sealed record OperatorCreated(string Id, string Name, string Role, string Token);
public sealed record AuditVerifyResponse(string Region, long Entries, bool Ok, long? FirstBadSeq, string? Problem);
public sealed record RegionStatus(string Id, bool Sealed, long Users);
public sealed record MigrationStatus(string Id, string State, long Done, long Total);
public sealed record StatusResponse(IReadOnlyList<RegionStatus> Regions, IReadOnlyList<MigrationStatus> Migrations);
public sealed record KeyRotationResponse(string Region, long NewVersion, long Rewrapped, IReadOnlyList<long> DestroyedVersions);
public sealed record SendMessageRequest(string? To, string? Body, int? TtlSeconds);
public sealed record MessageSent(string Id);
public sealed record MessageEntry(string Id, string From, string Body, DateTimeOffset SentAt);
public sealed record MessageList(IReadOnlyList<MessageEntry> Messages);
public sealed record AccessLogEntry(DateTimeOffset At, string Actor, string Role, string Action, System.Text.Json.Nodes.JsonNode? Details);
public sealed record AccessLog(IReadOnlyList<AccessLogEntry> Entries);
public sealed record ServiceSweepResult(long Messages, long Items, long WithdrawnUsers);
public sealed record RegionSweepResult(string Id, IReadOnlyDictionary<string, ServiceSweepResult> Services, long OrphanChunks);
public sealed record RetentionRunResponse(IReadOnlyList<RegionSweepResult> Regions);
public sealed record MigrationRequestBody(string? Jurisdiction, string? UserId, string? To, bool? DryRun);
public sealed record PlannedUser(string UserId, string From);
public sealed record MigrationPlanResponse(string To, long Total, IReadOnlyList<PlannedUser> Users);
public sealed record MigrationResponse(string Id, string State, long Done, long Total, long Items, long Bytes, long Failed, long Users, bool Verified, string? Certificate);
public sealed record MigrationListResponse(IReadOnlyList<MigrationResponse> Migrations);
public sealed record Jwks(IReadOnlyList<System.Text.Json.Nodes.JsonObject> Keys);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Skip, NumberHandling = JsonNumberHandling.Strict)]
[JsonSerializable(typeof(CreateAccountRequest))]
[JsonSerializable(typeof(AccountCreated))]
[JsonSerializable(typeof(TokenRequest))]
[JsonSerializable(typeof(TokenResponse))]
[JsonSerializable(typeof(MeResponse))]
[JsonSerializable(typeof(List<ConsentEntry>))]
[JsonSerializable(typeof(ConsentRequest))]
[JsonSerializable(typeof(ConsentResponse))]
[JsonSerializable(typeof(ItemList))]
[JsonSerializable(typeof(PutResponse))]
[JsonSerializable(typeof(ChangeList))]
[JsonSerializable(typeof(HealthResponse))]
[JsonSerializable(typeof(UnsealRequest))]
[JsonSerializable(typeof(UnsealResponse))]
[JsonSerializable(typeof(SealRequest))]
[JsonSerializable(typeof(OperatorRequest))]
[JsonSerializable(typeof(OperatorCreated))]
[JsonSerializable(typeof(AuditVerifyResponse))]
[JsonSerializable(typeof(StatusResponse))]
[JsonSerializable(typeof(KeyRotationResponse))]
[JsonSerializable(typeof(ResidencyReport))]
[JsonSerializable(typeof(Jwks))]
[JsonSerializable(typeof(MigrationRequestBody))]
[JsonSerializable(typeof(MigrationPlanResponse))]
[JsonSerializable(typeof(MigrationResponse))]
[JsonSerializable(typeof(MigrationListResponse))]
[JsonSerializable(typeof(SendMessageRequest))]
[JsonSerializable(typeof(MessageSent))]
[JsonSerializable(typeof(MessageList))]
[JsonSerializable(typeof(AccessLog))]
[JsonSerializable(typeof(RetentionRunResponse))]
public sealed partial class WireJson : JsonSerializerContext;
