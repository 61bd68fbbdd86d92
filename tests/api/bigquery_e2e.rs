//! The whole product flow on `WAREHOUSE_BACKEND=bigquery` against the emulator: every SQL the
//! product issues runs here as on DuckDB. Later features (integrations, pipelines) add their
//! steps to `product_flow_on_bigquery`.

use common::domain::sha256_hex;
use common::warehouse::Params;
use convergence_tests::{onboard_body, Key, TestApp};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn product_flow_on_bigquery() {
    let app = TestApp::spawn_bigquery(&[]).await;
    assert_eq!(app.get("/health", Key::None).await.body["warehouse"], "bigquery");

    // Bootstrap: everything created, then nothing twice.
    let first = app.bootstrap().await;
    assert_eq!(first.body["tables_created"].as_array().unwrap().len(), 16, "{}", first.body);
    assert_eq!(first.body["views_created"].as_array().unwrap().len(), 6);
    let second = app.bootstrap().await;
    assert!(second.body["tables_created"].as_array().unwrap().is_empty(), "{}", second.body);
    assert_eq!(second.body["views_existing"].as_array().unwrap().len(), 6);

    // Dry-run writes nothing.
    let before = app.all_counts().await;
    let dry = app.post("/api/v1/organizations/dryrun", Key::Root, onboard_body("acme")).await;
    assert_eq!(dry.body["valid"], true, "{}", dry.body);
    assert_eq!(app.all_counts().await, before);

    // Onboarding: key stored as its hash only; dataset created; duplicate refused.
    let r = app.post("/api/v1/organizations/onboard", Key::Root, onboard_body("acme")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let key = r.body["api_key"].as_str().unwrap().to_string();
    assert!(app.warehouse().dataset_exists("acme_dev").await.unwrap());
    let t = app.state.central_table("org_api_keys").unwrap();
    let rows = app
        .warehouse()
        .query(&format!("SELECT * FROM {t} WHERE org_slug = @o"), &Params::new().bind("o", "acme"))
        .await
        .unwrap();
    assert_eq!(rows[0]["key_hash"], sha256_hex(key.as_bytes()));
    assert!(!rows[0].contains_key("encrypted_key"), "no copy of the key: {:?}", rows[0]);
    app.post("/api/v1/organizations/onboard", Key::Root, onboard_body("acme")).await.assert_error(409, "conflict");
    let other = app.onboard("globex").await;

    // Authenticated reads, isolation, subscription, rotation.
    let org = app.get("/api/v1/organizations/acme", Key::Api(&key)).await;
    assert_eq!(org.status, StatusCode::OK, "{}", org.body);
    assert_eq!(org.body["subscription"]["status"], "TRIAL");
    app.get("/api/v1/organizations/acme", Key::Api(&other)).await.assert_error(403, "forbidden");
    let sub = app
        .put("/api/v1/organizations/acme/subscription", Key::Root, json!({"status": "active", "plan_name": "SCALE"}))
        .await;
    assert_eq!(sub.status, StatusCode::OK, "{}", sub.body);
    assert_eq!(sub.body["quotas"]["max_concurrent_runs"], 10);
    let rotated = app.post("/api/v1/organizations/acme/api-key/rotate", Key::Api(&key), json!({})).await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{}", rotated.body);
    app.get("/api/v1/organizations/acme", Key::Api(&key)).await.assert_error(401, "unauthorized");
    let new_key = rotated.body["api_key"].as_str().unwrap();
    assert_eq!(app.get("/api/v1/organizations/acme", Key::Api(new_key)).await.status, StatusCode::OK);

    // The views bootstrap created answer on BigQuery too.
    let v = app.state.central_table("org_consolidated_view").unwrap();
    let consolidated =
        app.warehouse().query(&format!("SELECT org_slug FROM {v} ORDER BY org_slug"), &Params::new()).await.unwrap();
    let slugs: Vec<&str> = consolidated.iter().map(|r| r["org_slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, vec!["acme", "globex"]);

    // Every state change was audited.
    assert!(app.count("org_audit_logs", None).await >= 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn bigquery_unreachable_is_a_clear_503() {
    // A port nothing listens on: the warehouse is down, not the request wrong.
    let app = TestApp::spawn_with(&[
        ("WAREHOUSE_BACKEND", "bigquery"),
        ("GCP_PROJECT_ID", "down-project"),
        ("BIGQUERY_API_BASE", "http://127.0.0.1:9"),
    ])
    .await;
    let r = app.post("/api/v1/admin/bootstrap", Key::Root, json!({})).await;
    r.assert_error(503, "unavailable");
    assert!(!r.body.to_string().contains("127.0.0.1"), "a 5xx says nothing internal: {}", r.body);
}

/// Onboarding gives the services named by `ORG_DATASET_*` their access on the new dataset itself
/// (terraform/iam.tf grants no project-wide data role), next to the project's special groups,
/// with onboard's own account as owner (an explicit list replaces BigQuery's default, which
/// made the creator the owner). Read back with datasets.get.
#[tokio::test(flavor = "multi_thread")]
async fn onboarding_grants_the_services_access_to_the_new_dataset() {
    let owner = "convergence-onboard@acme-prod-1.iam.gserviceaccount.com";
    let writers = "convergence-pricing@acme-prod-1.iam.gserviceaccount.com,convergence-pipelines-run@acme-prod-1.iam.gserviceaccount.com";
    let reader = "looker@acme-prod-1.iam.gserviceaccount.com";
    let app = TestApp::spawn_bigquery(&[
        ("ORG_DATASET_OWNERS", owner),
        ("ORG_DATASET_WRITERS", writers),
        ("ORG_DATASET_READERS", reader),
    ])
    .await;
    app.bootstrap().await;
    app.onboard("acme").await;

    let project = app.state.settings.gcp_project_id.clone().unwrap();
    let url = format!("{}/bigquery/v2/projects/{project}/datasets/acme_dev", convergence_tests::bigquery_emulator());
    let dataset: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    let mut access: Vec<(String, String)> = dataset["access"]
        .as_array()
        .unwrap_or_else(|| panic!("no access list: {dataset}"))
        .iter()
        .map(|a| {
            let who = a["userByEmail"].as_str().or(a["specialGroup"].as_str()).unwrap();
            (a["role"].as_str().unwrap().to_string(), who.to_string())
        })
        .collect();
    access.sort();
    let expected: Vec<(String, String)> = [
        ("OWNER", owner),
        ("OWNER", "projectOwners"),
        ("READER", reader),
        ("READER", "projectReaders"),
        ("WRITER", "convergence-pipelines-run@acme-prod-1.iam.gserviceaccount.com"),
        ("WRITER", "convergence-pricing@acme-prod-1.iam.gserviceaccount.com"),
        ("WRITER", "projectWriters"),
    ]
    .iter()
    .map(|(r, w)| (r.to_string(), w.to_string()))
    .collect();
    assert_eq!(access, expected, "{dataset}");
    // The description and labels of configs/ reach BigQuery too.
    assert!(dataset["description"].as_str().is_some_and(|d| d.contains("acme")), "{dataset}");
    assert_eq!(dataset["labels"]["org_slug"], "acme", "{dataset}");

    // Without the settings (local, tests), BigQuery's default access: no list is sent.
    let plain = TestApp::spawn_bigquery(&[]).await;
    plain.bootstrap().await;
    plain.onboard("acme").await;
    let project = plain.state.settings.gcp_project_id.clone().unwrap();
    let url = format!("{}/bigquery/v2/projects/{project}/datasets/acme_dev", convergence_tests::bigquery_emulator());
    let dataset: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    assert!(dataset["access"].as_array().is_none_or(|a| a.is_empty()), "{dataset}");
}
