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
