//! Provider credentials at rest: one row per (org, provider) in
//! `organizations.org_integration_credentials`, KMS-encrypted with the (org, provider) pair as
//! associated data, so a row copied to another organization or provider cannot be decrypted.
//!
//! Shared because the integrations function writes and re-validates them and the pipeline
//! executor reads them to call the provider.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::SecretString;
use serde_json::Value;

use crate::app::AppState;
use crate::http::error::ApiResult;
use crate::http::ApiError;
use crate::warehouse::{Params, Row};

pub const TABLE: &str = "org_integration_credentials";

/// KMS associated data: the ciphertext only decrypts for this organization and provider.
pub fn aad(org_slug: &str, provider: &str) -> Vec<u8> {
    format!("integration:{org_slug}:{provider}").into_bytes()
}

/// A stored credential, still encrypted.
pub struct StoredCredential {
    /// `VALID`, `INVALID`, …
    pub status: String,
    pub ciphertext: Vec<u8>,
    /// The metadata column as JSON (stored as a JSON document in a string).
    pub metadata: Value,
}

/// The latest stored credential of one provider, with its ciphertext, if any.
pub async fn find_secret(state: &AppState, org_slug: &str, provider: &str) -> ApiResult<Option<StoredCredential>> {
    let sql = format!(
        "SELECT status, encrypted_credential, metadata FROM {} WHERE org_slug = @org_slug AND provider = @provider \
         ORDER BY updated_at DESC LIMIT 1",
        state.central_table(TABLE)?
    );
    let params = Params::new().bind("org_slug", org_slug).bind("provider", provider);
    let Some(row) = state.warehouse.query(&sql, &params).await?.into_iter().next() else { return Ok(None) };
    let ciphertext = row
        .get("encrypted_credential")
        .and_then(Value::as_str)
        .and_then(|b64| STANDARD.decode(b64).ok())
        .ok_or_else(|| ApiError::internal("stored credential ciphertext is not base64"))?;
    Ok(Some(StoredCredential {
        status: row.get("status").and_then(Value::as_str).unwrap_or_default().to_string(),
        ciphertext,
        metadata: metadata(&row),
    }))
}

/// Decrypts a stored credential of (org, provider). The plaintext is never logged.
pub async fn decrypt(state: &AppState, org_slug: &str, provider: &str, ciphertext: &[u8]) -> ApiResult<SecretString> {
    let plaintext = state.kms.decrypt(ciphertext, &aad(org_slug, provider)).await?;
    let text = String::from_utf8(plaintext).map_err(|_| ApiError::internal("stored credential is not UTF-8"))?;
    Ok(SecretString::from(text))
}

/// The metadata column as JSON (stored as a JSON document in a string).
pub fn metadata(row: &Row) -> Value {
    match row.get("metadata") {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
        Some(other) => other.clone(),
        None => Value::Null,
    }
}
