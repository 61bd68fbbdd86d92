//! Local doubles of the provider APIs that credential validation calls, answering with the
//! providers' real success and error bodies (`shared/reference/provider-apis.md` §3c, §4):
//!
//! - OpenAI under `/openai/v1`: `GET /organization/projects` (admin keys only) and `GET /models`
//!   (any real key). Errors `{"error": {"message", "type", "param", "code"}}`.
//! - Anthropic under `/anthropic`: `GET /v1/organizations/me` (Admin keys only) and
//!   `GET /v1/models` (any real key); `anthropic-version` required. Errors
//!   `{"type": "error", "error": {"type", "message"}}`.
//! - Google's OAuth token endpoint `POST /google/token` (JWT-bearer grant; the RS256 signature is
//!   checked with the public key of the service account that signed, aud (Google's own token URL,
//!   which the key files name) and scope are checked; the app reaches it through `GOOGLE_TOKEN_URL`)
//!   and BigQuery `tables.get` under `/bigquery-api/bigquery/v2/…` (200 for a known table with a
//!   token it issued, 404 for an unknown table, 403 for a service account without access, 401
//!   for a token it never issued). Errors in Google's shapes.
//!
//! Keys are minted per test with a behaviour (admin, project key, rate limited, …); anything else
//! is an invalid key. One deliberate harshness: the OpenAI 401 for an invalid key quotes the key
//! whole (OpenAI masks all but a few characters), so the tests prove the server redacts it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::Deserialize;
use serde_json::{json, Value};

/// The token endpoint Google writes in its key files, and the audience its tokens' assertions carry.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// How a minted key or service account behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// An admin key (or a service account with access to the known tables).
    Admin,
    /// A project/workspace key with the provider's non-admin prefix: refused by the admin call,
    /// accepted by the models list.
    Project,
    /// A non-admin key without a telling prefix (an OpenAI user key, an Anthropic key of another
    /// kind): 403 on the admin call, accepted by the models list.
    NonAdmin,
    /// 429 with `Retry-After: 7`.
    RateLimited,
    /// 500 with the provider's error body.
    ServerError,
    /// Answers after 3 s (longer than the tests' 1 s timeout).
    Slow,
    /// gcp: a service account whose key Google no longer knows (the signature does not verify).
    WrongKey,
    /// gcp: a working service account without access to the table (403 from tables.get).
    NoAccess,
    /// 200 with a 2 MB body: more than a key check's answer may be.
    Oversized,
}

pub const SLOW: Duration = Duration::from_secs(3);

#[derive(Default)]
struct FakeState {
    keys: Mutex<HashMap<String, Behaviour>>,
    /// client_email → (public key PEM, behaviour).
    accounts: Mutex<HashMap<String, (String, Behaviour)>>,
    /// access token → client_email.
    tokens: Mutex<HashMap<String, String>>,
    /// `project.dataset.table` of known billing export tables.
    tables: Mutex<Vec<String>>,
    /// `METHOD /path` of every request (never headers or bodies: they hold secrets).
    log: Mutex<Vec<String>>,
}

pub struct FakeProviders {
    base_url: String,
    state: Arc<FakeState>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeProviders {
    pub async fn start() -> FakeProviders {
        let state = Arc::new(FakeState::default());
        let app = Router::new()
            .route("/openai/v1/organization/projects", get(openai_projects))
            .route("/openai/v1/models", get(openai_models))
            .route("/anthropic/v1/organizations/me", get(anthropic_me))
            .route("/anthropic/v1/models", get(anthropic_models))
            .route("/google/token", post(google_token))
            .route("/bigquery-api/bigquery/v2/projects/{p}/datasets/{d}/tables/{t}", get(tables_get))
            .layer(axum::middleware::from_fn_with_state(state.clone(), record))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake providers");
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeProviders { base_url: format!("http://127.0.0.1:{port}"), state, server }
    }

    pub fn openai_base(&self) -> String {
        format!("{}/openai/v1", self.base_url)
    }
    pub fn anthropic_base(&self) -> String {
        format!("{}/anthropic", self.base_url)
    }
    pub fn bigquery_base(&self) -> String {
        format!("{}/bigquery-api", self.base_url)
    }
    pub fn token_uri(&self) -> String {
        format!("{}/google/token", self.base_url)
    }

    /// Settings pointing the app at this fake, with a 1 s provider timeout.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OPENAI_API_BASE", self.openai_base()),
            ("ANTHROPIC_API_BASE", self.anthropic_base()),
            ("BIGQUERY_API_BASE", self.bigquery_base()),
            ("GOOGLE_TOKEN_URL", self.token_uri()),
            ("PROVIDER_TIMEOUT_SECS", "1".into()),
        ]
    }

    /// A fresh key for `provider` (`openai` or `anthropic`) that behaves as asked.
    pub fn mint_key(&self, provider: &str, behaviour: Behaviour) -> String {
        let random = uuid::Uuid::new_v4().simple().to_string();
        let key = match (provider, behaviour) {
            ("openai", Behaviour::Project) => format!("sk-proj-{random}"),
            ("openai", Behaviour::NonAdmin) => format!("sk-{random}"),
            ("openai", _) => format!("sk-admin-{random}"),
            ("anthropic", Behaviour::Project) => format!("sk-ant-api03-{random}"),
            ("anthropic", Behaviour::NonAdmin) => format!("sk-ant-oth01-{random}"),
            ("anthropic", _) => format!("sk-ant-admin01-{random}"),
            (other, _) => panic!("no keys for {other}"),
        };
        self.state.keys.lock().unwrap().insert(key.clone(), behaviour);
        key
    }

    /// Changes how an existing key behaves (`None`: the provider forgets it, as after a revocation).
    pub fn set_behaviour(&self, key: &str, behaviour: Option<Behaviour>) {
        let mut keys = self.state.keys.lock().unwrap();
        match behaviour {
            Some(b) => keys.insert(key.to_string(), b),
            None => keys.remove(key),
        };
    }

    /// A billing export table that `tables.get` knows.
    pub fn add_table(&self, table: &str) {
        self.state.tables.lock().unwrap().push(table.to_string());
    }

    /// A service-account key file as Google issues it (`token_uri` is Google's: the app reaches this
    /// fake through `GOOGLE_TOKEN_URL`, see [`FakeProviders::env`]). `Admin` can read every known
    /// table; `WrongKey` signs with a key Google does not hold; `NoAccess` gets a token but no table.
    pub fn service_account(&self, behaviour: Behaviour) -> Value {
        let random = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let email = format!("reader-{random}@acme-billing.iam.gserviceaccount.com");
        let (signing, registered) = match behaviour {
            Behaviour::WrongKey => (test_key(0), test_key(1)),
            _ => (test_key(0), test_key(0)),
        };
        self.state.accounts.lock().unwrap().insert(email.clone(), (registered.public_pem.clone(), behaviour));
        json!({
            "type": "service_account",
            "project_id": "acme-billing",
            "private_key_id": format!("{random}0123456789abcdef"),
            "private_key": signing.private_pem,
            "client_email": email,
            "client_id": "109876543210987654321",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": GOOGLE_TOKEN_URI,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/reader",
            "universe_domain": "googleapis.com",
        })
    }

    /// `METHOD /path` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.log.lock().unwrap().clone()
    }
}

impl Drop for FakeProviders {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub struct TestKey {
    pub private_pem: String,
    pub public_pem: String,
}

/// Two RSA-2048 test keys, generated once per test process (never a real key).
pub fn test_key(index: usize) -> &'static TestKey {
    static KEYS: OnceLock<Vec<TestKey>> = OnceLock::new();
    &KEYS.get_or_init(|| {
        (0..2)
            .map(|_| {
                let private =
                    rsa::RsaPrivateKey::new(&mut aes_gcm::aead::OsRng, 2048).expect("generate an RSA test key");
                TestKey {
                    private_pem: private.to_pkcs8_pem(LineEnding::LF).expect("PEM").to_string(),
                    public_pem: private.to_public_key().to_public_key_pem(LineEnding::LF).expect("PEM"),
                }
            })
            .collect()
    })[index]
}

async fn record(
    State(state): State<Arc<FakeState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    state.log.lock().unwrap().push(format!("{} {}", req.method(), req.uri().path()));
    next.run(req).await
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ").map(str::to_string)
}

fn openai_error(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response {
    (status, Json(json!({"error": {"message": message, "type": kind, "param": null, "code": code}}))).into_response()
}

/// The shared misbehaviours: 429, 500, slow.
async fn misbehave(behaviour: Behaviour, error: fn(StatusCode, &str) -> Response) -> Option<Response> {
    match behaviour {
        Behaviour::RateLimited => {
            let mut r =
                error(StatusCode::TOO_MANY_REQUESTS, "Rate limit reached for requests. Please try again later.");
            r.headers_mut().insert("retry-after", "7".parse().unwrap());
            Some(r)
        }
        Behaviour::ServerError => Some(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server had an error while processing your request. Sorry about that!",
        )),
        Behaviour::Slow => {
            tokio::time::sleep(SLOW).await;
            None
        }
        Behaviour::Oversized => {
            let padding = "x".repeat(2 << 20);
            Some(Json(json!({"object": "list", "data": [], "padding": padding})).into_response())
        }
        _ => None,
    }
}

fn openai_plain_error(status: StatusCode, message: &str) -> Response {
    let (kind, code) = match status {
        StatusCode::TOO_MANY_REQUESTS => ("requests", Some("rate_limit_exceeded")),
        _ => ("server_error", None),
    };
    openai_error(status, message, kind, code)
}

#[allow(clippy::result_large_err)]
fn openai_key(state: &FakeState, headers: &HeaderMap) -> Result<(String, Behaviour), Response> {
    let key = bearer(headers).unwrap_or_default();
    match state.keys.lock().unwrap().get(&key) {
        Some(b) => Ok((key.clone(), *b)),
        None => Err(openai_error(
            StatusCode::UNAUTHORIZED,
            &format!("Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com/account/api-keys."),
            "invalid_request_error",
            Some("invalid_api_key"),
        )),
    }
}

async fn openai_projects(State(state): State<Arc<FakeState>>, headers: HeaderMap) -> Response {
    let (_, behaviour) = match openai_key(&state, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    if let Some(r) = misbehave(behaviour, openai_plain_error).await {
        return r;
    }
    let insufficient = "You have insufficient permissions for this operation. Missing scopes: api.management.read. \
                        Check that you have the correct role in your organization (Reader, Writer, Owner).";
    match behaviour {
        Behaviour::Project => openai_error(StatusCode::UNAUTHORIZED, insufficient, "invalid_request_error", None),
        Behaviour::NonAdmin => openai_error(StatusCode::FORBIDDEN, insufficient, "invalid_request_error", None),
        _ => Json(json!({
            "object": "list",
            "data": [{"id": "proj_abc123", "object": "organization.project", "name": "Default project",
                      "created_at": 1711471533, "archived_at": null, "status": "active"}],
            "first_id": "proj_abc123", "last_id": "proj_abc123", "has_more": false
        }))
        .into_response(),
    }
}

async fn openai_models(State(state): State<Arc<FakeState>>, headers: HeaderMap) -> Response {
    if let Err(r) = openai_key(&state, &headers) {
        return r;
    }
    Json(json!({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"}]}))
        .into_response()
}

fn anthropic_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, Json(json!({"type": "error", "error": {"type": kind, "message": message}}))).into_response()
}

fn anthropic_plain_error(status: StatusCode, message: &str) -> Response {
    let kind = if status == StatusCode::TOO_MANY_REQUESTS { "rate_limit_error" } else { "api_error" };
    anthropic_error(status, kind, message)
}

#[allow(clippy::result_large_err)]
fn anthropic_key(state: &FakeState, headers: &HeaderMap) -> Result<Behaviour, Response> {
    if headers.get("anthropic-version").and_then(|v| v.to_str().ok()) != Some("2023-06-01") {
        return Err(anthropic_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required",
        ));
    }
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok()).unwrap_or_default();
    state
        .keys
        .lock()
        .unwrap()
        .get(key)
        .copied()
        .ok_or_else(|| anthropic_error(StatusCode::UNAUTHORIZED, "authentication_error", "invalid x-api-key"))
}

async fn anthropic_me(State(state): State<Arc<FakeState>>, headers: HeaderMap) -> Response {
    let behaviour = match anthropic_key(&state, &headers) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Some(r) = misbehave(behaviour, anthropic_plain_error).await {
        return r;
    }
    match behaviour {
        Behaviour::Project => anthropic_error(StatusCode::UNAUTHORIZED, "authentication_error", "invalid x-api-key"),
        Behaviour::NonAdmin => anthropic_error(
            StatusCode::FORBIDDEN,
            "permission_error",
            "This API key does not have permission to use the Admin API.",
        ),
        _ => Json(json!({"id": "12345678-1234-5678-1234-567812345678", "name": "Acme Org", "type": "organization"}))
            .into_response(),
    }
}

async fn anthropic_models(State(state): State<Arc<FakeState>>, headers: HeaderMap) -> Response {
    if let Err(r) = anthropic_key(&state, &headers) {
        return r;
    }
    Json(json!({
        "data": [{"type": "model", "id": "claude-sonnet-4-20250514", "display_name": "Claude Sonnet 4", "created_at": "2025-05-14T00:00:00Z"}],
        "has_more": false, "first_id": "claude-sonnet-4-20250514", "last_id": "claude-sonnet-4-20250514"
    }))
    .into_response()
}

fn oauth_error(error: &str, description: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": error, "error_description": description}))).into_response()
}

/// The form body (`application/x-www-form-urlencoded`) as a map.
fn form(body: &str) -> HashMap<String, String> {
    let url = reqwest::Url::parse(&format!("http://form/?{body}")).expect("form body");
    url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    scope: String,
}

async fn google_token(State(state): State<Arc<FakeState>>, body: String) -> Response {
    let form = form(&body);
    if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return oauth_error("unsupported_grant_type", "Invalid grant_type.");
    }
    let Some(assertion) = form.get("assertion").cloned() else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    // Who claims to sign: read without verifying, then verify with that account's public key.
    let mut peek = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    peek.insecure_disable_signature_validation();
    peek.validate_aud = false;
    let Ok(unverified) =
        jsonwebtoken::decode::<Claims>(&assertion, &jsonwebtoken::DecodingKey::from_secret(b""), &peek)
    else {
        return oauth_error(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
        );
    };
    let Some((public_pem, behaviour)) = state.accounts.lock().unwrap().get(&unverified.claims.iss).cloned() else {
        return oauth_error("invalid_grant", "Invalid grant: account not found");
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    // aud is checked below (it is the token endpoint's URL, which only the fake knows the shape of).
    validation.validate_aud = false;
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(public_pem.as_bytes()).expect("public key");
    let Ok(verified) = jsonwebtoken::decode::<Value>(&assertion, &key, &validation) else {
        return oauth_error("invalid_grant", "Invalid JWT Signature.");
    };
    let aud = verified.claims["aud"].as_str().unwrap_or_default();
    if aud != GOOGLE_TOKEN_URI {
        return oauth_error("invalid_grant", "Invalid JWT: aud must be the token endpoint.");
    }
    let (iat, exp) = (verified.claims["iat"].as_i64().unwrap_or(0), verified.claims["exp"].as_i64().unwrap_or(0));
    if exp - iat > 3600 || exp <= iat {
        return oauth_error(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
        );
    }
    let scopes = unverified.claims.scope;
    if !scopes.split(' ').any(|s| {
        s == "https://www.googleapis.com/auth/bigquery.readonly"
            || s == "https://www.googleapis.com/auth/bigquery"
            || s == "https://www.googleapis.com/auth/cloud-platform"
    }) {
        return oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience provided.");
    }
    if let Some(r) = misbehave(behaviour, |s, m| {
        (s, Json(json!({"error": "internal_failure", "error_description": m}))).into_response()
    })
    .await
    {
        return r;
    }
    let token = format!("ya29.fake-{}", uuid::Uuid::new_v4().simple());
    state.tokens.lock().unwrap().insert(token.clone(), unverified.claims.iss);
    Json(json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})).into_response()
}

fn google_error(status: StatusCode, google_status: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"code": status.as_u16(), "message": message, "errors": [{"message": message, "domain": "global", "reason": google_status.to_lowercase()}], "status": google_status}}))).into_response()
}

async fn tables_get(
    State(state): State<Arc<FakeState>>,
    Path((project, dataset, table)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let token = bearer(&headers).unwrap_or_default();
    let Some(email) = state.tokens.lock().unwrap().get(&token).cloned() else {
        return google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    };
    let behaviour = state.accounts.lock().unwrap().get(&email).map(|(_, b)| *b);
    let full = format!("{project}.{dataset}.{table}");
    if behaviour == Some(Behaviour::NoAccess) {
        return google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            &format!("Access Denied: Table {project}:{dataset}.{table}: Permission bigquery.tables.get denied on table {project}:{dataset}.{table} (or it may not exist)."),
        );
    }
    if !state.tables.lock().unwrap().contains(&full) {
        return google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Not found: Table {project}:{dataset}.{table}"),
        );
    }
    Json(json!({
        "kind": "bigquery#table",
        "id": format!("{project}:{dataset}.{table}"),
        "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
        "type": "TABLE",
        "location": "US",
        "numRows": "1234",
        "timePartitioning": {"type": "DAY"},
        "creationTime": "1730419200000"
    }))
    .into_response()
}
