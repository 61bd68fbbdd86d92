//! A local fake of Cloud KMS's REST API, faithful to what `google-cloud-kms-v1` sends and expects:
//! `POST /v1/{name}:encrypt` and `POST /v1/{name}:decrypt` with `?$alt=json;enum-encoding=int`
//! (sent URL-encoded: `?%24alt=json%3Benum-encoding%3Dint`), camelCase JSON, bytes as standard base64 and int64 checksums as decimal strings.
//!
//! It behaves like KMS where the client can tell: ciphertext is opaque (really AES-256-GCM with a
//! random key per `CryptoKey` held in memory, a fresh nonce per message, the additional
//! authenticated data bound), CRC32C fields are checked and reported, and errors carry Google's
//! shape `{"error": {"code", "message", "status"}}`: 404 NOT_FOUND for an unknown key,
//! 400 FAILED_PRECONDITION for a disabled one, 400 INVALID_ARGUMENT for a ciphertext that cannot
//! be decrypted (tampered, wrong associated data) or a checksum that does not match.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::kms::gcp::crc32c;
use serde::Deserialize;
use serde_json::{json, Value};

/// Ciphertext layout of the fake: a format byte, the key version (u32 BE), a 12-byte nonce and
/// the AES-GCM output. Opaque to the client, as KMS's is.
const FORMAT: u8 = 0x4b;
const NONCE_LEN: usize = 12;
const KEY_VERSION: u32 = 1;
const MAX_PLAINTEXT: usize = 64 * 1024;

pub struct FakeKms {
    base_url: String,
    state: Arc<FakeState>,
    server: tokio::task::JoinHandle<()>,
}

struct FakeKey {
    cipher: Aes256Gcm,
    enabled: bool,
}

#[derive(Default)]
struct FakeState {
    keys: Mutex<HashMap<String, FakeKey>>,
    requests: AtomicUsize,
    encrypts: AtomicUsize,
    decrypts: AtomicUsize,
    /// Flip a bit of every returned ciphertext/plaintext after its checksum was computed.
    corrupt: AtomicBool,
    /// `METHOD /path?query` of every request, in order (never the body: it holds secrets).
    log: Mutex<Vec<String>>,
}

impl FakeKms {
    /// Starts the fake on `127.0.0.1:0` with these `CryptoKey` names, each with its own random key.
    pub async fn start(keys: &[&str]) -> FakeKms {
        let state = Arc::new(FakeState::default());
        {
            let mut map = state.keys.lock().unwrap();
            for name in keys {
                let cipher = Aes256Gcm::new(&Aes256Gcm::generate_key(&mut OsRng));
                map.insert((*name).to_string(), FakeKey { cipher, enabled: true });
            }
        }
        let app = Router::new().route("/v1/{*call}", post(call)).fallback(unknown_route).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake KMS");
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeKms { base_url: format!("http://127.0.0.1:{port}"), state, server }
    }

    /// `http://127.0.0.1:{port}`, the value for `KMS_API_BASE`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Disables every version of `key`: KMS then answers FAILED_PRECONDITION.
    pub fn disable(&self, key: &str) {
        self.set_enabled(key, false);
    }

    pub fn enable(&self, key: &str) {
        self.set_enabled(key, true);
    }

    fn set_enabled(&self, key: &str, enabled: bool) {
        self.state.keys.lock().unwrap().get_mut(key).unwrap_or_else(|| panic!("the fake has no key {key}")).enabled =
            enabled;
    }

    /// From now on, damages the data in every response after computing its CRC32C, as a
    /// corruption in transit would: the client must notice.
    pub fn corrupt_responses(&self, corrupt: bool) {
        self.state.corrupt.store(corrupt, Ordering::SeqCst);
    }

    /// Every request received, including rejected ones.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// `:encrypt` calls that reached a known key.
    pub fn encrypt_requests(&self) -> usize {
        self.state.encrypts.load(Ordering::SeqCst)
    }

    /// `:decrypt` calls that reached a known key.
    pub fn decrypt_requests(&self) -> usize {
        self.state.decrypts.load(Ordering::SeqCst)
    }

    /// `METHOD /path?query` of every request so far.
    pub fn request_log(&self) -> Vec<String> {
        self.state.log.lock().unwrap().clone()
    }
}

impl Drop for FakeKms {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Google's error body.
fn error(http: StatusCode, status: &str, message: impl Into<String>) -> Response {
    let message = message.into();
    (http, Json(json!({"error": {"code": http.as_u16(), "message": message, "status": status}}))).into_response()
}

async fn unknown_route(State(state): State<Arc<FakeState>>, req: axum::extract::Request) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    state.log.lock().unwrap().push(format!("{} {}", req.method(), req.uri()));
    error(StatusCode::NOT_FOUND, "NOT_FOUND", format!("The requested URL {} was not found.", req.uri().path()))
}

/// Proto3 JSON: camelCase names (the original snake_case is accepted too), bytes in base64,
/// int64 as strings (numbers accepted).
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct CryptoRequest {
    name: Option<String>,
    plaintext: Option<String>,
    ciphertext: Option<String>,
    #[serde(alias = "additional_authenticated_data")]
    additional_authenticated_data: Option<String>,
    #[serde(alias = "plaintext_crc32c")]
    plaintext_crc32c: Option<Value>,
    #[serde(alias = "ciphertext_crc32c")]
    ciphertext_crc32c: Option<Value>,
    #[serde(alias = "additional_authenticated_data_crc32c")]
    additional_authenticated_data_crc32c: Option<Value>,
}

async fn call(
    State(state): State<Arc<FakeState>>,
    Path(call): Path<String>,
    RawQuery(raw_query): RawQuery,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    state.log.lock().unwrap().push(format!("POST /v1/{call}?{}", raw_query.unwrap_or_default()));
    // `$alt=json;enum-encoding=int` (the client sends it on every call) asks for enums as numbers.
    let enums_as_int = query.get("$alt").is_some_and(|alt| alt.split(';').any(|p| p == "enum-encoding=int"));
    let Some((name, method)) = call.rsplit_once(':') else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", format!("The requested URL /v1/{call} was not found."));
    };
    let req: CryptoRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", format!("Invalid JSON payload: {e}")),
    };
    if req.name.as_deref().is_some_and(|n| n != name) {
        return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "The name in the body does not match the URL.");
    }
    let keys = state.keys.lock().unwrap();
    let Some(key) = keys.get(name) else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", format!("CryptoKey {name} not found."));
    };
    if !key.enabled {
        return error(
            StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
            format!("{name}/cryptoKeyVersions/{KEY_VERSION} is not enabled, current state is: DISABLED."),
        );
    }
    let aad = match bytes_field(&req.additional_authenticated_data, "additional_authenticated_data") {
        Ok(v) => v,
        Err(r) => return r,
    };
    let aad_verified = match checksum(&req.additional_authenticated_data_crc32c, &aad, "additional_authenticated_data")
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let protection_level = if enums_as_int { json!(1) } else { json!("SOFTWARE") };
    match method {
        "encrypt" => {
            state.encrypts.fetch_add(1, Ordering::SeqCst);
            let plaintext = match bytes_field(&req.plaintext, "plaintext") {
                Ok(v) => v,
                Err(r) => return r,
            };
            if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_ARGUMENT",
                    format!("Plaintext must be between 1 and {MAX_PLAINTEXT} bytes."),
                );
            }
            let verified = match checksum(&req.plaintext_crc32c, &plaintext, "plaintext") {
                Ok(v) => v,
                Err(r) => return r,
            };
            let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
            let sealed = key.cipher.encrypt(&nonce, Payload { msg: &plaintext, aad: &aad }).expect("AES-GCM encrypt");
            let mut ciphertext = vec![FORMAT];
            ciphertext.extend_from_slice(&KEY_VERSION.to_be_bytes());
            ciphertext.extend_from_slice(&nonce);
            ciphertext.extend_from_slice(&sealed);
            let ciphertext_crc32c = crc32c(&ciphertext).to_string();
            if state.corrupt.load(Ordering::SeqCst) {
                ciphertext[0] ^= 0x01;
            }
            Json(json!({
                "name": format!("{name}/cryptoKeyVersions/{KEY_VERSION}"),
                "ciphertext": STANDARD.encode(&ciphertext),
                "ciphertextCrc32c": ciphertext_crc32c,
                "verifiedPlaintextCrc32c": verified,
                "verifiedAdditionalAuthenticatedDataCrc32c": aad_verified,
                "protectionLevel": protection_level,
            }))
            .into_response()
        }
        "decrypt" => {
            state.decrypts.fetch_add(1, Ordering::SeqCst);
            let ciphertext = match bytes_field(&req.ciphertext, "ciphertext") {
                Ok(v) => v,
                Err(r) => return r,
            };
            if let Err(r) = checksum(&req.ciphertext_crc32c, &ciphertext, "ciphertext") {
                return r;
            }
            let invalid =
                || error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "Decryption failed: the ciphertext is invalid.");
            let header = 1 + 4 + NONCE_LEN;
            if ciphertext.len() < header + 16
                || ciphertext[0] != FORMAT
                || ciphertext[1..5] != KEY_VERSION.to_be_bytes()
            {
                return invalid();
            }
            let nonce = Nonce::from_slice(&ciphertext[5..header]);
            let Ok(mut plaintext) = key.cipher.decrypt(nonce, Payload { msg: &ciphertext[header..], aad: &aad }) else {
                return invalid();
            };
            let plaintext_crc32c = crc32c(&plaintext).to_string();
            if state.corrupt.load(Ordering::SeqCst) {
                plaintext[0] ^= 0x01;
            }
            Json(json!({
                "plaintext": STANDARD.encode(&plaintext),
                "plaintextCrc32c": plaintext_crc32c,
                "usedPrimary": true,
                "protectionLevel": protection_level,
            }))
            .into_response()
        }
        other => error(StatusCode::NOT_FOUND, "NOT_FOUND", format!("Method {other} not found.")),
    }
}

/// A base64 bytes field; absent means empty (proto3 default).
#[allow(clippy::result_large_err)]
fn bytes_field(value: &Option<String>, field: &str) -> Result<Vec<u8>, Response> {
    match value {
        None => Ok(Vec::new()),
        Some(b64) => {
            STANDARD.decode(b64).or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(b64)).map_err(|_| {
                error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", format!("Invalid value at '{field}': not base64."))
            })
        }
    }
}

/// Checks an optional CRC32C field against its data: `Ok(true)` when given and matching,
/// `Ok(false)` when absent, INVALID_ARGUMENT when it does not match.
#[allow(clippy::result_large_err)]
fn checksum(value: &Option<Value>, data: &[u8], field: &str) -> Result<bool, Response> {
    let given = match value {
        None | Some(Value::Null) => return Ok(false),
        Some(Value::String(s)) => s.parse::<i64>().ok(),
        Some(Value::Number(n)) => n.as_i64(),
        Some(_) => None,
    };
    if given == Some(i64::from(crc32c(data))) {
        Ok(true)
    } else {
        Err(error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            format!("The checksum in field {field}_crc32c did not match the data in field {field}."),
        ))
    }
}
