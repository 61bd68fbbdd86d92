//! The API contract: an OpenAPI 3.1 document generated from the handlers' `#[utoipa::path]`
//! annotations. Each function crate derives its own paths' document (`ApiDoc`) and serves it at
//! `GET /openapi.json` through [`spec_router`]; `convergence-local` merges the six.
//!
//! What every function shares lives here: the error body ([`ErrorBody`], the JSON of
//! [`ApiError`](super::ApiError)), the security schemes, and [`finish`], which completes a
//! document with the responses the shared plumbing can give any operation (401/403 from the
//! key extractors, 400/413/415 from the JSON and path extractors, 429 from the rate limits, 500
//! and 503), so that a handler's annotation lists only what the handler itself answers.

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, InfoBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{PartialSchema, ToSchema};

use crate::app::AppState;
use crate::auth::{API_KEY_HEADER, ROOT_KEY_HEADER};
use crate::configs::schema::{Field, FieldType, Mode, TableSchema};

/// The route that serves the document.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// Security scheme names, as `#[utoipa::path(security(..))]` refers to them.
pub const ROOT_KEY: &str = "root_key";
pub const ORG_KEY: &str = "api_key";
pub const OIDC: &str = "google_oidc";

/// The error body every non-2xx answer of the API carries.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code: `invalid_request`, `unauthorized`, `forbidden`,
    /// `not_found`, `conflict`, `rate_limited`, `unavailable`, `internal`, …
    pub code: String,
    /// What went wrong and, where it can, what to do about it. Never a secret.
    pub message: String,
    /// The server's id of the request (also in the `X-Request-ID` response header).
    pub request_id: Option<String>,
}

/// `GET /health`'s answer (built in `server::health_router`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Health {
    /// Always `ok`: the process is up and its configs loaded.
    status: String,
    service: String,
    version: String,
    environment: String,
    warehouse: String,
    kms: String,
}

pub use crate::domain::{DecimalText, DECIMAL_PATTERN};

/// The schema of a row of a table, generated from its config schema (`configs/**/schemas/*.json`)
/// so a column added to the config is in the contract at once: NUMERIC as decimal text, DATE as
/// `format: date`, TIMESTAMP as `format: date-time`, NULLABLE columns nullable, REQUIRED ones
/// required. `leave_out` names columns the route does not show.
pub fn row_schema(schema: &TableSchema, leave_out: &[&str]) -> ObjectBuilder {
    let mut object = ObjectBuilder::new().schema_type(Type::Object);
    for field in schema.fields.iter().filter(|f| !leave_out.contains(&f.name.as_str())) {
        object = object.property(&field.name, field_schema(field));
        if field.mode == Mode::Required {
            object = object.required(&field.name);
        }
    }
    object
}

/// One column's schema, as the warehouse layer answers its values.
pub fn field_schema(field: &Field) -> Schema {
    let description = (!field.description.is_empty()).then_some(field.description.as_str());
    let nullable = |t: Type| -> SchemaType {
        if field.mode == Mode::Nullable {
            [t, Type::Null].into_iter().collect()
        } else {
            t.into()
        }
    };
    let scalar = |t: Type| ObjectBuilder::new().schema_type(nullable(t)).description(description);
    let item = match field.field_type {
        FieldType::String | FieldType::Bytes => scalar(Type::String),
        FieldType::Int64 => scalar(Type::Integer),
        FieldType::Float64 => scalar(Type::Number),
        FieldType::Bool => scalar(Type::Boolean),
        FieldType::Numeric => scalar(Type::String).pattern(Some(DECIMAL_PATTERN)),
        FieldType::Date => scalar(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::Date))),
        FieldType::Timestamp => scalar(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        // Any JSON value.
        FieldType::Json => ObjectBuilder::new().schema_type(SchemaType::AnyValue).description(description),
        FieldType::Record => {
            let record = TableSchema {
                name: field.name.clone(),
                description: field.description.clone(),
                partitioning: None,
                clustering: Vec::new(),
                fields: field.fields.clone(),
            };
            row_schema(&record, &[]).schema_type(nullable(Type::Object)).description(description)
        }
    };
    if field.mode == Mode::Repeated {
        Schema::Array(ArrayBuilder::new().items(item.description(None::<String>)).description(description).build())
    } else {
        Schema::Object(item.build())
    }
}

/// The document [`OPENAPI_PATH`] serves, as far as a client reads it: its version, info, paths
/// (their operations, parameters, bodies and responses) and components. The schemas inside are
/// JSON Schema (any JSON value here).
pub fn openapi_document_schema() -> Schema {
    let object = || ObjectBuilder::new().schema_type(Type::Object);
    let string = || ObjectBuilder::new().schema_type(Type::String);
    let strings = || ArrayBuilder::new().items(string());
    let any = || ObjectBuilder::new().schema_type(SchemaType::AnyValue);
    let media = || object().additional_properties(Some(object().property("schema", any())));
    let parameter = object()
        .property("name", string())
        .property("in", string().enum_values(Some(["path", "query", "header", "cookie"])))
        .property("required", ObjectBuilder::new().schema_type(Type::Boolean))
        .property("description", string())
        .property("schema", any())
        .required("name")
        .required("in");
    let response = object().property("description", string()).property("content", media()).required("description");
    let operation = object()
        .property("summary", string())
        .property("description", string())
        .property("operationId", string())
        .property("tags", strings())
        .property("parameters", ArrayBuilder::new().items(parameter))
        .property("requestBody", object().property("content", media()).property("description", string()))
        .property("responses", object().additional_properties(Some(response)))
        .property("security", ArrayBuilder::new().items(object().additional_properties(Some(strings()))))
        .required("responses")
        .build();
    let mut path_item = object();
    for method in ["get", "put", "post", "delete", "patch"] {
        path_item = path_item.property(method, operation.clone());
    }
    let security_scheme = object()
        .property("type", string())
        .property("name", string())
        .property("in", string())
        .property("scheme", string())
        .property("description", string())
        .required("type");
    object()
        .description(Some("An OpenAPI 3.1 document (https://spec.openapis.org/oas/v3.1.0)."))
        .property("openapi", string().pattern(Some(r"^3\.1\.[0-9]+$")))
        .required("openapi")
        .property(
            "info",
            object()
                .property("title", string())
                .property("version", string())
                .property("description", string())
                .required("title")
                .required("version"),
        )
        .required("info")
        .property("paths", object().additional_properties(Some(path_item)))
        .required("paths")
        .property(
            "components",
            object()
                .property("schemas", object().additional_properties(Some(any())))
                .property("securitySchemes", object().additional_properties(Some(security_scheme))),
        )
        .build()
        .into()
}

/// The function's spec at [`OPENAPI_PATH`], rendered once.
pub fn spec_router(doc: OpenApi) -> Router<AppState> {
    let json: Arc<str> = doc.to_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")).into();
    Router::new().route(
        "/openapi.json",
        get(move || {
            let json = json.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], json.to_string()).into_response() }
        }),
    )
}

/// Merges the functions' documents into one (for `convergence-local`), then [`finish`]es it.
pub fn merged(service: &str, docs: impl IntoIterator<Item = OpenApi>) -> OpenApi {
    let mut all = OpenApi::default();
    for doc in docs {
        all.merge(doc);
    }
    finish(service, all)
}

/// Completes a function's document: title and version, `/health` and `/openapi.json`, the
/// shared schemas and security schemes, and the responses the shared plumbing can give.
pub fn finish(service: &str, mut doc: OpenApi) -> OpenApi {
    doc.info = InfoBuilder::new()
        .title(format!("Convergence API ({service})"))
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Multi-tenant cost data for LLM and cloud providers. Keys: the root key (`X-CA-Root-Key`) for \
             platform operations, an organization's key (`X-API-Key`) for its own routes; the internal \
             endpoints take a Google OIDC token (the root key in development). Every error has the body \
             `{\"error\": {\"code\", \"message\", \"request_id\"}}`.",
        ))
        .build();
    doc.paths.paths.insert(
        "/health".into(),
        plain_get("The process is up and its configs loaded.", "health", Ref::from_schema_name("Health").into()),
    );
    doc.paths.paths.insert(
        OPENAPI_PATH.into(),
        plain_get("This document (OpenAPI 3.1).", "openapi", openapi_document_schema().into()),
    );

    let components = doc.components.get_or_insert_with(Default::default);
    for (name, schema) in [
        (ErrorBody::name(), ErrorBody::schema()),
        (ErrorDetail::name(), ErrorDetail::schema()),
        (Health::name(), Health::schema()),
    ] {
        components.schemas.insert(name.into_owned(), schema);
    }
    components.add_security_scheme(
        ROOT_KEY,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            ROOT_KEY_HEADER,
            "The platform's root key (CA_ROOT_API_KEY): bootstrap, onboarding, subscriptions, key \
             revocation, the catalog import; it may act on any organization.",
        ))),
    );
    components.add_security_scheme(
        ORG_KEY,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            API_KEY_HEADER,
            "An organization's API key (returned once by onboarding or rotation): its own routes only.",
        ))),
    );
    components.add_security_scheme(
        OIDC,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "A Google-signed OIDC ID token for OIDC_AUDIENCE from one of OIDC_INVOKERS (Pub/Sub's and \
                     Cloud Scheduler's service accounts): the internal endpoints in staging and production.",
                ))
                .build(),
        ),
    );

    for (path, item) in doc.paths.paths.iter_mut() {
        let has_path_params = path.contains('{');
        for operation in operations(item) {
            add_plumbing_responses(operation, has_path_params);
        }
    }
    doc
}

/// A public GET answering a JSON object (`/health`, `/openapi.json`).
fn plain_get(summary: &str, operation_id: &str, schema: RefOr<utoipa::openapi::schema::Schema>) -> PathItem {
    let mut operation = Operation::new();
    operation.summary = Some(summary.into());
    operation.operation_id = Some(operation_id.into());
    operation.tags = Some(vec!["meta".into()]);
    // No key: an empty requirement list says so explicitly.
    operation.security = Some(Vec::new());
    operation.responses.responses.insert(
        "200".into(),
        RefOr::T(
            ResponseBuilder::new()
                .description(summary)
                .content("application/json", ContentBuilder::new().schema(Some(schema)).build())
                .build(),
        ),
    );
    PathItem::new(utoipa::openapi::HttpMethod::Get, operation)
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().flatten()
}

/// Which schemes an operation accepts (names of its security requirements).
pub fn schemes(operation: &Operation) -> Vec<String> {
    let Ok(value) = serde_json::to_value(&operation.security) else { return Vec::new() };
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|requirement| requirement.as_object())
        .flat_map(|requirement| requirement.keys().cloned())
        .collect()
}

fn add_plumbing_responses(operation: &mut Operation, has_path_params: bool) {
    let schemes = schemes(operation);
    let keyed = !schemes.is_empty();
    let internal = schemes.iter().any(|s| s == OIDC);
    let has_body = operation.request_body.is_some();
    let mut add = |status: &str, description: &str| {
        operation.responses.responses.entry(status.into()).or_insert_with(|| error_response(description));
    };
    if has_path_params {
        add("400", "A path segment is not valid (e.g. not an organization slug).");
    }
    if has_body {
        add("400", "The body is not valid JSON or does not have the documented shape.");
        add("413", "The body is larger than this endpoint accepts.");
        add("415", "The body is not sent as `Content-Type: application/json`.");
    }
    if keyed {
        add("401", "No key, or a key that is not valid (unknown, revoked, wrong root key).");
    }
    if keyed && !internal {
        add(
            "403",
            "A valid key that may not do this (another organization's key, or an organization key on a root route).",
        );
    }
    add(
        "429",
        "Too many requests from this address or with this key, or too many failed authentications; see `Retry-After`.",
    );
    add("500", "An internal error; its cause is logged under the request id, never returned.");
    add("503", "A backend is unavailable or the request timed out; retry shortly.");
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_document_has_the_shared_pieces() {
        let doc = finish("test", OpenApi::default());
        let json: serde_json::Value = serde_json::from_str(&doc.to_json().unwrap()).unwrap();
        assert_eq!(json["openapi"], "3.1.0");
        let schemes = &json["components"]["securitySchemes"];
        assert_eq!(schemes[ROOT_KEY]["name"], ROOT_KEY_HEADER);
        assert_eq!(schemes[ORG_KEY]["name"], API_KEY_HEADER);
        assert_eq!(schemes[OIDC]["scheme"], "bearer");
        let error = &json["components"]["schemas"]["ErrorBody"];
        assert_eq!(error["required"], serde_json::json!(["error"]));
        // Public routes take no key, so no 401 is documented for them.
        let health = &json["paths"]["/health"]["get"];
        assert!(health["responses"].get("401").is_none(), "{health}");
        assert!(health["responses"].get("429").is_some(), "{health}");
        // The document describes itself with its fields, not as any object.
        let own = &json["paths"][OPENAPI_PATH]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
        assert_eq!(own["required"], serde_json::json!(["openapi", "info", "paths"]), "{own}");
    }

    #[test]
    fn a_row_schema_follows_the_table_schema() {
        let table: TableSchema = serde_json::from_value(serde_json::json!({
            "description": "t",
            "fields": [
                {"name": "id", "type": "STRING", "mode": "REQUIRED", "description": "The id."},
                {"name": "price", "type": "NUMERIC", "mode": "NULLABLE"},
                {"name": "day", "type": "DATE", "mode": "REQUIRED"},
                {"name": "at", "type": "TIMESTAMP"},
                {"name": "n", "type": "INT64", "mode": "REQUIRED"},
                {"name": "tags", "type": "STRING", "mode": "REPEATED"},
                {"name": "rec", "type": "RECORD", "fields": [{"name": "x", "type": "BOOL", "mode": "REQUIRED"}]},
                {"name": "internal", "type": "STRING", "mode": "REQUIRED"}
            ]
        }))
        .unwrap();
        let schema = serde_json::to_value(Schema::from(row_schema(&table, &["internal"]).build())).unwrap();
        let p = &schema["properties"];
        assert_eq!(schema["required"], serde_json::json!(["id", "day", "n"]));
        assert_eq!(p["id"], serde_json::json!({"type": "string", "description": "The id."}));
        assert_eq!(p["price"]["type"], serde_json::json!(["string", "null"]));
        assert_eq!(p["price"]["pattern"], DECIMAL_PATTERN);
        assert_eq!(p["day"], serde_json::json!({"type": "string", "format": "date"}));
        assert_eq!(p["at"], serde_json::json!({"type": ["string", "null"], "format": "date-time"}));
        assert_eq!(p["n"], serde_json::json!({"type": "integer"}));
        assert_eq!(p["tags"], serde_json::json!({"type": "array", "items": {"type": "string"}}));
        assert_eq!(p["rec"]["type"], serde_json::json!(["object", "null"]));
        assert_eq!(p["rec"]["properties"]["x"], serde_json::json!({"type": "boolean"}));
        assert_eq!(p["rec"]["required"], serde_json::json!(["x"]));
        assert!(p.get("internal").is_none());
        let decimal = regex::Regex::new(DECIMAL_PATTERN).unwrap();
        for ok in ["0.00", "2.50", "0.075", "-1.5", "12"] {
            assert!(decimal.is_match(ok), "{ok}");
        }
        for bad in ["", "1e-3", "2.", ".5", "1,5"] {
            assert!(!decimal.is_match(bad), "{bad}");
        }
    }
}
