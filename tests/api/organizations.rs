//! An organization after onboarding: its own view, subscription updates from billing, key
//! rotation.

use convergence_tests::{Key, TestApp};
use reqwest::StatusCode;
use serde_json::json;

async fn app_with_org() -> (TestApp, String) {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    let key = app.onboard("acme").await;
    (app, key)
}

#[tokio::test]
async fn an_org_reads_its_profile_subscription_and_quotas() {
    let (app, key) = app_with_org().await;
    let r = app.get("/api/v1/organizations/acme", Key::Api(&key)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["org_slug"], "acme");
    assert_eq!(r.body["status"], "ACTIVE");
    assert_eq!(r.body["dataset_id"], "acme_dev");
    assert_eq!(r.body["subscription"]["plan_name"], "STARTER");
    assert_eq!(r.body["subscription"]["status"], "TRIAL");
    assert_eq!(r.body["quotas"]["max_pipeline_runs_per_day"], 6);
    assert_eq!(r.body["api_keys"][0]["fingerprint"], format!("…{}", &key[key.len() - 4..]));
    // Root may read it too; an unknown org is a 404 for root.
    assert_eq!(app.get("/api/v1/organizations/acme", Key::Root).await.status, StatusCode::OK);
    app.get("/api/v1/organizations/nobody", Key::Root).await.assert_error(404, "not_found");
    app.get("/api/v1/organizations/NO!", Key::Root).await.assert_error(400, "invalid_request");
}

#[tokio::test]
async fn billing_statuses_map_to_backend_statuses() {
    let (app, _) = app_with_org().await;
    for (billing, backend) in [
        ("trialing", "TRIAL"),
        ("active", "ACTIVE"),
        ("past_due", "SUSPENDED"),
        ("paused", "SUSPENDED"),
        ("incomplete", "SUSPENDED"),
        ("canceled", "CANCELLED"),
        ("ACTIVE", "ACTIVE"),
    ] {
        let r = app.put("/api/v1/organizations/acme/subscription", Key::Root, json!({"status": billing})).await;
        assert_eq!(r.status, StatusCode::OK, "{billing}: {}", r.body);
        assert_eq!(r.body["subscription"]["status"], backend, "{billing}");
        assert_eq!(r.body["subscription"]["billing_status"], billing.to_lowercase());
    }
}

#[tokio::test]
async fn plan_change_moves_quotas_and_trial_end_is_set() {
    let (app, key) = app_with_org().await;
    let r = app
        .put(
            "/api/v1/organizations/acme/subscription",
            Key::Root,
            json!({"status": "active", "plan_name": "scale", "trial_ends_at": "2027-01-31T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["subscription"]["plan_name"], "SCALE");
    assert_eq!(r.body["subscription"]["trial_ends_at"], "2027-01-31T00:00:00.000000Z");
    assert_eq!(r.body["quotas"]["max_concurrent_runs"], 10);
    let org = app.get("/api/v1/organizations/acme", Key::Api(&key)).await;
    assert_eq!(org.body["quotas"]["max_pipeline_runs_per_day"], 500);
    assert_eq!(org.body["subscription"]["status"], "ACTIVE");
}

#[tokio::test]
async fn bad_subscription_updates_are_400_and_change_nothing() {
    let (app, key) = app_with_org().await;
    let r = app.put("/api/v1/organizations/acme/subscription", Key::Root, json!({"status": "gold"})).await;
    let msg = r.assert_error(400, "invalid_request");
    for valid in ["trialing", "active", "past_due", "paused", "incomplete", "canceled"] {
        assert!(msg.contains(valid), "lists {valid}: {msg}");
    }
    let r = app
        .put("/api/v1/organizations/acme/subscription", Key::Root, json!({"status": "active", "plan_name": "ULTRA"}))
        .await;
    assert!(r.assert_error(400, "invalid_request").contains("plan_name"));
    let r = app
        .put(
            "/api/v1/organizations/acme/subscription",
            Key::Root,
            json!({"status": "active", "trial_ends_at": "tomorrow"}),
        )
        .await;
    assert!(r.assert_error(400, "invalid_request").contains("trial_ends_at"));
    app.put("/api/v1/organizations/acme/subscription", Key::Root, json!({})).await.assert_error(400, "invalid_request");
    let org = app.get("/api/v1/organizations/acme", Key::Api(&key)).await;
    assert_eq!(org.body["subscription"]["status"], "TRIAL");
    assert_eq!(org.body["subscription"]["plan_name"], "STARTER");
    // The frontend never holds org keys: the org's own key cannot change its billing.
    app.put("/api/v1/organizations/acme/subscription", Key::Api(&key), json!({"status": "active"}))
        .await
        .assert_error(403, "forbidden");
    app.put("/api/v1/organizations/nobody/subscription", Key::Root, json!({"status": "active"}))
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn rotation_returns_a_new_key_and_the_old_one_stops_at_once() {
    let (app, old) = app_with_org().await;
    // Warm the cache with the old key first: revocation must still be immediate.
    assert_eq!(app.get("/api/v1/organizations/acme", Key::Api(&old)).await.status, StatusCode::OK);
    let r = app.post("/api/v1/organizations/acme/api-key/rotate", Key::Api(&old), json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let new = r.body["api_key"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert!(new.starts_with("acme_api_"));
    assert_eq!(r.body["revoked_fingerprints"][0], format!("…{}", &old[old.len() - 4..]));
    app.get("/api/v1/organizations/acme", Key::Api(&old)).await.assert_error(401, "unauthorized");
    assert_eq!(app.get("/api/v1/organizations/acme", Key::Api(&new)).await.status, StatusCode::OK);
    // Root can rotate too (e.g. a lost key).
    let r = app.post("/api/v1/organizations/acme/api-key/rotate", Key::Root, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    app.get("/api/v1/organizations/acme", Key::Api(&new)).await.assert_error(401, "unauthorized");
    assert_eq!(app.count("org_api_keys", Some("acme")).await, 3, "history is kept, revoked");
}

#[tokio::test]
async fn state_changes_are_audited() {
    let (app, key) = app_with_org().await;
    app.put("/api/v1/organizations/acme/subscription", Key::Root, json!({"status": "active"})).await;
    app.post("/api/v1/organizations/acme/api-key/rotate", Key::Api(&key), json!({})).await;
    let t = app.state.central_table("org_audit_logs").unwrap();
    let rows = app
        .warehouse()
        .query(
            &format!("SELECT action, actor_type, actor_id FROM {t} WHERE org_slug = 'acme' ORDER BY created_at"),
            &Default::default(),
        )
        .await
        .unwrap();
    let actions: Vec<&str> = rows.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["organization.onboard", "subscription.update", "api_key.rotate"]);
    // The actor is named by one key's id (a fingerprint's four characters could name several).
    let keys = app.state.central_table("org_api_keys").unwrap();
    let hash = common::domain::sha256_hex(key.as_bytes());
    let key_id = app
        .warehouse()
        .query(
            &format!("SELECT api_key_id FROM {keys} WHERE key_hash = @h"),
            &common::warehouse::Params::new().bind("h", hash.as_str()),
        )
        .await
        .unwrap()[0]["api_key_id"]
        .clone();
    assert_eq!(rows[2]["actor_type"], "api_key");
    assert_eq!(rows[2]["actor_id"], key_id);
    assert_eq!((rows[1]["actor_type"].as_str(), rows[1]["actor_id"].as_str()), (Some("root"), Some("root")));
}

#[tokio::test]
async fn revocation_locks_the_org_out_until_root_issues_a_key() {
    let (app, key) = app_with_org().await;
    assert_eq!(app.get("/api/v1/organizations/acme", Key::Api(&key)).await.status, StatusCode::OK);
    app.post("/api/v1/organizations/acme/api-key/revoke", Key::Api(&key), json!({}))
        .await
        .assert_error(403, "forbidden");
    let r = app.post("/api/v1/organizations/acme/api-key/revoke", Key::Root, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["revoked_fingerprints"].as_array().unwrap().len(), 1);
    app.get("/api/v1/organizations/acme", Key::Api(&key)).await.assert_error(401, "unauthorized");
    app.post("/api/v1/organizations/acme/api-key/rotate", Key::Api(&key), json!({}))
        .await
        .assert_error(401, "unauthorized");
    let r = app.post("/api/v1/organizations/acme/api-key/rotate", Key::Root, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let new = r.body["api_key"].as_str().unwrap();
    assert_eq!(app.get("/api/v1/organizations/acme", Key::Api(new)).await.status, StatusCode::OK);
    app.post("/api/v1/organizations/nobody/api-key/revoke", Key::Root, json!({})).await.assert_error(404, "not_found");
}
