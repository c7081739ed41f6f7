using System.Reflection;

namespace Domicile.Server;

/// <summary>
/// The web pages: the privacy dashboard at <c>/</c> and the operator console at <c>/console</c>.
/// Static files embedded in the assembly, served with a strict content security policy; all
/// data comes from the same API the devices use.
/// </summary>
public static class PagesApi
{
    static readonly Dictionary<string, (byte[] Body, string Type)> Files = Load();

    static Dictionary<string, (byte[], string)> Load()
    {
        var asm = Assembly.GetExecutingAssembly();
        var files = new Dictionary<string, (byte[], string)>(StringComparer.Ordinal);
        foreach (var name in asm.GetManifestResourceNames().Where(n => n.StartsWith("Domicile.Server.Pages.", StringComparison.Ordinal)))
        {
            using var s = asm.GetManifestResourceStream(name)!;
            using var ms = new MemoryStream();
            s.CopyTo(ms);
            var file = name["Domicile.Server.Pages.".Length..];
            var type = Path.GetExtension(file) switch
            {
                ".html" => "text/html; charset=utf-8",
                ".css" => "text/css; charset=utf-8",
                ".js" => "text/javascript; charset=utf-8",
                _ => "application/octet-stream",
            };
            files[file] = (ms.ToArray(), type);
        }
        return files;
    }

    public static IEndpointRouteBuilder MapPages(this IEndpointRouteBuilder app)
    {
        app.MapGet("/", (HttpContext c) => Serve(c, "index.html")).ExcludeFromDescription();
        app.MapGet("/console", (HttpContext c) => Serve(c, "console.html")).ExcludeFromDescription();
        app.MapGet("/assets/{file}", (HttpContext c, string file) => Serve(c, file)).ExcludeFromDescription();
        return app;
    }

    static IResult Serve(HttpContext context, string file)
    {
        if (!Files.TryGetValue(file, out var f))
            throw new ProblemException("not_found", "there is no such page");
        var h = context.Response.Headers;
        h.ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
        h.XContentTypeOptions = "nosniff";
        h["Referrer-Policy"] = "no-referrer";
        h.CacheControl = "no-cache";
        return Results.Bytes(f.Body, f.Type);
    }
}
