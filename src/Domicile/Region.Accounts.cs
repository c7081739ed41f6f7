using System.Text;
using System.Text.Json.Nodes;
using Domicile.Audit;
using Domicile.Keys;
using Domicile.Store;

namespace Domicile;

public sealed record Account(string UserId, string Country, string Region, string State);

/// <summary>A user row's state in one region.</summary>
public static class UserStates
{
    /// <summary>Home here; reads and writes served.</summary>
    public const string Active = "active";
    /// <summary>Being switched to another region: reads served, writes refused for a few seconds.</summary>
    public const string Fenced = "fenced";
    /// <summary>Lives elsewhere now; only a pointer remains until the purge.</summary>
    public const string Moved = "moved";
    /// <summary>A migration is copying the user in; not served here until the switch.</summary>
    public const string Incoming = "incoming";
}

public sealed partial class Region
{
    const string AccountService = "account";

    /// <summary>
    /// The services whose data keys may be cached: the policy's, and the account's own. A key row of
    /// a service since dropped from the policy is opened when read but never cached, so forgetting a
    /// user's keys needs to look up these services only.
    /// </summary>
    HashSet<string> KeyedServices => _keyedServices ??= [.. Policy.Services.Select(s => s.Id).Append(AccountService)];
    HashSet<string>? _keyedServices;
    public const int MaxLoginLength = 256;
    public const int MinPasswordLength = 8;
    public const int MaxPasswordLength = 1024;

    static string NormalizeLogin(string login) => login.Trim().ToLowerInvariant();

    /// <summary>
    /// Creates an account in this region. The login is stored only as a blind index and as
    /// ciphertext under the account's own DEK; the password only as an Argon2id hash.
    /// </summary>
    public async Task<Account> CreateAccountAsync(string login, string password, string country, CancellationToken ct = default)
    {
        var norm = NormalizeLogin(login ?? "");
        if (norm.Length is 0 or > MaxLoginLength)
            throw DomicileException.Invalid($"login must be 1 to {MaxLoginLength} characters");
        if ((password ?? "").Length is < MinPasswordLength or > MaxPasswordLength)
            throw DomicileException.Invalid($"password must be {MinPasswordLength} to {MaxPasswordLength} characters");
        country = (country ?? "").ToUpperInvariant();
        if (country.Length != 2 || !country.All(char.IsAsciiLetterUpper))
            throw DomicileException.Invalid("country must be an ISO 3166-1 alpha-2 code such as IN");
        if (!Policy.AllowedRegions(country).Contains(Id))
            throw new DomicileException("residency_violation", $"users of {country} may not be stored in region '{Id}'");

        var hash = await PasswordHasher.HashAsync(password!);
        return await InsertAccountAsync(norm, hash, country, ct);
    }

    /// <summary>Inserts an account whose password is already hashed (demo seeding, migration).</summary>
    internal async Task<Account> InsertAccountAsync(string normalizedLogin, string passwordHash, string country, CancellationToken ct = default, string? userId = null)
    {
        using var lease = Lease();
        var ring = lease.Keys;
        var index = ring.BlindIndex("login", normalizedLogin);
        var id = userId ?? NewId();
        return await Store.WriteAsync(async tx =>
        {
            if (await tx.FindUserByLoginAsync(index) is not null)
                throw new DomicileException("conflict", "that login is already taken");
            var dek = await CreateDekAsync(ring, tx, id, AccountService);
            var loginEnc = Sealing.Seal(dek, Encoding.UTF8.GetBytes(normalizedLogin), Sealing.Aad("login", Id, id));
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(dek);
            await tx.InsertUserAsync(new UserRow(id, index, loginEnc, passwordHash, country, NowMs, 0, "active"));
            await AuditChain.AppendAsync(tx, Now, id, "account.create", id, new JsonObject { ["jurisdiction"] = country });
            return new Account(id, country, Id, "active");
        }, ct);
    }

    /// <summary>The user id for a login and password, or null. Takes the same time whether or not the login exists.</summary>
    public async Task<Account?> AuthenticateAsync(string login, string password, CancellationToken ct = default)
    {
        UserRow? user;
        using (var lease = Lease())
        {
            var index = lease.Keys.BlindIndex("login", NormalizeLogin(login ?? ""));
            user = await Store.ReadAsync(tx => tx.FindUserByLoginAsync(index), ct);
        }
        if (user is not null && user.State is not (UserStates.Active or UserStates.Fenced)) user = null;
        var ok = await PasswordHasher.VerifyAsync(password ?? "", user?.PasswordHash ?? DummyHash.Value);
        return ok && user is not null ? new Account(user.Id, user.Country, Id, user.State) : null;
    }

    static readonly Lazy<string> DummyHash = new(() => PasswordHasher.HashAsync("not a real password").GetAwaiter().GetResult());

    public async Task<Account?> GetAccountAsync(string userId, CancellationToken ct = default)
    {
        var u = await Store.ReadAsync(tx => tx.GetUserAsync(userId), ct);
        return u is null ? null : new Account(u.Id, u.Country, Id, u.State);
    }

    // Request authentication asks "does this user live here, in what state" on every call. This
    // process changes that state only through the methods below, which forget the entry at once;
    // the short lifetime bounds what another process sharing the store could leave stale.
    readonly System.Collections.Concurrent.ConcurrentDictionary<string, (Account? Account, long Until)> _accounts = new();
    static readonly TimeSpan AccountCacheLifetime = TimeSpan.FromSeconds(2);

    /// <summary><see cref="GetAccountAsync"/> for the request path, cached briefly.</summary>
    public async Task<Account?> GetAccountCachedAsync(string userId, CancellationToken ct = default)
    {
        var now = Environment.TickCount64;
        if (_accounts.TryGetValue(userId, out var hit) && hit.Until > now) return hit.Account;
        // A change that lands while we read must not be overwritten by what we read before it.
        var epoch = Interlocked.Read(ref _accountEpoch);
        var account = await GetAccountAsync(userId, ct);
        if (_accounts.Count > 200_000) _accounts.Clear();
        if (Interlocked.Read(ref _accountEpoch) == epoch)
            _accounts[userId] = (account, now + (long)AccountCacheLifetime.TotalMilliseconds);
        return account;
    }

    long _accountEpoch;

    internal void ForgetAccount(string userId)
    {
        Interlocked.Increment(ref _accountEpoch);
        _accounts.TryRemove(userId, out _);
    }

    internal void ForgetAccounts(IEnumerable<string> userIds)
    {
        foreach (var userId in userIds) ForgetAccount(userId);
    }

    internal void ForgetAllAccounts()
    {
        Interlocked.Increment(ref _accountEpoch);
        _accounts.Clear();
    }

    /// <summary>The user's login, decrypted (for the user's own export only).</summary>
    public async Task<string?> LoginOfAsync(string userId, CancellationToken ct = default)
    {
        using var lease = Lease();
        return await Store.ReadAsync(async tx =>
        {
            var u = await tx.GetUserAsync(userId);
            var dek = u is null ? null : await DekAsync(lease.Keys, tx, userId, AccountService);
            return u is null || dek is null ? null : Encoding.UTF8.GetString(Sealing.Open(dek, u.LoginEnc, Sealing.Aad("login", Id, userId)));
        }, ct);
    }

    public Task<long> CountUsersAsync(CancellationToken ct = default) => Store.ReadAsync(tx => tx.CountUsersAsync(), ct);

    async Task<UserRow> RequireUserAsync(IStoreTx tx, string userId) =>
        await tx.GetUserAsync(userId) ?? throw DomicileException.NotFound("no such user in this region");

    /// <summary>
    /// Every write of a user's data starts here: it takes the user's next change number, which
    /// also locks the user row, so a migration's fence orders strictly before or after it.
    /// A fenced user's writes are refused with a retry hint; a moved user's point to the new region.
    /// </summary>
    async Task<long> BeginUserWriteAsync(IStoreTx tx, string userId, int changes = 1)
    {
        var next = await tx.NextChangeAsync(userId, changes);
        return next is (var seq, UserStates.Active) ? seq : throw await UnwritableAsync(tx, userId, next?.State);
    }

    /// <summary>
    /// Why a user in <paramref name="state"/> (null: no row here) takes no writes here: fenced
    /// for a migration (retry), moved to another region (go there), or not a user of this region.
    /// </summary>
    async Task<DomicileException> UnwritableAsync(IStoreTx tx, string userId, string? state)
    {
        if (state == UserStates.Fenced)
            return new DomicileException("unavailable", "this account's data is moving to another region right now; retry in a second");
        var home = await tx.DirectoryAsync(userId);
        return state == UserStates.Moved || (state is null && home is not null && home != Id)
            ? new DomicileException("moved", "this account now lives in another region") { Region = home }
            : DomicileException.NotFound("no such user in this region");
    }
}
