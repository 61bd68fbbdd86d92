//! The daily loop (issue 11): runs published to Pub/Sub and pushed back to
//! `POST /api/v1/pipelines/push` with Google-signed tokens (keys generated here, served from a
//! local JWKS), executed once however often and however concurrently they are delivered; the
//! scheduler tick submitting each due window once; run state written with inserts only.

use std::collections::HashMap;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{Duration as Days, Utc};
use common::pipeline::runlog::Trigger;
use common::warehouse::counting::StatementLog;
use common::warehouse::Params;
use convergence_tests::fakes::oidc::{google_claims, sign, FakeJwks, KEY_A};
use convergence_tests::fakes::pubsub::{FakePubSub, PublishedMessage};
use convergence_tests::{Key, Reply, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const TOPIC: &str = "projects/loop-test/topics/runs";
const AUDIENCE: &str = "https://convergence.example.com/api/v1/pipelines/push";
const PUSHER: &str = "pubsub-push@loop-test.iam.gserviceaccount.com";
const KID: &str = "kid-loop";
const OPENAI_KEY: &str = "sk-admin-sandbox-loop";

/// An app that publishes runs to a fake Pub/Sub (so nothing runs in-process) and accepts push
/// deliveries signed for AUDIENCE by PUSHER.
struct Loop {
    app: TestApp,
    pubsub: FakePubSub,
    _jwks: FakeJwks,
}

async fn pubsub_loop() -> Loop {
    let pubsub = FakePubSub::start(&[TOPIC]).await;
    let jwks = FakeJwks::start(KID).await;
    let app = TestApp::spawn_with(&[
        ("QUEUE_BACKEND", "pubsub"),
        ("PUBSUB_TOPIC", TOPIC),
        ("PUBSUB_API_BASE", pubsub.base_url()),
        ("OIDC_AUDIENCE", AUDIENCE),
        ("OIDC_INVOKERS", PUSHER),
        ("OIDC_JWKS_URL", &jwks.url()),
    ])
    .await;
    Loop { app, pubsub, _jwks: jwks }
}

fn day(offset: i64) -> String {
    (Utc::now().date_naive() - Days::days(offset)).to_string()
}

/// Bootstraps (once per app), onboards `org` on SCALE (ACTIVE) with the OpenAI sandbox set up.
async fn org_ready(app: &TestApp, org: &str) {
    if !app.warehouse().dataset_exists(app.state.configs.central_dataset()).await.unwrap() {
        app.bootstrap().await;
    }
    app.onboard_active(org, "SCALE").await;
    let r = app
        .post(&format!("/api/v1/integrations/{org}/openai/setup"), Key::Root, json!({"credential": OPENAI_KEY}))
        .await;
    assert!(r.status.is_success(), "{}", r.body);
}

/// Submits an ad-hoc OpenAI usage/cost run over `[start, end]`; returns its id.
async fn submit(app: &TestApp, org: &str, start: &str, end: &str) -> String {
    let path = format!("/api/v1/pipelines/run/{org}/openai/usage_cost");
    let r = app.post(&path, Key::Root, json!({"start_date": start, "end_date": end})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    r.body["run_id"].as_str().unwrap().to_string()
}

/// Pub/Sub's push envelope around a published message.
fn envelope(message: &PublishedMessage, attempt: u32) -> Value {
    json!({
        "message": {
            "data": STANDARD.encode(&message.data),
            "attributes": message.attributes,
            "messageId": message.message_id,
            "publishTime": Utc::now().to_rfc3339(),
        },
        "subscription": "projects/loop-test/subscriptions/runs-push",
        "deliveryAttempt": attempt,
    })
}

fn token() -> String {
    sign(KEY_A, KID, &google_claims(AUDIENCE, PUSHER))
}

async fn push(app: &TestApp, body: &Value, bearer: Option<&str>) -> Reply {
    let mut req = app.client.post(format!("{}/api/v1/pipelines/push", app.base)).json(body);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    TestApp::reply(req.send().await.unwrap()).await
}

/// The one message published for `run_id`.
fn message_for(pubsub: &FakePubSub, run_id: &str) -> PublishedMessage {
    let mut messages: Vec<PublishedMessage> = pubsub
        .take_messages()
        .into_iter()
        .filter(|m| m.attributes.get("run_id").map(String::as_str) == Some(run_id))
        .collect();
    assert_eq!(messages.len(), 1, "one message per run");
    messages.remove(0)
}

/// Events of one run, by kind.
async fn events(app: &TestApp, run_id: &str) -> HashMap<String, i64> {
    let t = app.state.central_table("org_meta_pipeline_runs").unwrap();
    let sql = format!("SELECT event, COUNT(*) AS n FROM {t} WHERE run_id = @run_id GROUP BY event");
    let rows = app.warehouse().query(&sql, &Params::new().bind("run_id", run_id)).await.unwrap();
    rows.iter().map(|r| (r["event"].as_str().unwrap_or("").to_string(), r["n"].as_i64().unwrap())).collect()
}

/// Rows of the organization's OpenAI usage table.
async fn usage_rows(app: &TestApp, org: &str) -> i64 {
    let t = app.warehouse().table_ref(&app.state.org_dataset(org), "openai_usage_daily_raw").unwrap();
    let rows = app.warehouse().query(&format!("SELECT COUNT(*) AS n FROM {t}"), &Params::new()).await.unwrap();
    rows[0]["n"].as_i64().unwrap()
}

async fn run_view(app: &TestApp, org: &str, run_id: &str) -> Value {
    app.get(&format!("/api/v1/pipelines/runs/{org}/{run_id}"), Key::Root).await.body
}

#[tokio::test]
async fn a_pushed_run_executes_once_however_often_it_is_delivered() {
    let Loop { app, pubsub, _jwks } = pubsub_loop().await;
    org_ready(&app, "acme").await;
    let run_id = submit(&app, "acme", &day(3), &day(2)).await;
    let message = message_for(&pubsub, &run_id);
    assert_eq!(message.data_json(), json!({"org_slug": "acme", "run_id": run_id}));
    assert_eq!(run_view(&app, "acme", &run_id).await["status"], "PENDING", "nothing runs before the push");

    // No token, or a token for someone else: refused before anything runs.
    push(&app, &envelope(&message, 1), None).await.assert_error(401, "unauthorized");
    let stranger = sign(KEY_A, KID, &google_claims(AUDIENCE, "someone@else.iam.gserviceaccount.com"));
    push(&app, &envelope(&message, 1), Some(&stranger)).await.assert_error(401, "unauthorized");
    assert!(!events(&app, &run_id).await.contains_key("claimed"));

    // Delivered three times: executed by the first, answered 200 "already done" after.
    let first = push(&app, &envelope(&message, 1), Some(&token())).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["outcome"], "finished");
    assert_eq!(first.body["status"], "SUCCESS", "{}", first.body);
    let rows = usage_rows(&app, "acme").await;
    assert!(rows > 0);
    for attempt in 2..=3 {
        let again = push(&app, &envelope(&message, attempt), Some(&token())).await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.body);
        assert_eq!(again.body["outcome"], "already_done");
    }
    let counted = events(&app, &run_id).await;
    assert_eq!(counted.get("claimed"), Some(&1), "{counted:?}");
    assert_eq!(counted.get("finished"), Some(&1), "{counted:?}");
    assert_eq!(usage_rows(&app, "acme").await, rows);
    let view = run_view(&app, "acme", &run_id).await;
    assert_eq!(view["status"], "SUCCESS");
    assert_eq!(view["steps"].as_array().unwrap().len(), 3, "{view}");

    // Two deliveries at once: one executes; the other finds it claimed (429, retried later) or done.
    let run_id = submit(&app, "acme", &day(6), &day(5)).await;
    let message = message_for(&pubsub, &run_id);
    let body = envelope(&message, 1);
    let t = token();
    let (a, b) = tokio::join!(push(&app, &body, Some(&t)), push(&app, &body, Some(&t)));
    let outcomes: Vec<(u16, String)> =
        [&a, &b].iter().map(|r| (r.status.as_u16(), r.body["outcome"].as_str().unwrap_or("").to_string())).collect();
    assert_eq!(outcomes.iter().filter(|(s, o)| *s == 200 && o == "finished").count(), 1, "{outcomes:?}");
    for (status, outcome) in &outcomes {
        assert!(
            (*status == 200 && (outcome == "finished" || outcome == "already_done")) || *status == 429,
            "{outcomes:?}"
        );
    }
    let counted = events(&app, &run_id).await;
    assert_eq!(counted.get("finished"), Some(&1), "{counted:?}");
    assert_eq!(run_view(&app, "acme", &run_id).await["steps"].as_array().unwrap().len(), 3);

    // A message naming no run: 400 saying what the data must be (Pub/Sub dead-letters it).
    let bad = json!({"message": {"data": STANDARD.encode("hello"), "messageId": "1"}});
    let r = push(&app, &bad, Some(&token())).await;
    assert!(r.assert_error(400, "invalid_request").contains("org_slug"), "{}", r.body);
    // A run that does not exist (a stale message): 200, nothing to do.
    let ghost =
        json!({"message": {"attributes": {"org_slug": "acme", "run_id": "00000000-0000-0000-0000-000000000000"}}});
    let r = push(&app, &ghost, Some(&token())).await;
    assert_eq!((r.status, r.body["outcome"].as_str()), (StatusCode::OK, Some("missing")), "{}", r.body);
}

/// Writes a run's events as another process would have: submitted `ago` and claimed just after,
/// its claim leased for `lease`.
async fn claimed_elsewhere(app: &TestApp, org: &str, start: &str, end: &str, ago: Days, lease: Days) -> String {
    let at = Utc::now() - ago;
    let submitted = convergence_tests::openai_run(org, (start, end), Trigger::Adhoc, 1, at);
    let claimed = convergence_tests::claimed(&submitted, at + Days::seconds(1), lease, "a-worker-elsewhere");
    app.state.pipelines.run_log().append_events(&[submitted, claimed.clone()]).await.unwrap();
    claimed.run_id
}

fn delivery_of(org: &str, run_id: &str) -> Value {
    json!({"message": {"attributes": {"org_slug": org, "run_id": run_id}, "messageId": "42"}, "deliveryAttempt": 2})
}

#[tokio::test]
async fn a_delivery_while_the_run_is_running_elsewhere_is_retried_later() {
    let Loop { app, pubsub: _pubsub, _jwks } = pubsub_loop().await;
    org_ready(&app, "acme").await;
    let run_id = claimed_elsewhere(&app, "acme", &day(2), &day(2), Days::seconds(5), Days::minutes(9)).await;
    let r = push(&app, &delivery_of("acme", &run_id), Some(&token())).await;
    assert!(r.assert_error(429, "run_in_progress").contains("live lease"), "{}", r.body);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((10..=600).contains(&retry), "{retry}");
    assert_eq!(events(&app, &run_id).await.get("claimed"), Some(&1), "no second claim");
}

#[tokio::test]
async fn a_worker_killed_mid_run_is_redelivered_after_its_lease_and_the_window_is_complete() {
    let Loop { app, pubsub: _pubsub, _jwks } = pubsub_loop().await;
    org_ready(&app, "acme").await;
    org_ready(&app, "globex").await;
    // The worker that claimed it died an hour ago; its lease ran out 50 minutes ago.
    let run_id = claimed_elsewhere(&app, "acme", &day(4), &day(2), Days::hours(1), Days::minutes(10)).await;
    assert_eq!(run_view(&app, "acme", &run_id).await["status"], "FAILED", "a dead run reads FAILED");
    let r = push(&app, &delivery_of("acme", &run_id), Some(&token())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "SUCCESS", "{}", r.body);
    let view = run_view(&app, "acme", &run_id).await;
    assert_eq!(view["status"], "SUCCESS", "{view}");
    // The window holds exactly what one clean run writes (globex: the same sandbox data, run once).
    let clean = submit(&app, "globex", &day(4), &day(2)).await;
    let r = push(&app, &delivery_of("globex", &clean), Some(&token())).await;
    assert_eq!(r.body["status"], "SUCCESS", "{}", r.body);
    assert_eq!(usage_rows(&app, "acme").await, usage_rows(&app, "globex").await);
    // A late delivery of the finished run changes nothing.
    let late = push(&app, &delivery_of("acme", &run_id), Some(&token())).await;
    assert_eq!(late.body["outcome"], "already_done");
    assert_eq!(usage_rows(&app, "acme").await, usage_rows(&app, "globex").await);
}

#[tokio::test]
async fn two_submissions_of_one_window_at_once_make_one_run() {
    let app = TestApp::spawn().await;
    org_ready(&app, "acme").await;
    let path = "/api/v1/pipelines/run/acme/openai/usage_cost";
    let body = json!({"start_date": day(3), "end_date": day(2)});
    let (a, b) = tokio::join!(app.post(path, Key::Root, body.clone()), app.post(path, Key::Root, body.clone()));
    let mut statuses = vec![a.status.as_u16(), b.status.as_u16()];
    statuses.sort();
    assert_eq!(statuses, vec![202, 409], "{} / {}", a.body, b.body);
    assert_eq!(app.count("pipeline_runs_current", Some("acme")).await, 1);
}

async fn tick(app: &TestApp, as_of: &str) -> Value {
    let r = app.post("/api/v1/scheduler/tick", Key::Root, json!({"as_of": as_of})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

/// Waits until no run of the app is PENDING or RUNNING.
async fn settle(app: &TestApp) {
    let t = app.state.central_table("pipeline_runs_current").unwrap();
    let sql = format!("SELECT COUNT(*) AS n FROM {t} WHERE status IN ('PENDING', 'RUNNING')");
    for _ in 0..300 {
        let rows = app.warehouse().query(&sql, &Params::new()).await.unwrap();
        if rows[0]["n"].as_i64() == Some(0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("runs still going after 30 s");
}

fn submitted_for(report: &Value, org: &str) -> Vec<String> {
    let mut out: Vec<String> = report["organizations"][org]
        .as_object()
        .map(|m| m.iter().filter(|(_, v)| v["status"] == "submitted").map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

#[tokio::test]
async fn the_tick_submits_each_due_window_once_for_eligible_organizations() {
    let app = TestApp::spawn().await;
    org_ready(&app, "acme").await;
    let r = app
        .post(
            "/api/v1/integrations/acme/anthropic/setup",
            Key::Root,
            json!({"credential": "sk-ant-admin01-sandbox-loop"}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    // Not eligible: a trial that ended, a suspended subscription, no integration at all.
    org_ready(&app, "expired").await;
    let ended = (Utc::now() - Days::days(1)).to_rfc3339();
    app.put(
        "/api/v1/organizations/expired/subscription",
        Key::Root,
        json!({"status": "trialing", "trial_ends_at": ended}),
    )
    .await;
    org_ready(&app, "paused").await;
    app.put("/api/v1/organizations/paused/subscription", Key::Root, json!({"status": "past_due"})).await;
    app.onboard("bare").await;

    let today = Utc::now().date_naive().to_string();
    let first = tick(&app, &today).await;
    let all = ["acme-anthropic-usage-cost", "acme-openai-subscriptions", "acme-openai-usage-cost"];
    assert_eq!(submitted_for(&first, "acme"), all, "{first}");
    assert_eq!(first["submitted"], 3, "{first}");
    let orgs: Vec<&String> = first["organizations"].as_object().unwrap().keys().collect();
    assert_eq!(orgs, vec!["acme"], "only acme may run: {first}");
    // The newest complete day plus the provider's re-pull days, caught up (never run: 7 days).
    let openai = &first["organizations"]["acme"]["acme-openai-usage-cost"];
    assert_eq!(
        (openai["start_date"].as_str(), openai["end_date"].as_str()),
        (Some(day(7).as_str()), Some(day(1).as_str()))
    );

    // The same tick again: nothing submitted twice (the runs are still going or done).
    let again = tick(&app, &today).await;
    assert_eq!(again["submitted"], 0, "{again}");
    settle(&app).await;
    let done = tick(&app, &today).await;
    assert_eq!((done["submitted"].as_u64(), done["already_done"].as_u64()), (Some(0), Some(3)), "{done}");
    let scheduled = app.count("org_scheduled_pipeline_runs", Some("acme")).await;
    assert_eq!(scheduled, 3);

    // Two ticks at once for another day: each due window once between them, not twice. (The
    // monthly pipeline's window is the month before as_of: due again only if that month changed.)
    let yesterday = day(1);
    let month = |d: &str| d[..7].to_string();
    let expected = 2 + u64::from(month(&yesterday) != month(&today));
    let (a, b) = tokio::join!(tick(&app, &yesterday), tick(&app, &yesterday));
    assert_eq!(a["submitted"].as_u64().unwrap() + b["submitted"].as_u64().unwrap(), expected, "{a} {b}");
    settle(&app).await;

    // A plan change keeps the organization scheduled.
    app.put("/api/v1/organizations/acme/subscription", Key::Root, json!({"status": "active", "plan_name": "STARTER"}))
        .await;
    let after_plan_change = tick(&app, &day(1)).await;
    assert!(after_plan_change["organizations"]["acme"].is_object(), "{after_plan_change}");

    // Suspended: nothing; reactivated: due again. A deleted integration is not ticked.
    app.put("/api/v1/organizations/acme/subscription", Key::Root, json!({"status": "past_due"})).await;
    let two_days_ago = day(2);
    assert!(tick(&app, &two_days_ago).await["organizations"].as_object().unwrap().is_empty());
    app.put("/api/v1/organizations/acme/subscription", Key::Root, json!({"status": "active"})).await;
    let r = app.request(reqwest::Method::DELETE, "/api/v1/integrations/acme/anthropic", Key::Root, None).await;
    assert!(r.status.is_success(), "{}", r.body);
    let back = tick(&app, &two_days_ago).await;
    assert!(submitted_for(&back, "acme").contains(&"acme-openai-usage-cost".to_string()), "{back}");
    assert!(back["organizations"]["acme"].get("acme-anthropic-usage-cost").is_none(), "{back}");
    settle(&app).await;
    // Every scheduled run succeeded and none is counted against the plan's run quotas.
    let runs = app.get("/api/v1/pipelines/runs/acme?limit=100", Key::Root).await.body;
    assert!(
        runs["runs"].as_array().unwrap().iter().all(|r| r["trigger"] == "scheduled" && r["status"] == "SUCCESS"),
        "{runs}"
    );

    // A bad as_of is a 400 naming the field; the route is internal (an org key is refused).
    let r = app.post("/api/v1/scheduler/tick", Key::Root, json!({"as_of": "2999-01-01"})).await;
    assert!(r.assert_error(400, "invalid_request").contains("as_of"), "{}", r.body);
    let r = app.post("/api/v1/scheduler/tick", Key::Root, json!({"as_off": today})).await;
    r.assert_error(400, "invalid_request");
}

#[tokio::test]
async fn a_run_writes_its_state_with_inserts_only() {
    for bigquery in [false, true] {
        let log = StatementLog::new();
        let app = if bigquery {
            let url = convergence_tests::bigquery_emulator();
            let project = convergence_tests::unique_project();
            TestApp::spawn_counting(
                &[("WAREHOUSE_BACKEND", "bigquery"), ("GCP_PROJECT_ID", &project), ("BIGQUERY_API_BASE", &url)],
                log.clone(),
            )
            .await
        } else {
            TestApp::spawn_counting(&[], log.clone()).await
        };
        org_ready(&app, "acme").await;
        log.reset();
        let run_id = submit(&app, "acme", &day(3), &day(1)).await;
        settle(&app).await;
        assert_eq!(run_view(&app, "acme", &run_id).await["status"], "SUCCESS");
        let statements = log.snapshot();
        let central = app.state.configs.central_dataset();
        let mutating: Vec<_> = statements
            .iter()
            .filter(|s| s.kind.mutates_rows() && (s.touches_dataset(central) || s.tables.is_empty()))
            .collect();
        assert!(mutating.is_empty(), "bigquery={bigquery}: mutating statements on central tables: {mutating:?}");
        // The run's data did get replaced in its own dataset.
        assert!(statements.iter().any(|s| s.kind.mutates_rows() && s.touches_dataset(&app.state.org_dataset("acme"))));

        // A tick and the runs it submits: the same, and a bounded number of statements.
        log.reset();
        let report = tick(&app, &Utc::now().date_naive().to_string()).await;
        assert_eq!(report["submitted"], 2, "bigquery={bigquery}: {report}");
        assert!(report["statements"].as_u64().unwrap() <= 8, "{report}");
        settle(&app).await;
        let runs = app.get("/api/v1/pipelines/runs/acme?status=SUCCESS", Key::Root).await.body;
        assert_eq!(runs["runs"].as_array().unwrap().len(), 3, "bigquery={bigquery}: {runs}");
        let mutating: Vec<_> = log
            .snapshot()
            .into_iter()
            .filter(|s| s.kind.mutates_rows() && (s.touches_dataset(central) || s.tables.is_empty()))
            .collect();
        assert!(mutating.is_empty(), "bigquery={bigquery}: mutating statements on central tables: {mutating:?}");
    }
}

#[tokio::test]
async fn heartbeats_keep_a_claim_past_its_first_lease_and_a_dead_claim_passes_on() {
    let app = TestApp::spawn().await;
    org_ready(&app, "acme").await;
    let log = app.state.pipelines.run_log();
    let t0 = Utc::now() - Days::minutes(10);
    let two_days_ago = day(2);
    let run = convergence_tests::openai_run("acme", (&two_days_ago, &two_days_ago), Trigger::Adhoc, 1, t0);
    log.submit(&run).await.unwrap();
    let lease = Days::seconds(60);
    // A claims at t0 (lease to t0+60 s) and beats at t0+50 s (lease to t0+110 s).
    let a = match log.claim(&run, t0, lease).await.unwrap() {
        common::pipeline::runlog::Claim::Won(a) => a,
        other => panic!("the first claim wins: {other:?}"),
    };
    log.heartbeat(&a, t0 + Days::seconds(50), lease).await.unwrap();
    // B comes after A's first lease but inside the extended one: it loses.
    let b = log.claim(&run, t0 + Days::seconds(90), lease).await.unwrap();
    assert!(matches!(b, common::pipeline::runlog::Claim::Held(_)), "{b:?}");
    // A stops beating (its process died). C, after the extended lease (and B's void claim), wins.
    let c = log.claim(&run, t0 + Days::seconds(200), lease).await.unwrap();
    assert!(matches!(c, common::pipeline::runlog::Claim::Won(_)), "{c:?}");
}
