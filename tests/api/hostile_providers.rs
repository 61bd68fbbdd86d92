//! Hostile providers and failing backends (issue 15 §9), over HTTP: runs of the shipped usage
//! and cost pipelines against a provider that answers malformed JSON with a 2xx, pages in a loop,
//! floods, asks to retry after an hour, never answers, or fails on a later page once earlier
//! pages were staged; KMS failing at set-up and while a run decrypts its credential; the
//! warehouse failing at a staging's commit and while the run log is written (by a run of the
//! in-process queue, and under a Pub/Sub push delivery). Each must fail its step (or request)
//! with a message that names the provider and what was wrong, never the key, and leave the
//! organization's tables exactly as they were, with no staged rows left behind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{Duration as Days, Utc};
use common::warehouse::counting::{StatementKind, StatementLog};
use common::warehouse::Params;
use convergence_tests::fakes::faulty_warehouse::{Faults, FaultyWarehouse};
use convergence_tests::fakes::hostile::{
    Answer, HostileProvider, ANTHROPIC_COSTS, ANTHROPIC_USAGE, OPENAI_COMPLETIONS, OPENAI_COSTS,
};
use convergence_tests::fakes::kms::FakeKms;
use convergence_tests::fakes::pubsub::FakePubSub;
use convergence_tests::{Key, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const ORG: &str = "hostile_co";

/// One LLM provider as these tests drive it.
struct Llm {
    /// The name messages use.
    name: &'static str,
    id: &'static str,
    /// A sandbox admin key (the honest answers are the sandbox's).
    key: &'static str,
    usage_path: &'static str,
    cost_path: &'static str,
    usage_table: &'static str,
}

const OPENAI: Llm = Llm {
    name: "OpenAI",
    id: "openai",
    key: "sk-admin-sandbox-hostile",
    usage_path: OPENAI_COMPLETIONS,
    cost_path: OPENAI_COSTS,
    usage_table: "openai_usage_daily_raw",
};

const ANTHROPIC: Llm = Llm {
    name: "Anthropic",
    id: "anthropic",
    key: "sk-ant-admin01-sandbox-hostile",
    usage_path: ANTHROPIC_USAGE,
    cost_path: ANTHROPIC_COSTS,
    usage_table: "anthropic_usage_daily_raw",
};

/// The settings every app here runs with: providers behind the hostile fake, short timeouts, a
/// 1 MB page limit, and days of 600 usage rows (more than a staged batch, so the first page of a
/// report is staged before the second is asked for).
fn settings(fake: &HostileProvider) -> Vec<(String, String)> {
    vec![
        ("OPENAI_API_BASE".into(), format!("{}/sandbox/openai/v1", fake.url())),
        ("ANTHROPIC_API_BASE".into(), format!("{}/sandbox/anthropic", fake.url())),
        ("PROVIDER_TIMEOUT_SECS".into(), "1".into()),
        ("PROVIDER_MAX_PAGE_MB".into(), "1".into()),
        ("SANDBOX_ROWS_PER_DAY".into(), "600".into()),
    ]
}

/// The app (with `extra` settings and the warehouse behind `faults`), its fake provider aimed at
/// its sandbox, bootstrapped, `ORG` onboarded on SCALE with both LLM integrations set up.
async fn spawn(extra: &[(&str, &str)], faults: Arc<Faults>, log: StatementLog) -> (TestApp, HostileProvider) {
    let fake = HostileProvider::start().await;
    let mut vars = settings(&fake);
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::spawn_wrapped(&vars, log, |w| FaultyWarehouse::wrap(w, faults)).await;
    fake.aim(&app.base);
    app.bootstrap().await;
    app.onboard_active(ORG, "SCALE").await;
    for llm in [&OPENAI, &ANTHROPIC] {
        let r = setup(&app, llm, llm.key).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}: {}", llm.id, r.body);
    }
    (app, fake)
}

async fn setup(app: &TestApp, llm: &Llm, key: &str) -> convergence_tests::Reply {
    app.post(&format!("/api/v1/integrations/{ORG}/{}/setup", llm.id), Key::Root, json!({"credential": key})).await
}

/// Two past days: with one day per usage page, every report has a second page.
fn window() -> Value {
    let day = |ago: i64| (Utc::now().date_naive() - Days::days(ago)).to_string();
    json!({"start_date": day(3), "end_date": day(2)})
}

/// Runs the provider's usage and cost pipeline over the window and waits for its end.
async fn run(app: &TestApp, llm: &Llm) -> Value {
    let r = app.post(&format!("/api/v1/pipelines/run/{ORG}/{}/usage_cost", llm.id), Key::Root, window()).await;
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

/// Every row of every table of the organization's dataset, in a total order, and its rows in
/// the central data-quality table: what a failed run must leave exactly as it was.
async fn snapshot(app: &TestApp) -> String {
    let w = app.warehouse();
    let dataset = app.state.org_dataset(ORG);
    let mut out = String::new();
    for table in w.list_tables(&dataset).await.unwrap() {
        let columns = w.table_columns(&dataset, &table).await.unwrap();
        let sql = format!(
            "SELECT * FROM {} ORDER BY {}",
            w.table_ref(&dataset, &table).unwrap(),
            columns.iter().map(|c| format!("{c} NULLS FIRST")).collect::<Vec<_>>().join(", ")
        );
        let rows = w.query(&sql, &Params::new()).await.unwrap();
        out.push_str(&format!("{table}: {}\n", serde_json::to_string(&rows).unwrap()));
    }
    out.push_str(&format!("dq rows: {}\n", app.count(common::processors::DQ_TABLE, Some(ORG)).await));
    out
}

/// Waits until no staged row is left in the organization's dataset (DuckDB stages in a
/// transaction: never a table; BigQuery in permanent staging tables, whose rows of a failed
/// staging are deleted in the background), panicking after 30 s.
async fn assert_no_staged_rows(app: &TestApp) {
    if app.state.warehouse.backend_name() == "bigquery" {
        // The staging task may still be writing what it was handed when the step failed: give
        // it time to land, so that what is checked is its cleanup.
        let landed = Instant::now() + Duration::from_secs(5);
        while staged_rows(app).await.is_empty() && Instant::now() < landed {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = staged_rows(app).await;
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "staged rows left behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `table: rows` of every staging table of the organization's dataset that holds rows.
async fn staged_rows(app: &TestApp) -> Vec<String> {
    let w = app.warehouse();
    let dataset = app.state.org_dataset(ORG);
    let visible = w.list_tables(&dataset).await.unwrap();
    let mut left = Vec::new();
    for table in w.list_all_tables(&dataset).await.unwrap().into_iter().filter(|t| !visible.contains(t)) {
        let sql = format!("SELECT COUNT(*) AS n FROM {}", w.table_ref(&dataset, &table).unwrap());
        let n = w.query(&sql, &Params::new()).await.unwrap()[0]["n"].as_i64().unwrap();
        if n > 0 {
            left.push(format!("{table}: {n}"));
        }
    }
    left
}

/// The run failed, its message names the provider and says `what` (every part), the key is
/// nowhere in what the API returns, and the organization's tables are as they were.
async fn assert_failed_cleanly(app: &TestApp, llm: &Llm, run: &Value, what: &[&str], before: &str) {
    assert_eq!(run["status"], "FAILED", "{run}");
    let message = run["error_message"].as_str().unwrap_or_default();
    assert!(message.contains(llm.name), "the message names {}: {message}", llm.name);
    for part in what {
        assert!(message.contains(part), "the message says {part:?}: {message}");
    }
    assert_no_secret(&run.to_string(), llm.key);
    assert_no_staged_rows(app).await;
    assert_eq!(snapshot(app).await, before, "a failed run left the window as it was");
}

#[track_caller]
fn assert_no_secret(text: &str, key: &str) {
    assert!(!text.contains(key), "the key leaked: {text}");
    assert!(!text.contains("sk-admin") && !text.contains("sk-ant-"), "a key-shaped string leaked: {text}");
}

/// The hostile answers every report call may meet, each with what its run's message must say.
fn hostile_cases(llm: &Llm) -> Vec<(&'static str, &'static str, Vec<Answer>, Vec<&'static str>)> {
    let echo = format!("Rate limit reached for key {}", llm.key);
    vec![
        (
            "a 2xx with malformed JSON",
            llm.usage_path,
            vec![Answer::text(200, r#"{"object": "page", "data": [{"start_time": 17"#)],
            vec!["answered 200", "not JSON of the documented shape"],
        ),
        (
            "a 2xx of the wrong shape quoting the key",
            llm.usage_path,
            vec![Answer::json(200, &json!({"object": "page", "data": llm.key, "has_more": false}))],
            vec!["answered 200", "not JSON of the documented shape", "[redacted]"],
        ),
        (
            "the same page cursor again",
            llm.usage_path,
            vec![Answer::Cursor("page_same"), Answer::Cursor("page_same")],
            vec!["sent a page cursor it had sent before", "\"page_same\"", "loops"],
        ),
        (
            "page cursors in a cycle",
            llm.usage_path,
            vec![Answer::Cursor("page_a"), Answer::Cursor("page_b"), Answer::Cursor("page_a")],
            vec!["sent a page cursor it had sent before", "\"page_a\"", "after 3 page(s)"],
        ),
        (
            "a body over the size limit, announced",
            llm.usage_path,
            vec![Answer::Flood { bytes: 2 << 20, announced: true }],
            vec!["larger than 1 MB", "PROVIDER_MAX_PAGE_MB"],
        ),
        (
            "a body over the size limit, chunked",
            llm.usage_path,
            vec![Answer::Flood { bytes: 2 << 20, announced: false }],
            vec!["larger than 1 MB", "PROVIDER_MAX_PAGE_MB"],
        ),
        (
            "a Retry-After beyond the retry budget",
            llm.usage_path,
            vec![Answer::Raw {
                status: 429,
                headers: vec![("content-type", "application/json".into()), ("retry-after", "3600".into())],
                body: json!({"error": {"message": echo, "type": "rate_limit_error"}}).to_string(),
            }],
            vec!["answered 429", "asked to retry after 3600 s", "beyond the retry budget"],
        ),
        (
            "a failure on a later page after the first was staged",
            llm.usage_path,
            vec![
                Answer::Honest,
                Answer::json(
                    400,
                    &json!({"error": {"message": "page cursor expired", "type": "invalid_request_error"}}),
                ),
            ],
            vec!["answered 400", "page cursor expired"],
        ),
        (
            "malformed JSON from the cost report (reconciliation)",
            llm.cost_path,
            vec![Answer::text(200, "<html>upstream error</html>")],
            vec!["answered 200", "not JSON of the documented shape", "transform_cost"],
        ),
    ]
}

/// Every hostile answer against one provider: a loaded window first, then a run per case.
async fn hostile_provider_runs_fail_cleanly(llm: &Llm) {
    let log = StatementLog::new();
    let (app, fake) = spawn(&[], Arc::default(), log.clone()).await;
    let baseline = run(&app, llm).await;
    assert_eq!(baseline["status"], "SUCCESS", "{baseline}");
    let before = snapshot(&app).await;
    assert!(before.contains(llm.usage_table), "the window is loaded: {before}");

    for (case, path, answers, what) in hostile_cases(llm) {
        fake.reset();
        log.reset();
        let scripted = answers.len();
        fake.script(path, answers);
        let started = Instant::now();
        let failed = run(&app, llm).await;
        assert_eq!(failed["status"], "FAILED", "{case}: {failed}; calls: {:?}", fake.all_calls());
        assert_failed_cleanly(&app, llm, &failed, &what, &before).await;
        assert_eq!(fake.calls(path), scripted, "{case}: the provider was called once per scripted answer, no more");
        if case.contains("Retry-After") {
            assert!(started.elapsed() < Duration::from_secs(20), "{case}: failed fast, not after an hour");
        }
        if case.contains("later page") {
            let table = format!("{}.{}", app.state.org_dataset(ORG), llm.usage_table);
            // The staging task may take the batch it was handed after the step has failed.
            let deadline = Instant::now() + Duration::from_secs(5);
            while log.summary().count(StatementKind::StageAppend, &table) == 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let appends = log.summary().count(StatementKind::StageAppend, &table);
            assert!(appends >= 1, "{case}: the first page was staged before the second failed");
            assert_eq!(log.summary().count(StatementKind::StageCommit, &table), 0, "{case}");
        }
    }

    // No answer within the timeout: every attempt times out, then the step fails.
    fake.reset();
    fake.always(llm.usage_path, Answer::Stall(Duration::from_secs(3)));
    let failed = run(&app, llm).await;
    assert_failed_cleanly(
        &app,
        llm,
        &failed,
        &["no answer within the timeout of 1 s", "gave up after 5 attempt(s)"],
        &before,
    )
    .await;

    // Honest again: the same window loads as before.
    fake.reset();
    let again = run(&app, llm).await;
    assert_eq!(again["status"], "SUCCESS", "{again}");
    // The same rows; the data-quality table (insert only) has the new run's results besides.
    let tables = |s: &str| s.lines().filter(|l| !l.starts_with("dq rows")).collect::<Vec<_>>().join("\n");
    assert_eq!(tables(&snapshot(&app).await), tables(&before));
}

#[tokio::test]
async fn hostile_openai_answers_fail_the_step_and_leave_the_window() {
    hostile_provider_runs_fail_cleanly(&OPENAI).await;
}

#[tokio::test]
async fn hostile_anthropic_answers_fail_the_step_and_leave_the_window() {
    hostile_provider_runs_fail_cleanly(&ANTHROPIC).await;
}

/// A later page failing after the first was staged, and a staging's commit failing, on `app`:
/// the window as it was, no staged row left.
async fn staging_failures_leave_the_window(app: &TestApp, fake: &HostileProvider, faults: &Faults) {
    let llm = &OPENAI;
    let baseline = run(app, llm).await;
    assert_eq!(baseline["status"], "SUCCESS", "{baseline}");
    let before = snapshot(app).await;

    fake.script(
        llm.usage_path,
        vec![Answer::Honest, Answer::json(400, &json!({"error": {"message": "page cursor expired"}}))],
    );
    let failed = run(app, llm).await;
    assert_failed_cleanly(app, llm, &failed, &["answered 400", "page cursor expired"], &before).await;
    fake.reset();

    // The usage step's commit fails: the run says the warehouse was unavailable (its text
    // stays in the service log), and nothing of the staged window is visible.
    faults.fail_commits(llm.usage_table, 1);
    let failed = run(app, llm).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    let message = failed["error_message"].as_str().unwrap();
    assert!(message.starts_with("step extract_usage failed"), "{message}");
    assert!(message.contains("the warehouse was unavailable"), "{message}");
    assert!(!message.contains("faulty_warehouse"), "the warehouse's own text stays in the log: {message}");
    assert_eq!(faults.pending(), 0, "the commit was tried");
    assert_no_secret(&failed.to_string(), llm.key);
    assert_no_staged_rows(app).await;
    assert_eq!(snapshot(app).await, before);
}

#[tokio::test]
async fn a_failed_later_page_or_commit_leaves_the_window_on_duckdb() {
    let faults = Arc::new(Faults::default());
    let (app, fake) = spawn(&[], faults.clone(), StatementLog::new()).await;
    staging_failures_leave_the_window(&app, &fake, &faults).await;
}

#[tokio::test]
async fn a_failed_later_page_or_commit_leaves_the_window_on_bigquery() {
    let url = convergence_tests::bigquery_emulator();
    let project = convergence_tests::unique_project();
    let faults = Arc::new(Faults::default());
    // Days of 5000 rows: more than the 2 MB BigQuery buffers before it writes to the staging
    // table, so the first page is in the staging table when the second fails.
    let extra = [
        ("WAREHOUSE_BACKEND", "bigquery"),
        ("GCP_PROJECT_ID", project.as_str()),
        ("BIGQUERY_API_BASE", &url),
        ("SANDBOX_ROWS_PER_DAY", "5000"),
        ("PROVIDER_MAX_PAGE_MB", "64"),
    ];
    let (app, fake) = spawn(&extra, faults.clone(), StatementLog::new()).await;
    staging_failures_leave_the_window(&app, &fake, &faults).await;
}

#[tokio::test]
async fn the_run_log_failing_fails_the_run_with_a_message_and_writes_no_half_window() {
    let faults = Arc::new(Faults::default());
    let (app, _fake) = spawn(&[], faults.clone(), StatementLog::new()).await;
    let baseline = run(&app, &OPENAI).await;
    assert_eq!(baseline["status"], "SUCCESS", "{baseline}");
    let before = snapshot(&app).await;
    let steps = common::pipeline::runlog::STEPS;

    // The first step's start cannot be recorded: the step never runs, the run ends FAILED.
    faults.fail_appends(steps, 0, 1);
    let failed = run(&app, &OPENAI).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    let message = failed["error_message"].as_str().unwrap();
    assert_eq!(message, "step extract_usage: cannot record its start: the warehouse is unavailable", "{failed}");
    assert!(failed["steps"].as_array().unwrap().is_empty(), "{failed}");
    assert_eq!(snapshot(&app).await, before, "no step ran");

    // The first step's end cannot be recorded: its window is whole (it committed the same rows
    // again), the run stops there, FAILED, and says why.
    faults.fail_appends(steps, 1, 1);
    let failed = run(&app, &OPENAI).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    let message = failed["error_message"].as_str().unwrap();
    assert_eq!(message, "step extract_usage: cannot record its end: the warehouse is unavailable", "{failed}");
    assert_eq!(faults.pending(), 0);
    assert_no_secret(&failed.to_string(), OPENAI.key);
    assert_no_staged_rows(&app).await;
    assert_eq!(snapshot(&app).await, before, "the window holds the same rows, whole");

    // The submission cannot be recorded: a JSON 503 at the edge, and no run.
    let runs = common::pipeline::runlog::RUNS;
    let recorded = app.count(runs, Some(ORG)).await;
    faults.fail_appends(runs, 0, 1);
    let r = app.post(&format!("/api/v1/pipelines/run/{ORG}/openai/usage_cost"), Key::Root, window()).await;
    let message = r.assert_error(503, "unavailable");
    assert!(!message.contains("faulty_warehouse"), "{}", r.body);
    assert_eq!(app.count(runs, Some(ORG)).await, recorded, "nothing recorded, nothing queued");

    // The run's end cannot be recorded at first (submitted and claimed are the run's first two
    // events): it is tried again, and the run reads as finished, not RUNNING until its lease lapses.
    faults.fail_appends(runs, 2, 2);
    let done = run(&app, &OPENAI).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    assert_eq!(faults.pending(), 0, "both failures were met");
}

const PUSH_TOPIC: &str = "projects/hostile-test/topics/runs";

/// Submits the OpenAI run over the window; returns its id. Runs are published to Pub/Sub, so
/// nothing executes it until the test delivers it.
async fn submit(app: &TestApp, pubsub: &FakePubSub) -> (String, Value) {
    let r = app.post(&format!("/api/v1/pipelines/run/{ORG}/openai/usage_cost"), Key::Root, window()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let run_id = r.body["run_id"].as_str().unwrap().to_string();
    let published: Vec<_> = pubsub.take_messages().into_iter().filter(|m| m.attributes["run_id"] == run_id).collect();
    assert_eq!(published.len(), 1, "one message per run");
    let message = &published[0];
    let envelope = json!({
        "message": {"data": STANDARD.encode(&message.data), "attributes": message.attributes, "messageId": message.message_id},
        "subscription": "projects/hostile-test/subscriptions/runs-push",
    });
    (run_id, envelope)
}

/// One push delivery of a run (the root key stands for Pub/Sub's token in development).
async fn deliver(app: &TestApp, envelope: &Value) -> convergence_tests::Reply {
    app.post("/api/v1/pipelines/push", Key::Root, envelope.clone()).await
}

async fn run_view(app: &TestApp, run_id: &str) -> Value {
    let r = app.get(&format!("/api/v1/pipelines/runs/{ORG}/{run_id}"), Key::Root).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

/// A delivery answered 503 for Pub/Sub to deliver again: a JSON error, no warehouse text.
#[track_caller]
fn assert_retry_asked(r: &convergence_tests::Reply, says: &str) {
    let message = r.assert_error(503, "unavailable");
    assert!(message.contains(says), "{says:?}: {}", r.body);
    assert!(!r.body.to_string().contains("faulty_warehouse"), "{}", r.body);
    assert!(r.headers.get("retry-after").is_some(), "{:?}", r.headers);
}

/// The delivery ran the run to SUCCESS, and no step of it reads RUNNING (a step an earlier
/// delivery could not record the end of reads FAILED, saying so).
async fn assert_delivered_cleanly(app: &TestApp, r: &convergence_tests::Reply, run_id: &str) {
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.body["outcome"].as_str(), r.body["status"].as_str()),
        (Some("finished"), Some("SUCCESS")),
        "{}",
        r.body
    );
    let view = run_view(app, run_id).await;
    assert_eq!(view["status"], "SUCCESS", "{view}");
    for step in view["steps"].as_array().unwrap() {
        match step["status"].as_str() {
            Some("SUCCESS") => {}
            Some("FAILED") => {
                assert_eq!(step["error_message"], common::pipeline::executor::ABANDONED_STEP, "{view}")
            }
            _ => panic!("a step left unfinished: {view}"),
        }
    }
}

/// The organization's tables hold the same rows in `now` as in `before` (snapshots; the
/// data-quality count is left out: each successful run adds its own results). Names the tables
/// that differ rather than printing both.
#[track_caller]
fn assert_same_tables(now: &str, before: &str, what: &str) {
    let tables =
        |s: &str| -> Vec<String> { s.lines().filter(|l| !l.starts_with("dq rows:")).map(str::to_string).collect() };
    let (now, before) = (tables(now), tables(before));
    let differ: Vec<&str> =
        now.iter().zip(&before).filter(|(a, b)| a != b).map(|(a, _)| a.split(':').next().unwrap_or_default()).collect();
    assert!(
        now.len() == before.len() && differ.is_empty(),
        "{what}: tables differ: {differ:?} ({} vs {} tables)",
        now.len(),
        before.len()
    );
}

/// Pub/Sub pushes a run while the warehouse cannot write the run log. Whatever could not be
/// recorded, the delivery is answered so that Pub/Sub delivers again (503 when the run went
/// back to PENDING or its state is not known; 429 while its lease holds), the window holds
/// the rows it held (or the same rows, whole), and the delivery after the warehouse recovered
/// runs the run to SUCCESS with no step left RUNNING.
async fn run_log_failures_under_push(extra: &[(&str, &str)]) {
    let pubsub = FakePubSub::start(&[PUSH_TOPIC]).await;
    let base = pubsub.base_url().to_string();
    let mut vars = vec![("QUEUE_BACKEND", "pubsub"), ("PUBSUB_TOPIC", PUSH_TOPIC), ("PUBSUB_API_BASE", base.as_str())];
    vars.extend_from_slice(extra);
    let faults = Arc::new(Faults::default());
    let (app, _fake) = spawn(&vars, faults.clone(), StatementLog::new()).await;
    let (steps, runs) = (common::pipeline::runlog::STEPS, common::pipeline::runlog::RUNS);
    let (run_id, envelope) = submit(&app, &pubsub).await;
    assert_delivered_cleanly(&app, &deliver(&app, &envelope).await, &run_id).await;
    let before = snapshot(&app).await;

    // The first step's start cannot be recorded: no step runs; the run is PENDING again.
    let (run_id, envelope) = submit(&app, &pubsub).await;
    faults.fail_appends(steps, 0, 1);
    let r = deliver(&app, &envelope).await;
    assert_retry_asked(&r, "step extract_usage: cannot record its start: the warehouse is unavailable");
    let view = run_view(&app, &run_id).await;
    assert_eq!(view["status"], "PENDING", "{view}");
    assert!(view["steps"].as_array().unwrap().is_empty(), "{view}");
    assert_same_tables(&snapshot(&app).await, &before, "no step ran");
    assert_delivered_cleanly(&app, &deliver(&app, &envelope).await, &run_id).await;
    assert_same_tables(&snapshot(&app).await, &before, "the rerun wrote the same rows");

    // The first step's end cannot be recorded: its window was replaced whole (the same rows),
    // the run is PENDING again, and the redelivery ends the step left RUNNING.
    let (run_id, envelope) = submit(&app, &pubsub).await;
    faults.fail_appends(steps, 1, 1);
    let r = deliver(&app, &envelope).await;
    assert_retry_asked(&r, "step extract_usage: cannot record its end: the warehouse is unavailable");
    assert_eq!(run_view(&app, &run_id).await["status"], "PENDING");
    assert_no_staged_rows(&app).await;
    assert_same_tables(&snapshot(&app).await, &before, "the window holds the same rows, whole");
    assert_delivered_cleanly(&app, &deliver(&app, &envelope).await, &run_id).await;
    let view = run_view(&app, &run_id).await;
    let ended = view["steps"].as_array().unwrap().iter().filter(|s| s["status"] == "FAILED").count();
    assert_eq!(ended, 1, "the step the first delivery left: {view}");
    assert_same_tables(&snapshot(&app).await, &before, "the rerun wrote the same rows");

    // The claim cannot be recorded: nothing ran, the run is as submitted.
    let (run_id, envelope) = submit(&app, &pubsub).await;
    faults.fail_appends(runs, 0, 1);
    let r = deliver(&app, &envelope).await;
    assert_retry_asked(&r, "the run's state cannot be recorded now (the warehouse is unavailable)");
    assert_eq!(run_view(&app, &run_id).await["status"], "PENDING");
    assert_same_tables(&snapshot(&app).await, &before, "the rerun wrote the same rows");
    assert_delivered_cleanly(&app, &deliver(&app, &envelope).await, &run_id).await;

    // The run's end cannot be recorded (three tries): the window is whole; the run holds its
    // lease, so a redelivery meanwhile is told to come back later, and once the lease lapsed the
    // run runs again, to SUCCESS.
    let (run_id, envelope) = submit(&app, &pubsub).await;
    faults.fail_event_appends(runs, "finished", 3);
    let r = deliver(&app, &envelope).await;
    assert_retry_asked(&r, "the run's state cannot be recorded now (the warehouse is unavailable)");
    assert_eq!(faults.pending(), 0);
    assert_same_tables(&snapshot(&app).await, &before, "the window holds the same rows, whole");
    let r = deliver(&app, &envelope).await;
    r.assert_error(429, "run_in_progress");
    assert!(r.headers.get("retry-after").is_some(), "{:?}", r.headers);
    let deadline = Instant::now() + Duration::from_secs(60);
    let r = loop {
        let r = deliver(&app, &envelope).await;
        if r.status != StatusCode::TOO_MANY_REQUESTS || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_delivered_cleanly(&app, &r, &run_id).await;
    assert_same_tables(&snapshot(&app).await, &before, "the rerun wrote the same rows");
}

/// A short lease: a run whose end could not be recorded is free to run again soon.
const PUSH_LEASE: (&str, &str) = ("RUN_LEASE_SECS", "6");

#[tokio::test]
async fn the_run_log_failing_under_a_push_delivery_asks_for_a_redelivery_on_duckdb() {
    run_log_failures_under_push(&[PUSH_LEASE]).await;
}

#[tokio::test]
async fn the_run_log_failing_under_a_push_delivery_asks_for_a_redelivery_on_bigquery() {
    let url = convergence_tests::bigquery_emulator();
    let project = convergence_tests::unique_project();
    let extra = [
        ("WAREHOUSE_BACKEND", "bigquery"),
        ("GCP_PROJECT_ID", project.as_str()),
        ("BIGQUERY_API_BASE", &url),
        ("PROVIDER_MAX_PAGE_MB", "64"),
        PUSH_LEASE,
    ];
    run_log_failures_under_push(&extra).await;
}

const KMS_KEY: &str = "projects/p/locations/global/keyRings/r/cryptoKeys/credentials";

#[tokio::test]
async fn kms_failing_at_setup_or_while_a_run_decrypts_is_a_clear_error_with_nothing_written() {
    let kms = FakeKms::start(&[KMS_KEY]).await;
    let extra = [("KMS_BACKEND", "gcp"), ("KMS_KEY_NAME", KMS_KEY), ("KMS_API_BASE", kms.base_url())];
    let (app, _fake) = spawn(&extra, Arc::default(), StatementLog::new()).await;
    let credentials = |provider: &'static str| {
        let app = &app;
        async move {
            let t = app.state.central_table("org_integration_credentials").unwrap();
            let sql = format!(
                "SELECT credential_id, fingerprint, encrypted_credential, status, last_error, validated_at, updated_at \
                 FROM {t} WHERE org_slug = @org AND provider = @p"
            );
            app.warehouse().query(&sql, &Params::new().bind("org", ORG).bind("p", provider)).await.unwrap()
        }
    };
    let stored = credentials("openai").await;
    assert_eq!(stored.len(), 1);
    let anthropic = credentials("anthropic").await;
    let before = snapshot(&app).await;

    // Set-up: KMS cannot encrypt. A JSON 503 that names neither key nor KMS detail; the
    // credential stored before is untouched.
    kms.disable(KMS_KEY);
    let replacement = "sk-admin-sandbox-hostile-replacement";
    let r = setup(&app, &OPENAI, replacement).await;
    let message = r.assert_error(503, "unavailable").to_string();
    assert!(!message.contains(KMS_KEY) && !message.contains("FAILED_PRECONDITION"), "{}", r.body);
    assert_no_secret(&r.body.to_string(), replacement);
    assert_eq!(credentials("openai").await, stored, "the stored credential is as it was");
    let r = setup(&app, &ANTHROPIC, "sk-ant-admin01-sandbox-hostile-second").await;
    r.assert_error(503, "unavailable");
    assert_eq!(credentials("anthropic").await, anthropic, "nor is Anthropic's");

    // Validation: KMS cannot decrypt the stored credential. A JSON 503; the row is not marked.
    let r = app.post(&format!("/api/v1/integrations/{ORG}/openai/validate"), Key::Root, json!({})).await;
    let message = r.assert_error(503, "unavailable").to_string();
    assert!(!message.contains(KMS_KEY), "{}", r.body);
    assert_no_secret(&r.body.to_string(), OPENAI.key);
    assert_eq!(credentials("openai").await, stored, "a check that could not run records nothing");

    // A run: its credential cannot be decrypted. FAILED with a message, no step ran.
    let failed = run(&app, &OPENAI).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert_eq!(failed["error_message"], "the openai credential cannot be decrypted: KMS is unavailable", "{failed}");
    assert!(failed["steps"].as_array().unwrap().is_empty(), "{failed}");
    assert_no_secret(&failed.to_string(), OPENAI.key);
    assert_eq!(snapshot(&app).await, before);

    // KMS back: runs and set-up work again.
    kms.enable(KMS_KEY);
    let ok = run(&app, &OPENAI).await;
    assert_eq!(ok["status"], "SUCCESS", "{ok}");
}
