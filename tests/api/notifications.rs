//! Run notifications: the organization's settings routes (`GET`/`PUT
//! /api/v1/organizations/{org}/notifications`), email through a real SMTP server on loopback
//! (aiosmtpd), Slack through a local webhook receiver, and failures of either that leave the run's
//! outcome as it was and are recorded on the run.

use std::time::Duration;

use chrono::{Days, Utc};
use common::pipeline::runlog::Trigger;
use common::queue::RunRequest;
use common::warehouse::Params;
use convergence_tests::fakes::slack::FakeSlack;
use convergence_tests::fakes::smtp::SmtpSink;
use convergence_tests::{Key, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const PATH: &str = "/api/v1/organizations/acme/notifications";
const SENDER: &str = "Convergence <notifications@convergence.test>";
const PUBLIC_BASE: &str = "https://api.convergence.test";

fn day(offset: u64) -> String {
    (Utc::now().date_naive() - Days::new(offset)).to_string()
}

/// The app, bootstrapped, sending email through the SMTP server on `smtp_port` (no TLS:
/// development only).
async fn app_with_smtp(smtp_port: u16) -> TestApp {
    let port = smtp_port.to_string();
    let app = TestApp::spawn_with(&[
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", &port),
        ("SMTP_TLS", "none"),
        ("SMTP_FROM", SENDER),
        ("PUBLIC_BASE_URL", PUBLIC_BASE),
    ])
    .await;
    app.bootstrap().await;
    app
}

/// Onboards `org` (ACTIVE) and, when `with_openai`, sets up its OpenAI integration with a
/// sandbox key. Returns its key.
async fn org_ready(app: &TestApp, org: &str, with_openai: bool) -> String {
    let key = app.onboard_active(org, "PROFESSIONAL").await;
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

/// Submits an OpenAI usage/cost run of one day and waits for its end.
async fn run_openai(app: &TestApp, org: &str, key: &str, date: &str) -> Value {
    let r =
        app.post(&format!("/api/v1/pipelines/run/{org}/openai/usage_cost"), Key::Api(key), json!({"date": date})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    wait_for_run(app, org, r.body["run_id"].as_str().unwrap(), |run| {
        matches!(run["status"].as_str(), Some("SUCCESS" | "FAILED"))
    })
    .await
}

/// Polls a run's detail until `done` holds (at most 60 s).
async fn wait_for_run(app: &TestApp, org: &str, run_id: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..600 {
        let r = app.get(&format!("/api/v1/pipelines/runs/{org}/{run_id}"), Key::Root).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        if done(&r.body) {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {run_id} did not get there");
}

/// The run's `notify_*` steps, once both channels are recorded.
async fn notify_steps(app: &TestApp, org: &str, run_id: &str) -> (Value, Value) {
    let run = wait_for_run(app, org, run_id, |run| {
        let steps = run["steps"].as_array().map(Vec::as_slice).unwrap_or_default();
        ["notify_email", "notify_slack"].iter().all(|id| steps.iter().any(|s| s["step_id"] == *id))
    })
    .await;
    let step = |id: &str| run["steps"].as_array().unwrap().iter().find(|s| s["step_id"] == id).cloned().unwrap();
    (step("notify_email"), step("notify_slack"))
}

#[tokio::test]
async fn settings_default_to_the_admin_are_validated_whole_and_never_return_the_webhook() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    let key = app.onboard("acme").await;
    let other = app.onboard("beta").await;

    let r = app.get(PATH, Key::Api(&key)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["email_recipients"], json!(["admin@acme.example.com"]), "{}", r.body);
    assert_eq!(r.body["email_recipients_default"], true);
    assert_eq!(r.body["slack_webhook_configured"], false);
    assert_eq!((r.body["triggers"].clone(), r.body["triggers_source"].clone()), (Value::Null, json!("pipelines")));
    assert_eq!(r.body["channels"], json!({"email": false, "slack": true}), "no SMTP_HOST: email is off");

    // The org comes from the key: another organization's key is refused before anything is read.
    app.get(PATH, Key::Api(&other)).await.assert_error(403, "forbidden");
    app.put(PATH, Key::Api(&other), json!({"triggers": ["always"]})).await.assert_error(403, "forbidden");
    app.get(PATH, Key::None).await.assert_error(401, "unauthorized");
    app.get("/api/v1/organizations/nosuch/notifications", Key::Root).await.assert_error(404, "not_found");

    // Every problem at once, the webhook never repeated, nothing stored.
    let r = app
        .put(
            PATH,
            Key::Api(&key),
            json!({
                "email_recipients": ["ops@acme.example.com", "not-an-email"],
                "slack_webhook_url": "ftp://hooks.example.com/sekrit-path",
                "triggers": ["on_failure", "on_error"],
            }),
        )
        .await;
    let message = r.assert_error(400, "invalid_request");
    for needle in [
        "email_recipients[1] \"not-an-email\" is not an e-mail address",
        "slack_webhook_url must be a Slack incoming webhook starting with https://hooks.slack.com/",
        "triggers[1] \"on_error\" is not a trigger; use on_failure, on_success, on_completion, always",
    ] {
        assert!(message.contains(needle), "missing {needle:?} in {message}");
    }
    assert!(!message.contains("sekrit"), "{message}");
    app.put(PATH, Key::Api(&key), json!({"webhook": "x"})).await.assert_error(400, "invalid_request");
    let too_many: Vec<String> = (0..21).map(|i| format!("ops{i}@acme.example.com")).collect();
    let r = app.put(PATH, Key::Api(&key), json!({"email_recipients": too_many})).await;
    assert!(r.assert_error(400, "invalid_request").contains("at most 20"), "{}", r.body);
    assert_eq!(app.count("org_notification_settings", None).await, 0, "nothing stored on error");

    // Stored: recipients checked and deduplicated, the webhook encrypted, triggers deduplicated.
    let webhook = "http://127.0.0.1:9/hook/services/T000/B000/sekrit-token-abcd";
    let r = app
        .put(
            PATH,
            Key::Root,
            json!({
                "email_recipients": ["Ops@Acme.example.com", "ops@acme.example.com", "cfo@acme.example.com"],
                "slack_webhook_url": webhook,
                "triggers": ["on_failure", "always", "on_failure"],
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for body in [r.body.clone(), app.get(PATH, Key::Api(&key)).await.body] {
        assert_eq!(body["email_recipients"], json!(["ops@acme.example.com", "cfo@acme.example.com"]), "{body}");
        assert_eq!(body["email_recipients_default"], false);
        assert_eq!(body["slack_webhook_configured"], true);
        assert_eq!(body["slack_webhook_fingerprint"], "…abcd");
        assert_eq!(body["triggers"], json!(["on_failure", "always"]));
        assert_eq!(body["triggers_source"], "organization");
        assert!(!body.to_string().contains("sekrit"), "the webhook is never returned: {body}");
    }
    let table = app.state.central_table("org_notification_settings").unwrap();
    let rows = app.warehouse().query(&format!("SELECT * FROM {table}"), &Params::new()).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(!format!("{rows:?}").contains("sekrit"), "stored encrypted: {rows:?}");
    let audit = app.state.central_table("org_audit_logs").unwrap();
    let rows = app
        .warehouse()
        .query(&format!("SELECT * FROM {audit} WHERE action = 'notifications.update'"), &Params::new())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one audit row per change");
    assert!(!format!("{rows:?}").contains("sekrit"), "{rows:?}");

    // A field left out keeps its value; null returns it to its default.
    let r = app.put(PATH, Key::Api(&key), json!({"triggers": null})).await;
    assert_eq!(
        (r.body["triggers_source"].as_str(), r.body["slack_webhook_configured"].as_bool()),
        (Some("pipelines"), Some(true))
    );
    let r = app.put(PATH, Key::Api(&key), json!({"slack_webhook_url": null, "email_recipients": null})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["slack_webhook_configured"], false);
    assert_eq!(r.body["slack_webhook_fingerprint"], Value::Null);
    assert_eq!(r.body["email_recipients"], json!(["admin@acme.example.com"]));
    assert_eq!(app.count("org_notification_settings", Some("acme")).await, 1, "one row per organization");
}

#[tokio::test]
async fn a_run_is_emailed_through_smtp_and_posted_to_slack() {
    let smtp = SmtpSink::start().await;
    let slack = FakeSlack::start(StatusCode::OK).await;
    let app = app_with_smtp(smtp.port).await;
    let key = org_ready(&app, "acme", true).await;
    let r = app
        .put(
            PATH,
            Key::Api(&key),
            json!({
                "email_recipients": ["ops@acme.example.com", "cfo@acme.example.com"],
                "slack_webhook_url": slack.webhook("sekrit-token"),
                "triggers": ["on_success"],
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["channels"], json!({"email": true, "slack": true}));

    let date = day(2);
    let run = run_openai(&app, "acme", &key, &date).await;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    let run_id = run["run_id"].as_str().unwrap();
    let rows = run["rows_written"].as_u64().unwrap();
    let link = format!("{PUBLIC_BASE}/api/v1/pipelines/runs/acme/{run_id}");

    let mail = smtp.wait_for(1).await.remove(0);
    let mut to: Vec<&str> = mail["rcpt_tos"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    to.sort_unstable();
    assert_eq!(to, ["cfo@acme.example.com", "ops@acme.example.com"], "{mail}");
    assert_eq!(mail["mail_from"], "notifications@convergence.test");
    assert_eq!(mail["from"], SENDER);
    assert_eq!(mail["subject"], format!("[Convergence] SUCCESS: acme-openai-usage-cost ({date})"));
    assert_eq!(mail["content_type"], "text/plain");
    let body = mail["body"].as_str().unwrap();
    for needle in [
        "The pipeline run acme-openai-usage-cost succeeded.".to_string(),
        "Organization  acme Inc. (acme)".into(),
        format!("Run id        {run_id}"),
        "Status        SUCCESS".into(),
        "Trigger       adhoc".into(),
        format!("Window        {date}"),
        format!("Rows written  {rows}"),
        format!("Run status: {link}"),
    ] {
        assert!(body.contains(&needle), "missing {needle:?} in:\n{body}");
    }
    let cost = body.lines().find(|l| l.starts_with("Cost")).unwrap_or_default();
    assert!(cost.ends_with(" USD") && !cost.contains("none"), "the cost the run computed: {cost:?}");

    let post = slack.wait_for(1).await.remove(0);
    let text = post["text"].as_str().unwrap();
    assert!(text.contains("SUCCESS: acme-openai-usage-cost for acme Inc. (acme)") && text.contains(run_id), "{post}");
    assert_eq!(post["blocks"][0]["type"], "header");
    assert_eq!(post["blocks"][0]["text"]["text"], ":white_check_mark: SUCCESS: acme-openai-usage-cost");
    let all = post.to_string();
    assert!(all.contains(&format!("<{link}|Run status>")), "{post}");
    assert!(all.contains(&format!("*Rows written*\\n{rows}")), "{post}");

    let (email, slack_step) = notify_steps(&app, "acme", run_id).await;
    for (step, channel) in [(&email, "email"), (&slack_step, "slack")] {
        assert_eq!(step["status"], "SUCCESS", "{step}");
        assert_eq!(step["metrics"]["attempts"], 1, "{step}");
        assert_eq!(step["metrics"]["channel"], channel);
    }
    assert_eq!(email["metrics"]["recipients"], 2);
    let after = app.get(&format!("/api/v1/pipelines/runs/acme/{run_id}"), Key::Root).await.body;
    assert_eq!(after["status"], "SUCCESS");
    assert_eq!((smtp.messages().len(), slack.received().len()), (1, 1), "one message per channel");

    // The expectations the run's checks failed are listed (its data-quality results in force).
    let schema = app.state.configs.central_table("org_meta_dq_results");
    // One check run's results share its time (the view keeps the latest check run's).
    let at = common::warehouse::format_timestamp(&Utc::now());
    let dq = |check: &str, observed: &str| {
        common::warehouse::to_row(json!({
            "dq_id": uuid::Uuid::new_v4().to_string(), "run_id": run_id, "org_slug": "acme",
            "pipeline_id": "acme-openai-usage-cost", "check_name": check, "table_name": "openai_cost_daily",
            "usage_date": date, "status": "FAIL", "expected_value": "10", "observed_value": observed,
            "created_at": at,
        }))
    };
    let rows = [dq("row_count_in_bounds", "3"), dq("cost_not_null", "1")];
    app.warehouse().insert_rows(app.state.configs.central_dataset(), schema, &rows).await.unwrap();
    let run_row = app.state.pipelines.run_log().find("acme", run_id).await.unwrap().expect("run");
    let s = &app.state;
    let notifier = common::notify::Notifier::new(
        s.settings.clone(),
        s.configs.clone(),
        s.warehouse.clone(),
        s.kms.clone(),
        s.orgs.clone(),
    )
    .unwrap();
    common::pipeline::RunNotifier::run_ended(&notifier, &run_row, true).await;
    let body = smtp.wait_for(2).await[1]["body"].as_str().unwrap().to_string();
    assert!(body.contains("Failed expectations (2):"), "{body}");
    assert!(
        body.contains(&format!("- row_count_in_bounds on openai_cost_daily ({date}): observed 3, expected 10")),
        "{body}"
    );
    let post = slack.wait_for(2).await.remove(1).to_string();
    assert!(
        post.contains("*Failed expectations (2)*") && post.contains("cost_not_null on openai_cost_daily"),
        "{post}"
    );
}

#[tokio::test]
async fn a_dead_smtp_server_and_a_failing_slack_leave_each_run_as_it_ended() {
    let slack = FakeSlack::start(StatusCode::INTERNAL_SERVER_ERROR).await;
    let app = app_with_smtp(convergence_tests::free_port()).await;

    // A run that succeeds, notified on completion (the organization's trigger).
    let key = org_ready(&app, "acme", true).await;
    let r = app
        .put(
            PATH,
            Key::Api(&key),
            json!({"slack_webhook_url": slack.webhook("sekrit-a"), "triggers": ["on_completion"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let run = run_openai(&app, "acme", &key, &day(2)).await;
    assert_eq!(run["status"], "SUCCESS", "{run}");
    let run_id = run["run_id"].as_str().unwrap();

    // A run that fails (no integration), notified by the pipeline's own on_failure.
    org_ready(&app, "beta", false).await;
    let r = app
        .put(
            "/api/v1/organizations/beta/notifications",
            Key::Root,
            json!({"slack_webhook_url": slack.webhook("sekrit-b")}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let pending = convergence_tests::openai_run("beta", (&day(3), &day(3)), Trigger::Adhoc, 1, Utc::now());
    app.state.pipelines.run_log().append_events(std::slice::from_ref(&pending)).await.unwrap();
    app.state.queue.enqueue(RunRequest { org_slug: "beta".into(), run_id: pending.run_id.clone() }).await.unwrap();

    for (org, run_id, status) in [("acme", run_id, "SUCCESS"), ("beta", pending.run_id.as_str(), "FAILED")] {
        let (email, slack_step) = notify_steps(&app, org, run_id).await;
        let run = app.get(&format!("/api/v1/pipelines/runs/{org}/{run_id}"), Key::Root).await.body;
        assert_eq!(run["status"], status, "the run's outcome is unchanged: {run}");
        if status == "FAILED" {
            assert!(run["error_message"].as_str().unwrap().contains("no openai integration"), "{run}");
        }
        for step in [&email, &slack_step] {
            assert_eq!(step["status"], "FAILED", "{step}");
            assert_eq!(step["metrics"]["attempts"], 3, "retried to the configured attempts: {step}");
            assert!(!step.to_string().contains("sekrit"), "the webhook never appears: {step}");
        }
        let email_error = email["error_message"].as_str().unwrap();
        assert!(email_error.starts_with("email notification not sent: SMTP 127.0.0.1:"), "{email_error}");
        let slack_error = slack_step["error_message"].as_str().unwrap();
        assert!(slack_error.starts_with("slack notification not sent: Slack webhook answered 500"), "{slack_error}");
    }
    assert_eq!(slack.received().len(), 6, "three attempts per run");
}

/// A run whose worker died: the tick records it expired (FAILED) and its notifications go out
/// then, as for a run that ended in its own execution.
#[tokio::test]
async fn a_run_ended_by_its_lease_expiring_is_notified_by_the_tick() {
    let smtp = SmtpSink::start().await;
    let slack = FakeSlack::start(StatusCode::OK).await;
    let app = app_with_smtp(smtp.port).await;
    // No integration: the tick has nothing to submit for acme, only the dead run to end.
    let key = org_ready(&app, "acme", false).await;
    let settings =
        json!({"email_recipients": ["ops@acme.example.com"], "slack_webhook_url": slack.webhook("sekrit-t")});
    let r = app.put(PATH, Key::Api(&key), settings).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Claimed two hours ago by a worker that died; its lease ran out an hour and fifty minutes ago.
    let at = Utc::now() - chrono::Duration::hours(2);
    let submitted = convergence_tests::openai_run("acme", (&day(3), &day(3)), Trigger::Adhoc, 1, at);
    let claimed = convergence_tests::claimed(
        &submitted,
        at + chrono::Duration::seconds(1),
        chrono::Duration::minutes(10),
        "gone",
    );
    app.state.pipelines.run_log().append_events(&[submitted, claimed.clone()]).await.unwrap();
    assert!(smtp.messages().is_empty() && slack.received().is_empty());

    let r = app.post("/api/v1/scheduler/tick", Key::Root, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["expired"], 1, "{}", r.body);
    // The tick answers once its notifications are done (Cloud Run gives no CPU after).
    let (mails, posts) = (smtp.messages(), slack.received());
    assert_eq!((mails.len(), posts.len()), (1, 1), "one message per channel: {mails:?} {posts:?}");
    let run_id = claimed.run_id.as_str();
    assert_eq!(mails[0]["subject"], format!("[Convergence] FAILED: acme-openai-usage-cost ({})", day(3)));
    let body = mails[0]["body"].as_str().unwrap();
    for needle in [format!("Run id        {run_id}"), "Status        FAILED".into(), "lease expired at".into()] {
        assert!(body.contains(&needle), "missing {needle:?} in:\n{body}");
    }
    assert!(posts[0]["text"].as_str().unwrap().contains(run_id), "{}", posts[0]);
    let (email, slack_step) = notify_steps(&app, "acme", run_id).await;
    assert_eq!((email["status"].as_str(), slack_step["status"].as_str()), (Some("SUCCESS"), Some("SUCCESS")));
    let run = app.get(&format!("/api/v1/pipelines/runs/acme/{run_id}"), Key::Root).await.body;
    assert_eq!(run["status"], "FAILED", "{run}");
    assert!(run["error_message"].as_str().unwrap().starts_with("lease expired at"), "{run}");
}

#[tokio::test]
async fn settings_round_trip_on_bigquery() {
    let app = TestApp::spawn_bigquery(&[]).await;
    app.bootstrap().await;
    let key = app.onboard("acme").await;
    let webhook = "http://127.0.0.1:9/hook/services/T000/B000/sekrit-token-wxyz";
    let body =
        json!({"email_recipients": ["ops@acme.example.com"], "slack_webhook_url": webhook, "triggers": ["always"]});
    assert_eq!(app.put(PATH, Key::Api(&key), body).await.status, StatusCode::OK);
    let r = app.put(PATH, Key::Api(&key), json!({"triggers": ["on_failure"]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let got = app.get(PATH, Key::Api(&key)).await.body;
    assert_eq!(got["email_recipients"], json!(["ops@acme.example.com"]), "{got}");
    assert_eq!(
        (got["slack_webhook_configured"].clone(), got["slack_webhook_fingerprint"].clone()),
        (json!(true), json!("…wxyz"))
    );
    assert_eq!(got["triggers"], json!(["on_failure"]));
    assert_eq!(app.count("org_notification_settings", Some("acme")).await, 1, "replaced, not appended");
    // The stored webhook still decrypts as this organization's.
    let stored = common::notify::org_settings::find(app.warehouse().as_ref(), &app.state.configs, "acme")
        .await
        .unwrap()
        .expect("stored");
    let url =
        common::notify::org_settings::decrypt_webhook(app.state.kms.as_ref(), "acme", &stored.slack_webhook.unwrap())
            .await
            .unwrap();
    assert_eq!(secrecy::ExposeSecret::expose_secret(&url), webhook);
}
