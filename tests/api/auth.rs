//! Authentication and organization isolation: 401 for missing, unknown or revoked keys, 403 for
//! another organization's key, all before any data is read.

use convergence_tests::{Key, TestApp};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn root_routes_need_the_root_key() {
    let app = TestApp::spawn().await;
    let r = app.post("/api/v1/admin/bootstrap", Key::None, json!({})).await;
    assert!(r.assert_error(401, "unauthorized").contains("X-API-Key"));
    app.post("/api/v1/admin/bootstrap", Key::RootValue("wrong-root-key"), json!({}))
        .await
        .assert_error(401, "unauthorized");
    app.post("/api/v1/admin/bootstrap", Key::RootValue(""), json!({})).await.assert_error(401, "unauthorized");
    app.bootstrap().await;
    let key = app.onboard("acme").await;
    // An org key is authenticated but not allowed on root routes.
    app.post("/api/v1/admin/bootstrap", Key::Api(&key), json!({})).await.assert_error(403, "forbidden");
    app.post("/api/v1/organizations/onboard", Key::Api(&key), convergence_tests::onboard_body("other"))
        .await
        .assert_error(403, "forbidden");
    assert_eq!(app.count("org_profiles", Some("other")).await, 0);
}

#[tokio::test]
async fn org_keys_are_isolated() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    assert_eq!(app.get("/api/v1/organizations/acme", Key::Api(&acme)).await.status, StatusCode::OK);
    let r = app.get("/api/v1/organizations/globex", Key::Api(&acme)).await;
    assert!(r.assert_error(403, "forbidden").contains("another organization"));
    assert!(!r.body.to_string().contains("globex Inc."), "no data of the other org leaks");
    app.post("/api/v1/organizations/globex/api-key/rotate", Key::Api(&acme), json!({}))
        .await
        .assert_error(403, "forbidden");
    // The other org's key still works: nothing was rotated.
    assert_eq!(app.get("/api/v1/organizations/globex", Key::Api(&globex)).await.status, StatusCode::OK);
    // A hostile path with a valid key is refused before anything is read.
    app.get("/api/v1/organizations/acme%27%20OR%201=1", Key::Api(&acme)).await.assert_error(403, "forbidden");
}

#[tokio::test]
async fn unknown_malformed_and_missing_keys_are_401() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    let key = app.onboard("acme").await;
    app.get("/api/v1/organizations/acme", Key::None).await.assert_error(401, "unauthorized");
    for bogus in [
        "nonsense".to_string(),
        format!("acme_api_{}", "0".repeat(48)),
        format!("{}x", key),
        key.to_uppercase(),
        "' OR '1'='1".to_string(),
    ] {
        let r = app.get("/api/v1/organizations/acme", Key::Api(&bogus)).await;
        r.assert_error(401, "unauthorized");
        assert!(!r.body.to_string().contains(&bogus), "the presented key is not echoed");
    }
}

#[tokio::test]
async fn disable_auth_is_refused_in_production_settings() {
    use common::settings::{BackendDefaults, Settings};
    let vars = [("ENVIRONMENT", "production"), ("DISABLE_AUTH", "true")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let err = Settings::from_vars(&vars, BackendDefaults::Cloud).unwrap_err();
    assert!(err.to_string().contains("DISABLE_AUTH"), "{err}");
}

#[tokio::test]
async fn disable_auth_works_in_development() {
    let app = TestApp::spawn_with(&[("DISABLE_AUTH", "true")]).await;
    let r = app.post("/api/v1/admin/bootstrap", Key::None, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
