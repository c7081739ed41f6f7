using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;

namespace Domicile.Server;

/// <summary>Sign-up and sign-in: <c>POST /v1/accounts</c> and <c>POST /v1/auth/token</c>.</summary>
public static class AccountsApi
{
    public static RouteGroupBuilder MapAccountsApi(this IEndpointRouteBuilder app)
    {
        // Bad or oversized JSON, accounts of a region this server does not serve (moved), sealed region.
        var group = app.MapGroup("/v1").WithTags("Accounts").ProducesProblems(400, 409, 413, 415, 503);
        group.MapPost("/accounts", CreateAccount)
            .Accepts<CreateAccountRequest>("application/json")
            .ProducesProblems(403) // residency_violation
            .WithSummary("Create an account in the home region of the person's country");
        group.MapPost("/auth/token", Token)
            .Accepts<TokenRequest>("application/json")
            .ProducesProblems(401)
            .WithSummary("Sign in with a password, or exchange a refresh token (one use each)");
        return group;
    }

    /// <summary>The home region of a country, which must be served by this process.</summary>
    internal static Region HomeRegion(Deployment deployment, string? country)
    {
        var cc = JsonBody.Required(country, "country", 2).ToUpperInvariant();
        if (cc.Length != 2 || !cc.All(char.IsAsciiLetterUpper))
            throw new ProblemException("invalid_request", "'country' must be an ISO 3166-1 alpha-2 code such as IN");
        var home = deployment.Config.HomeRegion(cc) ?? throw new ProblemException("invalid_request", $"the policy allows no region for {cc}");
        return deployment.Regions.TryGetValue(home, out var region)
            ? region
            : throw new ProblemException("moved", $"accounts of {cc} live in region '{home}', which this server does not serve") { Region = home };
    }

    static async Task<Created<AccountCreated>> CreateAccount(HttpContext context, Deployment deployment)
    {
        var body = await JsonBody.ReadAsync(context, WireJson.Default.CreateAccountRequest);
        var login = JsonBody.Required(body.Login, "login", Region.MaxLoginLength);
        var password = JsonBody.Required(body.Password, "password", Region.MaxPasswordLength);
        var region = HomeRegion(deployment, body.Country);
        var account = await region.CreateAccountAsync(login, password, body.Country!, context.RequestAborted);
        return TypedResults.Created("/v1/me", new AccountCreated(account.UserId, account.Region));
    }

    static async Task<Ok<TokenResponse>> Token(HttpContext context, Deployment deployment)
    {
        var body = await JsonBody.ReadAsync(context, WireJson.Default.TokenRequest);
        IssuedTokens tokens;
        switch (body.GrantType)
        {
            case "password":
                var login = JsonBody.Required(body.Login, "login", Region.MaxLoginLength);
                var password = JsonBody.Required(body.Password, "password", Region.MaxPasswordLength);
                var region = HomeRegion(deployment, body.Country);
                var account = await region.AuthenticateAsync(login, password, context.RequestAborted);
                if (account is null)
                {
                    // A person may live in any region the policy allows for their country, not only the
                    // first; and until a migration moves them, where an older policy put them. Those
                    // regions are only read (the login's blind index is looked up); tokens are then kept
                    // where the person's data already is.
                    var allowed = deployment.Config.AllowedRegions(body.Country!.ToUpperInvariant());
                    var candidates = deployment.Regions.Values.Where(r => r != region && !r.IsSealed)
                        .OrderBy(r => allowed.Contains(r.Id) ? 0 : 1);
                    foreach (var other in candidates)
                        if ((account = await other.AuthenticateAsync(login, password, context.RequestAborted)) is not null) { region = other; break; }
                }
                if (account is null) throw new ProblemException("unauthenticated", "the login or the password is wrong");
                tokens = await region.IssueTokensAsync(account.UserId, ct: context.RequestAborted);
                break;
            case "refresh_token":
                var refresh = JsonBody.Required(body.RefreshToken, "refresh_token", 200);
                var regionId = Region.RegionOfRefreshToken(refresh);
                if (regionId is null || !deployment.Regions.TryGetValue(regionId, out var home))
                    throw new ProblemException("unauthenticated", "the refresh token is not valid (unknown, expired or already used); sign in again");
                tokens = await home.RedeemRefreshTokenAsync(refresh, context.RequestAborted);
                break;
            default:
                throw new ProblemException("invalid_request", "'grant_type' must be \"password\" or \"refresh_token\"");
        }
        return TypedResults.Ok(new TokenResponse(tokens.AccessToken, "Bearer", tokens.ExpiresIn, tokens.RefreshToken, tokens.Region));
    }
}
