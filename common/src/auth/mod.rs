//! Authentication and organization isolation.
//!
//! - `X-CA-Root-Key`: the system admin key, compared in constant time on SHA-256 digests.
//! - `X-API-Key`: an organization's key, looked up by its SHA-256 through an in-memory TTL cache,
//!   so a warm key costs no warehouse query. Rotation evicts the old key locally at once.
//!
//! The org always comes from the key, never from the request: a key for org A on a path for org
//! B is refused (403) before any data is read.

pub mod oidc;

use std::time::Duration;

use axum::http::HeaderMap;
use moka::sync::Cache;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::warehouse::{Params, Warehouse, WarehouseError};

pub const ROOT_KEY_HEADER: &str = "x-ca-root-key";
pub const API_KEY_HEADER: &str = "x-api-key";

/// Why a caller was refused, or why it could not be checked. The edge turns these into 401, 403
/// and 5xx responses.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credential, or one that is not valid.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A valid credential that may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The key could not be looked up.
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
}

/// Who is calling, established before a handler reads anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Root,
    Org(OrgKey),
    /// `DISABLE_AUTH=true` (development only): treated as root.
    AuthDisabled,
}

/// An authenticated organization key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgKey {
    pub org_slug: String,
    pub api_key_id: String,
    pub fingerprint: String,
}

impl Caller {
    /// Root only (admin routes).
    pub fn require_root(&self) -> Result<(), AuthError> {
        match self {
            Caller::Root | Caller::AuthDisabled => Ok(()),
            Caller::Org(_) => Err(AuthError::Forbidden("this route needs the root key (X-CA-Root-Key)")),
        }
    }

    /// Root, or the key of `org_slug` itself.
    pub fn require_org(&self, org_slug: &str) -> Result<(), AuthError> {
        match self {
            Caller::Root | Caller::AuthDisabled => Ok(()),
            Caller::Org(key) if key.org_slug == org_slug => Ok(()),
            Caller::Org(_) => Err(AuthError::Forbidden("this API key belongs to another organization")),
        }
    }

    /// For audit rows: (actor_type, actor_id). The id names one key (its `api_key_id`, never the
    /// key itself; a fingerprint's four characters could name several), or `root`.
    pub fn actor(&self) -> (&'static str, Option<String>) {
        match self {
            Caller::Root => ("root", Some("root".into())),
            Caller::AuthDisabled => ("root", Some("auth-disabled".into())),
            Caller::Org(k) => ("api_key", Some(k.api_key_id.clone())),
        }
    }
}

/// Resolves keys; shared by every function.
pub struct Authenticator {
    root_digest: Option<[u8; 32]>,
    disabled: bool,
    /// key hash → key (present) ; absent keys are cached briefly in `unknown`.
    known: Cache<String, OrgKey>,
    unknown: Cache<String, ()>,
}

impl Authenticator {
    pub fn new(root_key: Option<&secrecy::SecretString>, disabled: bool, ttl: Duration) -> Authenticator {
        Authenticator {
            root_digest: root_key.map(|k| Sha256::digest(k.expose_secret().as_bytes()).into()),
            disabled,
            known: Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
            unknown: Cache::builder().max_capacity(100_000).time_to_live(ttl.min(Duration::from_secs(10))).build(),
        }
    }

    /// Whether `presented` is the root key (compared in constant time on SHA-256 digests).
    pub fn is_root(&self, presented: &[u8]) -> bool {
        let Some(expected) = &self.root_digest else { return false };
        let digest: [u8; 32] = Sha256::digest(presented).into();
        digest.ct_eq(expected).into()
    }

    /// `DISABLE_AUTH=true` (development only): every caller is treated as root.
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// Forgets a key at once (rotation, revocation).
    pub fn evict(&self, key_hash: &str) {
        self.known.invalidate(key_hash);
    }

    /// Forgets every key (the central tables were recreated).
    pub fn clear(&self) {
        self.known.invalidate_all();
        self.unknown.invalidate_all();
    }

    /// Remembers a key that was just created, so its first use needs no lookup either.
    pub fn remember(&self, key_hash: &str, key: OrgKey) {
        self.unknown.invalidate(key_hash);
        self.known.insert(key_hash.to_string(), key);
    }

    async fn lookup(
        &self,
        warehouse: &dyn Warehouse,
        central_dataset: &str,
        presented: &str,
    ) -> Result<Option<OrgKey>, WarehouseError> {
        if !looks_like_org_key(presented) {
            return Ok(None);
        }
        let hash = crate::domain::sha256_hex(presented.as_bytes());
        if let Some(key) = self.known.get(&hash) {
            return Ok(Some(key));
        }
        if self.unknown.contains_key(&hash) {
            return Ok(None);
        }
        let found = find_active_key(warehouse, central_dataset, &hash).await?;
        match &found {
            Some(key) => self.known.insert(hash, key.clone()),
            None => self.unknown.insert(hash, ()),
        }
        Ok(found)
    }

    /// Authenticates a request's headers; org keys are looked up in `central_dataset`.
    pub async fn authenticate(
        &self,
        warehouse: &dyn Warehouse,
        central_dataset: &str,
        headers: &HeaderMap,
    ) -> Result<Caller, AuthError> {
        if self.disabled {
            return Ok(Caller::AuthDisabled);
        }
        if let Some(root) = headers.get(ROOT_KEY_HEADER) {
            return if self.is_root(root.as_bytes()) {
                Ok(Caller::Root)
            } else {
                Err(AuthError::Unauthorized("the root key is not valid"))
            };
        }
        let Some(api_key) = headers.get(API_KEY_HEADER) else {
            return Err(AuthError::Unauthorized(
                "send an API key in the X-API-Key header (or the root key in X-CA-Root-Key)",
            ));
        };
        let presented = api_key.to_str().map_err(|_| AuthError::Unauthorized("the API key is not valid"))?;
        match self.lookup(warehouse, central_dataset, presented).await? {
            Some(key) => Ok(Caller::Org(key)),
            None => Err(AuthError::Unauthorized("the API key is not valid or has been revoked")),
        }
    }
}

/// `{org_slug}_api_{hex}`: anything else cannot be a key, so it costs no lookup.
fn looks_like_org_key(key: &str) -> bool {
    match key.rsplit_once("_api_") {
        Some((slug, random)) => {
            crate::domain::OrgSlug::parse(slug).is_ok()
                && random.len() >= 32
                && random.len() <= 128
                && random.bytes().all(|b| b.is_ascii_hexdigit())
        }
        None => false,
    }
}

async fn find_active_key(
    warehouse: &dyn Warehouse,
    dataset: &str,
    hash: &str,
) -> Result<Option<OrgKey>, WarehouseError> {
    let sql = format!(
        "SELECT api_key_id, org_slug, fingerprint FROM {} WHERE key_hash = @key_hash AND status = 'ACTIVE' LIMIT 1",
        warehouse.table_ref(dataset, "org_api_keys")?
    );
    let rows = warehouse.query(&sql, &Params::new().bind("key_hash", hash)).await?;
    Ok(rows.into_iter().next().map(|row| {
        let text = |name: &str| row.get(name).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        OrgKey { org_slug: text("org_slug"), api_key_id: text("api_key_id"), fingerprint: text("fingerprint") }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_shape() {
        assert!(looks_like_org_key(&format!("acme_api_{}", "a".repeat(32))));
        assert!(looks_like_org_key(&format!("my_api_co_api_{}", "0".repeat(40))));
        assert!(!looks_like_org_key("acme_api_short"));
        assert!(!looks_like_org_key(&format!("ACME_api_{}", "a".repeat(32))));
        assert!(!looks_like_org_key("' OR 1=1 --"));
    }

    #[test]
    fn root_key_compares_digests() {
        let a = Authenticator::new(Some(&"root-key-0123456789".to_string().into()), false, Duration::from_secs(60));
        assert!(a.is_root(b"root-key-0123456789"));
        assert!(!a.is_root(b"root-key-012345678"));
        assert!(!Authenticator::new(None, false, Duration::from_secs(1)).is_root(b""));
    }
}
