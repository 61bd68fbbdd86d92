//! HTTP plumbing: health, request ids, the JSON error shape for everything, body limits, CORS,
//! rate limiting.

use convergence_tests::{Key, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn health_answers_with_service_and_backends() {
    let app = TestApp::spawn().await;
    let r = app.get("/health", Key::None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "ok");
    assert_eq!(r.body["service"], "convergence-local");
    assert_eq!(r.body["warehouse"], "duckdb");
    assert_eq!(r.body["kms"], "local");
}

#[tokio::test]
async fn request_ids_are_generated_by_the_server() {
    let app = TestApp::spawn().await;
    // A client's id is never used as ours (it is logged and audited beside it: guards.rs).
    let resp =
        app.client.get(format!("{}/health", app.base)).header("X-Request-ID", "trace-abc_123").send().await.unwrap();
    let ours = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(ours, "trace-abc_123");
    assert_eq!(ours.len(), 36, "a UUID: {ours}");
    let resp = app.client.get(format!("{}/health", app.base)).send().await.unwrap();
    assert_eq!(resp.headers()["x-request-id"].to_str().unwrap().len(), 36);
    // And the id in an error body is the one in the header.
    let resp = app.client.get(format!("{}/nope", app.base)).header("X-Request-ID", "err-1").send().await.unwrap();
    let header = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let r = TestApp::reply(resp).await;
    assert_eq!(r.body["error"]["request_id"], header.as_str());
    assert_ne!(header, "err-1");
}

#[tokio::test]
async fn unknown_route_and_wrong_method_are_json() {
    let app = TestApp::spawn().await;
    app.get("/api/v1/nothing/here", Key::Root).await.assert_error(404, "not_found");
    let r = app.request(Method::DELETE, "/health", Key::None, None).await;
    r.assert_error(405, "method_not_allowed");
    assert!(r.headers.get("allow").is_some());
    app.get("/api/v1/admin/bootstrap", Key::Root).await.assert_error(405, "method_not_allowed");
}

#[tokio::test]
async fn malformed_json_and_wrong_content_type_are_clear_400s() {
    let app = TestApp::spawn().await;
    let url = format!("{}/api/v1/organizations/onboard", app.base);
    let send = |body: &'static str, ct: Option<&'static str>| {
        let mut req = app.client.post(&url).header("X-CA-Root-Key", convergence_tests::ROOT_KEY).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    let r = TestApp::reply(send("{\"org_slug\":", Some("application/json")).await.unwrap()).await;
    assert!(r.assert_error(400, "invalid_json").contains("not valid JSON"));
    let r = TestApp::reply(send("org_slug=acme", Some("application/x-www-form-urlencoded")).await.unwrap()).await;
    assert!(r.assert_error(415, "unsupported_media_type").contains("application/json"));
    let r = TestApp::reply(send("{}", None).await.unwrap()).await;
    r.assert_error(415, "unsupported_media_type");
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let app = TestApp::spawn_with(&[("MAX_BODY_BYTES", "1024")]).await;
    let big = json!({"org_slug": "acme", "company_name": "x".repeat(4096), "admin_email": "a@b.co"});
    let r = app.post("/api/v1/organizations/onboard", Key::Root, big).await;
    r.assert_error(413, "payload_too_large");
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app = TestApp::spawn().await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, format!("{}/api/v1/organizations/acme", app.base))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "x-api-key")
            .send()
    };
    let ok = preflight("https://app.example.com").await.unwrap();
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://app.example.com");
    let other = preflight("https://evil.example.net").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn rate_limit_returns_429_with_retry_after() {
    // Per client address, before authentication (per identity and against spoofing: guards.rs).
    let app = TestApp::spawn_with(&[("RATE_LIMIT_ADDRESS_PER_SECOND", "1"), ("RATE_LIMIT_ADDRESS_BURST", "3")]).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(app.get("/health", Key::Root).await);
    }
    assert!(statuses[..3].iter().all(|r| r.status == StatusCode::OK));
    let limited = &statuses[4];
    limited.assert_error(429, "rate_limited");
    let retry: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // Another key text does not buy another budget.
    app.get("/health", Key::RootValue("another")).await.assert_error(429, "rate_limited");
}

#[tokio::test]
async fn rate_limit_off_outside_production_when_disabled() {
    let app = TestApp::spawn_with(&[
        ("RATE_LIMIT_ENABLED", "false"),
        ("RATE_LIMIT_PER_SECOND", "1"),
        ("RATE_LIMIT_BURST", "1"),
        ("RATE_LIMIT_ADDRESS_PER_SECOND", "1"),
        ("RATE_LIMIT_ADDRESS_BURST", "1"),
    ])
    .await;
    for _ in 0..5 {
        assert_eq!(app.get("/health", Key::None).await.status, StatusCode::OK);
    }
}
