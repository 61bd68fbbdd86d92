//! Envelope for secrets at rest: API keys and provider credentials are encrypted before they
//! reach the warehouse. Local AES-256-GCM with a key file for laptops and tests; Cloud KMS in
//! production.

pub mod gcp;
pub mod local;

use async_trait::async_trait;

pub use gcp::CloudKms;
pub use local::LocalKms;

#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// Tampered ciphertext, a wrong key or wrong associated data. Deliberately carries no detail.
    #[error("ciphertext could not be decrypted with this key")]
    Decrypt,
    #[error("kms unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Kms: Send + Sync + 'static {
    fn backend_name(&self) -> &'static str;
    /// Encrypts `plaintext`, binding it to `aad` (associated data that must be given again to
    /// decrypt, e.g. the org slug, so a ciphertext cannot be moved to another organization).
    async fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KmsError>;
    async fn decrypt(&self, ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KmsError>;
}
