using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;

namespace Domicile.Server;

/// <summary>What <c>/openapi/v1.json</c> says beyond what the handlers' signatures show.</summary>
internal static class OpenApiDocs
{
    /// <summary>Declares the RFC 9457 problem+json answers an endpoint (or a whole group) can give.</summary>
    public static TBuilder ProducesProblems<TBuilder>(this TBuilder builder, params int[] statuses) where TBuilder : IEndpointConventionBuilder
    {
        foreach (var status in statuses) builder.ProducesProblem(status);
        return builder;
    }

    /// <summary>Our problems carry a stable <c>code</c> (SPEC 6.2) and, for <c>moved</c>, the region.</summary>
    public static void AddDomicileTransformers(this OpenApiOptions options) =>
        options.AddSchemaTransformer((schema, context, _) =>
        {
            if (context.JsonTypeInfo.Type != typeof(ProblemDetails)) return Task.CompletedTask;
            schema.Description = "RFC 9457 problem details; 'code' is stable and meant for programs, 'detail' for people";
            schema.Properties ??= new Dictionary<string, IOpenApiSchema>();
            schema.Properties["code"] = new OpenApiSchema
            {
                Type = JsonSchemaType.String,
                Description = "invalid_request, unauthenticated, forbidden, not_found, conflict, consent_required, unknown_service, "
                    + "payload_too_large, sealed, moved, rate_limited, residency_violation, unavailable",
            };
            schema.Properties["region"] = new OpenApiSchema { Type = JsonSchemaType.String, Description = "With 'moved': the region that now holds the account" };
            schema.Required ??= new HashSet<string>();
            schema.Required.Add("code");
            schema.Required.Add("detail");
            return Task.CompletedTask;
        });

    public enum Item { Put, Get, Delete }

    /// <summary>
    /// An item route: the key is the rest of the path (it may hold '/') and is read from the raw
    /// target by the handler, so it is declared here, with the PUT's binary body and If-Match and
    /// the GET's binary answer.
    /// </summary>
    public static RouteHandlerBuilder DescribeItem(this RouteHandlerBuilder builder, Item kind) =>
        builder.AddOpenApiOperationTransformer((operation, _, _) =>
        {
            operation.Parameters ??= [];
            operation.Parameters.Add(new OpenApiParameter
            {
                Name = "key",
                In = ParameterLocation.Path,
                Required = true,
                Description = "The item's key, percent-encoded; it may contain '/'",
                Schema = new OpenApiSchema { Type = JsonSchemaType.String },
            });
            var binary = new OpenApiSchema { Type = JsonSchemaType.String, Format = "binary" };
            switch (kind)
            {
                case Item.Put:
                    operation.Parameters.Add(Header("If-Match", "Store only if the item's current ETag is this one (409 conflict otherwise)"));
                    operation.RequestBody = new OpenApiRequestBody
                    {
                        Required = true,
                        Description = "The item's bytes, of any content type: stored encrypted as sent, given back with the same Content-Type",
                        Content = new Dictionary<string, OpenApiMediaType> { ["*/*"] = new() { Schema = binary } },
                    };
                    break;
                case Item.Get:
                    operation.Parameters.Add(Header("If-None-Match", "Answer 304 when the item's ETag is still this one"));
                    if (operation.Responses?.TryGetValue("200", out var ok) == true && ok is OpenApiResponse response)
                    {
                        response.Description = "The item's bytes, with the Content-Type it was stored with and its ETag";
                        response.Content = new Dictionary<string, OpenApiMediaType> { ["*/*"] = new() { Schema = binary } };
                    }
                    break;
            }
            return Task.CompletedTask;
        });

    static OpenApiParameter Header(string name, string description) => new()
    {
        Name = name,
        In = ParameterLocation.Header,
        Required = false,
        Description = description,
        Schema = new OpenApiSchema { Type = JsonSchemaType.String },
    };
}
