//! `GET /api/v1/pipelines/runs/{org}` (history) and `GET /api/v1/pipelines/runs/{org}/{run_id}`
//! (one run with its steps), org key or root.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use common::http::error::ApiResult;
use common::http::{ApiPath, OrgAccess};
use common::pipeline::runlog::{json_column, RunRow, STATUSES};
use common::warehouse::Row;
use common::{ApiError, AppState};
use serde::Deserialize;
use serde_json::{json, Map, Value};

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

fn field(row: &Row, name: &str) -> Value {
    row.get(name).cloned().unwrap_or(Value::Null)
}

/// A run as the API shows it.
fn run_view(run: &RunRow) -> Map<String, Value> {
    let ts = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or(Value::Null, |t| json!(common::warehouse::format_timestamp(&t)))
    };
    let view = json!({
        "run_id": run.run_id,
        "org_slug": run.org_slug,
        "pipeline_id": run.pipeline_id,
        "provider": run.provider,
        "domain": run.domain,
        "pipeline": run.pipeline,
        "trigger": run.trigger.as_str(),
        "status": run.status.as_str(),
        "attempt": run.attempt,
        "start_date": run.window.start,
        "end_date": run.window.end,
        "rows_written": run.rows_written,
        "warnings": run.warnings,
        "error_message": run.error_message,
        "created_at": ts(Some(run.created_at)),
        "started_at": ts(run.started_at),
        "finished_at": ts(run.finished_at),
        "duration_ms": run.duration_ms,
        "lease_expires_at": ts(run.lease_expires_at.filter(|_| run.status.is_active())),
    });
    match view {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A step as the API shows it. A step still RUNNING in a run that has ended (its process
/// stopped) reads FAILED, like `step_logs_view`.
fn step_view(row: &Row, run: &RunRow) -> Value {
    let metadata = json_column(row, "metadata");
    let orphaned = field(row, "status") == "RUNNING" && !run.status.is_active();
    let (status, error) = if orphaned {
        (
            json!("FAILED"),
            json!(run.error_message.clone().unwrap_or_else(|| "the run ended before this step did".into())),
        )
    } else {
        (field(row, "status"), field(row, "error_message"))
    };
    json!({
        "step_index": field(row, "step_index"),
        "step_id": field(row, "step_id"),
        "ps_type": field(row, "ps_type"),
        "status": status,
        "rows_written": field(row, "rows_processed"),
        "error_message": error,
        "warnings": metadata.get("warnings").cloned().unwrap_or(json!([])),
        "metrics": metadata.get("metrics").cloned().unwrap_or(Value::Null),
        "started_at": field(row, "started_at"),
        "finished_at": field(row, "finished_at"),
        "duration_ms": field(row, "duration_ms"),
    })
}

/// The run a route names (`{org}` is [`OrgAccess`]'s).
#[derive(Debug, Deserialize)]
pub struct RunPath {
    run_id: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/pipelines/runs/{org}/{run_id}",
    tag = "pipelines",
    summary = "One run with its steps, totals and errors.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$"), ("run_id" = String, Path, description = "The run's id.")),
    responses(
        (status = 200, description = "The run.", body = common::http::openapi::JsonObject),
        (status = 404, description = "No such run in this organization.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn get_one(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiPath(RunPath { run_id }): ApiPath<RunPath>,
) -> ApiResult<Json<Value>> {
    let slug = &access.slug;
    let not_found = || ApiError::not_found(format!("no run {run_id} in organization {slug}"));
    if !common::pipeline::runlog::is_run_id(&run_id) {
        return Err(not_found());
    }
    let log = state.pipelines.run_log();
    let Some(run) = log.find(slug.as_str(), &run_id).await? else { return Err(not_found()) };
    let steps = log.steps_of(slug.as_str(), &run_id).await?;
    let mut view = run_view(&run);
    view.insert("parameters".into(), run.parameters.clone());
    let steps: Vec<Value> = steps.iter().map(|s| step_view(s, &run)).collect();
    let metrics: Map<String, Value> = steps
        .iter()
        .filter(|s| !s["metrics"].is_null())
        .map(|s| (s["step_id"].as_str().unwrap_or_default().to_string(), s["metrics"].clone()))
        .collect();
    let count = |status: &str| steps.iter().filter(|s| s["status"] == status).count();
    view.insert(
        "totals".into(),
        json!({
            "rows_written": run.rows_written,
            "steps": steps.len(),
            "steps_succeeded": count("SUCCESS"),
            "steps_failed": count("FAILED"),
            "duration_ms": run.duration_ms,
            "metrics": metrics,
        }),
    );
    view.insert("steps".into(), Value::Array(steps));
    view.insert("data_quality".into(), data_quality(&state, slug.as_str(), &run_id).await);
    Ok(Json(Value::Object(view)))
}

/// The run's data-quality results in force that did not pass (suite expectations and
/// reconciliation alike). A read that fails leaves them out (logged) rather than the run.
async fn data_quality(state: &AppState, org: &str, run_id: &str) -> Value {
    use common::pipeline::dq_results::failed_expectations;
    match failed_expectations(state.warehouse.as_ref(), &state.configs, org, run_id, true).await {
        Ok((failed, total)) => json!({
            "failed_total": total,
            "failed": failed,
            "truncated": failed.len() < total,
        }),
        Err(e) => {
            tracing::warn!(org, run_id, error = %e, "data-quality results cannot be read");
            Value::Null
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/pipelines/runs/{org}",
    tag = "pipelines",
    summary = "The organization's run history, newest first.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$"), ("status" = Option<String>, Query, description = "Only runs in this status."), ("limit" = Option<u32>, Query, description = "At most this many (1..=100)."), ("offset" = Option<u32>, Query, description = "Skip this many.")),
    responses(
        (status = 200, description = "A page of runs.", body = RunsPage),
        (status = 404, description = "No such organization.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    access: OrgAccess,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let slug = &access.slug;
    let Query(query) = query.map_err(|e| ApiError::bad_request(format!("invalid query string: {}", e.body_text())))?;
    if let Some(unknown) = query.keys().find(|k| !matches!(k.as_str(), "status" | "limit" | "offset")) {
        return Err(ApiError::bad_request(format!("unknown query parameter {unknown:?}; use status, limit, offset")));
    }
    let status = match query.get("status") {
        None => None,
        Some(s) => {
            let upper = s.trim().to_ascii_uppercase();
            if !STATUSES.contains(&upper.as_str()) {
                return Err(ApiError::bad_request(format!("status must be one of {}", STATUSES.join(", "))));
            }
            Some(upper)
        }
    };
    let number = |name: &str, default: u32, max: u32| -> ApiResult<u32> {
        match query.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= max && (name != "limit" || *n >= 1))
                .ok_or_else(|| ApiError::bad_request(format!("{name} must be a whole number up to {max}"))),
        }
    };
    let limit = number("limit", DEFAULT_LIMIT, MAX_LIMIT)?;
    let offset = number("offset", 0, 1_000_000)?;
    let rows = state.pipelines.run_log().list(slug.as_str(), status.as_deref(), limit, offset).await?;
    let next_offset = (rows.len() == limit as usize).then_some(offset + limit);
    let runs: Vec<Value> = rows.iter().map(|r| Value::Object(run_view(r))).collect();
    Ok(Json(json!({
        "org_slug": slug,
        "status": status,
        "limit": limit,
        "offset": offset,
        "next_offset": next_offset,
        "runs": runs,
    })))
}

/// The response's schema for the API contract (the handler builds it with `json!`; schemathesis
/// checks real responses against it).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RunsPage {
    org_slug: String,
    status: Option<String>,
    limit: u32,
    offset: u32,
    /// The next page's offset; null on the last page.
    next_offset: Option<u32>,
    runs: Vec<common::http::openapi::JsonObject>,
}
