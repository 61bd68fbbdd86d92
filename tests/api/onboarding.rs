//! Dry-run and onboarding.

use common::domain::sha256_hex;
use common::warehouse::Params;
use convergence_tests::{onboard_body, Key, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const DRYRUN: &str = "/api/v1/organizations/dryrun";
const ONBOARD: &str = "/api/v1/organizations/onboard";

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {report}"))
}

#[tokio::test]
async fn dryrun_passes_for_a_good_request_and_creates_nothing() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    app.onboard("existing").await;
    let before = app.all_counts().await;
    let r = app.post(DRYRUN, Key::Root, onboard_body("acme")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["valid"], true, "{}", r.body);
    assert_eq!(r.body["dataset_id"], "acme_dev");
    for name in [
        "org_slug_format",
        "org_slug_available",
        "admin_email",
        "subscription_plan",
        "central_tables_present",
        "warehouse_reachable",
    ] {
        assert_eq!(check(&r.body, name)["passed"], true, "{name}");
    }
    let r = app.post(DRYRUN, Key::Root, onboard_body("existing")).await;
    assert_eq!(r.body["valid"], false);
    assert_eq!(check(&r.body, "org_slug_available")["passed"], false);
    assert_eq!(app.all_counts().await, before, "a dry-run writes nothing, not even audit rows");
    assert!(!app.warehouse().dataset_exists("acme_dev").await.unwrap());
}

#[tokio::test]
async fn dryrun_reports_every_failed_check() {
    let app = TestApp::spawn().await;
    let r = app
        .post(
            DRYRUN,
            Key::Root,
            json!({"org_slug": "Bad-Slug!", "company_name": " ", "admin_email": "nope", "subscription_plan": "GOLD"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["valid"], false);
    for name in [
        "org_slug_format",
        "company_name",
        "admin_email",
        "subscription_plan",
        "central_tables_present",
        "org_slug_available",
    ] {
        let c = check(&r.body, name);
        assert_eq!(c["passed"], false, "{name}: {c}");
        assert!(!c["message"].as_str().unwrap().is_empty());
    }
    assert!(check(&r.body, "central_tables_present")["message"].as_str().unwrap().contains("bootstrap"));
    assert!(check(&r.body, "subscription_plan")["message"].as_str().unwrap().contains("PROFESSIONAL"));
    assert_eq!(r.body["dataset_id"], Value::Null);
}

#[tokio::test]
async fn onboarding_returns_the_key_once_and_stores_only_its_hash() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    let r = app.post(ONBOARD, Key::Root, json!({"org_slug": "acme_corp", "company_name": "Acme", "admin_email": "Admin@Acme.com", "subscription_plan": "professional"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let key = r.body["api_key"].as_str().unwrap().to_string();
    let random = key.strip_prefix("acme_corp_api_").expect("key shape {org_slug}_api_{random}");
    assert!(random.len() * 4 >= 128 && random.chars().all(|c| c.is_ascii_hexdigit()), "≥128 random bits: {random}");
    assert_eq!(r.body["org_slug"], "acme_corp");
    assert_eq!(r.body["dataset_id"], "acme_corp_dev");
    assert_eq!(r.body["dataset_created"], true);
    assert_eq!(r.body["fingerprint"], format!("…{}", &key[key.len() - 4..]));
    assert_eq!(r.body["subscription"]["plan_name"], "PROFESSIONAL");
    assert_eq!(r.body["subscription"]["status"], "TRIAL");
    assert!(app.warehouse().dataset_exists("acme_corp_dev").await.unwrap());

    // Stored: the SHA-256 and the fingerprint; never the key, and no copy of it that the
    // runtime's KMS key (or anything else) could turn back into the key.
    let t = app.state.central_table("org_api_keys").unwrap();
    let rows = app
        .warehouse()
        .query(&format!("SELECT * FROM {t} WHERE org_slug = @o"), &Params::new().bind("o", "acme_corp"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["key_hash"], sha256_hex(key.as_bytes()));
    assert!(!Value::Object(rows[0].clone()).to_string().contains(random));
    assert!(!rows[0].contains_key("encrypted_key"), "{:?}", rows[0]);
    assert_nothing_decrypts_to(&app, &rows[0], &key).await;

    // Subscription, quotas and profile.
    assert_eq!(app.count("org_subscriptions", Some("acme_corp")).await, 1);
    assert_eq!(app.count("org_usage_quotas", Some("acme_corp")).await, 1);
    let org = app.get("/api/v1/organizations/acme_corp", Key::Api(&key)).await;
    assert_eq!(org.status, StatusCode::OK);
    assert_eq!(org.body["admin_email"], "admin@acme.com");
    assert_eq!(org.body["quotas"]["max_concurrent_runs"], 3);
    assert!(!org.body.to_string().contains(random), "the key is never shown again");
}

#[tokio::test]
async fn onboarding_twice_is_409_and_keeps_the_first() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    let key = app.onboard("acme").await;
    let r = app.post(ONBOARD, Key::Root, onboard_body("acme")).await;
    assert!(r.assert_error(409, "conflict").contains("acme"));
    assert_eq!(app.count("org_profiles", Some("acme")).await, 1);
    assert_eq!(app.count("org_api_keys", Some("acme")).await, 1);
    assert_eq!(app.get("/api/v1/organizations/acme", Key::Api(&key)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn onboarding_before_bootstrap_says_to_bootstrap() {
    let app = TestApp::spawn().await;
    let r = app.post(ONBOARD, Key::Root, onboard_body("acme")).await;
    assert!(r.assert_error(409, "not_bootstrapped").contains("/api/v1/admin/bootstrap"));
}

#[tokio::test]
async fn hostile_slugs_are_refused_and_create_nothing() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    let before = app.all_counts().await;
    let datasets_before = app.warehouse().list_tables("organizations").await.unwrap();
    for slug in [
        "ab",
        "",
        "Acme",
        "acme-corp",
        "acme corp",
        "acme\"; DROP SCHEMA organizations CASCADE; --",
        "acme'--",
        "../../etc/passwd",
        "acme.corp",
        "ａｃｍｅ",
        &"a".repeat(51),
        "acme\n",
    ] {
        let r = app.post(ONBOARD, Key::Root, onboard_body(slug)).await;
        let msg = r.assert_error(400, "validation_failed");
        assert!(msg.contains("org_slug"), "{slug:?}: {msg}");
    }
    assert_eq!(app.all_counts().await, before);
    assert_eq!(app.warehouse().list_tables("organizations").await.unwrap(), datasets_before);
}

#[tokio::test]
async fn missing_mistyped_and_unknown_fields_are_named() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    let cases = [
        (json!({"company_name": "A", "admin_email": "a@b.co"}), "org_slug"),
        (json!({"org_slug": "acme", "admin_email": "a@b.co"}), "company_name"),
        (json!({"org_slug": 42, "company_name": "A", "admin_email": "a@b.co"}), "org_slug"),
        (json!({"org_slug": "acme", "company_name": "A", "admin_email": ["a@b.co"]}), "admin_email"),
        (json!({"org_slug": "acme", "company_name": "A", "admin_email": "a@b.co", "is_admin": true}), "is_admin"),
        (json!([1, 2, 3]), "expected"),
    ];
    for (body, field) in cases {
        let r = app.post(ONBOARD, Key::Root, body.clone()).await;
        let msg = r.assert_error(400, "invalid_request");
        assert!(msg.contains(field), "{body}: {msg}");
    }
    let cases = [
        (json!({"org_slug": "acme", "company_name": "A", "admin_email": "not-an-email"}), "admin_email"),
        (
            json!({"org_slug": "acme", "company_name": "A", "admin_email": "a@b.co", "subscription_plan": "GOLD"}),
            "subscription_plan",
        ),
        (
            json!({"org_slug": "acme", "company_name": "A", "admin_email": "a@b.co", "default_currency": "dollars"}),
            "default_currency",
        ),
        (json!({"org_slug": "acme", "company_name": "", "admin_email": "a@b.co"}), "company_name"),
    ];
    for (body, field) in cases {
        let r = app.post(ONBOARD, Key::Root, body.clone()).await;
        let msg = r.assert_error(400, "validation_failed");
        assert!(msg.contains(field), "{body}: {msg}");
    }
    assert_eq!(app.count("org_profiles", None).await, 0);
}

#[tokio::test]
async fn leftovers_of_a_crashed_attempt_do_not_block_a_retry() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    // What a process killed between two inserts leaves: a key and a subscription, no profile.
    let t = app.state.central_table("org_api_keys").unwrap();
    app.warehouse()
        .execute(
            &format!("INSERT INTO {t} (api_key_id, org_slug, key_hash, fingerprint, status, created_at) VALUES ('k0', 'acme', 'deadbeef', 'x', 'ACTIVE', @now)"),
            &Params::new().bind("now", chrono::Utc::now()),
        )
        .await
        .unwrap();
    app.warehouse().create_dataset("acme_dev", &Default::default()).await.unwrap();
    let r = app.post(ONBOARD, Key::Root, onboard_body("acme")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["dataset_created"], false, "the existing dataset is reused");
    assert_eq!(app.count("org_api_keys", Some("acme")).await, 1, "the orphan key is gone");
}

#[tokio::test]
async fn a_failure_part_way_is_undone_and_a_retry_succeeds() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    // Break the last write: the profile table disappears.
    app.warehouse().drop_table("organizations", "org_profiles").await.unwrap();
    let r = app.post(ONBOARD, Key::Root, onboard_body("acme")).await;
    assert_eq!(r.status.as_u16() / 100, 4, "missing table is reported as not bootstrapped: {}", r.body);
    // Now a failure in the middle: profile table present but the quotas table is gone.
    app.bootstrap().await;
    app.warehouse().drop_table("organizations", "org_usage_quotas").await.unwrap();
    let quotas = app.state.configs.central_table("org_usage_quotas").clone();
    let mut broken = quotas.clone();
    broken.fields.truncate(1); // a table that cannot take the quota row
    app.warehouse().create_table("organizations", &broken).await.unwrap();
    let r = app.post(ONBOARD, Key::Root, onboard_body("acme")).await;
    r.assert_error(500, "internal");
    assert_eq!(r.message(), "internal error", "5xx says nothing internal");
    assert_eq!(app.count("org_api_keys", Some("acme")).await, 0, "undone");
    assert_eq!(app.count("org_subscriptions", Some("acme")).await, 0, "undone");
    assert!(!app.warehouse().dataset_exists("acme_dev").await.unwrap(), "dataset created by the attempt is dropped");
    // Repair and retry.
    app.warehouse().drop_table("organizations", "org_usage_quotas").await.unwrap();
    app.bootstrap().await;
    let key = app.onboard("acme").await;
    assert_eq!(app.get("/api/v1/organizations/acme", Key::Api(&key)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn onboarding_is_audited_without_the_key() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    let key = app.onboard("acme").await;
    let t = app.state.central_table("org_audit_logs").unwrap();
    let rows = app
        .warehouse()
        .query(&format!("SELECT * FROM {t} WHERE action = 'organization.onboard'"), &Params::new())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["org_slug"], "acme");
    let text = Value::Object(rows[0].clone()).to_string();
    assert!(!text.contains(&key[key.len() - 12..]), "no key material in the audit log: {text}");
}

/// No value of `row` (as bytes, or base64 text) decrypts with the runtime's KMS key, under any
/// binding a service could use, to `key`.
async fn assert_nothing_decrypts_to(app: &TestApp, row: &common::warehouse::Row, key: &str) {
    use base64::Engine;
    for (column, value) in row {
        let Some(text) = value.as_str() else { continue };
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text) else { continue };
        for aad in [row["org_slug"].as_str().unwrap_or_default().as_bytes(), b""] {
            if let Ok(plain) = app.state.kms.decrypt(&bytes, aad).await {
                assert_ne!(plain, key.as_bytes(), "{column} decrypts to the key");
            }
        }
    }
}

/// An older deployment kept a KMS-encrypted copy of each key, which any service allowed to
/// decrypt could turn back into every live key. Bootstrap drops that column with its values; the
/// keys keep working from their hashes.
#[tokio::test]
async fn bootstrap_drops_the_encrypted_key_copies_an_older_deployment_kept() {
    drops_the_encrypted_key_copies(TestApp::spawn().await).await;
}

#[tokio::test]
async fn bootstrap_drops_the_encrypted_key_copies_an_older_deployment_kept_on_bigquery() {
    drops_the_encrypted_key_copies(TestApp::spawn_bigquery(&[]).await).await;
}

async fn drops_the_encrypted_key_copies(app: TestApp) {
    app.bootstrap().await;
    let key = app.onboard("acme").await;
    // The older shape: a column holding the key sealed with the runtime's KMS key, bound to the slug.
    let w = app.warehouse();
    let t = app.state.central_table("org_api_keys").unwrap();
    let old: common::warehouse::Field =
        serde_json::from_value(json!({"name": "encrypted_key", "type": "BYTES", "mode": "NULLABLE"})).unwrap();
    w.add_column("organizations", "org_api_keys", &old).await.unwrap();
    let sealed = app.state.kms.encrypt(key.as_bytes(), b"acme").await.unwrap();
    w.execute(
        &format!("UPDATE {t} SET encrypted_key = @blob WHERE org_slug = 'acme'"),
        &Params::new().bind("blob", sealed),
    )
    .await
    .unwrap();

    let r = app.bootstrap().await;
    assert_eq!(r.body["columns_dropped"], json!({"org_api_keys": ["encrypted_key"]}), "{}", r.body);
    assert!(!w.table_columns("organizations", "org_api_keys").await.unwrap().contains(&"encrypted_key".to_string()));
    let rows = w.query(&format!("SELECT * FROM {t}"), &Params::new()).await.unwrap();
    assert_eq!(rows.len(), 1, "the key's row stays");
    assert_nothing_decrypts_to(&app, &rows[0], &key).await;
    let org = app.get("/api/v1/organizations/acme", Key::Api(&key)).await;
    assert_eq!(org.status, StatusCode::OK, "the key still authenticates: {}", org.body);
    // Nothing left to drop the next time.
    assert_eq!(app.bootstrap().await.body["columns_dropped"], json!({}));
}
