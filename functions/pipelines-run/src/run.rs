//! `POST /api/v1/pipelines/run/{org}/{provider}/{domain}[/{pipeline}]` (org key or root).
//!
//! Order: who (403) → which pipeline (404 listing the catalog) → which window (400) → the
//! organization (404) → subscription (403) → integration (409) → then, under the organization's
//! lock: stale runs expired, a run of an overlapping window still going (409 with its run_id),
//! quotas (429) → PENDING row, enqueue → 202.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{Duration, Utc};
use common::audit::{self, AuditEvent};
use common::auth::Caller;
use common::domain::OrgSlug;
use common::http::error::ApiResult;
use common::http::{ApiPath, OptionalJson};
use common::pipeline::runlog::{self, NewRun, Trigger};
use common::pipeline::Pipeline;
use common::queue::RunRequest;
use common::{ApiError, AppState};
use serde_json::{json, Value};

use crate::gates;
use crate::window::{today, RunBody};

pub async fn run_domain(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((org, provider, domain)): ApiPath<(String, String, String)>,
    OptionalJson(body): OptionalJson<RunBody>,
) -> Result<Response, ApiError> {
    accept(&state, &caller, &org, &provider, &domain, None, &body).await
}

pub async fn run_pipeline(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((org, provider, domain, pipeline)): ApiPath<(String, String, String, String)>,
    OptionalJson(body): OptionalJson<RunBody>,
) -> Result<Response, ApiError> {
    accept(&state, &caller, &org, &provider, &domain, Some(&pipeline), &body).await
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
    caller: &Caller,
    org: &str,
    provider: &str,
    domain: &str,
    name: Option<&str>,
    body: &RunBody,
) -> Result<Response, ApiError> {
    caller.require_org(org)?;
    let slug = OrgSlug::parse(org).map_err(ApiError::bad_request)?;
    let org = slug.as_str();
    let pipeline = lookup(state, provider, domain, name)?;
    let window = body.window(pipeline, today())?;
    let Some(view) = state.orgs.get(state, org).await? else {
        return Err(ApiError::not_found(format!("no organization {org}")));
    };
    let now = Utc::now();
    gates::subscription(&view, now)?;
    gates::integration(state, org, provider).await?;

    let pipeline_id = pipeline.pipeline_id(org);
    let _guard = common::locks::lock(&format!("pipeline-runs:{org}")).await;
    let lease = state.settings.run_lease_secs;
    let expired =
        runlog::expire_stale(state, org, now - Duration::seconds(i64::try_from(lease).unwrap_or(i64::MAX)), lease)
            .await?;
    if expired > 0 {
        tracing::warn!(org, expired, "runs past their lease were marked FAILED");
    }
    if let Some(running) = runlog::active_overlapping(state, org, &pipeline_id, window.start, window.end).await?.first()
    {
        return Ok(duplicate(org, running));
    }
    gates::quotas(state, org, &view, now).await?;

    let run_id = uuid::Uuid::new_v4().to_string();
    let parameters = json!({
        "pipeline": name,
        "file": pipeline.file,
        "start_date": window.start.to_string(),
        "end_date": window.end.to_string(),
        "days": window.days(),
    });
    let new = NewRun {
        run_id: &run_id,
        org_slug: org,
        pipeline_id: &pipeline_id,
        provider,
        domain,
        trigger: Trigger::Adhoc,
        start_date: window.start,
        end_date: window.end,
        parameters: &parameters,
    };
    runlog::insert_pending(state, &new).await?;
    if let Err(e) = state.queue.enqueue(RunRequest { org_slug: org.to_string(), run_id: run_id.clone() }).await {
        runlog::fail_pending(state, org, &run_id, &format!("the run could not be queued: {e}")).await?;
        return Err(ApiError::unavailable(e.to_string()));
    }
    audit::record(
        state,
        caller,
        AuditEvent {
            org_slug: Some(org),
            action: "pipeline.run",
            resource_type: "pipeline_run",
            resource_id: Some(&run_id),
            success: true,
            details: json!({"pipeline_id": pipeline_id, "file": pipeline.file, "start_date": window.start, "end_date": window.end, "trigger": "adhoc"}),
        },
    )
    .await;
    let location = format!("/api/v1/pipelines/runs/{org}/{run_id}");
    let body = json!({
        "run_id": run_id,
        "pipeline_id": pipeline_id,
        "status": "PENDING",
        "start_date": window.start,
        "end_date": window.end,
        "status_url": location,
    });
    Ok((StatusCode::ACCEPTED, [(axum::http::header::LOCATION, location)], Json(body)).into_response())
}

/// 409 naming the run still going: the error shape, plus its `run_id` and `status` at the top
/// level so a client can follow it without parsing the message.
fn duplicate(org: &str, running: &common::warehouse::Row) -> Response {
    let text = |k: &str| running.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let (run_id, status) = (text("run_id"), text("status"));
    let message = format!(
        "run {run_id} of this pipeline for {} to {} is still {status}; read it with GET /api/v1/pipelines/runs/{org}/{run_id}",
        text("start_date"),
        text("end_date"),
    );
    let body = json!({
        "error": {"code": "conflict", "message": message, "request_id": common::http::middleware::current_request_id()},
        "run_id": run_id,
        "status": status,
    });
    (StatusCode::CONFLICT, Json(body)).into_response()
}
