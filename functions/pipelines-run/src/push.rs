//! `POST /api/v1/pipelines/push`: Pub/Sub's push delivery of one run (DESIGN §12). The run is
//! executed inside the request (Cloud Run gives CPU only while a request is open), and the answer
//! tells Pub/Sub what to do with the message:
//!
//! - 200 when the run is done: by this delivery, earlier, or failed for good (recorded on it), or
//!   when the run does not exist (a stale message: redelivering it cannot help);
//! - 429 with `Retry-After` while the same run is RUNNING under a live lease elsewhere (the outcome
//!   is not known yet: a later redelivery reads it), or while the organization is at its
//!   concurrency cap;
//! - 503 when it failed transiently (the run is PENDING again), or when the warehouse could not
//!   record the run's claim or end (its step log failing is such a transient failure), so Pub/Sub
//!   redelivers with backoff; nothing is half-written either way (a window is replaced whole, a
//!   step an execution could not record the end of is ended by the next one).
//!
//! A delivery that outlives the subscription's ack deadline is redelivered while the first is
//! still running; the redelivery finds the run claimed under a live lease and is answered 429,
//! and the first delivery's outcome is the one recorded (docs/ARCHITECTURE.md).

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::domain::OrgSlug;
use common::http::error::ApiResult;
use common::http::ApiJson;
use common::http::InternalCaller;
use common::pipeline::runlog::RunLogError;
use common::pipeline::{Delivery, Execution};
use common::queue::RunRequest;
use common::warehouse::WarehouseError;
use common::{ApiError, AppState};
use serde::Deserialize;
use serde_json::{json, Value};

/// Pub/Sub's push envelope (only what we read; Pub/Sub adds fields over time).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PushEnvelope {
    pub message: PushMessage,
    #[serde(default)]
    pub subscription: Option<String>,
    #[serde(default, rename = "deliveryAttempt")]
    pub delivery_attempt: Option<u32>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PushMessage {
    /// Base64 of `{"org_slug","run_id"}`.
    #[serde(default)]
    pub data: Option<String>,
    #[serde(default)]
    pub attributes: Option<std::collections::HashMap<String, String>>,
    #[serde(default, rename = "messageId")]
    pub message_id: Option<String>,
}

/// The run a message names: its data, else its attributes.
fn run_request(message: &PushMessage) -> ApiResult<RunRequest> {
    let from_data = message
        .data
        .as_deref()
        .and_then(|d| STANDARD.decode(d).ok())
        .and_then(|bytes| serde_json::from_slice::<RunRequest>(&bytes).ok());
    let from_attributes = message
        .attributes
        .as_ref()
        .and_then(|a| Some(RunRequest { org_slug: a.get("org_slug")?.clone(), run_id: a.get("run_id")?.clone() }));
    let request = from_data.or(from_attributes).ok_or_else(|| {
        ApiError::bad_request(
            "the message names no run: its data must be base64 of {\"org_slug\", \"run_id\"} (or the same two attributes)",
        )
    })?;
    OrgSlug::parse(&request.org_slug).map_err(ApiError::bad_request)?;
    if !common::pipeline::runlog::is_run_id(&request.run_id) {
        return Err(ApiError::bad_request(format!("run_id {:?} is not a run id", request.run_id)));
    }
    Ok(request)
}

#[utoipa::path(
    post,
    path = "/api/v1/pipelines/push",
    tag = "internal",
    summary = "Pub/Sub's push delivery of a run, executed in the request.",
    request_body = crate::push::PushEnvelope,
    responses(
        (status = 200, description = "The run's outcome (finished, missing, already done).", body = PushOutcome),
        (status = 429, description = "The run is in progress elsewhere; Pub/Sub retries later.", body = common::http::openapi::ErrorBody),
        (status = 503, description = "The run could not be executed now; Pub/Sub retries.", body = common::http::openapi::ErrorBody),
    ),
    security(("google_oidc" = []), ("root_key" = [])),
)]
pub async fn push(
    caller: InternalCaller,
    State(state): State<AppState>,
    ApiJson(envelope): ApiJson<PushEnvelope>,
) -> Result<Response, ApiError> {
    let request = run_request(&envelope.message)?;
    let (org, run_id) = (request.org_slug.as_str(), request.run_id.as_str());
    let (caller_type, caller_id) = caller.actor();
    tracing::info!(
        org,
        run_id,
        caller = caller_type,
        caller_id = caller_id.as_deref().unwrap_or(""),
        message_id = envelope.message.message_id.as_deref().unwrap_or(""),
        subscription = envelope.subscription.as_deref().unwrap_or(""),
        delivery_attempt = envelope.delivery_attempt.unwrap_or(0),
        "push delivery"
    );
    // The run goes on in its own task: if Pub/Sub gives up on this request (ack deadline) and
    // closes the connection, the run is not cancelled half-way; its outcome is recorded anyway.
    let pipelines = state.pipelines.clone();
    let (o, r) = (request.org_slug.clone(), request.run_id.clone());
    let executed = tokio::spawn(async move { pipelines.execute(&o, &r, Delivery::Push).await })
        .await
        .map_err(|e| ApiError::internal(format!("run task: {e}")))?;
    let answer = |status: StatusCode, body: Value, retry_after: Option<u64>| {
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    };
    let execution = match executed {
        Ok(execution) => execution,
        // The run's state could not be read or recorded (its claim, or its end after a few
        // tries): whatever ran is in the window whole, and the run reads as it was last
        // recorded. A redelivery reruns it once its claim is free (at once when nothing was
        // claimed; after its lease when the claim was recorded but not the end).
        Err(RunLogError::Warehouse(WarehouseError::Unavailable(e))) => {
            tracing::error!(org, run_id, error = %e, "run log unavailable during a push delivery");
            return Ok(answer(
                StatusCode::SERVICE_UNAVAILABLE,
                error_body(
                    "unavailable",
                    "the run's state cannot be recorded now (the warehouse is unavailable); deliver it again later",
                ),
                Some(RETRY_AFTER_SECS),
            ));
        }
        Err(other) => return Err(other.into()),
    };
    Ok(match execution {
        Execution::Missing => answer(StatusCode::OK, json!({"run_id": run_id, "outcome": "missing"}), None),
        Execution::Finished(run) => answer(
            StatusCode::OK,
            json!({"run_id": run_id, "outcome": "finished", "status": run.status.as_str(), "error_message": run.error_message}),
            None,
        ),
        Execution::AlreadyDone(run) => answer(
            StatusCode::OK,
            json!({"run_id": run_id, "outcome": "already_done", "status": run.status.as_str()}),
            None,
        ),
        Execution::Running(run) => {
            let wait = run
                .lease_expires_at
                .map(|l| (l - chrono::Utc::now()).num_seconds().clamp(10, 600))
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(60);
            let message =
                format!("run {run_id} is {} under a live lease; its outcome is not known yet", run.status.as_str());
            answer(StatusCode::TOO_MANY_REQUESTS, error_body("run_in_progress", &message), Some(wait))
        }
        Execution::Busy { retry_after_secs } => answer(
            StatusCode::TOO_MANY_REQUESTS,
            error_body(
                "rate_limited",
                "the organization runs as many runs as its plan allows at once; deliver again later",
            ),
            Some(retry_after_secs),
        ),
        Execution::Retry { reason, .. } => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            error_body("unavailable", &format!("the run failed transiently and will be retried: {reason}")),
            Some(RETRY_AFTER_SECS),
        ),
    })
}

/// What a 503 asks Pub/Sub to wait (Pub/Sub applies its subscription's retry policy; the header
/// is for other callers).
const RETRY_AFTER_SECS: u64 = 30;

fn error_body(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "request_id": common::http::middleware::current_request_id()}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(data: Option<&str>, attributes: &[(&str, &str)]) -> PushMessage {
        PushMessage {
            data: data.map(|d| STANDARD.encode(d)),
            attributes: Some(attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            message_id: None,
        }
    }

    #[test]
    fn the_run_comes_from_data_or_attributes_and_is_checked() {
        let run = "0a1b2c3d-0000-1111-2222-333344445555";
        let from_data =
            run_request(&message(Some(&format!("{{\"org_slug\":\"acme\",\"run_id\":\"{run}\"}}")), &[])).unwrap();
        assert_eq!((from_data.org_slug.as_str(), from_data.run_id.as_str()), ("acme", run));
        let from_attrs = run_request(&message(None, &[("org_slug", "acme"), ("run_id", run)])).unwrap();
        assert_eq!(from_attrs.run_id, run);
        assert_eq!(run_request(&message(Some("not json"), &[])).unwrap_err().status, 400);
        assert_eq!(run_request(&message(None, &[("org_slug", "Bad Slug"), ("run_id", run)])).unwrap_err().status, 400);
        assert_eq!(
            run_request(&message(None, &[("org_slug", "acme"), ("run_id", "'; DROP")])).unwrap_err().status,
            400
        );
    }
}

/// The response's schema for the API contract (the handler builds it with `json!`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct PushOutcome {
    run_id: String,
    /// finished, already_done or missing (a run no longer recorded: acknowledged, not retried).
    outcome: String,
    /// The run's status, when there is a run.
    status: Option<String>,
    error_message: Option<String>,
}
