//! `GET /api/v1/pipelines/runs/{org}` (history) and `GET /api/v1/pipelines/runs/{org}/{run_id}`
//! (one run with its steps), org key or root.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use chrono::NaiveDate;
use common::http::error::ApiResult;
use common::http::{ApiPath, OrgAccess};
use common::pipeline::runlog::{json_column, RunRow, STATUSES};
use common::warehouse::Row;
use common::{ApiError, AppState};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

fn field(row: &Row, name: &str) -> Value {
    row.get(name).cloned().unwrap_or(Value::Null)
}

/// A run as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    run_id: String,
    org_slug: String,
    pipeline_id: String,
    provider: String,
    domain: String,
    /// The pipeline's name inside its domain, for nested pipeline files.
    pipeline: Option<String>,
    #[schema(value_type = String, pattern = "^(adhoc|scheduled|backfill)$")]
    trigger: &'static str,
    #[schema(value_type = String, pattern = "^(PENDING|RUNNING|SUCCESS|FAILED)$")]
    status: &'static str,
    /// Which submission of this (organization, pipeline, window, trigger) it is, from 1.
    attempt: u32,
    /// The window's first day.
    start_date: NaiveDate,
    /// The window's last day.
    end_date: NaiveDate,
    rows_written: u64,
    warnings: Vec<String>,
    error_message: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    started_at: Option<String>,
    #[schema(format = DateTime)]
    finished_at: Option<String>,
    duration_ms: Option<i64>,
    /// While the run is active: when its lease ends unless renewed.
    #[schema(format = DateTime)]
    lease_expires_at: Option<String>,
}

fn run_view(run: &RunRow) -> RunView {
    let ts = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| common::warehouse::format_timestamp(&t));
    RunView {
        run_id: run.run_id.clone(),
        org_slug: run.org_slug.clone(),
        pipeline_id: run.pipeline_id.clone(),
        provider: run.provider.clone(),
        domain: run.domain.clone(),
        pipeline: run.pipeline.clone(),
        trigger: run.trigger.as_str(),
        status: run.status.as_str(),
        attempt: run.attempt,
        start_date: run.window.start,
        end_date: run.window.end,
        rows_written: run.rows_written,
        warnings: run.warnings.clone(),
        error_message: run.error_message.clone(),
        created_at: common::warehouse::format_timestamp(&run.created_at),
        started_at: ts(run.started_at),
        finished_at: ts(run.finished_at),
        duration_ms: run.duration_ms,
        lease_expires_at: ts(run.lease_expires_at.filter(|_| run.status.is_active())),
    }
}

/// A step of a run as the API shows it (its values as the step log holds them).
#[derive(Debug, Serialize, ToSchema)]
pub struct StepView {
    #[schema(value_type = i64)]
    step_index: Value,
    #[schema(value_type = String)]
    step_id: Value,
    /// The processor that ran the step, e.g. `openai.usage`.
    #[schema(value_type = String)]
    ps_type: Value,
    #[schema(value_type = String)]
    status: Value,
    #[schema(value_type = Option<i64>)]
    rows_written: Value,
    #[schema(value_type = Option<String>)]
    error_message: Value,
    #[schema(value_type = Vec<String>)]
    warnings: Value,
    /// What the step measured (its processor's own figures); null when it did not finish.
    #[schema(value_type = Option<HashMap<String, serde_json::Value>>)]
    metrics: Value,
    #[schema(value_type = Option<String>, format = DateTime)]
    started_at: Value,
    #[schema(value_type = Option<String>, format = DateTime)]
    finished_at: Value,
    #[schema(value_type = Option<i64>)]
    duration_ms: Value,
}

/// A step as the API shows it. A step still RUNNING in a run that has ended (its process
/// stopped) reads FAILED, like `step_logs_view`.
fn step_view(row: &Row, run: &RunRow) -> StepView {
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
    StepView {
        step_index: field(row, "step_index"),
        step_id: field(row, "step_id"),
        ps_type: field(row, "ps_type"),
        status,
        rows_written: field(row, "rows_processed"),
        error_message: error,
        warnings: metadata.get("warnings").cloned().unwrap_or(json!([])),
        metrics: metadata.get("metrics").cloned().unwrap_or(Value::Null),
        started_at: field(row, "started_at"),
        finished_at: field(row, "finished_at"),
        duration_ms: field(row, "duration_ms"),
    }
}

/// One run with its steps, totals and data-quality results.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunDetail {
    #[serde(flatten)]
    run: RunView,
    /// The resolved parameters the run was submitted with (never a secret).
    #[schema(value_type = HashMap<String, serde_json::Value>)]
    parameters: Value,
    totals: RunTotals,
    steps: Vec<StepView>,
    /// Null when the results cannot be read (the run is shown without them).
    data_quality: Option<RunDataQuality>,
}

/// A run's totals over its steps.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunTotals {
    rows_written: u64,
    steps: usize,
    steps_succeeded: usize,
    steps_failed: usize,
    duration_ms: Option<i64>,
    /// Each finished step's metrics, by step id.
    #[schema(value_type = HashMap<String, HashMap<String, serde_json::Value>>)]
    metrics: Map<String, Value>,
}

/// The data-quality results in force for a run that did not pass.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunDataQuality {
    /// How many did not pass (more than `failed` lists when `truncated`).
    failed_total: usize,
    #[schema(value_type = Vec<FailedCheck>)]
    failed: Vec<Row>,
    truncated: bool,
}

/// A data-quality result that did not pass, as the results table holds it (columns without a
/// value are left out).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FailedCheck {
    /// The step that checked it; absent for a reconciliation.
    step_id: Option<String>,
    expectation: String,
    suite: Option<String>,
    expectation_type: Option<String>,
    severity: Option<String>,
    #[schema(pattern = "^(WARN|FAIL)$")]
    status: String,
    table_name: String,
    #[schema(format = Date)]
    usage_date: Option<String>,
    dimension: Option<String>,
    #[schema(value_type = Option<common::http::openapi::DecimalText>)]
    observed_value: Option<String>,
    #[schema(value_type = Option<common::http::openapi::DecimalText>)]
    expected_value: Option<String>,
    #[schema(value_type = Option<common::http::openapi::DecimalText>)]
    tolerance: Option<String>,
    expected: Option<String>,
    message: Option<String>,
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
        (status = 200, description = "The run.", body = RunDetail),
        (status = 404, description = "No such run in this organization.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn get_one(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiPath(RunPath { run_id }): ApiPath<RunPath>,
) -> ApiResult<Json<RunDetail>> {
    let slug = &access.slug;
    let not_found = || ApiError::not_found(format!("no run {run_id} in organization {slug}"));
    if !common::pipeline::runlog::is_run_id(&run_id) {
        return Err(not_found());
    }
    let log = state.pipelines.run_log();
    let Some(run) = log.find(slug.as_str(), &run_id).await? else { return Err(not_found()) };
    let steps = log.steps_of(slug.as_str(), &run_id).await?;
    let steps: Vec<StepView> = steps.iter().map(|s| step_view(s, &run)).collect();
    let metrics: Map<String, Value> = steps
        .iter()
        .filter(|s| !s.metrics.is_null())
        .map(|s| (s.step_id.as_str().unwrap_or_default().to_string(), s.metrics.clone()))
        .collect();
    let count = |status: &str| steps.iter().filter(|s| s.status == status).count();
    let totals = RunTotals {
        rows_written: run.rows_written,
        steps: steps.len(),
        steps_succeeded: count("SUCCESS"),
        steps_failed: count("FAILED"),
        duration_ms: run.duration_ms,
        metrics,
    };
    let data_quality = data_quality(&state, slug.as_str(), &run_id).await;
    Ok(Json(RunDetail { run: run_view(&run), parameters: run.parameters.clone(), totals, steps, data_quality }))
}

/// The run's data-quality results in force that did not pass (suite expectations and
/// reconciliation alike). A read that fails leaves them out (logged) rather than the run.
async fn data_quality(state: &AppState, org: &str, run_id: &str) -> Option<RunDataQuality> {
    use common::pipeline::dq_results::failed_expectations;
    match failed_expectations(state.warehouse.as_ref(), &state.configs, org, run_id, true).await {
        Ok((failed, total)) => Some(RunDataQuality { failed_total: total, truncated: failed.len() < total, failed }),
        Err(e) => {
            tracing::warn!(org, run_id, error = %e, "data-quality results cannot be read");
            None
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
) -> ApiResult<Json<RunsPage>> {
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
    let runs: Vec<RunView> = rows.iter().map(run_view).collect();
    Ok(Json(RunsPage { org_slug: slug.as_str().to_string(), status, limit, offset, next_offset, runs }))
}

/// A page of the organization's runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunsPage {
    org_slug: String,
    status: Option<String>,
    limit: u32,
    offset: u32,
    /// The next page's offset; null on the last page.
    next_offset: Option<u32>,
    runs: Vec<RunView>,
}
