//! Authentication and organization isolation.
//!
//! - `X-CA-Root-Key`: the system admin key, compared in constant time on SHA-256 digests.
//! - `X-API-Key`: an organization's key, looked up by its SHA-256 through an in-memory TTL cache,
//!   so a warm key costs no warehouse query. Rotation evicts the old key locally at once.
//!
//! The org always comes from the key, never from the request: a key for org A on a path for org
//! B is refused (403) before any data is read.

pub mod oidc;
pub mod throttle;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use axum::http::HeaderMap;
use moka::sync::Cache;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::settings::{DEFAULT_AUTH_FAILURES_PER_MINUTE, DEFAULT_AUTH_FAILURE_BURST};
use crate::warehouse::{Params, Warehouse, WarehouseError};
use throttle::FailureThrottle;

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
    /// The client's address has used up its budget of failed authentications; nothing was
    /// checked or looked up.
    #[error("too many failed authentications from this address; retry after {retry_after_secs} second(s)")]
    Throttled { retry_after_secs: u64 },
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

    /// The actor as one name, for `*_by` columns: the key's id, or `root`.
    pub fn actor_name(&self) -> String {
        let (actor_type, actor_id) = self.actor();
        actor_id.unwrap_or_else(|| actor_type.to_string())
    }
}

/// Resolves keys; shared by every function.
pub struct Authenticator {
    root_digest: Option<[u8; 32]>,
    disabled: bool,
    /// key hash → key (present) ; absent keys are cached briefly in `unknown`.
    known: Cache<String, OrgKey>,
    unknown: Cache<String, ()>,
    /// Failed authentications per client address (see [`throttle`]).
    failures: FailureThrottle,
}

impl Authenticator {
    pub fn new(root_key: Option<&secrecy::SecretString>, disabled: bool, ttl: Duration) -> Authenticator {
        Authenticator {
            root_digest: root_key.map(|k| Sha256::digest(k.expose_secret().as_bytes()).into()),
            disabled,
            known: Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
            unknown: Cache::builder().max_capacity(100_000).time_to_live(ttl.min(Duration::from_secs(10))).build(),
            failures: FailureThrottle::new(DEFAULT_AUTH_FAILURES_PER_MINUTE, DEFAULT_AUTH_FAILURE_BURST),
        }
    }

    /// The budget of failed authentications per client address: `burst` at once, `per_minute`
    /// more each minute.
    pub fn with_failure_budget(mut self, per_minute: u32, burst: u32) -> Authenticator {
        self.failures = FailureThrottle::new(per_minute, burst);
        self
    }

    /// A credential that was not valid: counted against `client`'s budget. 401 while the budget
    /// lasts, 429 once it is spent.
    fn failed(&self, client: IpAddr, message: &'static str) -> AuthError {
        match self.failures.take(client) {
            Ok(()) => AuthError::Unauthorized(message),
            Err(retry_after_secs) => AuthError::Throttled { retry_after_secs },
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

    /// The key `presented` names, from the cache or (spending one of `client`'s attempts, given
    /// back when the key is valid) the warehouse; a key that is not one spends its attempt.
    async fn lookup(
        &self,
        warehouse: &dyn Warehouse,
        central_dataset: &str,
        presented: &str,
        client: IpAddr,
    ) -> Result<OrgKey, AuthError> {
        const INVALID: &str = "the API key is not valid or has been revoked";
        if !looks_like_org_key(presented) {
            return Err(self.failed(client, INVALID));
        }
        let hash = crate::domain::sha256_hex(presented.as_bytes());
        if let Some(key) = self.known.get(&hash) {
            return Ok(key);
        }
        if self.unknown.contains_key(&hash) {
            return Err(self.failed(client, INVALID));
        }
        // Taken before the query, so concurrent unknown keys from one address cannot overspend.
        if let Err(retry_after_secs) = self.failures.take(client) {
            return Err(AuthError::Throttled { retry_after_secs });
        }
        let found = find_active_key(warehouse, central_dataset, &hash).await;
        match found {
            Ok(Some(key)) => {
                self.failures.give_back(client);
                self.known.insert(hash, key.clone());
                Ok(key)
            }
            Ok(None) => {
                self.unknown.insert(hash, ());
                Err(AuthError::Unauthorized(INVALID))
            }
            Err(e) => {
                // The warehouse failed, not the client: its attempt is not held against it.
                self.failures.give_back(client);
                Err(e.into())
            }
        }
    }

    /// Authenticates a request's headers; org keys are looked up in `central_dataset`. `client`
    /// is the request's client address (see `http::middleware::ClientAddr`); failed attempts
    /// are counted against it, and once its budget is spent the answer is
    /// [`AuthError::Throttled`] without a lookup.
    pub async fn authenticate(
        &self,
        warehouse: &dyn Warehouse,
        central_dataset: &str,
        headers: &HeaderMap,
        client: Option<IpAddr>,
    ) -> Result<Caller, AuthError> {
        if self.disabled {
            return Ok(Caller::AuthDisabled);
        }
        // Without a known address every such request shares one budget: stricter, never looser.
        let client = client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        if let Some(root) = headers.get(ROOT_KEY_HEADER) {
            return if self.is_root(root.as_bytes()) {
                Ok(Caller::Root)
            } else {
                Err(self.failed(client, "the root key is not valid"))
            };
        }
        let Some(api_key) = headers.get(API_KEY_HEADER) else {
            return Err(AuthError::Unauthorized(
                "send an API key in the X-API-Key header (or the root key in X-CA-Root-Key)",
            ));
        };
        let Ok(presented) = api_key.to_str() else {
            return Err(self.failed(client, "the API key is not valid"));
        };
        self.lookup(warehouse, central_dataset, presented, client).await.map(Caller::Org)
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
