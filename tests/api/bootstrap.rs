//! `POST /api/v1/admin/bootstrap`: creates the central dataset, 16 tables (the price catalog among
//! them) and 6 views; a second call creates nothing and keeps every row (the catalog's too); the
//! force flags do what they say.

use common::warehouse::counting::{StatementKind, StatementLog};
use convergence_tests::{Key, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn names(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn first_call_creates_everything_second_creates_nothing() {
    let app = TestApp::spawn().await;
    let first = app.bootstrap().await;
    assert_eq!(first.body["dataset"], "organizations");
    assert_eq!(first.body["dataset_created"], true);
    assert_eq!(names(&first.body["tables_created"]).len(), 16);
    assert_eq!(
        names(&first.body["views_created"]),
        vec![
            "pipeline_runs_current",
            "step_logs_current",
            "dq_results_current",
            "org_consolidated_view",
            "pipeline_logs_view",
            "step_logs_view"
        ]
    );
    let present = app.warehouse().list_tables("organizations").await.unwrap();
    assert_eq!(present.len(), 22, "{present:?}");

    app.onboard("acme").await;
    let before = app.all_counts().await;
    let second = app.bootstrap().await;
    assert_eq!(second.body["dataset_created"], false);
    assert!(names(&second.body["tables_created"]).is_empty());
    assert!(names(&second.body["views_created"]).is_empty());
    assert_eq!(names(&second.body["tables_existing"]).len(), 16);
    assert_eq!(names(&second.body["views_existing"]).len(), 6);
    let after = app.all_counts().await;
    // Only the audit log grows (the bootstrap itself is audited).
    for ((table, b), (_, a)) in before.iter().zip(after.iter()) {
        if table == "org_audit_logs" {
            assert_eq!(*a, b + 1);
        } else {
            assert_eq!(a, b, "{table} changed");
        }
    }
    // The org still works after the second bootstrap.
    assert_eq!(app.count("org_profiles", Some("acme")).await, 1);
}

#[tokio::test]
async fn an_empty_body_is_a_plain_bootstrap() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .post(format!("{}/api/v1/admin/bootstrap", app.base))
        .header("X-CA-Root-Key", convergence_tests::ROOT_KEY)
        .send()
        .await
        .unwrap();
    let r = TestApp::reply(resp).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["dataset_created"], true);
}

#[tokio::test]
async fn force_recreate_tables_empties_them() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    let key = app.onboard("acme").await;
    assert_eq!(app.count("org_profiles", None).await, 1);
    // Warm the key and organization caches.
    assert_eq!(app.get("/api/v1/organizations/acme", Key::Api(&key)).await.status, StatusCode::OK);
    let r = app.post("/api/v1/admin/bootstrap", Key::Root, json!({"force_recreate_tables": true})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["dataset_created"], false);
    assert_eq!(names(&r.body["tables_created"]).len(), 16);
    assert_eq!(names(&r.body["views_created"]).len(), 6);
    assert_eq!(app.count("org_profiles", None).await, 0);
    // Nothing cached from the old tables survives.
    app.get("/api/v1/organizations/acme", Key::Api(&key)).await.assert_error(401, "unauthorized");
    // The org's own dataset is not central: it is left alone.
    assert!(app.warehouse().dataset_exists("acme_dev").await.unwrap());
}

#[tokio::test]
async fn force_recreate_dataset_starts_over() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    app.onboard("acme").await;
    // A table the configs do not name goes too.
    let stray = common::warehouse::TableSchema {
        name: "stray".into(),
        description: String::new(),
        partitioning: None,
        clustering: Vec::new(),
        fields: app.state.configs.central_tables[0].fields.clone(),
    };
    assert!(app.warehouse().create_table("organizations", &stray).await.unwrap());
    let r = app.post("/api/v1/admin/bootstrap", Key::Root, json!({"force_recreate_dataset": true})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The dataset stays (in production Terraform made it, with the services' access); what
    // was in it is created again.
    assert_eq!(r.body["dataset_created"], false);
    assert_eq!(names(&r.body["tables_created"]).len(), app.state.configs.central_table_names().len());
    assert_eq!(names(&r.body["views_created"]).len(), 6);
    assert!(!app.warehouse().list_tables("organizations").await.unwrap().contains(&"stray".to_string()));
    assert_eq!(app.count("org_profiles", None).await, 0);
    // The audit row of this very bootstrap is in the new dataset.
    assert_eq!(app.count("org_audit_logs", None).await, 1);
}

/// In production Terraform creates the central dataset and bootstrap may not create datasets
/// (BigQuery answers datasets.insert 403 then, even for one that exists): bootstrap fills the
/// dataset it finds without a dataset-level create or drop, also when forced to start over.
#[tokio::test]
async fn a_dataset_made_by_terraform_is_filled_without_creating_or_dropping_datasets() {
    let log = StatementLog::new();
    let app = TestApp::spawn_counting(&[], log.clone()).await;
    let options = common::warehouse::DatasetOptions::default();
    assert!(app.warehouse().create_dataset("organizations", &options).await.unwrap());
    for body in [json!({}), json!({"force_recreate_dataset": true})] {
        log.reset();
        let r = app.post("/api/v1/admin/bootstrap", Key::Root, body.clone()).await;
        assert_eq!(r.status, StatusCode::OK, "{body}: {}", r.body);
        assert_eq!(r.body["dataset_created"], false, "{body}");
        assert_eq!(names(&r.body["tables_created"]).len(), app.state.configs.central_table_names().len(), "{body}");
        // Dataset calls are the DDL naming no table (create_dataset, drop_dataset).
        let dataset_ddl: Vec<_> =
            log.snapshot().into_iter().filter(|s| s.kind == StatementKind::Ddl && s.tables.is_empty()).collect();
        assert!(dataset_ddl.is_empty(), "{body}: bootstrap created or dropped a dataset: {dataset_ddl:?}");
    }
}

#[tokio::test]
async fn bad_bodies_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    let r = app.post("/api/v1/admin/bootstrap", Key::Root, json!({"force_recreate_everything": true})).await;
    assert!(r.assert_error(400, "invalid_request").contains("force_recreate_everything"));
    let r = app.post("/api/v1/admin/bootstrap", Key::Root, json!({"force_recreate_tables": "yes"})).await;
    r.assert_error(400, "invalid_request");
    assert!(!app.warehouse().dataset_exists("organizations").await.unwrap());
}

#[tokio::test]
async fn bootstrap_is_audited() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    let t = app.state.central_table("org_audit_logs").unwrap();
    let rows = app
        .warehouse()
        .query(&format!("SELECT action, actor_type, status, request_id FROM {t}"), &Default::default())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["action"], "bootstrap");
    assert_eq!(rows[0]["actor_type"], "root");
    assert_eq!(rows[0]["status"], "SUCCESS");
    assert!(rows[0]["request_id"].is_string());
}

#[tokio::test]
async fn columns_added_to_configs_are_added_to_existing_tables() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    app.onboard("acme").await;
    // An older deployment: its tables lack two NULLABLE columns that configs now have.
    let w = app.warehouse();
    let profiles = app.state.central_table("org_kms_keys").unwrap();
    w.execute(&format!("ALTER TABLE {profiles} DROP COLUMN rotated_at"), &Default::default()).await.unwrap();
    w.execute(&format!("ALTER TABLE {profiles} DROP COLUMN key_version"), &Default::default()).await.unwrap();
    let before = app.all_counts().await;
    let r = app.bootstrap().await;
    assert_eq!(r.body["columns_added"], json!({"org_kms_keys": ["key_version", "rotated_at"]}), "{}", r.body);
    assert!(w.table_columns("organizations", "org_kms_keys").await.unwrap().contains(&"rotated_at".to_string()));
    assert_eq!(app.count("org_profiles", None).await, before[0].1, "rows kept");
    let again = app.bootstrap().await;
    assert_eq!(again.body["columns_added"], json!({}));
}

#[tokio::test]
async fn a_required_column_missing_from_an_existing_table_stops_bootstrap_untouched() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    let w = app.warehouse();
    let t = app.state.central_table("org_kms_keys").unwrap();
    w.execute(&format!("ALTER TABLE {t} DROP COLUMN rotated_at"), &Default::default()).await.unwrap();
    w.execute(&format!("ALTER TABLE {t} DROP COLUMN purpose"), &Default::default()).await.unwrap();
    w.drop_table("organizations", "step_logs_view").await.unwrap();
    let r = app.post("/api/v1/admin/bootstrap", Key::Root, json!({})).await;
    let msg = r.assert_error(409, "conflict");
    assert!(msg.contains("purpose") && msg.contains("org_kms_keys") && msg.contains("force_recreate_tables"), "{msg}");
    let cols = w.table_columns("organizations", "org_kms_keys").await.unwrap();
    assert!(!cols.contains(&"rotated_at".to_string()), "nothing was changed: {cols:?}");
    assert!(!w.list_tables("organizations").await.unwrap().contains(&"step_logs_view".to_string()));
}
