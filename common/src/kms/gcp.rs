//! Cloud KMS through the official `google-cloud-kms-v1` client (REST transport).
//!
//! `encrypt`/`decrypt` on one symmetric `CryptoKey`; the associated data travels as
//! `additional_authenticated_data`, so KMS itself binds a ciphertext to its organization. Every
//! request carries CRC32C checksums and every response is checked against them (Google's data
//! integrity guidance), so a corrupted byte on the way is an error, never a wrong secret.
//!
//! With an endpoint (`KMS_API_BASE`, tests and local fakes) the client sends anonymous
//! credentials; without one it uses Application Default Credentials (on Cloud Run: the service
//! account).

use std::time::Duration;

use async_trait::async_trait;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt};
use google_cloud_kms_v1::client::KeyManagementService;
use google_cloud_kms_v1::Error as GcpError;

use super::{Kms, KmsError};

pub struct CloudKms {
    client: KeyManagementService,
    key_name: String,
}

/// How long one call may take, retries included. The client's own default is 60 s, as long as a
/// whole API request may take; a KMS that cannot answer within this fails the request instead.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

impl CloudKms {
    /// A client for the `CryptoKey` `key_name`
    /// (`projects/{p}/locations/{l}/keyRings/{r}/cryptoKeys/{k}`), aimed at `endpoint` when given.
    pub async fn new(key_name: &str, endpoint: Option<&str>) -> Result<CloudKms, KmsError> {
        Self::with_deadline(key_name, endpoint, DEFAULT_DEADLINE).await
    }

    /// [`CloudKms::new`] with another limit on each call, retries included.
    pub async fn with_deadline(
        key_name: &str,
        endpoint: Option<&str>,
        deadline: Duration,
    ) -> Result<CloudKms, KmsError> {
        // The client is built without its default features (which compile aws-lc): its TLS stack
        // expects the application to install a rustls provider. Already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Retries follow AIP-194 (encrypt/decrypt are not idempotent: only failures before the
        // request was sent are retried), bounded by the deadline.
        let mut builder = KeyManagementService::builder()
            .with_retry_policy(Aip194Strict.with_time_limit(deadline))
            .with_attempt_timeout(deadline);
        if let Some(endpoint) = endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build());
        }
        let client = builder.build().await.map_err(|e| {
            KmsError::Unavailable(format!("cannot create the Cloud KMS client for key {key_name}: {e}"))
        })?;
        Ok(CloudKms { client, key_name: key_name.to_string() })
    }

    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    fn unavailable(&self, op: &str, e: &GcpError) -> KmsError {
        KmsError::Unavailable(format!("Cloud KMS {op} with key {} failed: {}", self.key_name, describe(e)))
    }

    fn integrity(&self, op: &str, what: &str) -> KmsError {
        KmsError::Unavailable(format!(
            "Cloud KMS {op} with key {}: integrity check failed, {what}; retry",
            self.key_name
        ))
    }
}

/// The status code and the service's message, or the transport error. Requests and responses
/// hold secrets; neither is ever part of this text.
fn describe(e: &GcpError) -> String {
    match e.status() {
        Some(status) => match e.http_status_code() {
            Some(http) => format!("{} (HTTP {http}): {}", status.code, status.message),
            None => format!("{}: {}", status.code, status.message),
        },
        None => match e.http_status_code() {
            Some(http) => format!("HTTP {http}"),
            None => e.to_string(),
        },
    }
}

fn is_invalid_argument(e: &GcpError) -> bool {
    e.status().is_some_and(|s| s.code == google_cloud_gax::error::rpc::Code::InvalidArgument)
}

#[async_trait]
impl Kms for CloudKms {
    fn backend_name(&self) -> &'static str {
        "gcp"
    }

    async fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KmsError> {
        let resp = self
            .client
            .encrypt()
            .set_name(self.key_name.clone())
            .set_plaintext(plaintext.to_vec())
            .set_additional_authenticated_data(aad.to_vec())
            .set_plaintext_crc32c(i64::from(crc32c(plaintext)))
            .set_additional_authenticated_data_crc32c(i64::from(crc32c(aad)))
            .send()
            .await
            .map_err(|e| self.unavailable("encrypt", &e))?;
        // The response names the key version used: `{key}/cryptoKeyVersions/{n}`.
        if resp.name != self.key_name && !resp.name.starts_with(&format!("{}/cryptoKeyVersions/", self.key_name)) {
            return Err(self.integrity("encrypt", "the response names another key"));
        }
        if !resp.verified_plaintext_crc32c || !resp.verified_additional_authenticated_data_crc32c {
            return Err(self.integrity("encrypt", "the service did not verify the request checksums"));
        }
        if resp.ciphertext_crc32c != Some(i64::from(crc32c(&resp.ciphertext))) {
            return Err(self.integrity("encrypt", "the ciphertext checksum does not match"));
        }
        Ok(resp.ciphertext.to_vec())
    }

    async fn decrypt(&self, ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KmsError> {
        let resp = self
            .client
            .decrypt()
            .set_name(self.key_name.clone())
            .set_ciphertext(ciphertext.to_vec())
            .set_additional_authenticated_data(aad.to_vec())
            .set_ciphertext_crc32c(i64::from(crc32c(ciphertext)))
            .set_additional_authenticated_data_crc32c(i64::from(crc32c(aad)))
            .send()
            .await
            .map_err(|e| {
                // KMS answers INVALID_ARGUMENT for a ciphertext it cannot open with this key and
                // this associated data (tampered, another key, another organization).
                if is_invalid_argument(&e) {
                    KmsError::Decrypt
                } else {
                    self.unavailable("decrypt", &e)
                }
            })?;
        if resp.plaintext_crc32c != Some(i64::from(crc32c(&resp.plaintext))) {
            return Err(self.integrity("decrypt", "the plaintext checksum does not match"));
        }
        Ok(resp.plaintext.to_vec())
    }
}

/// CRC32C (Castagnoli), the checksum Cloud KMS uses for its integrity fields.
pub fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_values() {
        assert_eq!(crc32c(b""), 0);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    }

    #[test]
    fn status_errors_name_the_code_and_message() {
        use google_cloud_gax::error::rpc::{Code, Status};
        let e = GcpError::service(Status::default().set_code(Code::NotFound).set_message("key not found"));
        assert_eq!(describe(&e), "NOT_FOUND: key not found");
        assert!(!is_invalid_argument(&e));
        let e = GcpError::service(Status::default().set_code(Code::InvalidArgument).set_message("bad"));
        assert!(is_invalid_argument(&e));
    }
}
