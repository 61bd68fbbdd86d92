//! The pipeline engine and the run API over HTTP, with the provider sandbox as the provider:
//! request validation, the catalog, the gates (subscription, integration, quotas), a run from
//! 202 to SUCCESS with its step rows, idempotency (409 for a window still running, a duplicate
//! delivery doing nothing, a stale run expired), history paging, and one run on BigQuery.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{Duration as Days, Utc};
use common::configs::Configs;
use common::pipeline::runlog::{RunEvent, Trigger};
use common::queue::RunRequest;
use common::warehouse::Params;
use convergence_tests::{Key, Reply, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::sandbox;

const PIPELINE: &str = "openai/usage_cost";

fn repo_configs() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs"))
}

fn run_path(org: &str, pipeline: &str) -> String {
    format!("/api/v1/pipelines/run/{org}/{pipeline}")
}

fn day(offset: i64) -> String {
    (Utc::now().date_naive() - Days::days(offset)).to_string()
}

/// Bootstrapped app with `org` onboarded on `plan` (ACTIVE) and, when `with_openai`, its OpenAI
/// integration set up with a sandbox admin key. Returns the org key.
async fn org_ready(app: &TestApp, org: &str, plan: &str, with_openai: bool) -> String {
    let key = app.onboard_active(org, plan).await;
    if with_openai {
        let r = app
            .post(
                &format!("/api/v1/integrations/{org}/openai/setup"),
                Key::Api(&key),
                json!({"credential": format!("sk-admin-sandbox-{org}")}),
            )
            .await;
        assert!(r.status.is_success(), "setup: {}", r.body);
    }
    key
}

async fn app() -> TestApp {
    let app = sandbox::spawn().await;
    app.bootstrap().await;
    app
}

/// Polls a run until it is SUCCESS or FAILED.
async fn wait(app: &TestApp, org: &str, run_id: &str, key: Key<'_>) -> Value {
    for _ in 0..600 {
        let r = app.get(&format!("/api/v1/pipelines/runs/{org}/{run_id}"), key).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        if matches!(r.body["status"].as_str(), Some("SUCCESS" | "FAILED")) {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {run_id} did not finish");
}

async fn accepted(app: &TestApp, org: &str, key: Key<'_>, body: Value) -> String {
    let r = app.post(&run_path(org, PIPELINE), key, body).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["status"], "PENDING");
    assert_eq!(r.body["pipeline_id"], format!("{org}-openai-usage-cost"));
    r.body["run_id"].as_str().unwrap().to_string()
}

/// Writes a run's events directly (a run of another process, or one that died): submitted
/// `started_ago_secs` ago and, for RUNNING, claimed then, under the app's lease (3600 s).
async fn seed_run(app: &TestApp, org: &str, status: &str, start: &str, end: &str, started_ago_secs: i64) -> String {
    let at = Utc::now() - Days::seconds(started_ago_secs);
    // A fresh attempt number per seeded run, so each has its own id.
    let attempt = u32::try_from(uuid::Uuid::new_v4().as_u128() % 1_000_000).unwrap() + 1;
    let run = convergence_tests::openai_run(org, (start, end), Trigger::Backfill, attempt, at);
    let mut events = vec![run.clone()];
    if status == "RUNNING" {
        events.push(convergence_tests::claimed(&run, at + Days::milliseconds(1), Days::seconds(3600), "seeded"));
    }
    app.state.pipelines.run_log().append_events(&events).await.unwrap();
    run.run_id
}

/// Records a seeded run FAILED.
async fn fail_run(app: &TestApp, org: &str, run_id: &str) {
    let log = app.state.pipelines.run_log();
    let run = log.find(org, run_id).await.unwrap().expect("run");
    log.append_events(&[run.failed(RunEvent::Finished, "test", Utc::now())]).await.unwrap();
}

async fn run_row(app: &TestApp, org: &str, run_id: &str) -> Value {
    let t = app.state.central_table("pipeline_runs_current").unwrap();
    let sql = format!("SELECT * FROM {t} WHERE org_slug = @org AND run_id = @run_id");
    let rows = app.warehouse().query(&sql, &Params::new().bind("org", org).bind("run_id", run_id)).await.unwrap();
    Value::Object(rows.into_iter().next().expect("run row"))
}

// ---------------------------------------------------------------------------------------------
// The catalog

#[tokio::test]
async fn the_catalog_holds_the_shipped_pipelines() {
    let configs = Configs::load(&repo_configs(), &common::processors::REGISTRY).unwrap_or_else(|e| panic!("{e}"));
    let paths = configs.pipelines.paths();
    for expected in
        ["anthropic/reprice", "anthropic/usage_cost", "openai/reprice", "openai/subscriptions", "openai/usage_cost"]
    {
        assert!(paths.contains(&expected.to_string()), "{expected} missing from {paths:?}");
    }
    for p in configs.pipelines.iter() {
        assert!(p.pipeline_id("acme").starts_with(&format!("acme-{}-", p.key.provider)), "{}", p.file);
        assert!(!p.steps.is_empty());
        for s in &p.steps {
            assert!(common::processors::REGISTRY.has(&s.ps_type), "{}: {}", p.file, s.ps_type);
        }
    }
    // The reprice pipelines price stored raw rows only: never scheduled, no extract step, and
    // no reconciliation (which would call the provider's cost endpoint).
    for provider in ["openai", "anthropic"] {
        let p = configs.pipelines.get(provider, "reprice", None).unwrap();
        assert_eq!(p.schedule, common::pipeline::Schedule::Manual, "{}", p.file);
        let types: Vec<&str> = p.steps.iter().map(|s| s.ps_type.as_str()).collect();
        assert_eq!(types, vec![format!("{provider}.cost").as_str(), "data_quality.validate"], "{}", p.file);
        let reconcile = p.steps[0].config.get("reconcile").and_then(|v| v.as_bool());
        assert_eq!(reconcile, Some(false), "{}", p.file);
    }
}

#[tokio::test]
async fn a_broken_pipeline_file_stops_start_up_naming_file_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    convergence_tests::copy_dir(&repo_configs(), dir.path());
    let write = |rel: &str, text: &str| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "openai/broken_steps.yml",
        r#"
pipeline_id: "{org_slug}-openai-broken-steps"
description: "broken on purpose"
schedule: daily
max_window_days: 31
steps:
  - step_id: extract_usage
    ps_type: openai.nope
  - step_id: extract_more
    ps_type: openai.usage
    no_such_key: 1
  - step_id: Bad
    ps_type: anthropic.usage
    target: "{dataset}.{no_such_variable}"
  - step_id: extract_again
    ps_type: openai.usage
    retry: {max_attempts: 50}
"#,
    );
    // A table schema that does not parse: its file, and the steps that need it, are named.
    write("openai/schemas/openai_cost_daily.json", r#"{"description": "cost", "fields": [{"name": "usage_date"}]}"#);
    write(
        "anthropic/broken_header.yml",
        "pipeline_id: \"acme_usage\"\ndescription: x\nschedule: hourly\nmax_window_days: 0\nsteps: []\n",
    );
    write(
        "anthropic/bad_ids.yml",
        "pipeline_id: \"{org_slug}-anthropic-usage\"\ndescription: x\nschedule: daily\nmax_window_days: 400\nvariables: {date: x}\nsteps: []\n",
    );
    write("openai/Not-Snake.yml", "pipeline_id: x\n");
    write(
        "openai/extra_key.yml",
        "pipeline_id: \"{org_slug}-openai-x\"\ndescription: x\nschedule: daily\nmax_window_days: 1\nsteps: []\nowner: me\n",
    );
    let err = Configs::load(dir.path(), &common::processors::REGISTRY).unwrap_err().to_string();
    for expected in [
        "openai/broken_steps.yml: step extract_usage: ps_type \"openai.nope\" is not a registered processor",
        "openai/broken_steps.yml: step extract_more (openai.usage): unknown field `no_such_key`",
        "openai/broken_steps.yml: step Bad: step_id must be snake_case",
        "{no_such_variable} is not a variable",
        "anthropic/broken_header.yml: schedule: unknown variant `hourly`, expected one of `daily`, `monthly`, `manual`",
        "anthropic/bad_ids.yml: max_window_days must be between 1 and 366",
        "anthropic/bad_ids.yml: variables.date: date is a built-in variable",
        "anthropic/bad_ids.yml: steps must list at least one step",
        "openai/Not-Snake.yml: \"Not-Snake\" must be snake_case",
        "openai/extra_key.yml: unknown field `owner`",
        "openai/broken_steps.yml: step extract_again (openai.usage): retry.max_attempts must be between 1 and 20",
        "openai/schemas/openai_cost_daily.json: missing field `type`",
        "openai/usage_cost.yml: step transform_cost (openai.cost): table openai_cost_daily needs a valid schema",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    // The process refuses to start: the state cannot be built.
    let err = convergence_tests::start_up_error(dir.path()).await;
    assert!(err.contains("broken_steps.yml") && err.contains("openai.nope"), "{err}");
    assert!(err.contains("openai_cost_daily.json") && err.contains("retry.max_attempts"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Validation and access

#[tokio::test]
async fn run_requests_are_validated_and_unknown_pipelines_list_the_catalog() {
    let app = app().await;
    let key = org_ready(&app, "acme", "PROFESSIONAL", true).await;
    let other = org_ready(&app, "globex", "PROFESSIONAL", false).await;
    let path = run_path("acme", PIPELINE);
    let tomorrow = (Utc::now().date_naive() + Days::days(1)).to_string();
    for (body, needle) in [
        (json!({"date": "2025-13-01"}), "date must be a date in the form YYYY-MM-DD"),
        (json!({"date": "2025-3-1"}), "date must be a date in the form YYYY-MM-DD"),
        (
            json!({"start_date": "2025-03-10", "end_date": "2025-03-01"}),
            "end_date (2025-03-01) must not be before start_date",
        ),
        (json!({"start_date": "2025-03-10"}), "end_date is missing"),
        (json!({"end_date": "2025-03-10"}), "start_date is missing"),
        (json!({"date": "2025-03-01", "start_date": "2025-03-01", "end_date": "2025-03-01"}), "not both"),
        (json!({}), "send {\"date\""),
        (json!({"date": tomorrow}), "to today ("),
        (json!({"start_date": "2025-01-01", "end_date": tomorrow}), "is outside the days openai can be run for"),
        (
            json!({"start_date": "-999-01-01", "end_date": "-999-01-07"}),
            "start_date must be a date in the form YYYY-MM-DD",
        ),
        (json!({"start_date": "2019-01-01", "end_date": "2019-01-07"}), "2020-06-01 (the provider's first usable day)"),
        (json!({"start_date": "2024-01-01", "end_date": "2025-01-01"}), "max_window_days"),
        (json!({"date": "2025-03-01", "dry_run": true}), "unknown field `dry_run`"),
    ] {
        let r = app.post(&path, Key::Api(&key), body.clone()).await;
        let message = r.assert_error(400, "invalid_request");
        assert!(message.contains(needle), "{body}: {message}");
    }
    let future = app.post(&path, Key::Api(&key), json!({"date": tomorrow})).await;
    assert!(future.message().contains(&format!("to today ({}, UTC)", Utc::now().date_naive())), "{}", future.message());

    // Unknown pipelines: 404 listing what exists; the path is a catalog key, never a file path.
    for bad in ["openai/nope", "openai/usage_cost/extra", "nope/usage_cost", "openai/..%2F..%2Fsetup", "openai/seed"] {
        let r = app.post(&run_path("acme", bad), Key::Api(&key), json!({"date": day(1)})).await;
        let message = r.assert_error(404, "not_found");
        assert!(message.contains("openai/usage_cost") && message.contains("anthropic/usage_cost"), "{bad}: {message}");
    }

    // Access: no key 401, another org's key 403 (before anything is read), unknown org 404.
    app.post(&path, Key::None, json!({"date": day(1)})).await.assert_error(401, "unauthorized");
    app.post(&path, Key::Api(&other), json!({"date": day(1)})).await.assert_error(403, "forbidden");
    app.get("/api/v1/pipelines/runs/acme", Key::Api(&other)).await.assert_error(403, "forbidden");
    app.get("/api/v1/pipelines/runs/acme/00000000-0000-0000-0000-000000000000", Key::Api(&other))
        .await
        .assert_error(403, "forbidden");
    app.post(&run_path("nobody", PIPELINE), Key::Root, json!({"date": day(1)})).await.assert_error(404, "not_found");
    app.get("/api/v1/pipelines/runs/acme/00000000-0000-0000-0000-000000000000", Key::Api(&key))
        .await
        .assert_error(404, "not_found");
    assert_eq!(app.count("org_meta_pipeline_runs", None).await, 0, "nothing was accepted");
}

// ---------------------------------------------------------------------------------------------
// Gates

#[tokio::test]
async fn gates_refuse_inactive_subscriptions_missing_integrations_and_exhausted_quotas() {
    let app = app().await;
    let key = org_ready(&app, "acme", "STARTER", false).await;
    let path = run_path("acme", PIPELINE);
    let body = json!({"date": day(1)});

    // No integration: 409 saying how to set it up.
    let r = app.post(&path, Key::Api(&key), body.clone()).await;
    assert!(r.assert_error(409, "conflict").contains("/api/v1/integrations/acme/openai/setup"), "{}", r.body);

    // An integration that is no longer VALID: 409.
    app.post("/api/v1/integrations/acme/openai/setup", Key::Api(&key), json!({"credential": "sk-admin-sandbox-acme"}))
        .await;
    let t = app.state.central_table("org_integration_credentials").unwrap();
    let set_status = |status: &'static str| {
        let sql = format!("UPDATE {t} SET status = @status WHERE org_slug = 'acme'");
        let w = app.warehouse();
        async move { w.execute(&sql, &Params::new().bind("status", status)).await.unwrap() }
    };
    set_status("INVALID").await;
    let r = app.post(&path, Key::Api(&key), body.clone()).await;
    assert!(r.assert_error(409, "conflict").contains("INVALID"), "{}", r.body);
    set_status("VALID").await;

    // Subscription: SUSPENDED → 403; a trial that ended → 403; ACTIVE passes.
    let sub = |status: &str, trial: Option<String>| {
        let mut b = json!({"status": status});
        if let Some(t) = trial {
            b["trial_ends_at"] = json!(t);
        }
        b
    };
    app.put("/api/v1/organizations/acme/subscription", Key::Root, sub("past_due", None)).await;
    let r = app.post(&path, Key::Api(&key), body.clone()).await;
    assert!(r.assert_error(403, "forbidden").contains("SUSPENDED"), "{}", r.body);
    let ended = (Utc::now() - Days::days(1)).to_rfc3339();
    app.put("/api/v1/organizations/acme/subscription", Key::Root, sub("trialing", Some(ended))).await;
    let r = app.post(&path, Key::Api(&key), body.clone()).await;
    assert!(r.assert_error(403, "forbidden").contains("trial ended"), "{}", r.body);
    app.put("/api/v1/organizations/acme/subscription", Key::Root, sub("active", None)).await;

    // Concurrent runs (STARTER: 1): another window still running → 429.
    let running = seed_run(&app, "acme", "RUNNING", &day(20), &day(20), 5).await;
    let r = app.post(&path, Key::Api(&key), body.clone()).await;
    assert!(r.assert_error(429, "rate_limited").contains("at a time"), "{}", r.body);
    assert!(r.headers.get("retry-after").is_some());
    fail_run(&app, "acme", &running).await;

    // Runs per day (STARTER: 6, the seeded one counts): 429 with the reset time.
    for i in 0..5 {
        let id = seed_run(&app, "acme", "RUNNING", &day(30 + i), &day(30 + i), 1).await;
        fail_run(&app, "acme", &id).await;
    }
    let r = app.post(&path, Key::Api(&key), body.clone()).await;
    let message = r.assert_error(429, "rate_limited").to_string();
    assert!(message.contains("6 runs today") && message.contains("resets at"), "{message}");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    assert_eq!(app.count("pipeline_runs_current", Some("acme")).await, 6, "refused requests write no run");
}

// ---------------------------------------------------------------------------------------------
// Runs

#[tokio::test]
async fn a_run_goes_from_202_to_success_with_step_rows_and_logs() {
    let app = app().await;
    let key = org_ready(&app, "acme", "PROFESSIONAL", true).await;
    let run_id = accepted(&app, "acme", Key::Api(&key), json!({"start_date": day(7), "end_date": day(1)})).await;
    let run = wait(&app, "acme", &run_id, Key::Api(&key)).await;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    assert_eq!(run["trigger"], "adhoc");
    assert_eq!(run["start_date"], day(7));
    assert_eq!(run["end_date"], day(1));
    assert!(run["error_message"].is_null());
    assert!(run["duration_ms"].as_i64().unwrap() >= 0);
    let steps = run["steps"].as_array().unwrap();
    let pipeline = app.state.configs.pipelines.get("openai", "usage_cost", None).unwrap();
    assert_eq!(steps.len(), pipeline.steps.len());
    let mut total = 0;
    for (i, (step, config)) in steps.iter().zip(&pipeline.steps).enumerate() {
        assert_eq!(step["step_index"], i as i64);
        assert_eq!(step["step_id"], config.step_id.as_str());
        assert_eq!(step["ps_type"], config.ps_type.as_str());
        assert_eq!(step["status"], "SUCCESS", "{step}");
        assert!(step["started_at"].is_string() && step["finished_at"].is_string());
        total += step["rows_written"].as_i64().unwrap();
    }
    assert!(total > 0, "the sandbox has usage for the last 7 days: {run}");
    assert_eq!(run["rows_written"], total);
    assert_eq!(run["totals"]["rows_written"], total);
    assert_eq!(run["totals"]["steps_succeeded"], steps.len());

    // The log views show the run and its steps.
    let view = |name: &str| {
        let sql = format!(
            "SELECT * FROM {} WHERE run_id = @run_id",
            app.state.warehouse.table_ref(app.state.configs.central_dataset(), name).unwrap()
        );
        let w = app.warehouse();
        let run_id = run_id.clone();
        async move { w.query(&sql, &Params::new().bind("run_id", run_id.as_str())).await.unwrap() }
    };
    let runs = view("pipeline_logs_view").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "SUCCESS");
    assert_eq!(runs[0]["company_name"], "acme Inc.");
    let step_rows = view("step_logs_view").await;
    assert_eq!(step_rows.len(), steps.len());
    assert!(step_rows.iter().all(|r| r["run_status"] == "SUCCESS" && r["trigger"] == "adhoc"));
    assert!(app.count("org_audit_logs", Some("acme")).await >= 1);

    // A duplicate delivery of a finished run does nothing.
    app.state.queue.enqueue(RunRequest { org_slug: "acme".into(), run_id: run_id.clone() }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = wait(&app, "acme", &run_id, Key::Root).await;
    assert_eq!(again["finished_at"], run["finished_at"]);
    assert_eq!(again["steps"].as_array().unwrap().len(), steps.len());

    // The same window again replaces it: a new run, SUCCESS, the same rows.
    let rerun = accepted(&app, "acme", Key::Root, json!({"start_date": day(7), "end_date": day(1)})).await;
    let rerun = wait(&app, "acme", &rerun, Key::Root).await;
    assert_eq!(rerun["status"], "SUCCESS", "{rerun}");
    assert_eq!(rerun["rows_written"], total);
}

#[tokio::test]
async fn a_failing_step_stops_the_run_with_its_message() {
    let app = app().await;
    let key = org_ready(&app, "acme", "PROFESSIONAL", true).await;
    // Swap the stored credential for a sandbox key whose every call answers 500.
    let ciphertext = app
        .state
        .kms
        .encrypt(b"sk-admin-sandbox-acme-fail500", &common::credentials::aad("acme", "openai"))
        .await
        .unwrap();
    let sql = format!(
        "UPDATE {} SET encrypted_credential = @c WHERE org_slug = 'acme' AND provider = 'openai'",
        app.state.central_table("org_integration_credentials").unwrap()
    );
    app.warehouse().execute(&sql, &Params::new().bind("c", ciphertext)).await.unwrap();
    let run_id = accepted(&app, "acme", Key::Api(&key), json!({"date": day(2)})).await;
    let run = wait(&app, "acme", &run_id, Key::Api(&key)).await;
    assert_eq!(run["status"], "FAILED", "{run}");
    let steps = run["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "the first step failed and nothing after it ran: {run}");
    assert_eq!(steps[0]["status"], "FAILED");
    let message = run["error_message"].as_str().unwrap();
    assert!(message.starts_with(&format!("step {} failed", steps[0]["step_id"].as_str().unwrap())), "{message}");
    assert!(message.contains("500"), "{message}");
    assert!(!message.contains("sk-admin"), "the credential never appears: {message}");
    assert_eq!(steps[0]["error_message"].as_str().map(|m| message.ends_with(m)), Some(true), "{run}");
}

#[tokio::test]
async fn a_run_without_a_credential_fails_cleanly() {
    // The gate refuses this at the API; a run already queued when the integration is deleted
    // must still end FAILED with a message, not hang.
    let app = app().await;
    org_ready(&app, "acme", "PROFESSIONAL", false).await;
    let run_id = seed_run(&app, "acme", "PENDING", &day(3), &day(3), 0).await;
    app.state.queue.enqueue(RunRequest { org_slug: "acme".into(), run_id: run_id.clone() }).await.unwrap();
    let run = wait(&app, "acme", &run_id, Key::Root).await;
    assert_eq!(run["status"], "FAILED");
    assert!(run["error_message"].as_str().unwrap().contains("no openai integration"), "{run}");
    assert!(run["steps"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_window_still_running_is_409_and_a_stale_run_is_expired() {
    let app = app().await;
    let key = org_ready(&app, "acme", "SCALE", true).await;
    let path = run_path("acme", PIPELINE);

    // Another run of an overlapping window is RUNNING (fresh): 409 with its run_id.
    let running = seed_run(&app, "acme", "RUNNING", &day(5), &day(3), 10).await;
    let r = app.post(&path, Key::Api(&key), json!({"start_date": day(4), "end_date": day(2)})).await;
    let message = r.assert_error(409, "conflict").to_string();
    assert_eq!(r.body["run_id"], running.as_str(), "{}", r.body);
    assert_eq!(r.body["status"], "RUNNING");
    assert!(message.contains(&running), "{message}");
    // A PENDING one too; a window that does not overlap is accepted.
    let pending = seed_run(&app, "acme", "PENDING", &day(9), &day(9), 1).await;
    let r = app.post(&path, Key::Api(&key), json!({"date": day(9)})).await;
    assert_eq!(r.body["run_id"], pending.as_str(), "{}", r.body);
    accepted(&app, "acme", Key::Api(&key), json!({"date": day(12)})).await;

    // The RUNNING one dies: its lease (RUN_LEASE_SECS, 3600 s) has passed. The next request marks
    // it FAILED and proceeds.
    let stale = seed_run(&app, "acme", "RUNNING", &day(15), &day(15), 7200).await;
    let new = accepted(&app, "acme", Key::Api(&key), json!({"date": day(15)})).await;
    assert_ne!(new, stale);
    let old = run_row(&app, "acme", &stale).await;
    assert_eq!(old["status"], "FAILED");
    assert!(old["error_message"].as_str().unwrap().contains("lease"), "{old}");
    let done = wait(&app, "acme", &new, Key::Api(&key)).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
}

#[tokio::test]
async fn a_reprice_waits_for_a_usage_run_of_an_overlapping_window() {
    let app = app().await;
    let key = org_ready(&app, "acme", "SCALE", true).await;
    let reprice = run_path("acme", "openai/reprice");

    // A usage_cost run (another pipeline, writing the same tables) is RUNNING: an overlapping
    // reprice is 409 naming it; a reprice of another window is accepted.
    let running = seed_run(&app, "acme", "RUNNING", &day(5), &day(3), 10).await;
    let r = app.post(&reprice, Key::Api(&key), json!({"start_date": day(4), "end_date": day(2)})).await;
    let message = r.assert_error(409, "conflict").to_string();
    assert_eq!(r.body["run_id"], running.as_str(), "{}", r.body);
    assert!(message.contains("acme-openai-usage-cost"), "{message}");
    let r = app.post(&reprice, Key::Api(&key), json!({"date": day(8)})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    // And the other way round: a RUNNING reprice holds back a usage run of an overlapping window.
    let at = Utc::now() - Days::seconds(10);
    let new = common::pipeline::runlog::NewRun {
        org_slug: "acme",
        pipeline_id: "acme-openai-reprice",
        provider: "openai",
        domain: "reprice",
        pipeline: None,
        file: "openai/reprice.yml",
        trigger: Trigger::Adhoc,
        window: common::pipeline::runlog::Window { start: day(20).parse().unwrap(), end: day(18).parse().unwrap() },
        attempt: 1,
    };
    let run = new.pending(at, Days::hours(1));
    let claimed = convergence_tests::claimed(&run, at + Days::milliseconds(1), Days::seconds(3600), "seeded");
    app.state.pipelines.run_log().append_events(&[run.clone(), claimed]).await.unwrap();
    let r = app.post(&run_path("acme", PIPELINE), Key::Api(&key), json!({"date": day(19)})).await;
    let message = r.assert_error(409, "conflict").to_string();
    assert_eq!(r.body["run_id"], run.run_id.as_str(), "{}", r.body);
    assert!(message.contains("acme-openai-reprice"), "{message}");
}

#[tokio::test]
async fn history_filters_by_status_and_pages() {
    let app = app().await;
    let key = org_ready(&app, "acme", "SCALE", true).await;
    let other = org_ready(&app, "globex", "SCALE", false).await;
    let mut failed = Vec::new();
    for i in 0..5 {
        let id = seed_run(&app, "acme", "RUNNING", &day(40 + i), &day(40 + i), 100 - i).await;
        fail_run(&app, "acme", &id).await;
        failed.push(id);
    }
    seed_run(&app, "acme", "RUNNING", &day(60), &day(60), 1).await;
    seed_run(&app, "globex", "RUNNING", &day(60), &day(60), 1).await;

    let all = app.get("/api/v1/pipelines/runs/acme", Key::Api(&key)).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert_eq!(all.body["runs"].as_array().unwrap().len(), 6, "only acme's runs");
    assert!(all.body["next_offset"].is_null());

    let page = |q: &str| {
        let path = format!("/api/v1/pipelines/runs/acme?{q}");
        let (app, key) = (&app, key.clone());
        async move { app.get(&path, Key::Api(&key)).await }
    };
    let first: Reply = page("status=failed&limit=2").await;
    let ids = |r: &Reply| -> Vec<String> {
        r.body["runs"].as_array().unwrap().iter().map(|r| r["run_id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(first.body["status"], "FAILED");
    assert!(first.body["runs"].as_array().unwrap().iter().all(|r| r["status"] == "FAILED"));
    // Newest first: the seeded runs were created 96..100 s ago, the last one newest.
    assert_eq!(ids(&first), vec![failed[4].clone(), failed[3].clone()]);
    assert_eq!(first.body["next_offset"], 2);
    let second = page("status=FAILED&limit=2&offset=2").await;
    assert_eq!(ids(&second), vec![failed[2].clone(), failed[1].clone()]);
    let last = page("status=FAILED&limit=2&offset=4").await;
    assert_eq!(ids(&last), vec![failed[0].clone()]);
    assert!(last.body["next_offset"].is_null());
    assert_eq!(page("status=RUNNING").await.body["runs"].as_array().unwrap().len(), 1);

    for (q, needle) in [
        ("status=DONE", "status must be one of"),
        ("limit=0", "limit must be"),
        ("limit=101", "limit must be"),
        ("offset=-1", "offset must be"),
        ("cursor=abc", "unknown query parameter"),
    ] {
        let r = page(q).await;
        assert!(r.assert_error(400, "invalid_request").contains(needle), "{q}: {}", r.body);
    }
    app.get("/api/v1/pipelines/runs/acme", Key::Api(&other)).await.assert_error(403, "forbidden");
}

// ---------------------------------------------------------------------------------------------
// BigQuery

#[tokio::test]
async fn a_run_on_bigquery() {
    let url = convergence_tests::bigquery_emulator();
    let project = convergence_tests::unique_project();
    let app = sandbox::spawn_with(&[
        ("WAREHOUSE_BACKEND", "bigquery"),
        ("GCP_PROJECT_ID", &project),
        ("BIGQUERY_API_BASE", &url),
    ])
    .await;
    app.bootstrap().await;
    let key = org_ready(&app, "acme", "PROFESSIONAL", true).await;
    let run_id = accepted(&app, "acme", Key::Api(&key), json!({"start_date": day(3), "end_date": day(2)})).await;
    let run = wait(&app, "acme", &run_id, Key::Api(&key)).await;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    assert!(run["rows_written"].as_i64().unwrap() > 0, "{run}");
    assert!(run["steps"].as_array().unwrap().iter().all(|s| s["status"] == "SUCCESS"), "{run}");
    let r = app.post(&run_path("acme", PIPELINE), Key::Api(&key), json!({"date": day(2)})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "the finished window can run again: {}", r.body);
    let history = app.get("/api/v1/pipelines/runs/acme?limit=1", Key::Api(&key)).await;
    assert_eq!(history.body["runs"].as_array().unwrap().len(), 1, "{}", history.body);
    assert_eq!(history.body["next_offset"], 1);
}
