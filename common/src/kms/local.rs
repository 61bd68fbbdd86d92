//! AES-256-GCM with a 32-byte key kept in a file created 0600 in `DATA_DIR`.
//!
//! Ciphertext layout: version byte `1` ‖ 12-byte random nonce ‖ AES-GCM ciphertext+tag. A fresh
//! nonce per message; GCM's tag makes tampering or a wrong key an error, never garbage.

use std::path::Path;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use async_trait::async_trait;

use super::{Kms, KmsError};
use crate::domain::write_private_file;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

pub struct LocalKms {
    cipher: Aes256Gcm,
}

impl LocalKms {
    /// Loads the key file, creating it (0600, 32 random bytes) when absent.
    pub fn open_or_create(path: &Path) -> Result<LocalKms, KmsError> {
        let unavailable =
            |what: &str, e: std::io::Error| KmsError::Unavailable(format!("{what} key file {}: {e}", path.display()));
        let key = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| unavailable("cannot create the directory of", e))?;
                }
                let key = Aes256Gcm::generate_key(&mut OsRng);
                match write_private_file(path, key.as_slice()) {
                    Ok(()) => key.to_vec(),
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        std::fs::read(path).map_err(|e| unavailable("cannot read", e))?
                    }
                    Err(e) => return Err(unavailable("cannot create", e)),
                }
            }
            Err(e) => return Err(unavailable("cannot read", e)),
        };
        if key.len() != 32 {
            return Err(KmsError::Unavailable(format!(
                "key file {} must hold exactly 32 bytes, it holds {}",
                path.display(),
                key.len()
            )));
        }
        Ok(Self::from_key(&key))
    }

    pub fn from_key(key: &[u8]) -> LocalKms {
        LocalKms { cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)) }
    }
}

#[async_trait]
impl Kms for LocalKms {
    fn backend_name(&self) -> &'static str {
        "local"
    }

    async fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KmsError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg: plaintext, aad })
            .map_err(|_| KmsError::Unavailable("encryption failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    async fn decrypt(&self, ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KmsError> {
        if ciphertext.len() < 1 + NONCE_LEN + 16 || ciphertext[0] != VERSION {
            return Err(KmsError::Decrypt);
        }
        let nonce = Nonce::from_slice(&ciphertext[1..1 + NONCE_LEN]);
        self.cipher.decrypt(nonce, Payload { msg: &ciphertext[1 + NONCE_LEN..], aad }).map_err(|_| KmsError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_with_fresh_nonces() {
        let dir = tempfile::tempdir().unwrap();
        let kms = LocalKms::open_or_create(&dir.path().join("kms.key")).unwrap();
        let a = kms.encrypt(b"secret", b"org_a").await.unwrap();
        let b = kms.encrypt(b"secret", b"org_a").await.unwrap();
        assert_ne!(a, b, "a fresh nonce per message");
        assert!(!a.windows(6).any(|w| w == b"secret"));
        assert_eq!(kms.decrypt(&a, b"org_a").await.unwrap(), b"secret");
    }

    #[tokio::test]
    async fn tamper_wrong_key_and_wrong_aad_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let kms = LocalKms::open_or_create(&dir.path().join("kms.key")).unwrap();
        let sealed = kms.encrypt(b"secret", b"org_a").await.unwrap();
        for i in [0, 5, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(matches!(kms.decrypt(&bad, b"org_a").await, Err(KmsError::Decrypt)), "byte {i}");
        }
        assert!(matches!(kms.decrypt(&sealed, b"org_b").await, Err(KmsError::Decrypt)));
        assert!(matches!(kms.decrypt(&sealed[..10], b"org_a").await, Err(KmsError::Decrypt)));
        let other = LocalKms::from_key(&[7u8; 32]);
        assert!(matches!(other.decrypt(&sealed, b"org_a").await, Err(KmsError::Decrypt)));
    }

    #[tokio::test]
    async fn key_file_is_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms.key");
        let first = LocalKms::open_or_create(&path).unwrap();
        let sealed = first.encrypt(b"x", b"").await.unwrap();
        let second = LocalKms::open_or_create(&path).unwrap();
        assert_eq!(second.decrypt(&sealed, b"").await.unwrap(), b"x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(dir.path().join("short.key"), [1u8; 16]).unwrap();
        assert!(LocalKms::open_or_create(&dir.path().join("short.key")).is_err());
    }
}
