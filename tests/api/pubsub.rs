//! The Pub/Sub run queue (`QUEUE_BACKEND=pubsub`) against the local fake of Pub/Sub's REST
//! publish API: a run POSTed to the app becomes exactly one message (data and attributes); a
//! publish that keeps failing answers 503 and leaves the run FAILED with the reason; transient
//! failures are retried, permanent ones are not; and the fake refuses what Pub/Sub refuses.

use std::time::Duration;

use chrono::{Duration as Days, Utc};
use common::queue::pubsub::{PubSubRunQueue, PublishPolicy};
use common::queue::{QueueError, RunQueue, RunRequest};
use convergence_tests::fakes::pubsub::FakePubSub;
use convergence_tests::{Key, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const PROJECT: &str = "acme-test-1";
const TOPIC_ID: &str = "convergence-pipeline-runs";
const TOPIC: &str = "projects/acme-test-1/topics/convergence-pipeline-runs";

/// The app publishing runs to `fake` (the topic given as an id, expanded with the project),
/// bootstrapped, with `acme` onboarded, ACTIVE, and its OpenAI integration set up against the
/// sandbox. Returns the app and acme's key.
async fn app_publishing_to(fake: &FakePubSub) -> (TestApp, String) {
    let app = TestApp::spawn_with(&[
        ("QUEUE_BACKEND", "pubsub"),
        ("PUBSUB_TOPIC", TOPIC_ID),
        ("PUBSUB_API_BASE", fake.base_url()),
        ("GCP_PROJECT_ID", PROJECT),
    ])
    .await;
    assert_eq!(app.state.queue.backend_name(), "pubsub");
    app.bootstrap().await;
    let key = app.onboard("acme").await;
    let r = app
        .put("/api/v1/organizations/acme/subscription", Key::Root, json!({"status": "active", "plan_name": "STARTER"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .post("/api/v1/integrations/acme/openai/setup", Key::Api(&key), json!({"credential": "sk-admin-sandbox-acme"}))
        .await;
    assert!(r.status.is_success(), "setup: {}", r.body);
    (app, key)
}

fn window() -> Value {
    let day = |offset| (Utc::now().date_naive() - Days::days(offset)).to_string();
    json!({"start_date": day(3), "end_date": day(2)})
}

const RUN_PATH: &str = "/api/v1/pipelines/run/acme/openai/usage_cost";

fn fast_policy(attempts: u32) -> PublishPolicy {
    PublishPolicy { attempt_timeout: Duration::from_secs(5), attempts, first_backoff: Duration::from_millis(10) }
}

fn request() -> RunRequest {
    RunRequest { org_slug: "acme".into(), run_id: "run-1".into() }
}

#[tokio::test]
async fn a_run_is_published_as_one_message_with_data_and_attributes() {
    let fake = FakePubSub::start(&[TOPIC]).await;
    let (app, key) = app_publishing_to(&fake).await;
    let r = app.post(RUN_PATH, Key::Api(&key), window()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let run_id = r.body["run_id"].as_str().unwrap().to_string();

    let messages = fake.take_messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let message = &messages[0];
    assert_eq!(message.topic, TOPIC);
    assert_eq!(message.data_json(), json!({"org_slug": "acme", "run_id": run_id}));
    let attributes: Vec<(&str, &str)> = message.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(attributes, [("org_slug", "acme"), ("run_id", run_id.as_str())]);
    assert_eq!(message.authorization, None, "with PUBSUB_API_BASE the credentials are anonymous");
    assert_eq!(fake.requests(), 1);

    // Nothing executes runs in this process: the run waits for the push delivery.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let run = app.get(&format!("/api/v1/pipelines/runs/acme/{run_id}"), Key::Api(&key)).await;
    assert_eq!(run.status, StatusCode::OK, "{}", run.body);
    assert_eq!(run.body["status"], "PENDING", "{}", run.body);
    assert!(fake.take_messages().is_empty(), "one message per run");
}

#[tokio::test]
async fn a_publish_that_keeps_failing_answers_503_and_fails_the_run_with_the_reason() {
    let fake = FakePubSub::start(&[TOPIC]).await;
    let (app, key) = app_publishing_to(&fake).await;
    fake.fail_next(100, StatusCode::SERVICE_UNAVAILABLE);
    let r = app.post(RUN_PATH, Key::Api(&key), window()).await;
    r.assert_error(503, "unavailable");
    assert!(fake.take_messages().is_empty());
    assert_eq!(fake.requests(), PublishPolicy::default().attempts as usize, "retried a bounded number of times");

    let runs = app.get("/api/v1/pipelines/runs/acme", Key::Api(&key)).await;
    assert_eq!(runs.status, StatusCode::OK, "{}", runs.body);
    let runs = runs.body["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["status"], "FAILED", "never a PENDING run that nothing will execute: {}", runs[0]);
    let reason = runs[0]["error_message"].as_str().unwrap_or_default();
    assert!(reason.contains("could not be queued"), "{reason}");
    assert!(
        reason.contains(TOPIC) && reason.contains("HTTP 503 UNAVAILABLE"),
        "the reason names what failed: {reason}"
    );

    // Pub/Sub back: the same window runs (the FAILED run does not block it), one message.
    fake.fail_next(0, StatusCode::OK);
    let r = app.post(RUN_PATH, Key::Api(&key), window()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let messages = fake.take_messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].data_json()["run_id"], r.body["run_id"]);
}

#[tokio::test]
async fn transient_failures_are_retried_with_one_message_in_the_end() {
    let fake = FakePubSub::start(&[TOPIC]).await;
    let queue = PubSubRunQueue::with_policy(TOPIC, Some(fake.base_url()), fast_policy(3)).unwrap();
    for status in [StatusCode::TOO_MANY_REQUESTS, StatusCode::INTERNAL_SERVER_ERROR, StatusCode::GATEWAY_TIMEOUT] {
        let before = fake.requests();
        fake.fail_next(2, status);
        queue.enqueue(request()).await.unwrap_or_else(|e| panic!("{status}: {e}"));
        assert_eq!(fake.requests() - before, 3, "{status}: two failures, then success");
        assert_eq!(fake.take_messages().len(), 1, "{status}");
    }
}

#[tokio::test]
async fn permanent_failures_are_not_retried_and_say_what_failed() {
    let fake = FakePubSub::start(&[TOPIC]).await;
    let missing = "projects/acme-test-1/topics/missing";
    let queue = PubSubRunQueue::with_policy(missing, Some(fake.base_url()), fast_policy(3)).unwrap();
    let QueueError::Unavailable(reason) = queue.enqueue(request()).await.unwrap_err();
    assert_eq!(
        reason,
        format!("Pub/Sub publish to {missing} failed: HTTP 404 NOT_FOUND: Resource not found (resource=missing).")
    );
    assert_eq!(fake.requests(), 1, "a missing topic is not retried");

    let queue = PubSubRunQueue::with_policy(TOPIC, Some(fake.base_url()), fast_policy(3)).unwrap();
    fake.fail_next(1, StatusCode::FORBIDDEN);
    let err = queue.enqueue(request()).await.unwrap_err().to_string();
    assert!(err.contains("HTTP 403 PERMISSION_DENIED"), "{err}");
    assert_eq!(fake.requests(), 2);

    fake.delete_topic(TOPIC);
    let err = queue.enqueue(request()).await.unwrap_err().to_string();
    assert!(err.contains("NOT_FOUND"), "{err}");
    assert!(fake.take_messages().is_empty());
}

#[tokio::test]
async fn the_fake_refuses_what_pubsub_refuses() {
    let fake = FakePubSub::start(&[TOPIC]).await;
    let client = reqwest::Client::new();
    let publish =
        |topic: &str, body: Value| client.post(format!("{}/v1/{topic}:publish", fake.base_url())).json(&body).send();
    let error_of = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], status, "{body}");
        (status, body["error"]["status"].as_str().unwrap().to_string())
    };
    let ok = json!({"messages": [{"data": "e30=", "attributes": {"k": "v"}}]});
    for (topic, body, expected) in [
        ("projects/acme-test-1/topics/other", ok.clone(), (404, "NOT_FOUND")),
        ("projects/acme-test-1/topicz/x", ok.clone(), (400, "INVALID_ARGUMENT")),
        (TOPIC, json!({"messages": []}), (400, "INVALID_ARGUMENT")),
        (TOPIC, json!({"messages": [{"data": "not base64!"}]}), (400, "INVALID_ARGUMENT")),
        (TOPIC, json!({"messages": [{"attributes": {"run_id": 7}}]}), (400, "INVALID_ARGUMENT")),
        (TOPIC, json!({"messages": [{"attributes": {"googkey": "v"}}]}), (400, "INVALID_ARGUMENT")),
        (TOPIC, json!({"messages": [{}]}), (400, "INVALID_ARGUMENT")),
        (TOPIC, json!({"messages": [{"data": "e30=", "extra": 1}]}), (400, "INVALID_ARGUMENT")),
        // One bad message refuses the whole request.
        (TOPIC, json!({"messages": [{"data": "e30="}, {"data": "%%"}]}), (400, "INVALID_ARGUMENT")),
    ] {
        let (status, code) = error_of(publish(topic, body.clone()).await.unwrap()).await;
        assert_eq!((status, code.as_str()), expected, "{topic} {body}");
    }
    assert!(fake.take_messages().is_empty(), "nothing refused is recorded");

    let r = publish(TOPIC, json!({"messages": [{"data": "e30="}, {"attributes": {"a": "b"}}]})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let ids = r.json::<Value>().await.unwrap()["messageIds"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 2);
    let messages = fake.take_messages();
    assert_eq!(messages.iter().map(|m| json!(m.message_id)).collect::<Vec<_>>(), ids);
    assert_eq!(messages[0].data, b"{}");
    assert_eq!(messages[1].attributes.get("a").map(String::as_str), Some("b"));
}
