using System.Net.Http.Json;
using Domicile.Tests.Support;
using Microsoft.Playwright;

namespace Domicile.Tests;

/// <summary>The web pages in real headless Chromium (Debian's, never a downloaded one).</summary>
public sealed class BrowserTests : IAsyncLifetime
{
    IPlaywright _playwright = null!;
    IBrowser _browser = null!;

    public async Task InitializeAsync()
    {
        _playwright = await Playwright.CreateAsync();
        _browser = await _playwright.Chromium.LaunchAsync(new()
        {
            ExecutablePath = "/usr/bin/chromium",
            Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage"],
        });
    }

    public async Task DisposeAsync()
    {
        await _browser.DisposeAsync();
        _playwright.Dispose();
    }

    [Fact]
    public async Task A_person_signs_up_turns_consent_on_and_sees_their_data_and_who_touched_it()
    {
        await using var s = await LiveServer.StartAsync(Engines.Sqlite);
        var page = await _browser.NewPageAsync();
        var dialogs = 0;
        page.Dialog += async (_, d) => { dialogs++; await d.DismissAsync(); };
        await page.GotoAsync(s.BaseAddress + "");
        await page.FillAsync("input[name=login]", "browser@example.in");
        await page.FillAsync("input[name=password]", "correct horse battery");
        await page.FillAsync("input[name=country]", "IN");
        await page.ClickAsync("#signup");
        await page.WaitForSelectorAsync("#dashboard:not(.hidden)");
        Assert.Equal("in-mumbai", await page.TextContentAsync("#me-region"));
        Assert.Equal(3, await page.Locator("#consents tr").CountAsync());
        Assert.Equal(0, await page.Locator("#consents .pill.ok").CountAsync());

        await page.ClickAsync("#consents button[data-service=cloud-sync]");
        await page.WaitForSelectorAsync("#consents .pill.ok");
        Assert.Contains("Receipt signed by in-mumbai", await page.TextContentAsync("#receipt"), StringComparison.Ordinal);

        // Data written by the phone shows up; a hostile key is shown as text, never run as markup.
        var tokens = await LiveServer.Json(await s.Http.PostAsJsonAsync("/v1/auth/token", new { grant_type = "password", login = "browser@example.in", password = "correct horse battery", country = "IN" }));
        using var phone = s.Client((string)tokens["access_token"]!);
        const string hostile = "<img src=x onerror=alert(1)>";
        (await phone.PutAsync("/v1/me/data/cloud-sync/notes/" + Uri.EscapeDataString(hostile), new StringContent("x"))).EnsureSuccessStatusCode();
        (await phone.PutAsync("/v1/me/data/cloud-sync/photos/beach.jpg", new ByteArrayContent(new byte[2048]))).EnsureSuccessStatusCode();
        (await phone.PutAsJsonAsync("/v1/me/consents/cloud-messaging", new { granted = true })).EnsureSuccessStatusCode();
        using (var app = s.Client(await s.OperatorAsync("sender")))
            (await app.PostAsJsonAsync("/v1/messages", new { to = (string?)(await LiveServer.Json(await phone.GetAsync("/v1/me")))["user_id"], body = "hello from the app" })).EnsureSuccessStatusCode();
        await page.ReloadAsync();
        await page.WaitForSelectorAsync("#items tr >> text=beach.jpg");
        Assert.Equal(hostile, await page.Locator("#items td", new() { HasTextString = "onerror" }).First.TextContentAsync());
        Assert.Equal(0, dialogs);
        await page.WaitForSelectorAsync("#messages >> text=hello from the app");
        Assert.Contains("message.send", await page.TextContentAsync("#access"), StringComparison.Ordinal);

        await page.ClickAsync("#signout");
        await page.WaitForSelectorAsync("#signin:not(.hidden)");
        await page.FillAsync("input[name=login]", "browser@example.in");
        await page.FillAsync("input[name=password]", "wrong password!");
        await page.ClickAsync("#signin-form button[type=submit]");
        try
        {
            await page.WaitForSelectorAsync("#signin-error:not(:empty)", new() { Timeout = 15000 });
        }
        catch (TimeoutException)
        {
            Assert.Fail("no error shown: " + await page.InnerHTMLAsync("main"));
        }
        Assert.Contains("wrong", await page.TextContentAsync("#signin-error"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_operator_console_unseals_and_shows_residency_migrations_and_audit_without_content()
    {
        await using var s = await LiveServer.StartAsync(Engines.Sqlite);
        await s.UserAsync(login: "console-canary@example.in", consents: "cloud-sync");
        using (var admin = s.Client(s.AdminToken))
            (await admin.PostAsJsonAsync("/v1/sys/seal", new { region = "sg-singapore" })).EnsureSuccessStatusCode();
        var page = await _browser.NewPageAsync();
        await page.GotoAsync(s.BaseAddress + "console");
        await page.WaitForSelectorAsync("#regions >> text=sealed");
        var expected = new[] { "1/3", "2/3", "unsealed" };
        foreach (var (share, i) in s.Deployment.Shares["sg-singapore"].Take(3).Select((x, i) => (x, i)))
        {
            await page.SelectOptionAsync("#unseal-region", "sg-singapore");
            await page.FillAsync("#unseal-form input[name=share]", share);
            await page.ClickAsync("#unseal-form button");
            await page.WaitForSelectorAsync($"#unseal-result:has-text('{expected[i]}')");
        }
        Assert.Contains("unsealed", await page.TextContentAsync("#unseal-result"), StringComparison.Ordinal);
        Assert.False(s.Deployment["sg-singapore"].IsSealed);

        await page.FillAsync("#token-form input[name=token]", s.AdminToken);
        await page.ClickAsync("#token-form button");
        await page.WaitForSelectorAsync("#operator:not(.hidden)");
        await page.WaitForSelectorAsync("#audit .pill.ok");
        Assert.Equal("no violations", await page.TextContentAsync("#violations"));
        Assert.Contains("IN", await page.TextContentAsync("#residency"), StringComparison.Ordinal);
        Assert.Equal(3, await page.Locator("#audit .pill.ok").CountAsync());
        var html = await page.ContentAsync();
        Assert.DoesNotContain("console-canary", html, StringComparison.Ordinal);

        await page.FillAsync("#token-form input[name=token]", "dmo_not-a-token");
        await page.ClickAsync("#token-form button");
        await page.WaitForSelectorAsync("#token-error:not(:empty)");
        Assert.Contains("not valid", await page.TextContentAsync("#token-error"), StringComparison.Ordinal);
    }
}
