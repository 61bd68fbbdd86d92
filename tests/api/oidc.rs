//! Authentication of the internal endpoints (`InternalCaller`): Google OIDC tokens signed by keys
//! generated in the test and served from a local JWKS, the root key in development. A probe route
//! taking `InternalCaller` is mounted on a server over a TestApp's state, so these tests hold for
//! every route that takes the extractor (the Pub/Sub push, the scheduler tick).

use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use common::auth::oidc::{OidcConfig, OidcVerifier};
use common::http::InternalCaller;
use common::settings::Environment;
use common::AppState;
use convergence_tests::fakes::oidc::{google_claims, sign, sign_hs256, unsigned, FakeJwks, KEY_A, KEY_B};
use convergence_tests::{serve_routes, Reply, TestApp, ROOT_KEY};
use serde_json::{json, Value};

const AUDIENCE: &str = "https://pipelines-run.example.com/api/v1/pipelines/push";
const PUSH_INVOKER: &str = "pubsub-push@acme-test.iam.gserviceaccount.com";
const TICK_INVOKER: &str = "scheduler@acme-test.iam.gserviceaccount.com";
const KID_A: &str = "kid-a";
const PROBE: &str = "/internal/probe";

async fn probe(caller: InternalCaller) -> Json<Value> {
    let (actor_type, actor_id) = caller.actor();
    Json(json!({"actor_type": actor_type, "actor_id": actor_id}))
}

/// A development app whose internal endpoints accept tokens for AUDIENCE from the two invokers,
/// with keys from `jwks`.
async fn app_with_tokens(jwks: &FakeJwks) -> TestApp {
    let invokers = format!("{PUSH_INVOKER},{TICK_INVOKER}");
    TestApp::spawn_with(&[("OIDC_AUDIENCE", AUDIENCE), ("OIDC_INVOKERS", &invokers), ("OIDC_JWKS_URL", &jwks.url())])
        .await
}

/// The probe served over `state`; returns its URL.
async fn serve_probe(state: AppState) -> String {
    format!("{}{PROBE}", serve_routes(state, Router::new().route(PROBE, post(probe))).await)
}

/// `state` with its own verifier whose unknown-kid refreshes are `interval` apart (the default
/// is too long to wait for in a test).
fn with_refresh_interval(state: &AppState, jwks: &FakeJwks, interval: Duration) -> AppState {
    let verifier = OidcVerifier::new(OidcConfig {
        audience: AUDIENCE.into(),
        invokers: vec![PUSH_INVOKER.into(), TICK_INVOKER.into()],
        jwks_url: jwks.url(),
    })
    .unwrap()
    .with_min_refresh_interval(interval);
    AppState { oidc: Some(Arc::new(verifier)), ..state.clone() }
}

/// `state` as staging or production would see it (the extractor branches on the environment).
fn in_environment(state: &AppState, environment: Environment) -> AppState {
    let mut settings = (*state.settings).clone();
    settings.environment = environment;
    AppState { settings: Arc::new(settings), ..state.clone() }
}

async fn call(url: &str, bearer: Option<&str>, root_key: Option<&str>) -> Reply {
    let mut request = reqwest::Client::new().post(url).json(&json!({}));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    if let Some(key) = root_key {
        request = request.header("X-CA-Root-Key", key);
    }
    TestApp::reply(request.send().await.expect("request")).await
}

#[track_caller]
fn assert_service_account(reply: &Reply, email: &str) {
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.body);
    assert_eq!(reply.body, json!({"actor_type": "service_account", "actor_id": email}));
}

/// Asserts a 401 whose message contains `reason` and not the token.
#[track_caller]
fn assert_refused(reply: &Reply, reason: &str, token: &str) {
    let message = reply.assert_error(401, "unauthorized");
    assert!(message.contains(reason), "expected {reason:?} in {message:?}");
    let signature = token.rsplit('.').next().unwrap_or_default();
    assert!(signature.is_empty() || !reply.body.to_string().contains(signature), "the token is echoed: {message}");
}

#[tokio::test]
async fn a_valid_google_token_names_its_service_account() {
    let jwks = FakeJwks::start(KID_A).await;
    let app = app_with_tokens(&jwks).await;
    let url = serve_probe(app.state.clone()).await;

    let push = sign(KEY_A, KID_A, &google_claims(AUDIENCE, PUSH_INVOKER));
    assert_service_account(&call(&url, Some(&push), None).await, PUSH_INVOKER);
    let mut tick = google_claims(AUDIENCE, &TICK_INVOKER.to_uppercase());
    tick["iss"] = json!("accounts.google.com");
    let reply = call(&url, Some(&sign(KEY_A, KID_A, &tick)), None).await;
    assert_service_account(&reply, TICK_INVOKER);
}

#[tokio::test]
async fn each_failed_claim_is_refused_with_its_reason() {
    let jwks = FakeJwks::start(KID_A).await;
    let app = app_with_tokens(&jwks).await;
    let url = serve_probe(app.state.clone()).await;
    let now = chrono::Utc::now().timestamp();

    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "expired",
            Box::new(move |c| {
                c["iat"] = json!(now - 7200);
                c["exp"] = json!(now - 3600);
            }),
            "expired",
        ),
        ("issued in the future", Box::new(move |c| c["iat"] = json!(now + 600)), "not valid yet"),
        ("not before the future", Box::new(move |c| c["nbf"] = json!(now + 600)), "not valid yet"),
        ("wrong audience", Box::new(|c| c["aud"] = json!("https://other.example.com/push")), "audience (aud)"),
        ("wrong issuer", Box::new(|c| c["iss"] = json!("https://evil.example.com")), "issuer (iss)"),
        (
            "email not an invoker",
            Box::new(|c| c["email"] = json!("intruder@evil.iam.gserviceaccount.com")),
            "not one of the allowed invokers",
        ),
        ("email not verified", Box::new(|c| c["email_verified"] = json!(false)), "email is not verified"),
        ("no email", Box::new(|c| c["email"] = Value::Null), "no email claim"),
    ];
    for (case, edit, reason) in cases {
        let mut claims = google_claims(AUDIENCE, PUSH_INVOKER);
        edit(&mut claims);
        let token = sign(KEY_A, KID_A, &claims);
        let reply = call(&url, Some(&token), None).await;
        assert_eq!(reply.status.as_u16(), 401, "{case}: {}", reply.body);
        assert_refused(&reply, reason, &token);
    }
    assert_eq!(jwks.fetches(), 1, "one key download serves every check");
}

#[tokio::test]
async fn forged_signatures_and_other_algorithms_are_refused() {
    let jwks = FakeJwks::start(KID_A).await;
    let app = app_with_tokens(&jwks).await;
    let url = serve_probe(app.state.clone()).await;
    let claims = google_claims(AUDIENCE, PUSH_INVOKER);

    // Another key claiming KID_A's id: the signature does not verify against the served key.
    let forged = sign(KEY_B, KID_A, &claims);
    assert_refused(&call(&url, Some(&forged), None).await, "signature does not verify", &forged);
    // A valid token with one byte of its claims changed.
    let valid = sign(KEY_A, KID_A, &claims);
    let mut parts: Vec<String> = valid.split('.').map(str::to_string).collect();
    let mut body: Value = serde_json::from_slice(&base64_url(&parts[1])).unwrap();
    body["email"] = json!(TICK_INVOKER);
    parts[1] = base64_url_encode(body.to_string().as_bytes());
    let tampered = parts.join(".");
    assert_refused(&call(&url, Some(&tampered), None).await, "signature does not verify", &tampered);
    // The JWKS's own public key material used as an HMAC secret, and no signature at all.
    let hs256 = sign_hs256(b"kid-a", KID_A, &claims);
    assert_refused(&call(&url, Some(&hs256), None).await, "RS256", &hs256);
    let none = unsigned(KID_A, &claims);
    assert_refused(&call(&url, Some(&none), None).await, "RS256", &none);
    let garbage = "not-a-jwt";
    assert_refused(&call(&url, Some(garbage), None).await, "malformed", garbage);
}

#[tokio::test]
async fn an_unknown_key_id_refreshes_the_keys_once_then_is_refused() {
    let jwks = FakeJwks::start(KID_A).await;
    let app = app_with_tokens(&jwks).await;
    let interval = Duration::from_secs(1);
    let url = serve_probe(with_refresh_interval(&app.state, &jwks, interval)).await;
    let claims = google_claims(AUDIENCE, PUSH_INVOKER);
    // Signed up front, so the flood below fits well inside the refresh interval.
    let flood: Vec<String> = (0..20).map(|i| sign(KEY_A, &format!("kid-flood-{i}"), &claims)).collect();

    assert_service_account(&call(&url, Some(&sign(KEY_A, KID_A, &claims)), None).await, PUSH_INVOKER);
    assert_eq!(jwks.fetches(), 1);
    tokio::time::sleep(interval).await;
    let stranger = sign(KEY_A, "kid-unknown", &claims);
    assert_refused(&call(&url, Some(&stranger), None).await, "key id (kid)", &stranger);
    assert_eq!(jwks.fetches(), 2, "an unknown kid fetches the keys once");

    // A flood of made-up key ids right after: refused without another download.
    let flood: Vec<_> = flood
        .into_iter()
        .map(|token| {
            let url = url.clone();
            tokio::spawn(async move { call(&url, Some(&token), None).await })
        })
        .collect();
    for reply in flood {
        reply.await.unwrap().assert_error(401, "unauthorized");
    }
    assert_eq!(jwks.fetches(), 2, "unknown kids within the refresh interval cost no fetch");
    // Known keys keep working meanwhile, from the cache.
    assert_service_account(&call(&url, Some(&sign(KEY_A, KID_A, &claims)), None).await, PUSH_INVOKER);
    assert_eq!(jwks.fetches(), 2);

    // The app's own verifier (default interval): the first request fetches, later unknown kids do not.
    let app_url = serve_probe(app.state.clone()).await;
    assert_refused(&call(&app_url, Some(&stranger), None).await, "key id (kid)", &stranger);
    assert_refused(&call(&app_url, Some(&stranger), None).await, "key id (kid)", &stranger);
    assert_eq!(jwks.fetches(), 3);
}

#[tokio::test]
async fn keys_are_cached_and_refreshed_after_a_rotation() {
    let jwks = FakeJwks::start(KID_A).await;
    let app = app_with_tokens(&jwks).await;
    let interval = Duration::from_millis(300);
    let url = serve_probe(with_refresh_interval(&app.state, &jwks, interval)).await;
    let claims = google_claims(AUDIENCE, PUSH_INVOKER);
    let token_a = sign(KEY_A, KID_A, &claims);

    // Concurrent first requests share one download; later ones use the cache.
    let first: Vec<_> = (0..8)
        .map(|_| {
            let (url, token) = (url.clone(), token_a.clone());
            tokio::spawn(async move { call(&url, Some(&token), None).await })
        })
        .collect();
    for reply in first {
        assert_service_account(&reply.await.unwrap(), PUSH_INVOKER);
    }
    for _ in 0..10 {
        assert_service_account(&call(&url, Some(&token_a), None).await, PUSH_INVOKER);
    }
    assert_eq!(jwks.fetches(), 1, "one download for every request while the keys are fresh");

    // Google signs with a new key: its first token refreshes the keys and is accepted.
    jwks.rotate("kid-b");
    jwks.set_max_age(7200);
    tokio::time::sleep(interval).await;
    let token_b = sign(KEY_B, "kid-b", &claims);
    assert_service_account(&call(&url, Some(&token_b), None).await, PUSH_INVOKER);
    assert_eq!(jwks.fetches(), 2);
    assert_service_account(&call(&url, Some(&token_b), None).await, PUSH_INVOKER);
    assert_eq!(jwks.fetches(), 2, "the new key is cached too");
    // The retired key is gone with the set that held it.
    tokio::time::sleep(interval).await;
    assert_refused(&call(&url, Some(&token_a), None).await, "key id (kid)", &token_a);
}

#[tokio::test]
async fn development_takes_the_root_key_and_refuses_a_missing_token() {
    let jwks = FakeJwks::start(KID_A).await;
    let app = app_with_tokens(&jwks).await;
    let url = serve_probe(app.state.clone()).await;

    let reply = call(&url, None, Some(ROOT_KEY)).await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.body);
    assert_eq!(reply.body, json!({"actor_type": "root", "actor_id": "root"}));
    assert_refused(&call(&url, None, Some("not-the-root-key")).await, "root key is not valid", "");
    let message = call(&url, None, None).await.assert_error(401, "unauthorized").to_string();
    assert!(message.contains("X-CA-Root-Key") && message.contains("Authorization: Bearer"), "{message}");
    let basic = reqwest::Client::new().post(&url).header("Authorization", "Basic dXNlcjpwYXNz").send().await.unwrap();
    assert_refused(&TestApp::reply(basic).await, "must be `Bearer", "");

    // Without OIDC_AUDIENCE, development has no verifier: tokens are refused, the root key works.
    let plain = TestApp::spawn().await;
    assert!(plain.state.oidc.is_none());
    let plain_url = serve_probe(plain.state.clone()).await;
    let token = sign(KEY_A, KID_A, &google_claims(AUDIENCE, PUSH_INVOKER));
    assert_refused(&call(&plain_url, Some(&token), None).await, "only when OIDC_AUDIENCE is set", &token);
    assert_eq!(call(&plain_url, None, Some(ROOT_KEY)).await.status.as_u16(), 200);
}

#[tokio::test]
async fn staging_and_production_accept_only_google_tokens() {
    let jwks = FakeJwks::start(KID_A).await;
    let app = app_with_tokens(&jwks).await;
    let token = sign(KEY_A, KID_A, &google_claims(AUDIENCE, PUSH_INVOKER));
    for environment in [Environment::Staging, Environment::Production] {
        let url = serve_probe(in_environment(&app.state, environment)).await;
        assert_service_account(&call(&url, Some(&token), Some(ROOT_KEY)).await, PUSH_INVOKER);
        let message = call(&url, None, Some(ROOT_KEY)).await.assert_error(401, "unauthorized").to_string();
        assert!(message.contains("Google OIDC token") && message.contains(environment.as_str()), "{message}");
        let expired = {
            let mut claims = google_claims(AUDIENCE, PUSH_INVOKER);
            claims["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
            sign(KEY_A, KID_A, &claims)
        };
        assert_refused(&call(&url, Some(&expired), Some(ROOT_KEY)).await, "expired", &expired);
    }
}

/// A valid token's call to the probe of an app whose signing keys are fetched from `jwks_url`.
async fn call_with_keys_at(jwks_url: &str) -> Reply {
    let app = TestApp::spawn_with(&[
        ("OIDC_AUDIENCE", AUDIENCE),
        ("OIDC_INVOKERS", PUSH_INVOKER),
        ("OIDC_JWKS_URL", jwks_url),
    ])
    .await;
    let url = serve_probe(app.state.clone()).await;
    let token = sign(KEY_A, KID_A, &google_claims(AUDIENCE, PUSH_INVOKER));
    call(&url, Some(&token), None).await
}

#[tokio::test]
async fn unreachable_keys_answer_503_without_details() {
    // A port that was free a moment ago: nothing listens there.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let reply = call_with_keys_at(&format!("http://127.0.0.1:{closed}/oauth2/v3/certs")).await;
    let message = reply.assert_error(503, "unavailable");
    assert!(!message.contains("127.0.0.1"), "a 5xx says nothing internal: {message}");
}

/// A key endpoint that answers without end (chunked, no length announced) is read no further than
/// the key set's cap: the call is refused with 503, and the verifier does not hold the flood.
#[tokio::test]
async fn a_key_set_past_its_size_cap_is_not_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/oauth2/v3/certs", listener.local_addr().unwrap());
    let counter = sent.clone();
    tokio::spawn(async move {
        // Plain HTTP/1.1 over the socket: 64 KiB chunks of JSON whitespace until the reader hangs
        // up, or 625 MiB.
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = vec![0u8; 4096];
            let _ = socket.read(&mut request).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
            if socket.write_all(head.as_bytes()).await.is_err() {
                continue;
            }
            let mut chunk = format!("{:x}\r\n", 64 * 1024).into_bytes();
            chunk.extend(std::iter::repeat_n(b' ', 64 * 1024));
            chunk.extend_from_slice(b"\r\n");
            for _ in 0..10_000 {
                if socket.write_all(&chunk).await.is_err() {
                    break;
                }
                counter.fetch_add(64 * 1024, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    call_with_keys_at(&jwks_url).await.assert_error(503, "unavailable");
    // The reader stopped within a few MiB of the cap (what the sockets buffer ahead of it).
    let offered = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(offered < 64 << 20, "{offered} bytes of an endless key set were taken");
}

fn base64_url(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).unwrap()
}

fn base64_url_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
