//! Reading and removing integrations (org key or root):
//! `GET /api/v1/integrations/{org}` (every known provider, `NOT_CONFIGURED` where none),
//! `GET /api/v1/integrations/{org}/{provider}`, `DELETE /api/v1/integrations/{org}/{provider}`
//! (overwrites the ciphertext, then deletes the row; 404 when there is none).

use axum::extract::State;
use axum::Json;
use common::audit::AuditEvent;
use common::http::error::ApiResult;
use common::http::{ApiPath, OrgAccess, ProviderPath};
use common::AppState;
use serde_json::{json, Value};

use crate::store;
use crate::validate::not_configured;

#[utoipa::path(
    get,
    path = "/api/v1/integrations/{org}",
    tag = "integrations",
    summary = "The organization's integrations (never their credentials).",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$")),
    responses(
        (status = 200, description = "One entry per provider.", body = IntegrationsList),
        (status = 404, description = "No such organization.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn list(State(state): State<AppState>, access: OrgAccess) -> ApiResult<Json<Value>> {
    let org = access.organization(&state).await?;
    let slug = &access.slug;
    let rows = store::list(&state, slug.as_str()).await?;
    let integrations: Vec<Value> = state
        .configs
        .providers
        .providers
        .iter()
        .map(|(name, config)| {
            let row = rows.iter().find(|r| r.get("provider").and_then(Value::as_str) == Some(name.as_str()));
            store::view(name, config, row)
        })
        .collect();
    let configured = integrations.iter().filter(|i| i["status"] != "NOT_CONFIGURED").count();
    Ok(Json(json!({
        "org_slug": slug,
        "integrations": integrations,
        "configured": configured,
        "max_integrations": org.quotas.max_integrations,
    })))
}

#[utoipa::path(
    get,
    path = "/api/v1/integrations/{org}/{provider}",
    tag = "integrations",
    summary = "One integration's status (never its credential).",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$"), ("provider" = String, Path, description = "A provider: openai, anthropic or gcp.")),
    responses(
        (status = 200, description = "The integration.", body = IntegrationView),
        (status = 404, description = "No such organization, provider or integration.", body = common::http::openapi::ErrorBody),
        (status = 501, description = "A provider the configs name that this build does not support.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn get_one(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiPath(ProviderPath { provider }): ApiPath<ProviderPath>,
) -> ApiResult<Json<Value>> {
    let slug = &access.slug;
    let config = crate::request::provider(&state, &provider)?;
    access.organization(&state).await?;
    let row = store::find(&state, slug.as_str(), &provider).await?;
    let mut view = store::view(&provider, config, row.as_ref());
    view["org_slug"] = json!(slug);
    Ok(Json(view))
}

#[utoipa::path(
    delete,
    path = "/api/v1/integrations/{org}/{provider}",
    tag = "integrations",
    summary = "Delete an integration and scrub its credential.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$"), ("provider" = String, Path, description = "A provider: openai, anthropic or gcp.")),
    responses(
        (status = 200, description = "What was deleted.", body = IntegrationDeleted),
        (status = 404, description = "No such organization, provider or integration.", body = common::http::openapi::ErrorBody),
        (status = 501, description = "A provider the configs name that this build does not support.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiPath(ProviderPath { provider }): ApiPath<ProviderPath>,
) -> ApiResult<Json<Value>> {
    let slug = &access.slug;
    crate::request::provider(&state, &provider)?;
    access.organization(&state).await?;
    let _guard = store::org_lock(slug.as_str()).await;
    let Some(row) = store::find(&state, slug.as_str(), &provider).await? else {
        return Err(not_configured(slug.as_str(), &provider));
    };
    let deleted = store::scrub_and_delete(&state, slug.as_str(), &provider).await?;
    let fingerprint = row.get("fingerprint").cloned().unwrap_or(Value::Null);
    state
        .audit(
            &access.caller,
            AuditEvent {
                org_slug: Some(slug.as_str()),
                action: "integration.delete",
                resource_type: "integration",
                resource_id: row.get("credential_id").and_then(Value::as_str),
                success: true,
                details: json!({"provider": provider, "fingerprint": fingerprint, "rows": deleted}),
            },
        )
        .await;
    Ok(Json(json!({
        "org_slug": slug,
        "provider": provider,
        "deleted": true,
        "fingerprint": fingerprint,
        "status": "NOT_CONFIGURED",
    })))
}

/// The response's schema for the API contract (the handler builds it with `json!`; schemathesis
/// checks real responses against it).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct IntegrationDeleted {
    org_slug: String,
    provider: String,
    deleted: bool,
    fingerprint: Option<String>,
    status: String,
}

/// An integration as every route shows it (never its credential), for the API contract: the
/// handlers build it with `json!` (`store::view`); setup and validate add fields of their own.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct IntegrationView {
    /// On a single integration's answers; not inside a list.
    org_slug: Option<String>,
    provider: String,
    display_name: String,
    category: String,
    credential_type: String,
    /// NOT_CONFIGURED, VALID, INVALID, ERROR, …
    status: String,
    credential_id: Option<String>,
    credential_name: Option<String>,
    /// The last four characters of the credential (or of a service account's key id).
    fingerprint: Option<String>,
    validated_at: Option<String>,
    last_error: Option<String>,
    metadata: Option<serde_json::Value>,
    created_at: Option<String>,
    updated_at: Option<String>,
}

/// The response's schema for the API contract (the handler builds it with `json!`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct IntegrationsList {
    org_slug: String,
    /// One per provider the configs know, configured or not.
    integrations: Vec<IntegrationView>,
    configured: u64,
    max_integrations: Option<i64>,
}
