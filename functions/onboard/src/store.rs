//! Organization records in the central dataset: the reads and writes the routes share.

use chrono::Utc;
use common::auth::OrgKey;
use common::domain::{fingerprint, random_token, sha256_hex};
use common::http::error::ApiResult;
use common::warehouse::{format_timestamp, to_row, Params};
use common::{ApiError, AppState};
use serde_json::{json, Value};

/// Tables that hold one organization's rows, deleted together when an onboarding is undone.
pub const ORG_TABLES: [&str; 4] = ["org_api_keys", "org_subscriptions", "org_usage_quotas", "org_profiles"];

/// Random bytes in an API key: 192 bits, well above the 128 required.
const API_KEY_RANDOM_BYTES: usize = 24;

/// Central tables that bootstrap should have created but are missing.
pub async fn missing_central_tables(state: &AppState) -> ApiResult<Vec<String>> {
    let present = state.warehouse.list_tables(state.configs.central_dataset()).await?;
    Ok(state
        .configs
        .central_table_names()
        .into_iter()
        .filter(|t| !present.iter().any(|p| p == t))
        .map(str::to_string)
        .collect())
}

/// Refuses with 409 until bootstrap has run.
pub async fn require_bootstrapped(state: &AppState) -> ApiResult<()> {
    let missing = missing_central_tables(state).await?;
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "not_bootstrapped",
            format!(
                "the system is not bootstrapped ({} central table(s) missing); call POST /api/v1/admin/bootstrap first",
                missing.len()
            ),
        ))
    }
}

/// Whether an organization with this slug is onboarded (a finished profile row exists).
pub async fn org_exists(state: &AppState, org_slug: &str) -> ApiResult<bool> {
    let sql = format!(
        "SELECT COUNT(*) AS n FROM {} WHERE org_slug = @org_slug AND status <> 'PROVISIONING'",
        state.central_table("org_profiles")?
    );
    let rows = state.warehouse.query(&sql, &Params::new().bind("org_slug", org_slug)).await?;
    Ok(rows.first().and_then(|r| r.get("n")).and_then(Value::as_i64).unwrap_or(0) > 0)
}

/// Deletes every central row of an organization (undoing a failed onboarding).
pub async fn delete_org_rows(state: &AppState, org_slug: &str) -> ApiResult<()> {
    for table in ORG_TABLES {
        let sql = format!("DELETE FROM {} WHERE org_slug = @org_slug", state.central_table(table)?);
        state.warehouse.execute(&sql, &Params::new().bind("org_slug", org_slug)).await?;
    }
    Ok(())
}

pub async fn insert(state: &AppState, table: &str, row: Value) -> ApiResult<()> {
    let schema = state.configs.central_table(table);
    state.warehouse.insert_rows(state.configs.central_dataset(), schema, &[to_row(row)]).await?;
    Ok(())
}

/// Marks the organization's active keys REVOKED, except `keep_id` (the key a rotation just made).
pub async fn revoke_keys(state: &AppState, org_slug: &str, keep_id: Option<&str>, by: &str) -> ApiResult<u64> {
    let sql = format!(
        "UPDATE {} SET status = 'REVOKED', revoked_at = @now, revoked_by = @by \
         WHERE org_slug = @org_slug AND status = 'ACTIVE' AND api_key_id <> @keep_id",
        state.central_table("org_api_keys")?
    );
    let params = Params::new()
        .bind("now", Utc::now())
        .bind("by", by)
        .bind("org_slug", org_slug)
        // No key has an empty id, so revoking "all but none" revokes every key.
        .bind("keep_id", keep_id.unwrap_or(""));
    Ok(state.warehouse.execute(&sql, &params).await?)
}

/// A freshly minted API key: the secret (returned once), its row, and its cache entry.
pub struct NewApiKey {
    pub secret: String,
    pub key_hash: String,
    pub key: OrgKey,
    pub row: Value,
}

/// Mints `{org_slug}_api_{random}` and prepares its row: SHA-256 for lookup and the fingerprint
/// the frontend keeps. No copy of the key is stored, encrypted or not: nothing needs it back, and
/// a copy any service could decrypt would make every live key recoverable (issue 15).
pub fn mint_api_key(org_slug: &str, created_by: &str) -> NewApiKey {
    let secret = format!("{org_slug}_api_{}", random_token(API_KEY_RANDOM_BYTES));
    let key_hash = sha256_hex(secret.as_bytes());
    let api_key_id = uuid::Uuid::new_v4().to_string();
    let fingerprint = fingerprint(&secret);
    let row = json!({
        "api_key_id": api_key_id,
        "org_slug": org_slug,
        "key_hash": key_hash,
        "fingerprint": fingerprint,
        "status": "ACTIVE",
        "created_at": now(),
        "created_by": created_by,
    });
    NewApiKey { key: OrgKey { org_slug: org_slug.to_string(), api_key_id, fingerprint }, secret, key_hash, row }
}

pub fn now() -> String {
    format_timestamp(&Utc::now())
}

pub struct ActiveKey {
    pub key_hash: String,
    pub fingerprint: String,
}

pub async fn active_keys(state: &AppState, org_slug: &str) -> ApiResult<Vec<ActiveKey>> {
    let sql = format!(
        "SELECT key_hash, fingerprint FROM {} WHERE org_slug = @org_slug AND status = 'ACTIVE' ORDER BY created_at",
        state.central_table("org_api_keys")?
    );
    let rows = state.warehouse.query(&sql, &Params::new().bind("org_slug", org_slug)).await?;
    Ok(rows
        .into_iter()
        .map(|r| ActiveKey {
            key_hash: r.get("key_hash").and_then(Value::as_str).unwrap_or_default().to_string(),
            fingerprint: r.get("fingerprint").and_then(Value::as_str).unwrap_or_default().to_string(),
        })
        .collect())
}

/// The quota row a plan implies.
pub fn quota_row(state: &AppState, org_slug: &str, plan_name: &str) -> ApiResult<Value> {
    let plan = state.configs.plan(plan_name).ok_or_else(|| {
        ApiError::bad_request(format!("plan must be one of {}", state.configs.plan_names().join(", ")))
    })?;
    Ok(json!({
        "org_slug": org_slug,
        "plan_name": plan_name,
        "max_pipeline_runs_per_day": plan.max_pipeline_runs_per_day,
        "max_pipeline_runs_per_month": plan.max_pipeline_runs_per_month,
        "max_concurrent_runs": plan.max_concurrent_runs,
        "max_integrations": plan.max_integrations,
        "created_at": now(),
        "updated_at": now(),
    }))
}

/// Serializes onboarding and key changes of one organization (shared with integrations' writes).
pub async fn org_lock(org_slug: &str) -> tokio::sync::OwnedMutexGuard<()> {
    common::locks::lock(&format!("org:{org_slug}")).await
}
