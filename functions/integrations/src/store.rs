//! Credential rows in `organizations.org_integration_credentials`: one per (org, provider).
//!
//! Reads for views never select the ciphertext; only `validate` does. The ciphertext is bound
//! to (org, provider) as KMS associated data, so a row copied to another organization or
//! provider cannot be decrypted.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use common::configs::Provider;
use common::http::error::ApiResult;
use common::warehouse::{format_timestamp, to_row, Param, Params, Row};
use common::AppState;
use serde_json::{json, Value};

pub use common::credentials::TABLE;

/// Columns a view shows (never `encrypted_credential`).
const VIEW_COLUMNS: &str = "credential_id, provider, credential_name, fingerprint, status, validated_at, last_error, \
                            metadata, created_at, updated_at";

/// KMS associated data: the ciphertext only decrypts for this organization and provider.
pub use common::credentials::aad;

/// The stored row of one provider (view columns), if any.
pub async fn find(state: &AppState, org_slug: &str, provider: &str) -> ApiResult<Option<Row>> {
    let sql = format!(
        "SELECT {VIEW_COLUMNS} FROM {} WHERE org_slug = @org_slug AND provider = @provider ORDER BY updated_at DESC LIMIT 1",
        state.central_table(TABLE)?
    );
    let params = Params::new().bind("org_slug", org_slug).bind("provider", provider);
    Ok(state.warehouse.query(&sql, &params).await?.into_iter().next())
}

/// The stored ciphertext and metadata of one provider, for re-validation.
pub async fn find_secret(state: &AppState, org_slug: &str, provider: &str) -> ApiResult<Option<(Vec<u8>, Value)>> {
    Ok(common::credentials::find_secret(state.warehouse.as_ref(), &state.configs, org_slug, provider)
        .await?
        .map(|c| (c.ciphertext, c.metadata)))
}

/// Every stored row of the organization (view columns).
pub async fn list(state: &AppState, org_slug: &str) -> ApiResult<Vec<Row>> {
    let sql = format!(
        "SELECT {VIEW_COLUMNS} FROM {} WHERE org_slug = @org_slug ORDER BY provider",
        state.central_table(TABLE)?
    );
    Ok(state.warehouse.query(&sql, &Params::new().bind("org_slug", org_slug)).await?)
}

/// How many providers other than `provider` the organization has a credential for.
pub async fn count_others(state: &AppState, org_slug: &str, provider: &str) -> ApiResult<i64> {
    let sql = format!(
        "SELECT COUNT(DISTINCT provider) AS n FROM {} WHERE org_slug = @org_slug AND provider <> @provider",
        state.central_table(TABLE)?
    );
    let params = Params::new().bind("org_slug", org_slug).bind("provider", provider);
    let rows = state.warehouse.query(&sql, &params).await?;
    Ok(rows.first().and_then(|r| r.get("n")).and_then(Value::as_i64).unwrap_or(0))
}

/// What a new credential row holds besides the identifiers.
pub struct NewCredential<'a> {
    pub org_slug: &'a str,
    pub provider: &'a str,
    pub credential_name: &'a str,
    pub ciphertext: &'a [u8],
    pub fingerprint: &'a str,
    pub metadata: &'a Value,
}

/// Stores the credential, replacing any earlier one of this (org, provider) atomically.
/// Returns the new row's id and how many rows it replaced.
pub async fn replace(state: &AppState, new: NewCredential<'_>) -> ApiResult<(String, u64)> {
    let now = format_timestamp(&Utc::now());
    let credential_id = uuid::Uuid::new_v4().to_string();
    let row = to_row(json!({
        "credential_id": credential_id,
        "org_slug": new.org_slug,
        "provider": new.provider,
        "credential_name": new.credential_name,
        "encrypted_credential": STANDARD.encode(new.ciphertext),
        "fingerprint": new.fingerprint,
        "status": "VALID",
        "validated_at": now,
        "last_error": Value::Null,
        "metadata": new.metadata.to_string(),
        "created_at": now,
        "updated_at": now,
    }));
    let params = Params::new().bind("org_slug", new.org_slug).bind("provider", new.provider);
    let (deleted, _) = state
        .warehouse
        .replace_slice(
            state.configs.central_dataset(),
            state.configs.central_table(TABLE),
            "org_slug = @org_slug AND provider = @provider",
            &params,
            &[row],
        )
        .await?;
    Ok((credential_id, deleted))
}

/// Records a re-validation: status and last_error always; validated_at (and metadata) only when
/// the provider gave an answer about the credential.
pub async fn record_check(
    state: &AppState,
    org_slug: &str,
    provider: &str,
    status: &str,
    last_error: Option<&str>,
    validated_at: Option<DateTime<Utc>>,
    metadata: Option<&Value>,
) -> ApiResult<u64> {
    let sql = format!(
        "UPDATE {} SET status = @status, last_error = @last_error, \
         validated_at = COALESCE(@validated_at, validated_at), metadata = COALESCE(@metadata, metadata), \
         updated_at = @now WHERE org_slug = @org_slug AND provider = @provider",
        state.central_table(TABLE)?
    );
    let params = Params::new()
        .bind("status", status)
        .bind("last_error", last_error.map(str::to_string))
        .bind("validated_at", validated_at)
        .bind("metadata", metadata.map_or(Param::Null(common::warehouse::FieldType::Json), |m| Param::Json(m.clone())))
        .bind("now", Utc::now())
        .bind("org_slug", org_slug)
        .bind("provider", provider);
    Ok(state.warehouse.execute(&sql, &params).await?)
}

/// Overwrites the ciphertext, then deletes the row. Returns the rows deleted.
pub async fn scrub_and_delete(state: &AppState, org_slug: &str, provider: &str) -> ApiResult<u64> {
    let table = state.central_table(TABLE)?;
    let params = Params::new().bind("org_slug", org_slug).bind("provider", provider);
    let scrub = format!(
        "UPDATE {table} SET encrypted_credential = @scrubbed, updated_at = @now \
         WHERE org_slug = @org_slug AND provider = @provider"
    );
    state
        .warehouse
        .execute(&scrub, &params.clone().bind("scrubbed", Param::Bytes(Vec::new())).bind("now", Utc::now()))
        .await?;
    let delete = format!("DELETE FROM {table} WHERE org_slug = @org_slug AND provider = @provider");
    Ok(state.warehouse.execute(&delete, &params).await?)
}

pub use common::credentials::metadata;

/// The public view of a provider's integration: status, fingerprint, validation time; never
/// the credential.
pub fn view(provider: &str, config: &Provider, row: Option<&Row>) -> Value {
    let mut view = json!({
        "provider": provider,
        "display_name": config.display_name,
        "category": config.category,
        "credential_type": config.credential_type,
    });
    let fields = match row {
        None => json!({"status": "NOT_CONFIGURED"}),
        Some(row) => {
            let f = |name: &str| row.get(name).cloned().unwrap_or(Value::Null);
            json!({
                "status": f("status"),
                "credential_id": f("credential_id"),
                "credential_name": f("credential_name"),
                "fingerprint": f("fingerprint"),
                "validated_at": f("validated_at"),
                "last_error": f("last_error"),
                "metadata": metadata(row),
                "created_at": f("created_at"),
                "updated_at": f("updated_at"),
            })
        }
    };
    if let (Some(v), Value::Object(extra)) = (view.as_object_mut(), fields) {
        v.extend(extra);
    }
    view
}

/// Serializes credential changes of one organization, so two setups cannot both pass the quota
/// check or interleave a replace.
pub async fn org_lock(org_slug: &str) -> tokio::sync::OwnedMutexGuard<()> {
    common::locks::lock(&format!("integrations:{org_slug}")).await
}
