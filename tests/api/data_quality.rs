//! Data-quality suites (`data_quality.validate`): each expectation type passing and failing on
//! rows seeded in `gcp_billing_daily_raw`, scoped to the organization and the window, on DuckDB
//! and on the BigQuery emulator (the same SQL); severity `warn` and `fail` end to end through a
//! billing run (its status, error and detail); a broken suite stops start-up naming its file.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{Duration as Days, NaiveDate, Utc};
use common::pipeline::dq_results::failed_expectations;
use common::pipeline::{Processor, StepContext, StepError, StepOutcome};
use common::processors::data_quality::validate::DataQualityValidate;
use common::warehouse::{Params, Row};
use convergence_tests::{Key, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const ORG: &str = "dq_co";

fn configs_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs"))
}

/// The shipped configs, copied, with `edit` applied to the file at `rel` (from → to).
fn configs_with(edits: &[(&str, &str, &str)], extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    convergence_tests::copy_dir(configs_root(), dir.path());
    for (rel, from, to) in edits {
        let path = dir.path().join(rel);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{rel} has no {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }
    for (rel, text) in extra {
        std::fs::write(dir.path().join(rel), text).unwrap();
    }
    dir
}

/// Two expectations of each type on `gcp_billing_daily_raw`: `*_ok` holds on the seeded rows,
/// `*_bad` does not (`rows_bad` is a warning even in a `fail` step).
const TEST_SUITE: &str = r#"{
  "description": "Each expectation type, holding and not.",
  "provider": "gcp",
  "table": "gcp_billing_daily_raw",
  "expectations": [
    {"name": "not_null_ok", "type": "not_null", "columns": ["source_key", "service_id"]},
    {"name": "not_null_bad", "type": "not_null", "columns": ["project_id"]},
    {"name": "unique_ok", "type": "unique", "columns": ["source_key"]},
    {"name": "unique_bad", "type": "unique", "columns": ["service_id"]},
    {"name": "between_ok", "type": "between", "column": "cost", "min": "-10", "max": 100},
    {"name": "between_bad", "type": "between", "column": "cost", "max": "5"},
    {"name": "rows_ok", "type": "row_count", "min": 1, "max": 10},
    {"name": "rows_bad", "type": "row_count", "min": 2, "severity": "warn"},
    {"name": "fresh_ok", "type": "freshness", "column": "export_time", "max_lag_hours": 48},
    {"name": "fresh_bad", "type": "freshness", "column": "export_time", "max_lag_hours": 1},
    {"name": "total_ok", "type": "total_matches", "columns": ["net_cost"],
     "source": {"table": "gcp_billing_daily_raw", "columns": ["cost", "credits_total"]}, "tolerance": "0"},
    {"name": "total_bad", "type": "total_matches", "columns": ["cost"],
     "source": {"table": "gcp_billing_daily_raw", "columns": ["net_cost"]}, "tolerance": "0.01"}
  ]
}"#;

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

const D1: &str = "2025-06-01";
const D2: &str = "2025-06-02";

/// Rows of the window (three on D1, one on D2), one after it and one of another organization:
/// the last two would break every `*_ok` expectation if they were in scope.
fn seeded_rows() -> Vec<Row> {
    let row =
        |org: &str, day: &str, key: &str, service: &str, project: Option<&str>, money: [&str; 3], export: &str| {
            let [cost, credits, net] = money;
            common::warehouse::to_row(json!({
                "usage_date": day, "org_slug": org, "source_key": key, "service_id": service,
                "project_id": project, "cost": cost, "credits_total": credits, "net_cost": net,
                "currency": "USD", "export_time": export,
            }))
        };
    vec![
        row(ORG, D1, "k1", "s1", Some("p1"), ["10", "-2", "8"], "2025-06-01T20:00:00Z"),
        row(ORG, D1, "k2", "s1", None, ["1", "0", "1"], "2025-06-01T21:00:00Z"),
        row(ORG, D1, "k3", "s2", Some("p2"), ["2.5", "-0.5", "2"], "2025-06-01T22:00:00Z"),
        row(ORG, D2, "k4", "s3", Some("p1"), ["4", "-1", "3"], "2025-06-02T06:00:00Z"),
        row(ORG, "2025-06-03", "k4", "s3", None, ["1000", "0", "7"], "2025-06-05T00:00:00Z"),
        row("other_co", D1, "k1", "s1", None, ["1000", "0", "5"], "2025-06-02T23:00:00Z"),
    ]
}

/// The app (on `vars`' warehouse) with the test suite among its configs, `ORG` onboarded and
/// its billing table seeded.
async fn seeded_app(vars: &[(&str, &str)], configs: &Path) -> TestApp {
    let mut vars = vars.to_vec();
    let configs = configs.to_str().unwrap().to_string();
    vars.push(("CONFIGS_DIR", &configs));
    let app = TestApp::spawn_with(&vars).await;
    app.bootstrap().await;
    app.onboard(ORG).await;
    let dataset = app.state.org_dataset(ORG);
    let schema = app.state.configs.table_schema("gcp", "gcp_billing_daily_raw").unwrap();
    app.warehouse().create_table(&dataset, schema).await.unwrap();
    app.warehouse().insert_rows(&dataset, schema, &seeded_rows()).await.unwrap();
    app
}

/// Runs the validate step of `suite` at `severity` over D1–D2 as run `run_id`.
async fn validate(app: &TestApp, suite: &str, severity: &str, run_id: &str) -> Result<StepOutcome, StepError> {
    let config: <DataQualityValidate as Processor>::Config =
        serde_json::from_value(json!({"suite": suite, "severity": severity})).unwrap();
    let dataset = app.state.org_dataset(ORG);
    let variables = BTreeMap::new();
    let ctx = StepContext {
        warehouse: app.state.warehouse.as_ref(),
        configs: &app.state.configs,
        settings: &app.state.settings,
        org_slug: ORG,
        dataset: &dataset,
        run_id,
        pipeline_id: "dq_co-gcp-cost-billing",
        step_id: "validate_billing",
        start_date: day(D1),
        end_date: day(D2),
        variables: &variables,
        credential: None,
    };
    DataQualityValidate::run(&config, &ctx).await
}

/// The run's results: (expectation, day, dimension) → (status, observed, expected).
async fn results(app: &TestApp, run_id: &str) -> BTreeMap<(String, String, String), (String, String, String)> {
    let t = app.state.central_table("org_meta_dq_results").unwrap();
    let sql = format!(
        "SELECT check_name, usage_date, dimension, status, observed_value, expected_value, suite, step_id, \
         expectation_type, severity, expected, message FROM {t} WHERE org_slug = @org AND run_id = @run"
    );
    let rows = app.warehouse().query(&sql, &Params::new().bind("org", ORG).bind("run", run_id)).await.unwrap();
    let text = |v: &Value| match v {
        Value::String(s) => s.trim_end_matches(".0").to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    rows.iter()
        .map(|r| {
            assert_eq!((r["suite"].as_str(), r["step_id"].as_str()), (Some("dq_test_suite"), Some("validate_billing")));
            assert!(r["expectation_type"].is_string() && r["expected"].is_string(), "{r:?}");
            let message = r["message"].as_str().unwrap();
            assert!(message.starts_with(r["check_name"].as_str().unwrap()), "{message}");
            (
                (text(&r["check_name"]), text(&r["usage_date"]), text(&r["dimension"])),
                (text(&r["status"]), text(&r["observed_value"]), text(&r["expected_value"])),
            )
        })
        .collect()
}

/// Every expectation type, holding and not, at both severities: the rows, the step's outcome.
async fn each_expectation_type_passes_and_fails(app: &TestApp) {
    let failed = validate(app, "dq_test_suite", "fail", "dq-run-fail").await.unwrap_err().to_string();
    assert!(failed.starts_with("data-quality suite dq_test_suite on gcp_billing_daily_raw: 5 expectation(s) failed"));
    for bad in ["not_null_bad", "unique_bad", "between_bad", "fresh_bad", "total_bad"] {
        assert!(failed.contains(&format!("{bad} (")), "{bad} not named in: {failed}");
    }
    assert!(!failed.contains("_ok") && !failed.contains("rows_bad"), "{failed}");
    assert!(failed.contains("1 of 3 rows of 2025-06-01 have NULL project_id (expected none)"), "{failed}");

    let r = results(app, "dq-run-fail").await;
    let at = |name: &str, day: &str, dim: &str| {
        r.get(&(name.to_string(), day.to_string(), dim.to_string()))
            .unwrap_or_else(|| panic!("no result {name} {day} {dim}: {r:#?}"))
            .clone()
    };
    let s = |status: &str, observed: &str, expected: &str| (status.into(), observed.into(), expected.into());
    // not null: per column and day.
    assert_eq!(at("not_null_ok", D1, "service_id"), s("PASS", "0", "0"));
    assert_eq!(at("not_null_bad", D1, "project_id"), s("FAIL", "1", "0"));
    assert_eq!(at("not_null_bad", D2, "project_id"), s("PASS", "0", "0"), "the NULL after the window is out of scope");
    // unique: rows beyond the first of a key.
    assert_eq!(at("unique_ok", D1, ""), s("PASS", "0", "0"), "k1 of another organization is out of scope");
    assert_eq!(at("unique_bad", D1, ""), s("FAIL", "1", "0"));
    assert_eq!(at("unique_bad", D2, ""), s("PASS", "0", "0"));
    // between: rows outside the range.
    assert_eq!(at("between_ok", D1, "cost"), s("PASS", "0", "0"));
    assert_eq!(at("between_bad", D1, "cost"), s("FAIL", "1", "0"));
    assert_eq!(at("between_bad", D2, "cost"), s("PASS", "0", "0"));
    // row count: per day, WARN where the expectation says warn.
    assert_eq!(at("rows_ok", D1, ""), s("PASS", "3", "1"));
    assert_eq!(at("rows_bad", D1, ""), s("PASS", "3", "2"));
    assert_eq!(at("rows_bad", D2, ""), s("WARN", "1", "2"));
    // freshness: once, on the window's last day; newest export 2025-06-02T06:00, 18 h before its end.
    assert_eq!(at("fresh_ok", D2, "export_time"), s("PASS", "18", "48"));
    assert_eq!(at("fresh_bad", D2, "export_time"), s("FAIL", "18", "1"));
    // totals against a source: 11 = 13.5 − 2.5 on D1; cost vs net cost differ by the credits.
    assert_eq!(at("total_ok", D1, ""), s("PASS", "11", "11"));
    assert_eq!(at("total_ok", D2, ""), s("PASS", "3", "3"));
    assert_eq!(at("total_bad", D1, ""), s("FAIL", "13.5", "11"));
    assert_eq!(at("total_bad", D2, ""), s("FAIL", "4", "3"));
    assert_eq!(r.len(), 24, "one result per expectation, day and column (not_null_ok has two)");

    // What the run API lists: the results that did not pass, FAIL first, each with its words.
    let (listed, total) =
        failed_expectations(app.warehouse().as_ref(), &app.state.configs, ORG, "dq-run-fail", true).await.unwrap();
    assert_eq!((listed.len(), total), (7, 7));
    // What a run notification lists: only what failed the run.
    let (failing, failing_total) =
        failed_expectations(app.warehouse().as_ref(), &app.state.configs, ORG, "dq-run-fail", false).await.unwrap();
    assert_eq!(failing_total, 6);
    assert!(failing.iter().all(|r| r["status"] == "FAIL"), "{failing:?}");
    let statuses: Vec<&str> = listed.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["FAIL", "FAIL", "FAIL", "FAIL", "FAIL", "FAIL", "WARN"]);
    let rows_bad = &listed[6];
    assert_eq!((rows_bad["expectation"].as_str(), rows_bad["usage_date"].as_str()), (Some("rows_bad"), Some(D2)));
    assert_eq!(rows_bad["message"], "rows_bad: 1 rows on 2025-06-02 (expected at least 2)");
    assert_eq!(rows_bad["expected"], "at least 2 rows a day");

    // Severity warn: the same findings, all warnings; the step succeeds with them in its metrics.
    let warned = validate(app, "dq_test_suite", "warn", "dq-run-warn").await.unwrap();
    assert_eq!(warned.warnings.len(), 6, "{:?}", warned.warnings);
    assert!(warned.warnings.iter().any(|w| w.contains("total_bad (total_matches) SUM(cost) 13.5 vs SUM(net_cost")));
    assert_eq!((warned.metrics["fail"].as_u64(), warned.metrics["warn"].as_u64()), (Some(0), Some(7)));
    assert_eq!(warned.metrics["pass"], 24 - 7);
    let listed: Vec<&str> = warned.metrics["failed_expectations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["expectation"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["not_null_bad", "unique_bad", "between_bad", "rows_bad", "fresh_bad", "total_bad"]);
    let r = results(app, "dq-run-warn").await;
    assert!(r.values().all(|(status, _, _)| status != "FAIL"));
    assert_eq!(r.values().filter(|(status, _, _)| status == "WARN").count(), 7);
}

#[tokio::test]
async fn each_expectation_type_passes_and_fails_on_duckdb() {
    let configs = configs_with(&[], &[("data_quality/expectations/dq_test_suite.json", TEST_SUITE)]);
    let app = seeded_app(&[], configs.path()).await;
    each_expectation_type_passes_and_fails(&app).await;
}

#[tokio::test]
async fn each_expectation_type_passes_and_fails_on_bigquery() {
    let configs = configs_with(&[], &[("data_quality/expectations/dq_test_suite.json", TEST_SUITE)]);
    let url = convergence_tests::bigquery_emulator();
    let project = convergence_tests::unique_project();
    let vars = [("WAREHOUSE_BACKEND", "bigquery"), ("GCP_PROJECT_ID", project.as_str()), ("BIGQUERY_API_BASE", &url)];
    let app = seeded_app(&vars, configs.path()).await;
    each_expectation_type_passes_and_fails(&app).await;
}

// ---------------------------------------------------------------------------------------------
// Through a run

/// An ACTIVE organization with a sandbox gcp integration.
async fn org_with_sandbox_gcp(app: &TestApp) {
    let key = app.onboard_active(ORG, "SCALE").await;
    let service_account = json!({
        "type": "service_account", "project_id": "sandbox", "private_key_id": "sandbox0001",
        "private_key": "any key material", "client_email": "billing-reader@sandbox.iam.gserviceaccount.com",
    });
    let r = app
        .post(
            &format!("/api/v1/integrations/{ORG}/gcp/setup"),
            Key::Api(&key),
            json!({"service_account_json": service_account,
                   "billing_export_table": "sandbox.billing.gcp_billing_export_v1_dq-rows40"}),
        )
        .await;
    assert!(r.status.is_success(), "gcp setup: {}", r.body);
}

/// Runs the billing pipeline over the two days before yesterday; returns the finished run.
async fn billing_run(app: &TestApp) -> Value {
    let today = Utc::now().date_naive();
    run_pipeline(app, "gcp/cost/billing", today - Days::days(3), today - Days::days(2)).await
}

/// Runs `pipeline` over `[start, end]`; returns the finished run.
async fn run_pipeline(app: &TestApp, pipeline: &str, start: NaiveDate, end: NaiveDate) -> Value {
    let r = app
        .post(
            &format!("/api/v1/pipelines/run/{ORG}/{pipeline}"),
            Key::Root,
            json!({"start_date": start.to_string(), "end_date": end.to_string()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let run_id = r.body["run_id"].as_str().unwrap().to_string();
    for _ in 0..1200 {
        let r = app.get(&format!("/api/v1/pipelines/runs/{ORG}/{run_id}"), Key::Root).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        if matches!(r.body["status"].as_str(), Some("SUCCESS" | "FAILED")) {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {run_id} did not finish");
}

#[tokio::test]
async fn severity_fail_fails_the_run_and_warn_lets_it_succeed_with_the_failures_in_its_detail() {
    // The shipped suite holds on the sandbox export: the run succeeds, nothing listed.
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    org_with_sandbox_gcp(&app).await;
    let run = billing_run(&app).await;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    let validate = &run["steps"][1];
    assert_eq!(
        (validate["step_id"].as_str(), validate["status"].as_str()),
        (Some("validate_billing"), Some("SUCCESS"))
    );
    assert_eq!(validate["metrics"]["fail"], 0, "{validate}");
    assert!(validate["metrics"]["pass"].as_u64().unwrap() > 10, "{validate}");
    assert_eq!(run["data_quality"]["failed_total"], 0, "{run}");

    // Credits "must" be below −1,000,000: with the step's severity fail, the run fails naming it.
    let impossible = ("data_quality/expectations/billing_cost_suite.json", r#""max": "0""#, r#""max": "-1000000""#);
    let configs = configs_with(&[impossible], &[]);
    let app = TestApp::spawn_with(&[("CONFIGS_DIR", configs.path().to_str().unwrap())]).await;
    app.bootstrap().await;
    org_with_sandbox_gcp(&app).await;
    let run = billing_run(&app).await;
    assert_eq!(run["status"], "FAILED", "{run}");
    let error = run["error_message"].as_str().unwrap();
    assert!(error.starts_with("step validate_billing failed: data-quality suite billing_cost_suite"), "{error}");
    assert!(error.contains("credits_reduce_cost (between)") && error.contains("outside at most -1000000"), "{error}");
    assert_eq!(run["steps"][0]["status"], "SUCCESS", "the rows were loaded before the suite judged them");
    let failed = run["data_quality"]["failed"].as_array().unwrap();
    assert_eq!(run["data_quality"]["failed_total"], 2, "both days: {run}");
    for f in failed {
        assert_eq!(
            (f["expectation"].as_str(), f["status"].as_str()),
            (Some("credits_reduce_cost"), Some("FAIL")),
            "{f}"
        );
        assert_eq!((f["step_id"].as_str(), f["severity"].as_str()), (Some("validate_billing"), Some("fail")));
        assert_eq!((f["suite"].as_str(), f["dimension"].as_str()), (Some("billing_cost_suite"), Some("credits_total")));
        assert!(f["message"].as_str().unwrap().contains("credits_total outside at most -1000000"), "{f}");
    }

    // The same suite in a step of severity warn: the run succeeds; the failures are its warnings
    // and are in its detail as WARN.
    let warn_step = ("gcp/cost/billing.yml", "severity: fail", "severity: warn");
    let configs = configs_with(&[impossible, warn_step], &[]);
    let app = TestApp::spawn_with(&[("CONFIGS_DIR", configs.path().to_str().unwrap())]).await;
    app.bootstrap().await;
    org_with_sandbox_gcp(&app).await;
    let run = billing_run(&app).await;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    let warnings: Vec<&str> = run["warnings"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("validate_billing: data-quality expectation did not hold: credits_reduce_cost")),
        "{warnings:?}"
    );
    assert_eq!(run["steps"][1]["metrics"]["warn"], 2, "{run}");
    let failed = run["data_quality"]["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 2, "{run}");
    assert!(failed.iter().all(|f| f["status"] == "WARN" && f["severity"] == "warn"), "{run}");
}

#[tokio::test]
async fn the_shipped_llm_suites_hold_on_the_sandbox() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    let key = app.onboard(ORG).await;
    // The OpenAI bill also carries charges we do not price (`-unpriced`): reported, never a failure.
    for (provider, credential) in
        [("openai", "sk-admin-sandbox-dq-unpriced"), ("anthropic", "sk-ant-admin01-sandbox-dq")]
    {
        let r = app
            .post(
                &format!("/api/v1/integrations/{ORG}/{provider}/setup"),
                Key::Api(&key),
                json!({"credential": credential}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{provider}: {}", r.body);
        let run = run_pipeline(&app, &format!("{provider}/usage_cost"), day("2025-03-01"), day("2025-03-07")).await;
        assert_eq!(run["status"], "SUCCESS", "{run}");
        let validate = &run["steps"][2];
        assert_eq!(validate["step_id"], "validate_cost", "{run}");
        let m = &validate["metrics"];
        assert_eq!((m["fail"].as_u64(), m["warn"].as_u64()), (Some(0), Some(0)), "{provider}: {m}");
        assert_eq!(m["suite"], format!("{provider}_cost_suite"));
        assert!(m["pass"].as_u64().unwrap() >= 7 * 8, "every expectation, every day: {m}");
        assert_eq!(run["data_quality"]["failed_total"], 0, "{run}");
        if provider == "openai" {
            let cost = &run["steps"][1];
            assert_eq!(cost["metrics"]["reconciliation"]["unpriced"], 14, "{cost}");
            assert!(cost["warnings"].to_string().contains("not priced here"), "{cost}");
        }
    }
}

#[tokio::test]
async fn a_broken_suite_stops_start_up_naming_its_file() {
    let configs = configs_with(
        &[(
            "data_quality/expectations/openai_cost_suite.json",
            r#""column": "total_cost""#,
            r#""column": "totl_cost""#,
        )],
        &[(
            "data_quality/expectations/typo_suite.json",
            r#"{"description": "d", "provider": "openai", "table": "openai_cost_daily", "expectations": [{"name": "a", "type": "not_nul", "columns": ["model"]}]}"#,
        )],
    );
    let err = convergence_tests::start_up_error(configs.path()).await;
    assert!(
        err.contains(
            "data_quality/expectations/openai_cost_suite.json: expectation cost_is_not_negative (between): \
                      column \"totl_cost\" is not in openai_cost_daily"
        ),
        "{err}"
    );
    assert!(
        err.contains("data_quality/expectations/typo_suite.json: expectation a: unknown type \"not_nul\""),
        "{err}"
    );
}
