//! The Pub/Sub run queue (`QUEUE_BACKEND=pubsub`): one message per run on the topic
//! `PUBSUB_TOPIC`, whose push subscription delivers it to pipelines-run
//! (`POST /api/v1/pipelines/push`), which executes the run inside that request. Nothing executes
//! runs in the process that publishes.
//!
//! Why Pub/Sub's REST `topics.publish` through reqwest, not Google's `google-cloud-pubsub`: that
//! crate's publisher speaks gRPC only (a tonic client), so aiming it at a local fake would need a
//! gRPC server (HTTP/2, protobuf, generated service code) for one call. `topics.publish` is one
//! documented JSON POST, faked faithfully over plain HTTP (`tests/fakes/pubsub.rs`), and its
//! tokens come from `google-cloud-auth`, the credentials the official clients use: Application
//! Default Credentials in production (on Cloud Run, the service account through the metadata
//! server), anonymous when `PUBSUB_API_BASE` points elsewhere (tests, fakes).
//!
//! A message's data is the JSON of [`RunRequest`] (`{"org_slug","run_id"}`); the same two values
//! travel as attributes, so the dead-letter topic's reader and subscription filters see them
//! without decoding the data.
//!
//! Each attempt has a timeout. 408, 409 (ABORTED), 429, 500, 502, 503, 504, timeouts and
//! connection failures are retried a few times with exponential backoff; a duplicate message from
//! a retried publish that did reach Pub/Sub is harmless (a run is claimed once). Anything else
//! fails at once. A failure is [`QueueError::Unavailable`] naming the topic, the HTTP status and
//! Google's error message; it never holds a token.

use std::time::Duration;

use async_trait::async_trait;
use axum::http::{header, Extensions, HeaderMap, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use google_cloud_auth::credentials::{CacheableResource, Credentials};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{QueueError, RunQueue, RunRequest};

/// Pub/Sub's REST endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://pubsub.googleapis.com";

/// The most of a response body read: a publish answer is a few dozen bytes, an error a few hundred.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The most of Google's error message kept in an error.
const MAX_MESSAGE_CHARS: usize = 300;

/// How a publish is attempted.
#[derive(Debug, Clone, Copy)]
pub struct PublishPolicy {
    /// Limit on one attempt: connecting, sending and reading the answer.
    pub attempt_timeout: Duration,
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait before the second attempt, doubled before each next one.
    pub first_backoff: Duration,
}

impl Default for PublishPolicy {
    /// At most about 31 s in all (3 × 10 s + 0.75 s of backoff), within the API's request timeout.
    fn default() -> PublishPolicy {
        PublishPolicy {
            attempt_timeout: Duration::from_secs(10),
            attempts: 3,
            first_backoff: Duration::from_millis(250),
        }
    }
}

pub struct PubSubRunQueue {
    http: reqwest::Client,
    credentials: Credentials,
    topic: String,
    publish_url: String,
    policy: PublishPolicy,
}

impl PubSubRunQueue {
    /// A queue publishing to `topic` (a full `projects/{project}/topics/{topic}` name, as
    /// `Settings::pubsub_topic` holds it), at `endpoint` with anonymous credentials when given,
    /// else at Pub/Sub with Application Default Credentials. Makes no request.
    pub fn new(topic: &str, endpoint: Option<&str>) -> Result<PubSubRunQueue, QueueError> {
        Self::with_policy(topic, endpoint, PublishPolicy::default())
    }

    /// [`PubSubRunQueue::new`] with another timeout, number of attempts or backoff.
    pub fn with_policy(
        topic: &str,
        endpoint: Option<&str>,
        policy: PublishPolicy,
    ) -> Result<PubSubRunQueue, QueueError> {
        // google-cloud-auth is built without its default TLS provider (which compiles aws-lc):
        // the application installs one. Already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let credentials = match endpoint {
            Some(_) => google_cloud_auth::credentials::anonymous::Builder::new().build(),
            None => google_cloud_auth::credentials::Builder::default().build().map_err(|e| {
                QueueError::Unavailable(format!("cannot load Google credentials for Pub/Sub topic {topic}: {e}"))
            })?,
        };
        let http = reqwest::Client::builder()
            .timeout(policy.attempt_timeout)
            .build()
            .map_err(|e| QueueError::Unavailable(format!("cannot create the Pub/Sub HTTP client: {e}")))?;
        let base = endpoint.unwrap_or(DEFAULT_ENDPOINT).trim_end_matches('/');
        Ok(PubSubRunQueue {
            http,
            credentials,
            topic: topic.to_string(),
            publish_url: format!("{base}/v1/{topic}:publish"),
            policy: PublishPolicy { attempts: policy.attempts.max(1), ..policy },
        })
    }

    /// The full topic name messages go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// One `topics.publish` call; the message id on success.
    async fn publish_once(&self, body: &Value) -> Result<String, Failure> {
        let auth = match self.credentials.headers(Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => data,
            // Only answered to a caller that sent an entity tag; this one never does.
            Ok(CacheableResource::NotModified) => HeaderMap::new(),
            Err(e) => {
                let reason = format!("cannot get a Google access token: {e}");
                return Err(if e.is_transient() { Failure::Retry(reason) } else { Failure::Final(reason) });
            }
        };
        let secrets = secret_values(&auth);
        let redacted = |text: String| redact(text, &secrets);
        let response = match self.http.post(&self.publish_url).headers(auth).json(body).send().await {
            Ok(r) => r,
            Err(e) if e.is_builder() => return Err(Failure::Final(redacted(error_chain(&e)))),
            Err(e) => return Err(Failure::Retry(redacted(format!("cannot reach Pub/Sub: {}", error_chain(&e))))),
        };
        let status = response.status();
        let body = read_limited(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|reason| Failure::Retry(redacted(format!("HTTP {}: {reason}", status.as_u16()))))?;
        if !status.is_success() {
            let reason = redacted(describe_error(status, &body));
            return Err(if is_retryable(status) { Failure::Retry(reason) } else { Failure::Final(reason) });
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Published {
            #[serde(default)]
            message_ids: Vec<String>,
        }
        match serde_json::from_slice::<Published>(&body) {
            Ok(Published { message_ids }) if message_ids.len() == 1 => {
                Ok(message_ids.into_iter().next().unwrap_or_default())
            }
            Ok(Published { message_ids }) => Err(Failure::Final(format!(
                "HTTP {} with {} message ids for 1 message",
                status.as_u16(),
                message_ids.len()
            ))),
            Err(_) => {
                Err(Failure::Final(format!("HTTP {} with an answer that is not a publish response", status.as_u16())))
            }
        }
    }
}

#[async_trait]
impl RunQueue for PubSubRunQueue {
    fn backend_name(&self) -> &'static str {
        "pubsub"
    }

    async fn enqueue(&self, request: RunRequest) -> Result<(), QueueError> {
        let body = publish_body(&request);
        let mut attempt = 1;
        let mut backoff = self.policy.first_backoff;
        loop {
            let reason = match self.publish_once(&body).await {
                Ok(message_id) => {
                    tracing::debug!(org = %request.org_slug, run_id = %request.run_id, message_id, "run published");
                    return Ok(());
                }
                Err(Failure::Retry(reason)) if attempt < self.policy.attempts => reason,
                Err(Failure::Retry(reason) | Failure::Final(reason)) => {
                    let attempts = if attempt > 1 { format!(" after {attempt} attempts") } else { String::new() };
                    return Err(QueueError::Unavailable(format!(
                        "Pub/Sub publish to {} failed{attempts}: {reason}",
                        self.topic
                    )));
                }
            };
            tracing::warn!(topic = %self.topic, attempt, error = %reason, "Pub/Sub publish failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
            attempt += 1;
        }
    }
}

/// Why an attempt failed, and whether another may succeed.
enum Failure {
    Retry(String),
    Final(String),
}

/// The `topics.publish` request body for one run.
fn publish_body(request: &RunRequest) -> Value {
    let data = json!({"org_slug": request.org_slug, "run_id": request.run_id}).to_string();
    json!({
        "messages": [{
            "data": STANDARD.encode(data),
            "attributes": {"org_slug": request.org_slug, "run_id": request.run_id},
        }]
    })
}

/// Statuses Google's clients retry a publish on: REQUEST_TIMEOUT, ABORTED, RESOURCE_EXHAUSTED,
/// INTERNAL/UNKNOWN, bad gateway, UNAVAILABLE, DEADLINE_EXCEEDED.
fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 409 | 429 | 500 | 502 | 503 | 504)
}

/// `HTTP 404 NOT_FOUND: Resource not found (resource=runs).` from Google's error body
/// `{"error": {"code", "message", "status"}}`; only the status when the body is not that shape
/// (a proxy's page says nothing useful and may echo anything).
fn describe_error(status: StatusCode, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        error: GoogleError,
    }
    #[derive(Deserialize)]
    struct GoogleError {
        #[serde(default)]
        status: String,
        #[serde(default)]
        message: String,
    }
    let code = status.as_u16();
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope { error }) => {
            let mut message: String = error.message.chars().take(MAX_MESSAGE_CHARS).collect();
            if error.message.chars().count() > MAX_MESSAGE_CHARS {
                message.push('…');
            }
            match (error.status.is_empty(), message.is_empty()) {
                (true, true) => format!("HTTP {code}"),
                (true, false) => format!("HTTP {code}: {message}"),
                (false, true) => format!("HTTP {code} {}", error.status),
                (false, false) => format!("HTTP {code} {}: {message}", error.status),
            }
        }
        Err(_) => match status.canonical_reason() {
            Some(reason) => format!("HTTP {code} {reason}"),
            None => format!("HTTP {code}"),
        },
    }
}

/// Reads at most `limit` bytes of a body.
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) =
        response.chunk().await.map_err(|e| format!("reading the answer failed: {}", error_chain(&e)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its sources, `: `-separated (reqwest's own text is only the outermost).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The credential values an error must never show: the `Authorization` header and its token.
fn secret_values(headers: &HeaderMap) -> Vec<String> {
    let mut secrets = Vec::new();
    for value in headers.get_all(header::AUTHORIZATION) {
        if let Ok(value) = value.to_str() {
            if let Some((_, token)) = value.split_once(' ') {
                secrets.push(token.to_string());
            }
            secrets.push(value.to_string());
        }
    }
    secrets.retain(|s| !s.trim().is_empty());
    secrets
}

/// `text` with every secret value replaced, in case a server or proxy echoed the request.
fn redact(mut text: String, secrets: &[String]) -> String {
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "[redacted]");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_carries_the_run_as_data_and_attributes() {
        let body = publish_body(&RunRequest { org_slug: "acme".into(), run_id: "r-1".into() });
        let message = &body["messages"][0];
        let data = STANDARD.decode(message["data"].as_str().unwrap()).unwrap();
        let data: Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(data, json!({"org_slug": "acme", "run_id": "r-1"}));
        assert_eq!(message["attributes"], json!({"org_slug": "acme", "run_id": "r-1"}));
        assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn errors_name_the_status_and_googles_message() {
        let body =
            br#"{"error": {"code": 404, "message": "Resource not found (resource=runs).", "status": "NOT_FOUND"}}"#;
        assert_eq!(
            describe_error(StatusCode::NOT_FOUND, body),
            "HTTP 404 NOT_FOUND: Resource not found (resource=runs)."
        );
        assert_eq!(describe_error(StatusCode::BAD_GATEWAY, b"<html>proxy</html>"), "HTTP 502 Bad Gateway");
        let long = json!({"error": {"message": "x".repeat(5000)}}).to_string();
        let text = describe_error(StatusCode::SERVICE_UNAVAILABLE, long.as_bytes());
        assert!(text.starts_with("HTTP 503: xxx") && text.chars().count() < MAX_MESSAGE_CHARS + 20, "{text}");
    }

    #[test]
    fn transient_statuses_are_retried_and_others_are_not() {
        for code in [408, 409, 429, 500, 502, 503, 504] {
            assert!(is_retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [400, 401, 403, 404, 413, 501] {
            assert!(!is_retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }

    #[test]
    fn tokens_are_redacted_from_errors() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer ya29.secret-token".parse().unwrap());
        headers.insert("x-goog-user-project", "acme-prod".parse().unwrap());
        let secrets = secret_values(&headers);
        let text = redact("echo: Bearer ya29.secret-token and ya29.secret-token in acme-prod".into(), &secrets);
        assert!(!text.contains("ya29"), "{text}");
        assert!(text.contains("acme-prod"), "only the Authorization header is secret: {text}");
        assert!(secret_values(&HeaderMap::new()).is_empty(), "anonymous credentials send no header");
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_retried_then_unavailable() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let policy = PublishPolicy {
            attempt_timeout: Duration::from_secs(2),
            attempts: 2,
            first_backoff: Duration::from_millis(1),
        };
        let queue = PubSubRunQueue::with_policy(
            "projects/acme-prod/topics/runs",
            Some(&format!("http://127.0.0.1:{port}/")),
            policy,
        )
        .unwrap();
        assert_eq!(queue.backend_name(), "pubsub");
        assert_eq!(queue.publish_url, format!("http://127.0.0.1:{port}/v1/projects/acme-prod/topics/runs:publish"));
        let err = queue.enqueue(RunRequest { org_slug: "acme".into(), run_id: "r-1".into() }).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(
                "Pub/Sub publish to projects/acme-prod/topics/runs failed after 2 attempts: cannot reach Pub/Sub"
            ),
            "{text}"
        );
    }
}
