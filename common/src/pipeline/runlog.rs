//! Run rows (`organizations.org_meta_pipeline_runs`) and step rows (`org_meta_step_logs`): what
//! the API reads back and what `pipeline_logs_view` / `step_logs_view` show.
//!
//! Every statement filters by `org_slug`. Status changes are conditional updates (`... AND
//! status = 'PENDING'`), so a duplicate delivery or a late writer cannot move a run backwards.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Value};

use crate::app::AppState;
use crate::warehouse::{format_timestamp, to_row, FieldType, Param, Params, Row, WarehouseResult};

pub const RUNS: &str = "org_meta_pipeline_runs";
pub const STEPS: &str = "org_meta_step_logs";

/// Statuses of a run still going (or presumed so until its lease expires).
pub const ACTIVE: [&str; 2] = ["PENDING", "RUNNING"];
pub const STATUSES: [&str; 4] = ["PENDING", "RUNNING", "SUCCESS", "FAILED"];

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Adhoc,
    Scheduled,
    Backfill,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Adhoc => "adhoc",
            Trigger::Scheduled => "scheduled",
            Trigger::Backfill => "backfill",
        }
    }
}

/// A run about to be written as PENDING.
pub struct NewRun<'a> {
    pub run_id: &'a str,
    pub org_slug: &'a str,
    pub pipeline_id: &'a str,
    pub provider: &'a str,
    pub domain: &'a str,
    pub trigger: Trigger,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    /// Resolved parameters (no secrets).
    pub parameters: &'a Value,
}

fn runs(state: &AppState) -> WarehouseResult<String> {
    state.central_table(RUNS)
}

fn steps(state: &AppState) -> WarehouseResult<String> {
    state.central_table(STEPS)
}

pub async fn insert_pending(state: &AppState, run: &NewRun<'_>) -> WarehouseResult<()> {
    let row = to_row(json!({
        "run_id": run.run_id,
        "org_slug": run.org_slug,
        "pipeline_id": run.pipeline_id,
        "provider": run.provider,
        "domain": run.domain,
        "trigger": run.trigger.as_str(),
        "status": "PENDING",
        "start_date": run.start_date.to_string(),
        "end_date": run.end_date.to_string(),
        "parameters": run.parameters.to_string(),
        "rows_written": 0,
        "warnings": [],
        "created_at": format_timestamp(&Utc::now()),
    }));
    state.warehouse.insert_rows(state.configs.central_dataset(), state.configs.central_table(RUNS), &[row]).await?;
    Ok(())
}

pub async fn find(state: &AppState, org_slug: &str, run_id: &str) -> WarehouseResult<Option<Row>> {
    let sql = format!("SELECT * FROM {} WHERE org_slug = @org_slug AND run_id = @run_id LIMIT 1", runs(state)?);
    let params = Params::new().bind("org_slug", org_slug).bind("run_id", run_id);
    Ok(state.warehouse.query(&sql, &params).await?.into_iter().next())
}

/// Runs of `pipeline_id` still PENDING or RUNNING whose window overlaps `[start, end]`, oldest first.
pub async fn active_overlapping(
    state: &AppState,
    org_slug: &str,
    pipeline_id: &str,
    start: NaiveDate,
    end: NaiveDate,
) -> WarehouseResult<Vec<Row>> {
    let sql = format!(
        "SELECT run_id, status, start_date, end_date, created_at FROM {} \
         WHERE org_slug = @org_slug AND pipeline_id = @pipeline_id AND status IN ('PENDING', 'RUNNING') \
         AND start_date <= @end_date AND end_date >= @start_date ORDER BY created_at",
        runs(state)?
    );
    let params = Params::new()
        .bind("org_slug", org_slug)
        .bind("pipeline_id", pipeline_id)
        .bind("start_date", start)
        .bind("end_date", end);
    state.warehouse.query(&sql, &params).await
}

/// Runs of the organization still PENDING or RUNNING.
pub async fn count_active(state: &AppState, org_slug: &str) -> WarehouseResult<i64> {
    let sql = format!(
        "SELECT COUNT(*) AS n FROM {} WHERE org_slug = @org_slug AND status IN ('PENDING', 'RUNNING')",
        runs(state)?
    );
    count(state, &sql, Params::new().bind("org_slug", org_slug)).await
}

/// Runs of the organization created at or after `since`.
pub async fn count_since(state: &AppState, org_slug: &str, since: DateTime<Utc>) -> WarehouseResult<i64> {
    let sql = format!("SELECT COUNT(*) AS n FROM {} WHERE org_slug = @org_slug AND created_at >= @since", runs(state)?);
    count(state, &sql, Params::new().bind("org_slug", org_slug).bind("since", since)).await
}

async fn count(state: &AppState, sql: &str, params: Params) -> WarehouseResult<i64> {
    let rows = state.warehouse.query(sql, &params).await?;
    Ok(rows.first().and_then(|r| r.get("n")).and_then(Value::as_i64).unwrap_or(0))
}

/// Marks FAILED every run of the organization that outlived its lease: RUNNING since before
/// `cutoff`, or PENDING since before it (its delivery was lost). Their RUNNING steps fail too.
/// Returns the runs marked.
pub async fn expire_stale(
    state: &AppState,
    org_slug: &str,
    cutoff: DateTime<Utc>,
    lease_secs: u64,
) -> WarehouseResult<u64> {
    let stale = "org_slug = @org_slug AND ((status = 'RUNNING' AND started_at < @cutoff) \
                 OR (status = 'PENDING' AND created_at < @cutoff))";
    let params = Params::new().bind("org_slug", org_slug).bind("cutoff", cutoff).bind("now", Utc::now());
    let message = format!("the run stopped reporting: its lease of {lease_secs} s expired; it was marked FAILED and its window may be run again");
    let sql = format!(
        "UPDATE {steps} SET status = 'FAILED', error_message = @message, finished_at = @now \
         WHERE org_slug = @org_slug AND status = 'RUNNING' AND run_id IN (SELECT run_id FROM {runs} WHERE {stale})",
        steps = steps(state)?,
        runs = runs(state)?,
    );
    state.warehouse.execute(&sql, &params.clone().bind("message", message.as_str())).await?;
    let sql = format!(
        "UPDATE {} SET status = 'FAILED', error_message = @message, finished_at = @now WHERE {stale}",
        runs(state)?
    );
    state.warehouse.execute(&sql, &params.bind("message", message.as_str())).await
}

/// PENDING → RUNNING. `false` when the run is not PENDING (a duplicate delivery, or expired).
pub async fn claim(state: &AppState, org_slug: &str, run_id: &str, now: DateTime<Utc>) -> WarehouseResult<bool> {
    let sql = format!(
        "UPDATE {} SET status = 'RUNNING', started_at = @now \
         WHERE org_slug = @org_slug AND run_id = @run_id AND status = 'PENDING'",
        runs(state)?
    );
    let params = Params::new().bind("org_slug", org_slug).bind("run_id", run_id).bind("now", now);
    Ok(state.warehouse.execute(&sql, &params).await? > 0)
}

/// How a run ended.
pub struct Finished<'a> {
    pub success: bool,
    pub rows_written: u64,
    pub warnings: &'a [String],
    pub error: Option<&'a str>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// RUNNING → SUCCESS | FAILED. The row is rewritten whole (one atomic slice replace), because
/// `warnings` is a repeated column an UPDATE cannot bind. A run no longer RUNNING (expired
/// meanwhile) is left as it is; returns whether the row was written.
pub async fn finish(state: &AppState, run: &Row, end: &Finished<'_>) -> WarehouseResult<bool> {
    let org_slug = run.get("org_slug").and_then(Value::as_str).unwrap_or_default();
    let run_id = run.get("run_id").and_then(Value::as_str).unwrap_or_default();
    let Some(mut row) = find(state, org_slug, run_id).await? else { return Ok(false) };
    if row.get("status").and_then(Value::as_str) != Some("RUNNING") {
        return Ok(false);
    }
    let duration_ms = (end.finished_at - end.started_at).num_milliseconds().max(0);
    row.insert("status".into(), json!(if end.success { "SUCCESS" } else { "FAILED" }));
    row.insert("rows_written".into(), json!(end.rows_written));
    row.insert("warnings".into(), json!(end.warnings));
    row.insert("error_message".into(), json!(end.error));
    row.insert("finished_at".into(), json!(format_timestamp(&end.finished_at)));
    row.insert("duration_ms".into(), json!(duration_ms));
    let params = Params::new().bind("org_slug", org_slug).bind("run_id", run_id);
    state
        .warehouse
        .replace_slice(
            state.configs.central_dataset(),
            state.configs.central_table(RUNS),
            "org_slug = @org_slug AND run_id = @run_id",
            &params,
            &[row],
        )
        .await?;
    Ok(true)
}

/// Marks a run that could not be enqueued (or claimed and then refused) FAILED at once.
pub async fn fail_pending(state: &AppState, org_slug: &str, run_id: &str, message: &str) -> WarehouseResult<u64> {
    let sql = format!(
        "UPDATE {} SET status = 'FAILED', error_message = @message, finished_at = @now \
         WHERE org_slug = @org_slug AND run_id = @run_id AND status IN ('PENDING', 'RUNNING')",
        runs(state)?
    );
    let params = Params::new()
        .bind("org_slug", org_slug)
        .bind("run_id", run_id)
        .bind("message", message)
        .bind("now", Utc::now());
    state.warehouse.execute(&sql, &params).await
}

/// A step about to run.
pub struct NewStep<'a> {
    pub step_log_id: &'a str,
    pub run_id: &'a str,
    pub org_slug: &'a str,
    pub pipeline_id: &'a str,
    pub step_id: &'a str,
    pub ps_type: &'a str,
    pub step_index: usize,
    pub started_at: DateTime<Utc>,
}

pub async fn start_step(state: &AppState, step: &NewStep<'_>) -> WarehouseResult<()> {
    let row = to_row(json!({
        "step_log_id": step.step_log_id,
        "run_id": step.run_id,
        "org_slug": step.org_slug,
        "pipeline_id": step.pipeline_id,
        "step_id": step.step_id,
        "ps_type": step.ps_type,
        "step_index": step.step_index,
        "status": "RUNNING",
        "started_at": format_timestamp(&step.started_at),
        "created_at": format_timestamp(&step.started_at),
    }));
    state.warehouse.insert_rows(state.configs.central_dataset(), state.configs.central_table(STEPS), &[row]).await?;
    Ok(())
}

/// RUNNING → SUCCESS | FAILED with rows, error, timing and metadata (`{"metrics", "warnings"}`).
#[allow(clippy::too_many_arguments)]
pub async fn finish_step(
    state: &AppState,
    org_slug: &str,
    step_log_id: &str,
    success: bool,
    rows: u64,
    error: Option<&str>,
    started_at: DateTime<Utc>,
    metadata: &Value,
) -> WarehouseResult<()> {
    let now = Utc::now();
    let sql = format!(
        "UPDATE {} SET status = @status, rows_processed = @rows, error_message = @error, finished_at = @now, \
         duration_ms = @duration_ms, metadata = @metadata \
         WHERE org_slug = @org_slug AND step_log_id = @step_log_id AND status = 'RUNNING'",
        steps(state)?
    );
    let params = Params::new()
        .bind("status", if success { "SUCCESS" } else { "FAILED" })
        .bind("rows", i64::try_from(rows).unwrap_or(i64::MAX))
        .bind("error", error.map_or(Param::Null(FieldType::String), Param::from))
        .bind("now", now)
        .bind("duration_ms", (now - started_at).num_milliseconds().max(0))
        .bind("metadata", Param::Json(metadata.clone()))
        .bind("org_slug", org_slug)
        .bind("step_log_id", step_log_id);
    state.warehouse.execute(&sql, &params).await?;
    Ok(())
}

/// The step rows of a run, in step order.
pub async fn steps_of(state: &AppState, org_slug: &str, run_id: &str) -> WarehouseResult<Vec<Row>> {
    let sql = format!(
        "SELECT * FROM {} WHERE org_slug = @org_slug AND run_id = @run_id ORDER BY step_index, created_at",
        steps(state)?
    );
    state.warehouse.query(&sql, &Params::new().bind("org_slug", org_slug).bind("run_id", run_id)).await
}

/// A page of the organization's runs, newest first, optionally of one status.
pub async fn list(
    state: &AppState,
    org_slug: &str,
    status: Option<&str>,
    limit: u32,
    offset: u32,
) -> WarehouseResult<Vec<Row>> {
    let filter = if status.is_some() { " AND status = @status" } else { "" };
    let sql = format!(
        "SELECT * FROM {} WHERE org_slug = @org_slug{filter} ORDER BY created_at DESC, run_id DESC \
         LIMIT @limit OFFSET @offset",
        runs(state)?
    );
    let mut params =
        Params::new().bind("org_slug", org_slug).bind("limit", i64::from(limit)).bind("offset", i64::from(offset));
    if let Some(s) = status {
        params = params.bind("status", s);
    }
    state.warehouse.query(&sql, &params).await
}

/// A JSON column as JSON (stored as a JSON document in a string).
pub fn json_column(row: &Row, name: &str) -> Value {
    match row.get(name) {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        Some(other) => other.clone(),
        None => Value::Null,
    }
}
