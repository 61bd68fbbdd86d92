//! `POST /api/v1/pipelines/run/{org}/{provider}/{domain}[/{pipeline}]` (org key or root).
//!
//! Order: who (403) → which pipeline (404 listing the catalog) → the body's shape (400) → the
//! pipeline layer's submission: the window's range (400), the organization (404), subscription
//! (403), integration (409), a run of an overlapping window still going (409 with its run_id),
//! quotas (429), then the PENDING run and the enqueue (503 if it cannot be queued) → 202.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use common::audit::AuditEvent;
use common::http::error::ApiResult;
use common::http::{ApiPath, OptionalJson, OrgAccess};
use common::pipeline::runlog::{RunRow, Trigger};
use common::pipeline::{Pipeline, Submission, Submitted};
use common::{ApiError, AppState};
use serde::Deserialize;
use serde_json::json;

use crate::window::RunBody;

/// The pipeline a run route names (`{org}` is [`OrgAccess`]'s).
#[derive(Debug, Deserialize)]
pub struct PipelinePath {
    provider: String,
    domain: String,
    /// Absent on the domain route: the domain's only pipeline.
    pipeline: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/pipelines/run/{org}/{provider}/{domain}",
    tag = "pipelines",
    summary = "Submit a run of a provider's domain pipeline.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$"), ("provider" = String, Path, description = "A provider: openai, anthropic or gcp."), ("domain" = String, Path, description = "A pipeline domain of the provider (e.g. usage_cost).")),
    request_body = Option<crate::window::RunBody>,
    responses(
        (status = 202, description = "The run is accepted; Location names it.", body = RunAccepted),
        (status = 403, description = "The subscription does not allow runs, or not this key.", body = common::http::openapi::ErrorBody),
        (status = 404, description = "No such organization or pipeline.", body = common::http::openapi::ErrorBody),
        (status = 409, description = "The same run is still going, or the integration is not ready.", body = common::http::openapi::ErrorBody),
        (status = 429, description = "A run quota is used up; see Retry-After.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn run_domain(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiPath(path): ApiPath<PipelinePath>,
    OptionalJson(body): OptionalJson<RunBody>,
) -> Result<Response, ApiError> {
    accept(&state, &access, &path, &body).await
}

#[utoipa::path(
    post,
    path = "/api/v1/pipelines/run/{org}/{provider}/{domain}/{pipeline}",
    tag = "pipelines",
    summary = "Submit a run of one named pipeline.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$"), ("provider" = String, Path, description = "A provider: openai, anthropic or gcp."), ("domain" = String, Path, description = "A pipeline domain of the provider (e.g. usage_cost)."), ("pipeline" = String, Path, description = "The pipeline's name in its domain.")),
    request_body = Option<crate::window::RunBody>,
    responses(
        (status = 202, description = "The run is accepted; Location names it.", body = RunAccepted),
        (status = 403, description = "The subscription does not allow runs, or not this key.", body = common::http::openapi::ErrorBody),
        (status = 404, description = "No such organization or pipeline.", body = common::http::openapi::ErrorBody),
        (status = 409, description = "The same run is still going, or the integration is not ready.", body = common::http::openapi::ErrorBody),
        (status = 429, description = "A run quota is used up; see Retry-After.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn run_pipeline(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiPath(path): ApiPath<PipelinePath>,
    OptionalJson(body): OptionalJson<RunBody>,
) -> Result<Response, ApiError> {
    accept(&state, &access, &path, &body).await
}

/// The pipeline the path names, or 404 listing every pipeline there is.
fn lookup<'a>(state: &'a AppState, provider: &str, domain: &str, name: Option<&str>) -> ApiResult<&'a Pipeline> {
    state.configs.pipelines.get(provider, domain, name).ok_or_else(|| {
        let asked = match name {
            Some(n) => format!("{provider}/{domain}/{n}"),
            None => format!("{provider}/{domain}"),
        };
        let paths = state.configs.pipelines.paths();
        let known = if paths.is_empty() { "none are configured".to_string() } else { paths.join(", ") };
        ApiError::not_found(format!("no pipeline {asked}; the pipelines are: {known}"))
    })
}

async fn accept(
    state: &AppState,
    access: &OrgAccess,
    path: &PipelinePath,
    body: &RunBody,
) -> Result<Response, ApiError> {
    let org = access.slug.as_str();
    let pipeline = lookup(state, &path.provider, &path.domain, path.pipeline.as_deref())?;
    let window = body.window()?;
    let submission = Submission { org_slug: org, pipeline, window, trigger: Trigger::Adhoc, now: Utc::now() };
    let run = match state.pipelines.submit(&submission).await? {
        Submitted::Accepted(run) => run,
        Submitted::AlreadyActive(running) => return Ok(duplicate(org, &running)),
    };
    state.audit(&access.caller,
        AuditEvent {
            org_slug: Some(org),
            action: "pipeline.run",
            resource_type: "pipeline_run",
            resource_id: Some(&run.run_id),
            success: true,
            details: json!({"pipeline_id": run.pipeline_id, "file": pipeline.file, "start_date": window.start, "end_date": window.end, "trigger": "adhoc", "attempt": run.attempt}),
        },
    )
    .await;
    let location = format!("/api/v1/pipelines/runs/{org}/{}", run.run_id);
    let body = json!({
        "run_id": run.run_id,
        "pipeline_id": run.pipeline_id,
        "status": run.status.as_str(),
        "start_date": window.start,
        "end_date": window.end,
        "status_url": location,
    });
    Ok((StatusCode::ACCEPTED, [(axum::http::header::LOCATION, location)], Json(body)).into_response())
}

/// 409 naming the run still going: the error shape, plus its `run_id` and `status` at the top
/// level so a client can follow it without parsing the message.
fn duplicate(org: &str, running: &RunRow) -> Response {
    let (run_id, status) = (&running.run_id, running.status.as_str());
    let message = format!(
        "run {run_id} of {} for {} to {} is still {status}; read it with GET /api/v1/pipelines/runs/{org}/{run_id}",
        running.pipeline_id, running.window.start, running.window.end,
    );
    let body = json!({
        "error": {"code": "conflict", "message": message, "request_id": common::http::middleware::current_request_id()},
        "run_id": run_id,
        "status": status,
    });
    (StatusCode::CONFLICT, Json(body)).into_response()
}

/// The response's schema for the API contract (the handler builds it with `json!`; schemathesis
/// checks real responses against it).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RunAccepted {
    run_id: String,
    pipeline_id: String,
    status: String,
    start_date: String,
    end_date: String,
    /// Where to read the run: GET it with the same key.
    status_url: String,
}
