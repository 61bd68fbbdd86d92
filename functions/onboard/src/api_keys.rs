//! API keys. `POST /api/v1/organizations/{org}/api-key/rotate` (org key or root): a new key,
//! returned once; the old one stops working at once here (cache evicted) and everywhere within
//! the key-cache TTL. `POST /api/v1/organizations/{org}/api-key/revoke` (root): every key of the
//! organization stops working (a leaked key); root then issues a new one with rotate.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use common::audit::AuditEvent;
use common::http::error::ApiResult;
use common::http::extract::RootOrgAccess;
use common::http::OrgAccess;
use common::warehouse::Params;
use common::{ApiError, AppState};
use serde_json::{json, Value};

use crate::store;

#[utoipa::path(
    post,
    path = "/api/v1/organizations/{org}/api-key/rotate",
    tag = "onboard",
    summary = "Issue a new API key (returned once); the previous keys stop working.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$")),
    responses(
        (status = 201, description = "The new key.", body = KeyRotated),
        (status = 404, description = "No such organization.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn rotate(State(state): State<AppState>, access: OrgAccess) -> ApiResult<(StatusCode, Json<Value>)> {
    let slug = &access.slug;
    let _guard = store::org_lock(slug.as_str()).await;
    if !store::org_exists(&state, slug.as_str()).await? {
        return Err(ApiError::not_found(format!("no organization {slug}")));
    }
    let old = store::active_keys(&state, slug.as_str()).await?;
    let by = access.actor();
    let new_key = store::mint_api_key(slug.as_str(), &by);
    // Insert the new key before revoking the old ones: a failure in between leaves the
    // organization with a working key, never with none.
    store::insert(&state, "org_api_keys", new_key.row.clone()).await?;
    if let Err(e) = store::revoke_keys(&state, slug.as_str(), Some(&new_key.key.api_key_id), &by).await {
        let undo = format!("DELETE FROM {} WHERE api_key_id = @id", state.central_table("org_api_keys")?);
        let _ = state.warehouse.execute(&undo, &Params::new().bind("id", new_key.key.api_key_id.as_str())).await;
        return Err(e);
    }
    for key in &old {
        state.auth.evict(&key.key_hash);
    }
    state.orgs.invalidate(slug.as_str());
    state.auth.remember(&new_key.key_hash, new_key.key.clone());
    let revoked: Vec<&str> = old.iter().map(|k| k.fingerprint.as_str()).collect();
    state
        .audit(
            &access.caller,
            AuditEvent {
                org_slug: Some(slug.as_str()),
                action: "api_key.rotate",
                resource_type: "api_key",
                resource_id: Some(&new_key.key.api_key_id),
                success: true,
                details: json!({"new_fingerprint": new_key.key.fingerprint, "revoked_fingerprints": revoked}),
            },
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "org_slug": slug,
            "api_key": new_key.secret,
            "fingerprint": new_key.key.fingerprint,
            "revoked_fingerprints": revoked,
            "message": "store the API key now: it is shown only once; the previous key no longer works",
        })),
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/organizations/{org}/api-key/revoke",
    tag = "onboard",
    summary = "Revoke every key of the organization.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$")),
    responses(
        (status = 200, description = "The revoked keys, by fingerprint.", body = KeysRevoked),
        (status = 404, description = "No such organization.", body = common::http::openapi::ErrorBody),
    ),
    security(("root_key" = [])),
)]
pub async fn revoke(State(state): State<AppState>, RootOrgAccess(access): RootOrgAccess) -> ApiResult<Json<Value>> {
    let slug = &access.slug;
    let _guard = store::org_lock(slug.as_str()).await;
    if !store::org_exists(&state, slug.as_str()).await? {
        return Err(ApiError::not_found(format!("no organization {slug}")));
    }
    let old = store::active_keys(&state, slug.as_str()).await?;
    store::revoke_keys(&state, slug.as_str(), None, "root").await?;
    for key in &old {
        state.auth.evict(&key.key_hash);
    }
    state.orgs.invalidate(slug.as_str());
    let revoked: Vec<&str> = old.iter().map(|k| k.fingerprint.as_str()).collect();
    state
        .audit(
            &access.caller,
            AuditEvent {
                org_slug: Some(slug.as_str()),
                action: "api_key.revoke",
                resource_type: "api_key",
                resource_id: None,
                success: true,
                details: json!({"revoked_fingerprints": revoked}),
            },
        )
        .await;
    Ok(Json(json!({
        "org_slug": slug,
        "revoked_fingerprints": revoked,
        "message": "every key of this organization is revoked; issue a new one with POST .../api-key/rotate",
    })))
}

/// The response's schema for the API contract (the handler builds it with `json!`; schemathesis
/// checks real responses against it).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct KeyRotated {
    org_slug: String,
    /// The new key: shown only this once.
    api_key: String,
    fingerprint: String,
    revoked_fingerprints: Vec<String>,
    message: String,
}

/// The response's schema for the API contract (the handler builds it with `json!`; schemathesis
/// checks real responses against it).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct KeysRevoked {
    org_slug: String,
    revoked_fingerprints: Vec<String>,
    message: String,
}
