namespace Domicile.Store;

/// <summary>
/// One region's persistence. It stores what the engine hands it (ciphertext, blind indexes,
/// hashes) and never sees a key. Two real implementations: SQLite and PostgreSQL.
/// </summary>
public interface IRegionStore : IAsyncDisposable
{
    /// <summary><c>sqlite</c> or <c>postgres</c>.</summary>
    string Engine { get; }

    /// <summary>The applied schema version; 0 for an empty store.</summary>
    Task<int> SchemaVersionAsync(CancellationToken ct = default);

    /// <summary>Creates the store if needed and applies the versioned migrations it lacks.</summary>
    Task UpgradeAsync(CancellationToken ct = default);

    /// <summary>Runs reads; on SQLite inside one snapshot.</summary>
    Task<T> ReadAsync<T>(Func<IStoreTx, Task<T>> work, CancellationToken ct = default);

    /// <summary>Runs <paramref name="work"/> in one transaction: all of it commits or none.</summary>
    Task<T> WriteAsync<T>(Func<IStoreTx, Task<T>> work, CancellationToken ct = default);
}

/// <summary>The statements available inside a read or a write.</summary>
public interface IStoreTx
{
    /// <summary>True inside a write transaction (whose reads may see rows that never commit).</summary>
    bool Writes { get; }

    /// <summary>Zeroes <paramref name="secret"/> when this transaction ends (key material used only inside it).</summary>
    void ZeroOnEnd(byte[] secret);

    Task<byte[]?> GetMetaAsync(string name);
    Task SetMetaAsync(string name, byte[] value);

    Task InsertKekAsync(KekRow row);
    Task<IReadOnlyList<KekRow>> ListKeksAsync();
    Task DeleteKekAsync(long version);
    /// <summary>Locks a KEK row (shared, or exclusive to destroy it); false when it no longer exists.</summary>
    Task<bool> LockKekAsync(long version, bool exclusive);

    Task InsertUserAsync(UserRow row);
    Task<UserRow?> GetUserAsync(string id);
    Task<UserRow?> FindUserByLoginAsync(byte[] loginIndex);
    Task<IReadOnlyList<UserRow>> ListUsersAsync(string? afterId, int limit);
    Task<long> CountUsersAsync();
    /// <summary>Takes the user's next change number; also serialises the user's writes.</summary>
    Task<(long Seq, string State)?> NextChangeAsync(string userId, int count = 1);
    /// <summary>Raises the user's change number to at least <paramref name="seq"/> (imports keep versions).</summary>
    Task RaiseChangeAsync(string userId, long seq);
    Task UpsertDirectoryAsync(IReadOnlyList<string> userIds, string region, long at);
    /// <summary>Sets the users' state, each taking a change number (so a fence orders after writes in flight).</summary>
    Task SetUsersStateAsync(IReadOnlyList<string> userIds, string state);
    /// <summary>The users' states, of those with an account row here.</summary>
    Task<IReadOnlyDictionary<string, string>> UserStatesAsync(IReadOnlyList<string> userIds);
    /// <summary>Those of the users with an account row or a data key here.</summary>
    Task<IReadOnlyList<string>> PresentUsersAsync(IReadOnlyList<string> userIds);
    Task<string?> DirectoryAsync(string userId);
    Task DeleteUserAsync(string id);

    Task<DekRow?> GetDekAsync(string userId, string service);
    Task InsertDekAsync(DekRow row);
    Task UpdateDekAsync(DekRow row);
    Task<IReadOnlyList<DekRow>> ListDeksByKekAsync(long kekVersion, int limit);
    Task<long> CountDeksByKekAsync(long kekVersion);
    Task DeleteDekAsync(string userId, string service);

    /// <summary>Current consent; in a write it also locks the row so a withdrawal orders after it.</summary>
    Task<ConsentStateRow?> GetConsentStateAsync(string userId, string service);
    Task SetConsentStateAsync(ConsentStateRow row);
    Task<long> AppendConsentAsync(ConsentRow row);
    Task<IReadOnlyList<ConsentRow>> ListConsentsAsync(string userId);
    Task DeleteConsentsAsync(string userId);
    Task DeleteConsentsAsync(IReadOnlyList<string> userIds);
    Task<IReadOnlyList<string>> ListDekServicesAsync(string userId);
    Task DeleteMessagesAsync(string userId);
    Task UpdateUserAsync(UserRow row);
    /// <summary>Users of one jurisdiction, in id order after <paramref name="afterId"/>.</summary>
    Task<IReadOnlyList<string>> UserIdsOfCountryAsync(string country, string afterId, int limit);

    Task InsertMigrationAsync(string id, string spec, string state, long at);
    Task SetMigrationStateAsync(string id, string state, long at);
    Task<IReadOnlyList<(string Id, string Spec, string State)>> ListMigrationsAsync();
    Task JournalAsync(string migrationId, string userId, string step, long at, string details);
    Task<IReadOnlyList<(string UserId, string Step, string Details)>> ReadJournalAsync(string migrationId);

    /// <summary>The journal lines of the given steps only, in no particular order (a job's summary needs three of its seven).</summary>
    Task<IReadOnlyList<(string UserId, string Step, string Details)>> ReadJournalStepsAsync(string migrationId, IReadOnlyList<string> steps);

    Task<ItemRow?> GetItemAsync(string userId, string service, string collection, byte[] keyIndex);
    /// <summary>Several items of one user and service by blind index, in one statement.</summary>
    Task<IReadOnlyList<ItemRow>> GetItemsAsync(string userId, string service, IReadOnlyList<(string Collection, byte[] KeyIndex)> places);
    Task UpsertItemAsync(ItemRow row);
    /// <summary>Many upserts in as few statements as the engine allows.</summary>
    Task UpsertItemsAsync(IReadOnlyList<ItemRow> rows);
    /// <summary>
    /// Inserts the rows whose place is free, in as few statements as the engine allows; returns the
    /// positions of those already there, which are left as they are.
    /// </summary>
    Task<IReadOnlyList<int>> InsertNewItemsAsync(IReadOnlyList<ItemRow> rows);
    Task<IReadOnlyList<ItemRow>> ListItemsAsync(string userId, string service, string collection, byte[]? afterKeyIndex, int limit);
    Task<IReadOnlyList<ItemRow>> ChangesAsync(string userId, long sinceVersion, int limit);
    /// <summary>
    /// The accounts, consent ledgers and states, data keys, messages and items (tombstones included)
    /// of many users, each table in one statement; each user's rows in the order the single-user
    /// reads give them (items by version).
    /// </summary>
    Task<UsersRows> ReadUsersAsync(IReadOnlyList<string> userIds);

    /// <summary>Those of the users with at most <paramref name="maxChanges"/> changes (so at most as many items) and no blobs.</summary>
    Task<IReadOnlyList<string>> SmallUsersAsync(IReadOnlyList<string> userIds, long maxChanges);
    /// <summary>Deletes a user's items of one service (or all services when null) and returns their blob ids.</summary>
    Task<IReadOnlyList<string>> DeleteItemsAsync(string userId, string? service);
    /// <summary>Removes an item row just read outright (no tombstone), with its blob.</summary>
    Task DeleteItemRowAsync(ItemRow row);

    Task InsertChunkAsync(string blobId, int index, byte[] data, long createdAt);
    Task<byte[]?> GetChunkAsync(string blobId, int index);
    Task DeleteBlobAsync(string blobId);

    Task InsertRefreshTokenAsync(RefreshTokenRow row);
    Task<RefreshTokenRow?> GetRefreshTokenAsync(byte[] tokenHash);
    /// <summary>Marks an unused token used; false when it was already used (a replay).</summary>
    Task<bool> UseRefreshTokenAsync(byte[] tokenHash);
    Task DeleteRefreshFamilyAsync(string family);
    Task DeleteRefreshTokensOfUserAsync(string userId);

    /// <summary>Per jurisdiction: users, live items and their bytes.</summary>
    Task<IReadOnlyList<(string Country, long Users, long Items, long Bytes)>> ResidencyAsync();
    Task<IReadOnlyList<string>> ListUserIdsByCountryAsync(string country, int limit);

    Task InsertMessageAsync(MessageRow row);
    Task<IReadOnlyList<MessageRow>> ListMessagesAsync(string userId, long now, int limit);
    Task<bool> DeleteMessageAsync(string userId, string id);
    Task<long> DeleteExpiredMessagesAsync(long now);

    /// <summary>Deletes a service's items last written before <paramref name="before"/>; returns how many per user.</summary>
    Task<IReadOnlyList<(string UserId, long Items)>> DeleteItemsOlderThanAsync(string service, long before);
    /// <summary>Users whose consent to a service was withdrawn before <paramref name="before"/> and whose data key still exists.</summary>
    Task<IReadOnlyList<string>> WithdrawnBeforeAsync(string service, long before, int limit);
    /// <summary>Deletes blob chunks older than <paramref name="before"/> that no item points to (interrupted uploads).</summary>
    Task<long> DeleteOrphanChunksAsync(long before);
    /// <summary>Crypto-shreds and deletes everything of these users in this region; returns the rows deleted.</summary>
    Task<long> EraseUsersAsync(IReadOnlyList<string> userIds);
    /// <summary>Entries about a subject after <paramref name="afterSeq"/>, oldest first.</summary>
    Task<IReadOnlyList<AuditRow>> AuditBySubjectAsync(string subject, long afterSeq, int limit);

    /// <summary>Entries about these subjects after (<paramref name="afterSubject"/>, <paramref name="afterSeq"/>), by subject, oldest first.</summary>
    Task<IReadOnlyList<AuditRow>> AuditBySubjectsAsync(IReadOnlyList<string> subjects, string afterSubject, long afterSeq, int limit);

    /// <summary>The newest entry about each of the subjects by that actor and of that action (none for a subject without one).</summary>
    Task<IReadOnlyList<AuditRow>> LastAuditsAsync(IReadOnlyList<string> subjects, string actor, string action);

    Task InsertOperatorAsync(OperatorRow row);
    Task<OperatorRow?> FindOperatorByTokenAsync(byte[] tokenHash);
    Task<IReadOnlyList<OperatorRow>> ListOperatorsAsync();

    /// <summary>The last entry's (seq, hash); in a write it also locks the chain's head.</summary>
    Task<(long Seq, string Hash)?> AuditHeadAsync();
    Task AppendAuditAsync(AuditRow row);
    Task<IReadOnlyList<AuditRow>> ReadAuditAsync(long afterSeq, int limit);
}
