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

use crate::configs::Configs;
use crate::kms::{Kms, KmsError};
use crate::warehouse::{Params, Row, Warehouse, WarehouseError};

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error(transparent)]
    Kms(#[from] KmsError),
    /// The stored row cannot be what we wrote (not base64, not UTF-8 once decrypted).
    #[error("the stored {provider} credential is unreadable: {problem}")]
    Corrupt { provider: String, problem: &'static str },
}

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
pub async fn find_secret(
    warehouse: &dyn Warehouse,
    configs: &Configs,
    org_slug: &str,
    provider: &str,
) -> Result<Option<StoredCredential>, CredentialError> {
    let sql = format!(
        "SELECT status, encrypted_credential, metadata FROM {} WHERE org_slug = @org_slug AND provider = @provider \
         ORDER BY updated_at DESC LIMIT 1",
        warehouse.table_ref(configs.central_dataset(), TABLE)?
    );
    let params = Params::new().bind("org_slug", org_slug).bind("provider", provider);
    let Some(row) = warehouse.query(&sql, &params).await?.into_iter().next() else { return Ok(None) };
    let ciphertext = row
        .get("encrypted_credential")
        .and_then(Value::as_str)
        .and_then(|b64| STANDARD.decode(b64).ok())
        .ok_or_else(|| CredentialError::Corrupt { provider: provider.to_string(), problem: "not base64" })?;
    Ok(Some(StoredCredential {
        status: row.get("status").and_then(Value::as_str).unwrap_or_default().to_string(),
        ciphertext,
        metadata: metadata(&row),
    }))
}

/// Decrypts a stored credential of (org, provider). The plaintext is never logged.
pub async fn decrypt(
    kms: &dyn Kms,
    org_slug: &str,
    provider: &str,
    ciphertext: &[u8],
) -> Result<SecretString, CredentialError> {
    let plaintext = kms.decrypt(ciphertext, &aad(org_slug, provider)).await?;
    let text = String::from_utf8(plaintext)
        .map_err(|_| CredentialError::Corrupt { provider: provider.to_string(), problem: "not UTF-8" })?;
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
