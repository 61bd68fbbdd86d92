//! `GET /api/v1/pipelines/runs/{org}` (history) and `GET /api/v1/pipelines/runs/{org}/{run_id}`
//! (one run with its steps), org key or root.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use common::auth::Caller;
use common::domain::OrgSlug;
use common::http::error::ApiResult;
use common::http::ApiPath;
use common::pipeline::runlog::{self, json_column, STATUSES};
use common::warehouse::Row;
use common::{ApiError, AppState};
use serde_json::{json, Map, Value};

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

fn field(row: &Row, name: &str) -> Value {
    row.get(name).cloned().unwrap_or(Value::Null)
}

/// A run row as the API shows it.
fn run_view(row: &Row) -> Map<String, Value> {
    let parameters = json_column(row, "parameters");
    let mut view = Map::new();
    for name in ["run_id", "org_slug", "pipeline_id", "provider", "domain"] {
        view.insert(name.into(), field(row, name));
    }
    view.insert("pipeline".into(), parameters.get("pipeline").cloned().unwrap_or(Value::Null));
    for name in [
        "trigger",
        "status",
        "start_date",
        "end_date",
        "rows_written",
        "warnings",
        "error_message",
        "created_at",
        "started_at",
        "finished_at",
        "duration_ms",
    ] {
        view.insert(name.into(), field(row, name));
    }
    view
}

fn step_view(row: &Row) -> Value {
    let metadata = json_column(row, "metadata");
    json!({
        "step_index": field(row, "step_index"),
        "step_id": field(row, "step_id"),
        "ps_type": field(row, "ps_type"),
        "status": field(row, "status"),
        "rows_written": field(row, "rows_processed"),
        "error_message": field(row, "error_message"),
        "warnings": metadata.get("warnings").cloned().unwrap_or(json!([])),
        "metrics": metadata.get("metrics").cloned().unwrap_or(Value::Null),
        "started_at": field(row, "started_at"),
        "finished_at": field(row, "finished_at"),
        "duration_ms": field(row, "duration_ms"),
    })
}

pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((org, run_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require_org(&org)?;
    let slug = OrgSlug::parse(&org).map_err(ApiError::bad_request)?;
    let not_found = || ApiError::not_found(format!("no run {run_id} in organization {slug}"));
    if run_id.len() > 64 || !run_id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(not_found());
    }
    let Some(row) = runlog::find(&state, slug.as_str(), &run_id).await? else { return Err(not_found()) };
    let steps = runlog::steps_of(&state, slug.as_str(), &run_id).await?;
    let mut view = run_view(&row);
    view.insert("parameters".into(), json_column(&row, "parameters"));
    let steps: Vec<Value> = steps.iter().map(step_view).collect();
    let metrics: Map<String, Value> = steps
        .iter()
        .filter(|s| !s["metrics"].is_null())
        .map(|s| (s["step_id"].as_str().unwrap_or_default().to_string(), s["metrics"].clone()))
        .collect();
    let count = |status: &str| steps.iter().filter(|s| s["status"] == status).count();
    view.insert(
        "totals".into(),
        json!({
            "rows_written": field(&row, "rows_written"),
            "steps": steps.len(),
            "steps_succeeded": count("SUCCESS"),
            "steps_failed": count("FAILED"),
            "duration_ms": field(&row, "duration_ms"),
            "metrics": metrics,
        }),
    );
    view.insert("steps".into(), Value::Array(steps));
    Ok(Json(Value::Object(view)))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(org): ApiPath<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    caller.require_org(&org)?;
    let slug = OrgSlug::parse(&org).map_err(ApiError::bad_request)?;
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
    let rows = runlog::list(&state, slug.as_str(), status.as_deref(), limit, offset).await?;
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
