using System.Data.Common;

namespace Domicile.Store;

internal sealed class SqlStoreTx(SqlRegionStore store, DbConnection connection, DbTransaction? transaction, bool write) : IStoreTx, IAsyncDisposable
{
    public bool Writes => write;

    // Compiled statements are reused: kept with the connection where the engine allows it (SQLite),
    // else for the length of the transaction, so a batch compiles each statement once.
    readonly Dictionary<string, DbCommand> _commands = store.CommandCache(connection) ?? new(StringComparer.Ordinal);
    readonly bool _ownsCommands = store.CommandCache(connection) is null;

    DbCommand Command(string sql, params (string Name, object? Value)[] args)
    {
        var positional = store.PositionalParameters;
        if (_commands.TryGetValue(sql, out var cached) && cached.Parameters.Count == args.Length
            && (!positional || SameNames(cached, args)))
        {
            cached.Transaction = transaction;
            for (var i = 0; i < args.Length; i++)
            {
                var p = cached.Parameters[i];
                if (!positional && !NamedAs(p.ParameterName, args[i].Name)) { cached = null; break; }
                p.Value = SqlRegionStore.Normalize(args[i].Value);
            }
            if (cached is not null) return cached;
        }
        var cmd = connection.CreateCommand();
        cmd.Transaction = transaction;
        var names = args.Select(a => a.Name).ToArray();
        cmd.CommandText = positional ? SqlRegionStore.ToPositional(sql, names) : sql;
        foreach (var (name, value) in args) SqlRegionStore.AddParameter(cmd, positional ? "" : store.ParameterPrefix + name, value);
        if (positional) _names[cmd] = names;
        if (_commands.Remove(sql, out var old)) old.Dispose();
        _commands[sql] = cmd;
        return cmd;
    }

    bool NamedAs(string parameterName, string name)
    {
        var prefix = store.ParameterPrefix;
        return parameterName.Length == prefix.Length + name.Length && parameterName.StartsWith(prefix, StringComparison.Ordinal)
            && parameterName.AsSpan(prefix.Length).SequenceEqual(name);
    }

    // With positional parameters the names live here, to check a reused command matches its call.
    readonly Dictionary<DbCommand, string[]> _names = [];

    bool SameNames(DbCommand cmd, (string Name, object? Value)[] args)
    {
        if (!_names.TryGetValue(cmd, out var names) || names.Length != args.Length) return false;
        for (var i = 0; i < names.Length; i++)
            if (names[i] != args[i].Name) return false;
        return true;
    }

    List<byte[]>? _secrets;

    public void ZeroOnEnd(byte[] secret) => (_secrets ??= []).Add(secret);

    public async ValueTask DisposeAsync()
    {
        if (_secrets is not null)
            foreach (var secret in _secrets) System.Security.Cryptography.CryptographicOperations.ZeroMemory(secret);
        _secrets = null;
        if (!_ownsCommands) return;
        foreach (var cmd in _commands.Values) await cmd.DisposeAsync();
        _commands.Clear();
    }

    async Task<int> Exec(string sql, params (string, object?)[] args)
    {
        if (store.ExecuteDirect(connection, sql, args) is { } changed) return (int)changed;
        var cmd = Command(sql, args);
        return await cmd.ExecuteNonQueryAsync();
    }

    async Task<List<T>> Query<T>(string sql, Func<DbDataReader, T> map, params (string, object?)[] args)
    {
        var cmd = Command(sql, args);
        await using var r = await cmd.ExecuteReaderAsync();
        var list = new List<T>();
        try
        {
            while (await r.ReadAsync()) list.Add(map(r));
        }
        catch (InvalidCastException)
        {
            // A column holding the wrong type was written behind the engine's back.
            throw new Keys.TamperedException();
        }
        return list;
    }

    async Task<T?> One<T>(string sql, Func<DbDataReader, T> map, params (string, object?)[] args) where T : class =>
        (await Query(sql, map, args)).FirstOrDefault();

    async Task<long> Scalar(string sql, params (string, object?)[] args)
    {
        if (store.ExecuteDirect(connection, sql, args, scalar: true) is { } value) return value;
        var cmd = Command(sql, args);
        var v = await cmd.ExecuteScalarAsync();
        return v is null or DBNull ? 0 : Convert.ToInt64(v, System.Globalization.CultureInfo.InvariantCulture);
    }

    static byte[] Bytes(DbDataReader r, int i) => (byte[])r.GetValue(i);
    static byte[]? OptBytes(DbDataReader r, int i) => r.IsDBNull(i) ? null : (byte[])r.GetValue(i);
    static string? OptString(DbDataReader r, int i) => r.IsDBNull(i) ? null : r.GetString(i);

    string Share => write ? store.LockShare : "";
    string Update => write ? store.LockUpdate : "";

    public async Task<byte[]?> GetMetaAsync(string name) =>
        (await Query("SELECT value FROM meta WHERE name = @n", r => Bytes(r, 0), ("n", name))).FirstOrDefault();

    public Task SetMetaAsync(string name, byte[] value) =>
        Exec("INSERT INTO meta (name, value) VALUES (@n, @v) ON CONFLICT (name) DO UPDATE SET value = excluded.value", ("n", name), ("v", value));

    public Task InsertKekAsync(KekRow row) =>
        Exec("INSERT INTO keks (version, sealed, created_at) VALUES (@v, @s, @c)", ("v", row.Version), ("s", row.Sealed), ("c", row.CreatedAt));

    public async Task<IReadOnlyList<KekRow>> ListKeksAsync() =>
        await Query("SELECT version, sealed, created_at FROM keks ORDER BY version", r => new KekRow(r.GetInt64(0), Bytes(r, 1), r.GetInt64(2)));

    public Task DeleteKekAsync(long version) => Exec("DELETE FROM keks WHERE version = @v", ("v", version));

    public async Task<bool> LockKekAsync(long version, bool exclusive) =>
        (await Query($"SELECT version FROM keks WHERE version = @v{(exclusive ? Update : Share)}", r => r.GetInt64(0), ("v", version))).Count == 1;

    const string UserColumns = "id, login_index, login_enc, password_hash, country, created_at, change_seq, state";

    static UserRow MapUser(DbDataReader r) =>
        new(r.GetString(0), Bytes(r, 1), Bytes(r, 2), r.GetString(3), r.GetString(4), r.GetInt64(5), r.GetInt64(6), r.GetString(7));

    public Task InsertUserAsync(UserRow u) =>
        Exec($"INSERT INTO users ({UserColumns}) VALUES (@id, @li, @le, @ph, @co, @ca, @cs, @st)",
            ("id", u.Id), ("li", u.LoginIndex), ("le", u.LoginEnc), ("ph", u.PasswordHash), ("co", u.Country),
            ("ca", u.CreatedAt), ("cs", u.ChangeSeq), ("st", u.State));

    public Task<UserRow?> GetUserAsync(string id) => One($"SELECT {UserColumns} FROM users WHERE id = @id", MapUser, ("id", id));

    public Task<UserRow?> FindUserByLoginAsync(byte[] loginIndex) =>
        One($"SELECT {UserColumns} FROM users WHERE login_index = @li", MapUser, ("li", loginIndex));

    public async Task<IReadOnlyList<UserRow>> ListUsersAsync(string? afterId, int limit) =>
        await Query($"SELECT {UserColumns} FROM users WHERE id > @a ORDER BY id LIMIT @l", MapUser, ("a", afterId ?? ""), ("l", limit));

    public Task<long> CountUsersAsync() => Scalar("SELECT COUNT(*) FROM users");

    public async Task<(long Seq, string State)?> NextChangeAsync(string userId, int count = 1)
    {
        var rows = await Query("UPDATE users SET change_seq = change_seq + @n WHERE id = @id RETURNING change_seq, state", r => (r.GetInt64(0), r.GetString(1)), ("id", userId), ("n", count));
        return rows.Count == 0 ? null : rows[0];
    }

    public Task RaiseChangeAsync(string userId, long seq) =>
        Exec("UPDATE users SET change_seq = CASE WHEN change_seq < @s THEN @s ELSE change_seq END WHERE id = @id", ("s", seq), ("id", userId));

    public async Task<string?> DirectoryAsync(string userId) =>
        (await Query("SELECT region FROM directory WHERE user_id = @u", r => r.GetString(0), ("u", userId))).FirstOrDefault();

    public Task DeleteUserAsync(string id) => Exec("DELETE FROM users WHERE id = @id", ("id", id));

    const string DekColumns = "user_id, service, kek_version, wrapped, created_at";

    static DekRow MapDek(DbDataReader r) => new(r.GetString(0), r.GetString(1), r.GetInt64(2), Bytes(r, 3), r.GetInt64(4));

    public Task<DekRow?> GetDekAsync(string userId, string service) =>
        One($"SELECT {DekColumns} FROM data_keys WHERE user_id = @u AND service = @s", MapDek, ("u", userId), ("s", service));

    public Task InsertDekAsync(DekRow d) =>
        Exec($"INSERT INTO data_keys ({DekColumns}) VALUES (@u, @s, @k, @w, @c)",
            ("u", d.UserId), ("s", d.Service), ("k", d.KekVersion), ("w", d.Wrapped), ("c", d.CreatedAt));

    public Task UpdateDekAsync(DekRow d) =>
        Exec("UPDATE data_keys SET kek_version = @k, wrapped = @w WHERE user_id = @u AND service = @s",
            ("u", d.UserId), ("s", d.Service), ("k", d.KekVersion), ("w", d.Wrapped));

    public async Task<IReadOnlyList<DekRow>> ListDeksByKekAsync(long kekVersion, int limit) =>
        await Query($"SELECT {DekColumns} FROM data_keys WHERE kek_version = @k LIMIT @l", MapDek, ("k", kekVersion), ("l", limit));

    public Task<long> CountDeksByKekAsync(long kekVersion) => Scalar("SELECT COUNT(*) FROM data_keys WHERE kek_version = @k", ("k", kekVersion));

    public Task DeleteDekAsync(string userId, string service) =>
        Exec("DELETE FROM data_keys WHERE user_id = @u AND service = @s", ("u", userId), ("s", service));

    const string ConsentStateColumns = "user_id, service, version, granted, at";

    static ConsentStateRow MapConsentState(DbDataReader r) => new(r.GetString(0), r.GetString(1), r.GetInt64(2), r.GetInt64(3) != 0, r.GetInt64(4));

    public async Task DeleteConsentsAsync(string userId)
    {
        await Exec("DELETE FROM consents WHERE user_id = @u", ("u", userId));
        await Exec("DELETE FROM consent_state WHERE user_id = @u", ("u", userId));
    }

    public async Task<IReadOnlyList<string>> ListDekServicesAsync(string userId) =>
        await Query("SELECT service FROM data_keys WHERE user_id = @u ORDER BY service", r => r.GetString(0), ("u", userId));

    const string MessageColumns = "id, user_id, sender, body, sent_at, expires_at";

    static MessageRow MapMessage(DbDataReader r) => new(r.GetString(0), r.GetString(1), r.GetString(2), Bytes(r, 3), r.GetInt64(4), r.GetInt64(5));

    public Task DeleteMessagesAsync(string userId) => Exec("DELETE FROM messages WHERE user_id = @u", ("u", userId));

    public Task UpdateUserAsync(UserRow u) =>
        Exec("UPDATE users SET login_index = @li, login_enc = @le, password_hash = @ph, country = @co, state = @st WHERE id = @id",
            ("id", u.Id), ("li", u.LoginIndex), ("le", u.LoginEnc), ("ph", u.PasswordHash), ("co", u.Country), ("st", u.State));

    public async Task<IReadOnlyList<string>> UserIdsOfCountryAsync(string country, string afterId, int limit) =>
        await Query("SELECT id FROM users WHERE country = @c AND id > @a AND state = 'active' ORDER BY id LIMIT @l",
            r => r.GetString(0), ("c", country), ("a", afterId), ("l", limit));

    public Task InsertMigrationAsync(string id, string spec, string state, long at) =>
        Exec("INSERT INTO migrations (id, spec, state, created_at, updated_at) VALUES (@i, @s, @st, @a, @a) ON CONFLICT (id) DO NOTHING",
            ("i", id), ("s", spec), ("st", state), ("a", at));

    public Task SetMigrationStateAsync(string id, string state, long at) =>
        Exec("UPDATE migrations SET state = @st, updated_at = @a WHERE id = @i", ("i", id), ("st", state), ("a", at));

    public async Task<IReadOnlyList<(string Id, string Spec, string State)>> ListMigrationsAsync() =>
        await Query("SELECT id, spec, state FROM migrations ORDER BY created_at, id", r => (r.GetString(0), r.GetString(1), r.GetString(2)));

    public Task JournalAsync(string migrationId, string userId, string step, long at, string details) =>
        Exec("""
            INSERT INTO migration_journal (migration_id, user_id, step, at, details) VALUES (@m, @u, @s, @a, @d)
            ON CONFLICT (migration_id, user_id, step) DO UPDATE SET at = excluded.at, details = excluded.details
            """, ("m", migrationId), ("u", userId), ("s", step), ("a", at), ("d", details));

    public async Task<IReadOnlyList<(string UserId, string Step, string Details)>> ReadJournalAsync(string migrationId) =>
        await Query("SELECT user_id, step, details FROM migration_journal WHERE migration_id = @m ORDER BY user_id, at",
            r => (r.GetString(0), r.GetString(1), r.GetString(2)), ("m", migrationId));

    public async Task<IReadOnlyList<(string UserId, string Step, string Details)>> ReadJournalStepsAsync(string migrationId, IReadOnlyList<string> steps) =>
        steps.Count == 0 ? [] : await Query($"SELECT user_id, step, details FROM migration_journal WHERE migration_id = @m AND {store.InList("step", "@l")}",
            r => (r.GetString(0), r.GetString(1), r.GetString(2)), ("m", migrationId), ("l", store.ListValue(steps)));

    public Task<ConsentStateRow?> GetConsentStateAsync(string userId, string service) =>
        One($"SELECT {ConsentStateColumns} FROM consent_state WHERE user_id = @u AND service = @s{Share}", MapConsentState, ("u", userId), ("s", service));

    public Task SetConsentStateAsync(ConsentStateRow c) =>
        Exec("""
            INSERT INTO consent_state (user_id, service, version, granted, at) VALUES (@u, @s, @v, @g, @a)
            ON CONFLICT (user_id, service) DO UPDATE SET version = excluded.version, granted = excluded.granted, at = excluded.at
            """, ("u", c.UserId), ("s", c.Service), ("v", c.Version), ("g", c.Granted), ("a", c.At));

    public Task<long> AppendConsentAsync(ConsentRow c) =>
        Scalar("INSERT INTO consents (user_id, service, version, granted, at, source) VALUES (@u, @s, @v, @g, @a, @src) RETURNING id",
            ("u", c.UserId), ("s", c.Service), ("v", c.Version), ("g", c.Granted), ("a", c.At), ("src", c.Source));

    const string ConsentColumns = "id, user_id, service, version, granted, at, source";

    static ConsentRow MapConsent(DbDataReader r) => new(r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetInt64(3), r.GetInt64(4) != 0, r.GetInt64(5), r.GetString(6));

    public async Task<IReadOnlyList<ConsentRow>> ListConsentsAsync(string userId) =>
        await Query($"SELECT {ConsentColumns} FROM consents WHERE user_id = @u ORDER BY id", MapConsent, ("u", userId));

    const string ItemColumns = "user_id, service, collection, key_index, head, content, blob_id, size, version, deleted, created_at, updated_at";

    static ItemRow MapItem(DbDataReader r) =>
        new(r.GetString(0), r.GetString(1), r.GetString(2), Bytes(r, 3), Bytes(r, 4), OptBytes(r, 5), OptString(r, 6),
            r.GetInt64(7), r.GetInt64(8), r.GetInt64(9) != 0, r.GetInt64(10), r.GetInt64(11));

    public Task<ItemRow?> GetItemAsync(string userId, string service, string collection, byte[] keyIndex) =>
        One($"SELECT {ItemColumns} FROM items WHERE user_id = @u AND service = @s AND collection = @c AND key_index = @k{Update}",
            MapItem, ("u", userId), ("s", service), ("c", collection), ("k", keyIndex));

    public async Task<IReadOnlyList<ItemRow>> GetItemsAsync(string userId, string service, IReadOnlyList<(string Collection, byte[] KeyIndex)> places)
    {
        var found = new List<ItemRow>();
        var step = store.RowsPerStatement;
        if (step == 1)
        {
            // SQLite: one statement per collection and up to 100 keys, one index seek per key (the
            // key is the last column of the primary key). Parameters bind by name, a scan of the
            // statement's names each, which stays small at this size.
            foreach (var byCollection in places.GroupBy(p => p.Collection))
                foreach (var chunk in byCollection.Chunk(InListMax))
                {
                    var args = new (string, object?)[chunk.Length + 3];
                    args[0] = ("u", userId);
                    args[1] = ("s", service);
                    args[2] = ("c", byCollection.Key);
                    for (var i = 0; i < chunk.Length; i++) args[i + 3] = (KeyNames[i], chunk[i].KeyIndex);
                    found.AddRange(await Query(InListSql[chunk.Length] ??= $"SELECT {ItemColumns} FROM items WHERE user_id = @u AND service = @s AND collection = @c AND key_index IN ({string.Join(", ", KeyNames.Take(chunk.Length).Select(n => "@" + n))})",
                        MapItem, args));
                }
            return found;
        }
        for (var at = 0; at < places.Count; at += step)
        {
            // One statement per collection, one index seek per key. An IN list would let the planner,
            // without statistics yet on a young table, seek the user's collection and filter every
            // row of it against the list; the lateral subquery leaves it nothing but the full key.
            foreach (var byCollection in places.Skip(at).Take(step).GroupBy(p => p.Collection))
            {
                var keys = byCollection.Select(p => p.KeyIndex).ToArray();
                found.AddRange(await Query($"""
                    SELECT {ItemColumns} FROM unnest(@k::bytea[]) AS wanted(k),
                      LATERAL (SELECT {ItemColumns} FROM items WHERE user_id = @u AND service = @s AND collection = @c AND key_index = wanted.k OFFSET 0{Update}) i
                    """, MapItem, ("u", userId), ("s", service), ("c", byCollection.Key), ("k", keys)));
            }
        }
        return found;
    }

    const int InListMax = 100;
    static readonly string[] KeyNames = [.. Enumerable.Range(0, InListMax).Select(i => "k" + i)];
    static readonly string?[] InListSql = new string?[InListMax + 1];

    const string ItemUpdate = """
        DO UPDATE SET
          head = excluded.head, content = excluded.content, blob_id = excluded.blob_id, size = excluded.size,
          version = excluded.version, deleted = excluded.deleted, updated_at = excluded.updated_at
        """;

    static string ItemRowSql(string onConflict) => $"""
        INSERT INTO items ({ItemColumns}) VALUES (@u, @s, @c, @k, @h, @ct, @b, @sz, @v, @d, @ca, @ua)
        ON CONFLICT (user_id, service, collection, key_index) {onConflict}
        """;

    // A server engine takes a whole batch as one array per column: one statement text for every
    // batch size, twelve parameters however many rows.
    static string ItemArraySql(string onConflict) => $"""
        INSERT INTO items ({ItemColumns})
        SELECT * FROM unnest(@u::text[], @s::text[], @c::text[], @k::bytea[], @h::bytea[], @ct::bytea[], @b::text[],
                             @sz::bigint[], @v::bigint[], @d::bigint[], @ca::bigint[], @ua::bigint[])
        ON CONFLICT (user_id, service, collection, key_index) {onConflict}
        """;

    static readonly string UpsertRowSql = ItemRowSql(ItemUpdate), InsertRowSql = ItemRowSql("DO NOTHING");
    static readonly string UpsertArraySql = ItemArraySql(ItemUpdate), InsertArraySql = ItemArraySql("DO NOTHING RETURNING collection, key_index");

    static (string, object?)[] ItemArgs(ItemRow i) =>
    [
        ("u", i.UserId), ("s", i.Service), ("c", i.Collection), ("k", i.KeyIndex), ("h", i.Head), ("ct", i.Content),
        ("b", i.BlobId), ("sz", i.Size), ("v", i.Version), ("d", i.Deleted), ("ca", i.CreatedAt), ("ua", i.UpdatedAt),
    ];

    // A sync upload's usual row (live, content inline, created as it is updated) binds nine values,
    // not twelve: each bound parameter is found by name and converted on every execution.
    const string InsertFreshRowSql = $"""
        INSERT INTO items ({ItemColumns}) VALUES (@u, @s, @c, @k, @h, @ct, NULL, @sz, @v, 0, @ca, @ca)
        ON CONFLICT (user_id, service, collection, key_index) DO NOTHING
        """;

    static bool Fresh(ItemRow i) => !i.Deleted && i.BlobId is null && i.CreatedAt == i.UpdatedAt;

    static (string, object?)[] FreshItemArgs(ItemRow i) =>
        [("u", i.UserId), ("s", i.Service), ("c", i.Collection), ("k", i.KeyIndex), ("h", i.Head), ("ct", i.Content), ("sz", i.Size), ("v", i.Version), ("ca", i.CreatedAt)];

    static (string, object?)[] ItemArrayArgs(List<ItemRow> chunk) =>
    [
        ("u", chunk.Select(i => i.UserId).ToArray()), ("s", chunk.Select(i => i.Service).ToArray()),
        ("c", chunk.Select(i => i.Collection).ToArray()), ("k", chunk.Select(i => i.KeyIndex).ToArray()),
        ("h", chunk.Select(i => i.Head).ToArray()), ("ct", chunk.Select(i => i.Content).ToArray()),
        ("b", chunk.Select(i => i.BlobId).ToArray()), ("sz", chunk.Select(i => i.Size).ToArray()),
        ("v", chunk.Select(i => i.Version).ToArray()), ("d", chunk.Select(i => i.Deleted ? 1L : 0L).ToArray()),
        ("ca", chunk.Select(i => i.CreatedAt).ToArray()), ("ua", chunk.Select(i => i.UpdatedAt).ToArray()),
    ];

    public Task UpsertItemAsync(ItemRow i) => Exec(UpsertRowSql, ItemArgs(i));

    public async Task UpsertItemsAsync(IReadOnlyList<ItemRow> rows)
    {
        var perStatement = store.RowsPerStatement;
        if (perStatement == 1)
        {
            foreach (var row in rows) await UpsertItemAsync(row);
            return;
        }
        for (var at = 0; at < rows.Count; at += perStatement)
            await Exec(UpsertArraySql, ItemArrayArgs([.. rows.Skip(at).Take(perStatement)]));
    }

    public async Task<IReadOnlyList<int>> InsertNewItemsAsync(IReadOnlyList<ItemRow> rows)
    {
        var present = new List<int>();
        var perStatement = store.RowsPerStatement;
        if (perStatement == 1)
        {
            for (var n = 0; n < rows.Count; n++)
                if (await (Fresh(rows[n]) ? Exec(InsertFreshRowSql, FreshItemArgs(rows[n])) : Exec(InsertRowSql, ItemArgs(rows[n]))) == 0) present.Add(n);
            return present;
        }
        for (var at = 0; at < rows.Count; at += perStatement)
        {
            var chunk = rows.Skip(at).Take(perStatement).ToList();
            var inserted = (await Query(InsertArraySql, r => (r.GetString(0), Convert.ToHexString(Bytes(r, 1))), ItemArrayArgs(chunk))).ToHashSet();
            for (var n = 0; n < chunk.Count; n++)
                if (!inserted.Contains((chunk[n].Collection, Convert.ToHexString(chunk[n].KeyIndex)))) present.Add(at + n);
        }
        return present;
    }

    public async Task<IReadOnlyList<ItemRow>> ListItemsAsync(string userId, string service, string collection, byte[]? afterKeyIndex, int limit) =>
        await Query($"""
            SELECT {ItemColumns} FROM items
            WHERE user_id = @u AND service = @s AND collection = @c AND deleted = 0 AND key_index > @a
            ORDER BY key_index LIMIT @l
            """, MapItem, ("u", userId), ("s", service), ("c", collection), ("a", afterKeyIndex ?? []), ("l", limit));

    public async Task<IReadOnlyList<ItemRow>> ChangesAsync(string userId, long sinceVersion, int limit) =>
        await Query($"SELECT {ItemColumns} FROM items WHERE user_id = @u AND version > @v ORDER BY version LIMIT @l",
            MapItem, ("u", userId), ("v", sinceVersion), ("l", limit));

    // The set-based calls below name their users as one list parameter, @u.
    (string, object?) UserList(IReadOnlyList<string> userIds) => ("u", store.ListValue(userIds));

    string InUsers(string column) => store.InList(column, "@u");

    public Task UpsertDirectoryAsync(IReadOnlyList<string> userIds, string region, long at) =>
        userIds.Count == 0 ? Task.CompletedTask : Exec($"""
            INSERT INTO directory (user_id, region, updated_at) SELECT DISTINCT value, @r, @a FROM {store.ListTable("@u")} WHERE true
            ON CONFLICT (user_id) DO UPDATE SET region = excluded.region, updated_at = excluded.updated_at
            """, UserList(userIds), ("r", region), ("a", at));

    public Task SetUsersStateAsync(IReadOnlyList<string> userIds, string state) =>
        userIds.Count == 0 ? Task.CompletedTask
            : Exec($"UPDATE users SET state = @s, change_seq = change_seq + 1 WHERE {InUsers("id")}", UserList(userIds), ("s", state));

    public async Task<IReadOnlyDictionary<string, string>> UserStatesAsync(IReadOnlyList<string> userIds) =>
        userIds.Count == 0 ? new Dictionary<string, string>()
            : (await Query($"SELECT id, state FROM users WHERE {InUsers("id")}", r => (r.GetString(0), r.GetString(1)), UserList(userIds))).ToDictionary(x => x.Item1, x => x.Item2);

    public async Task<IReadOnlyList<string>> PresentUsersAsync(IReadOnlyList<string> userIds) =>
        userIds.Count == 0 ? [] : await Query($"""
            SELECT id FROM users WHERE {InUsers("id")} UNION SELECT user_id FROM data_keys WHERE {InUsers("user_id")}
            """, r => r.GetString(0), UserList(userIds));

    public async Task DeleteConsentsAsync(IReadOnlyList<string> userIds)
    {
        if (userIds.Count == 0) return;
        await Exec($"DELETE FROM consents WHERE {InUsers("user_id")}", UserList(userIds));
        await Exec($"DELETE FROM consent_state WHERE {InUsers("user_id")}", UserList(userIds));
    }

    public async Task<UsersRows> ReadUsersAsync(IReadOnlyList<string> userIds)
    {
        if (userIds.Count == 0) return new([], [], [], [], [], []);
        var u = UserList(userIds);
        return new(
            await Query($"SELECT {UserColumns} FROM users WHERE {InUsers("id")}", MapUser, u),
            await Query($"SELECT {ConsentColumns} FROM consents WHERE {InUsers("user_id")} ORDER BY user_id, id", MapConsent, u),
            await Query($"SELECT {ConsentStateColumns} FROM consent_state WHERE {InUsers("user_id")} ORDER BY user_id, service", MapConsentState, u),
            await Query($"SELECT {DekColumns} FROM data_keys WHERE {InUsers("user_id")} ORDER BY user_id, service", MapDek, u),
            await Query($"SELECT {MessageColumns} FROM messages WHERE {InUsers("user_id")} ORDER BY user_id, id", MapMessage, u),
            await Query($"SELECT {ItemColumns} FROM items WHERE {InUsers("user_id")} ORDER BY user_id, version", MapItem, u));
    }

    public async Task<IReadOnlyList<string>> SmallUsersAsync(IReadOnlyList<string> userIds, long maxChanges) =>
        userIds.Count == 0 ? [] : await Query($"""
            SELECT id FROM users u WHERE {InUsers("id")} AND change_seq <= @m
              AND NOT EXISTS (SELECT 1 FROM items i WHERE i.user_id = u.id AND i.blob_id IS NOT NULL)
            """, r => r.GetString(0), UserList(userIds), ("m", maxChanges));

    public async Task<IReadOnlyList<string>> DeleteItemsAsync(string userId, string? service)
    {
        var filter = service is null ? "user_id = @u" : "user_id = @u AND service = @s";
        (string, object?)[] args = service is null ? [("u", userId)] : [("u", userId), ("s", service)];
        return (await DeleteItemsWhereAsync(filter, args)).Blobs;
    }

    /// <summary>Deletes the items matching <paramref name="filter"/> and their blobs; returns the blob ids and the rows deleted.</summary>
    async Task<(IReadOnlyList<string> Blobs, int Rows)> DeleteItemsWhereAsync(string filter, params (string, object?)[] args)
    {
        var blobs = await Query($"SELECT blob_id FROM items WHERE {filter} AND blob_id IS NOT NULL", r => r.GetString(0), args);
        var rows = await Exec($"DELETE FROM items WHERE {filter}", args);
        foreach (var b in blobs) await DeleteBlobAsync(b);
        return (blobs, rows);
    }

    public async Task DeleteItemRowAsync(ItemRow row)
    {
        if (row.BlobId is { } blob) await DeleteBlobAsync(blob);
        var (userId, service, collection, keyIndex) = (row.UserId, row.Service, row.Collection, row.KeyIndex);
        await Exec("DELETE FROM items WHERE user_id = @u AND service = @s AND collection = @c AND key_index = @k",
            ("u", userId), ("s", service), ("c", collection), ("k", keyIndex));
    }

    public Task InsertChunkAsync(string blobId, int index, byte[] data, long createdAt) =>
        Exec("INSERT INTO blob_chunks (blob_id, idx, data, created_at) VALUES (@b, @i, @d, @c)", ("b", blobId), ("i", index), ("d", data), ("c", createdAt));

    public async Task<byte[]?> GetChunkAsync(string blobId, int index) =>
        (await Query("SELECT data FROM blob_chunks WHERE blob_id = @b AND idx = @i", r => Bytes(r, 0), ("b", blobId), ("i", index))).FirstOrDefault();

    public Task DeleteBlobAsync(string blobId) => Exec("DELETE FROM blob_chunks WHERE blob_id = @b", ("b", blobId));

    public Task InsertRefreshTokenAsync(RefreshTokenRow t) =>
        Exec("INSERT INTO refresh_tokens (token_hash, user_id, family, expires_at, used) VALUES (@h, @u, @f, @e, @x)",
            ("h", t.TokenHash), ("u", t.UserId), ("f", t.Family), ("e", t.ExpiresAt), ("x", t.Used));

    public Task<RefreshTokenRow?> GetRefreshTokenAsync(byte[] tokenHash) =>
        One("SELECT token_hash, user_id, family, expires_at, used FROM refresh_tokens WHERE token_hash = @h",
            r => new RefreshTokenRow(Bytes(r, 0), r.GetString(1), r.GetString(2), r.GetInt64(3), r.GetInt64(4) != 0), ("h", tokenHash));

    public async Task<bool> UseRefreshTokenAsync(byte[] tokenHash) =>
        await Exec("UPDATE refresh_tokens SET used = 1 WHERE token_hash = @h AND used = 0", ("h", tokenHash)) == 1;

    public Task DeleteRefreshFamilyAsync(string family) => Exec("DELETE FROM refresh_tokens WHERE family = @f", ("f", family));

    public Task DeleteRefreshTokensOfUserAsync(string userId) => Exec("DELETE FROM refresh_tokens WHERE user_id = @u", ("u", userId));

    public async Task<IReadOnlyList<(string Country, long Users, long Items, long Bytes)>> ResidencyAsync() =>
        await Query("""
            SELECT u.country, COUNT(*), COALESCE(SUM(s.items), 0), COALESCE(SUM(s.bytes), 0)
            FROM users u LEFT JOIN (
              SELECT user_id, COUNT(*) AS items, SUM(size) AS bytes FROM items WHERE deleted = 0 GROUP BY user_id
            ) s ON s.user_id = u.id
            GROUP BY u.country ORDER BY u.country
            """, r => (r.GetString(0), r.GetInt64(1), r.GetInt64(2), r.GetInt64(3)));

    public async Task<IReadOnlyList<string>> ListUserIdsByCountryAsync(string country, int limit) =>
        await Query("SELECT id FROM users WHERE country = @c ORDER BY id LIMIT @l", r => r.GetString(0), ("c", country), ("l", limit));

    public Task InsertMessageAsync(MessageRow m) =>
        Exec("INSERT INTO messages (id, user_id, sender, body, sent_at, expires_at) VALUES (@i, @u, @s, @b, @t, @e)",
            ("i", m.Id), ("u", m.UserId), ("s", m.Sender), ("b", m.Body), ("t", m.SentAt), ("e", m.ExpiresAt));

    public async Task<IReadOnlyList<MessageRow>> ListMessagesAsync(string userId, long now, int limit) =>
        await Query($"SELECT {MessageColumns} FROM messages WHERE user_id = @u AND expires_at > @n ORDER BY sent_at, id LIMIT @l", MapMessage,
            ("u", userId), ("n", now), ("l", limit));

    public async Task<bool> DeleteMessageAsync(string userId, string id) =>
        await Exec("DELETE FROM messages WHERE user_id = @u AND id = @i", ("u", userId), ("i", id)) == 1;

    public async Task<long> DeleteExpiredMessagesAsync(long now) => await Exec("DELETE FROM messages WHERE expires_at <= @n", ("n", now));

    public async Task<IReadOnlyList<(string UserId, long Items)>> DeleteItemsOlderThanAsync(string service, long before)
    {
        var perUser = await Query("SELECT user_id, COUNT(*) FROM items WHERE service = @s AND updated_at < @b GROUP BY user_id ORDER BY user_id",
            r => (r.GetString(0), r.GetInt64(1)), ("s", service), ("b", before));
        if (perUser.Count == 0) return perUser;
        var blobs = await Query("SELECT blob_id FROM items WHERE service = @s AND updated_at < @b AND blob_id IS NOT NULL", r => r.GetString(0), ("s", service), ("b", before));
        foreach (var b in blobs) await DeleteBlobAsync(b);
        await Exec("DELETE FROM items WHERE service = @s AND updated_at < @b", ("s", service), ("b", before));
        return perUser;
    }

    public async Task<IReadOnlyList<string>> WithdrawnBeforeAsync(string service, long before, int limit) =>
        await Query("""
            SELECT c.user_id FROM consent_state c JOIN data_keys k ON k.user_id = c.user_id AND k.service = c.service
            WHERE c.service = @s AND c.granted = 0 AND c.at < @b ORDER BY c.user_id LIMIT @l
            """, r => r.GetString(0), ("s", service), ("b", before), ("l", limit));

    public async Task<long> DeleteOrphanChunksAsync(long before) =>
        await Exec("DELETE FROM blob_chunks WHERE created_at < @b AND blob_id NOT IN (SELECT blob_id FROM items WHERE blob_id IS NOT NULL)", ("b", before));

    public async Task<long> EraseUsersAsync(IReadOnlyList<string> userIds)
    {
        if (userIds.Count == 0) return 0;
        var u = UserList(userIds);
        // Keys first: once they are gone, any copy of the rows (a backup, a stale replica) is noise.
        long n = await Exec($"DELETE FROM data_keys WHERE {InUsers("user_id")}", u);
        n += (await DeleteItemsWhereAsync(InUsers("user_id"), u)).Rows;
        foreach (var table in new[] { "messages", "consent_state", "consents", "refresh_tokens" })
            n += await Exec($"DELETE FROM {table} WHERE {InUsers("user_id")}", u);
        n += await Exec($"DELETE FROM users WHERE {InUsers("id")}", u);
        return n;
    }

    const string AuditColumns = "seq, at, actor, action, subject, details, prev, hash";

    static AuditRow MapAudit(DbDataReader r) =>
        new(r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetString(4), r.GetString(5), r.GetString(6), r.GetString(7));

    public async Task<IReadOnlyList<AuditRow>> AuditBySubjectAsync(string subject, long afterSeq, int limit) =>
        await Query($"SELECT {AuditColumns} FROM audit WHERE subject = @s AND seq > @a ORDER BY seq LIMIT @l",
            MapAudit,
            ("s", subject), ("a", afterSeq), ("l", limit));

    public async Task<IReadOnlyList<AuditRow>> AuditBySubjectsAsync(IReadOnlyList<string> subjects, string afterSubject, long afterSeq, int limit) =>
        subjects.Count == 0 ? [] : await Query($"""
            SELECT {AuditColumns} FROM audit WHERE {InUsers("subject")} AND (subject > @s OR (subject = @s AND seq > @q))
            ORDER BY subject, seq LIMIT @l
            """, MapAudit, UserList(subjects), ("s", afterSubject), ("q", afterSeq), ("l", limit));

    public async Task<IReadOnlyList<AuditRow>> LastAuditsAsync(IReadOnlyList<string> subjects, string actor, string action) =>
        subjects.Count == 0 ? [] : await Query($"""
            SELECT {AuditColumns} FROM audit WHERE seq IN (
              SELECT MAX(seq) FROM audit WHERE {InUsers("subject")} AND actor = @ac AND action = @an GROUP BY subject)
            """, MapAudit, UserList(subjects), ("ac", actor), ("an", action));

    const string OperatorColumns = "id, name, role, token_hash, created_at, revoked";

    static OperatorRow MapOperator(DbDataReader r) => new(r.GetString(0), r.GetString(1), r.GetString(2), Bytes(r, 3), r.GetInt64(4), r.GetInt64(5) != 0);

    public Task InsertOperatorAsync(OperatorRow o) =>
        Exec($"INSERT INTO operators ({OperatorColumns}) VALUES (@i, @n, @r, @t, @c, @x)",
            ("i", o.Id), ("n", o.Name), ("r", o.Role), ("t", o.TokenHash), ("c", o.CreatedAt), ("x", o.Revoked));

    public Task<OperatorRow?> FindOperatorByTokenAsync(byte[] tokenHash) =>
        One($"SELECT {OperatorColumns} FROM operators WHERE token_hash = @t", MapOperator, ("t", tokenHash));

    public async Task<IReadOnlyList<OperatorRow>> ListOperatorsAsync() =>
        await Query($"SELECT {OperatorColumns} FROM operators ORDER BY created_at, id", MapOperator);

    // A write transaction holds the audit lock (or the only writer slot) from its first look at the
    // head to its commit, so the head it appended last is the head: a migration step appends dozens.
    (long Seq, string Hash)? _auditHead;
    bool _auditHeadKnown;

    public async Task<(long Seq, string Hash)?> AuditHeadAsync()
    {
        if (_auditHeadKnown) return _auditHead;
        if (write && store.AuditLockSql is { } lockSql) await Exec(lockSql);
        var rows = await Query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", r => (r.GetInt64(0), r.GetString(1)));
        _auditHead = rows.Count == 0 ? null : rows[0];
        _auditHeadKnown = write;
        return _auditHead;
    }

    public async Task AppendAuditAsync(AuditRow a)
    {
        await Exec($"INSERT INTO audit ({AuditColumns}) VALUES (@q, @at, @ac, @an, @s, @d, @p, @h)",
            ("q", a.Seq), ("at", a.At), ("ac", a.Actor), ("an", a.Action), ("s", a.Subject), ("d", a.Details), ("p", a.Prev), ("h", a.Hash));
        if (write) (_auditHead, _auditHeadKnown) = ((a.Seq, a.Hash), true);
    }

    public async Task<IReadOnlyList<AuditRow>> ReadAuditAsync(long afterSeq, int limit) =>
        await Query($"SELECT {AuditColumns} FROM audit WHERE seq > @a ORDER BY seq LIMIT @l",
            MapAudit,
            ("a", afterSeq), ("l", limit));
}

