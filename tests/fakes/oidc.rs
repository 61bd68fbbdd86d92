//! A local stand-in for Google's token-signing keys (`GET /oauth2/v3/certs`, a JWKS with
//! `Cache-Control: public, max-age=…` as Google sends it) and a signer that mints ID tokens shaped
//! like the ones Pub/Sub push and Cloud Scheduler send. The RSA keys are generated in the test
//! process (never a real key): [`KEY_A`] is served first, [`KEY_B`] after a [`FakeJwks::rotate`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use axum::extract::State;
use axum::http::header::CACHE_CONTROL;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

use super::providers::test_key;

/// The key served before a rotation.
pub const KEY_A: usize = 0;
/// The key served after a rotation (and, under KEY_A's kid, a forger's key).
pub const KEY_B: usize = 1;

const CERTS_PATH: &str = "/oauth2/v3/certs";

/// `(n, e)` of each test key, base64url as a JWKS carries them.
static PUBLIC_PARTS: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
    [KEY_A, KEY_B]
        .iter()
        .map(|&index| {
            let public = rsa::RsaPublicKey::from_public_key_pem(&test_key(index).public_pem).expect("public key");
            (URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()), URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()))
        })
        .collect()
});

pub struct FakeJwks {
    base_url: String,
    state: Arc<JwksState>,
    server: tokio::task::JoinHandle<()>,
}

struct JwksState {
    /// `(kid, key index)` of every key served.
    keys: Mutex<Vec<(String, usize)>>,
    max_age: AtomicU64,
    fetches: AtomicUsize,
}

impl FakeJwks {
    /// Starts the key server on `127.0.0.1:0`, serving [`KEY_A`] under `kid` with `max-age=3600`.
    pub async fn start(kid: &str) -> FakeJwks {
        let state = Arc::new(JwksState {
            keys: Mutex::new(vec![(kid.to_string(), KEY_A)]),
            max_age: AtomicU64::new(3600),
            fetches: AtomicUsize::new(0),
        });
        let app = Router::new().route(CERTS_PATH, get(certs)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake JWKS");
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeJwks { base_url: format!("http://127.0.0.1:{port}"), state, server }
    }

    /// The value for `OIDC_JWKS_URL`.
    pub fn url(&self) -> String {
        format!("{}{CERTS_PATH}", self.base_url)
    }

    /// Key-set downloads so far.
    pub fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    /// Serves only [`KEY_B`], under `kid`, from now on (Google retiring a key).
    pub fn rotate(&self, kid: &str) {
        *self.state.keys.lock().unwrap() = vec![(kid.to_string(), KEY_B)];
    }

    /// The `max-age` of later responses.
    pub fn set_max_age(&self, secs: u64) {
        self.state.max_age.store(secs, Ordering::SeqCst);
    }
}

impl Drop for FakeJwks {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn certs(State(state): State<Arc<JwksState>>) -> impl IntoResponse {
    state.fetches.fetch_add(1, Ordering::SeqCst);
    let keys: Vec<Value> = state
        .keys
        .lock()
        .unwrap()
        .iter()
        .map(|(kid, index)| {
            let (n, e) = &PUBLIC_PARTS[*index];
            json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": n, "e": e})
        })
        .collect();
    let cache_control =
        format!("public, max-age={}, must-revalidate, no-transform", state.max_age.load(Ordering::SeqCst));
    ([(CACHE_CONTROL, cache_control)], Json(json!({ "keys": keys })))
}

/// The claims of a Google ID token for `audience` from `email`, issued now, valid for an hour.
pub fn google_claims(audience: &str, email: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": "https://accounts.google.com",
        "aud": audience,
        "azp": "104950378522919284633",
        "sub": "104950378522919284633",
        "email": email,
        "email_verified": true,
        "iat": now,
        "exp": now + 3600,
    })
}

/// An RS256 token over `claims`, signed with test key `key` and labelled `kid`.
pub fn sign(key: usize, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    let signing = EncodingKey::from_rsa_pem(test_key(key).private_pem.as_bytes()).expect("private key");
    jsonwebtoken::encode(&header, claims, &signing).expect("sign")
}

/// An HS256 token keyed with `secret` (an attacker's guess at a confused verifier).
pub fn sign_hs256(secret: &[u8], kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).expect("sign")
}

/// An unsigned token (`alg: none`, empty signature).
pub fn unsigned(kid: &str, claims: &Value) -> String {
    let part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.", part(json!({"alg": "none", "typ": "JWT", "kid": kid})), part(claims.clone()))
}
