//! The run log: pipeline runs and their steps as insert-only event rows in the central dataset
//! (`org_meta_pipeline_runs`, `org_meta_step_logs`), read back through views that pick each run's
//! and each step's latest event (`pipeline_runs_current`, `step_logs_current`).
//!
//! Why events: BigQuery runs at most two mutating DML statements per table at once and 25 DML
//! statements per table per 10 s; a run log kept with UPDATEs would need days of DML time for one
//! day of runs at 10,000 organizations (DESIGN §12, docs/ARCHITECTURE.md). So nothing here ever
//! UPDATEs, MERGEs or DELETEs: every change of a run is one appended row carrying the run's whole
//! state after it (streamed on BigQuery), and "stale" is derived from the lease in the view.
//!
//! Run ids are deterministic (organization, pipeline, window, trigger, attempt), so a second
//! submission of the same run is recognised instead of inserted twice. Claims are events too: the
//! first live claim wins (read back after writing), which only saves work; correctness rests on
//! the window's atomic, idempotent replace.
//!
//! Every statement filters by `org_slug`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::configs::Configs;
use crate::warehouse::{format_timestamp, to_row, Params, Row, Warehouse, WarehouseError, WarehouseResult};

pub const RUNS: &str = "org_meta_pipeline_runs";
pub const STEPS: &str = "org_meta_step_logs";
/// Views over the event tables: the current state of each run and each step.
pub const RUNS_CURRENT: &str = "pipeline_runs_current";
pub const STEPS_CURRENT: &str = "step_logs_current";

/// Statuses a run can read as.
pub const STATUSES: [&str; 4] = ["PENDING", "RUNNING", "SUCCESS", "FAILED"];

#[derive(Debug, thiserror::Error)]
pub enum RunLogError {
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    /// A stored row that cannot be read as a run (a column missing or malformed).
    #[error("run {run_id}: {problem}")]
    Corrupt { run_id: String, problem: String },
}

pub type RunLogResult<T> = Result<T, RunLogError>;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

    pub fn parse(text: &str) -> Option<Trigger> {
        match text {
            "adhoc" => Some(Trigger::Adhoc),
            "scheduled" => Some(Trigger::Scheduled),
            "backfill" => Some(Trigger::Backfill),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Pending,
    Running,
    Success,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "PENDING",
            RunStatus::Running => "RUNNING",
            RunStatus::Success => "SUCCESS",
            RunStatus::Failed => "FAILED",
        }
    }

    pub fn parse(text: &str) -> Option<RunStatus> {
        match text {
            "PENDING" => Some(RunStatus::Pending),
            "RUNNING" => Some(RunStatus::Running),
            "SUCCESS" => Some(RunStatus::Success),
            "FAILED" => Some(RunStatus::Failed),
            _ => None,
        }
    }

    /// PENDING or RUNNING: the run may still write its window.
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Pending | RunStatus::Running)
    }
}

/// What happened to a run (the `event` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEvent {
    /// Accepted: PENDING, waiting for a delivery.
    Submitted,
    /// A delivery took it: RUNNING under a lease.
    Claimed,
    /// The execution holding the claim is alive: its lease is extended (a run may last longer
    /// than a lease, and longer than Pub/Sub's ack deadline).
    Heartbeat,
    /// Failed transiently; PENDING again, for the queue to deliver again.
    Retrying,
    /// Ended: SUCCESS or FAILED.
    Finished,
    /// Its lease passed without a finish (appended by the tick): FAILED, its window due again.
    Expired,
    /// Its process stopped (appended by `convergence-local` at start-up): FAILED.
    Interrupted,
}

impl RunEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            RunEvent::Submitted => "submitted",
            RunEvent::Claimed => "claimed",
            RunEvent::Heartbeat => "heartbeat",
            RunEvent::Retrying => "retrying",
            RunEvent::Finished => "finished",
            RunEvent::Expired => "expired",
            RunEvent::Interrupted => "interrupted",
        }
    }

    /// The event of a stored row. Rows written before run events existed have none: an ended
    /// one reads as finished, one still PENDING or RUNNING as its submission.
    fn of_row(text: Option<&str>, status: RunStatus) -> RunEvent {
        match text {
            Some("claimed") => RunEvent::Claimed,
            Some("heartbeat") => RunEvent::Heartbeat,
            Some("retrying") => RunEvent::Retrying,
            Some("finished") => RunEvent::Finished,
            Some("expired") => RunEvent::Expired,
            Some("interrupted") => RunEvent::Interrupted,
            _ if status.is_active() => RunEvent::Submitted,
            Some(_) | None => RunEvent::Finished,
        }
    }
}

/// The window of a run, both ends inclusive (UTC days).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl Window {
    pub fn days(&self) -> i64 {
        (self.end - self.start).num_days() + 1
    }

    pub fn overlaps(&self, other: &Window) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

/// A run as it stands (its latest event), parsed once from its row.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub run_id: String,
    pub org_slug: String,
    pub pipeline_id: String,
    pub provider: String,
    pub domain: String,
    /// The pipeline's name inside its domain, for nested pipeline files.
    pub pipeline: Option<String>,
    pub trigger: Trigger,
    pub status: RunStatus,
    pub window: Window,
    /// Which submission of this (organization, pipeline, window, trigger) it is, from 1.
    pub attempt: u32,
    /// Resolved parameters (no secrets).
    pub parameters: Value,
    pub rows_written: u64,
    pub warnings: Vec<String>,
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub event: RunEvent,
    pub event_at: DateTime<Utc>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub claim_id: Option<String>,
}

impl RunRow {
    /// Parses a row of `pipeline_runs_current` (or an event row).
    pub fn from_row(row: &Row) -> RunLogResult<RunRow> {
        let run_id = text(row, "run_id").unwrap_or_default();
        let corrupt = |problem: String| RunLogError::Corrupt { run_id: run_id.clone(), problem };
        let required = |name: &str| text(row, name).ok_or_else(|| corrupt(format!("{name} is missing")));
        let date =
            |name: &str| required(name)?.parse::<NaiveDate>().map_err(|_| corrupt(format!("{name} is not a date")));
        let parameters = json_column(row, "parameters");
        let status = required("status")?;
        let status = RunStatus::parse(&status).ok_or_else(|| corrupt(format!("unknown status {status:?}")))?;
        let trigger = required("trigger")?;
        let created_at = timestamp(row, "created_at").ok_or_else(|| corrupt("created_at is missing".into()))?;
        Ok(RunRow {
            org_slug: required("org_slug")?,
            pipeline_id: required("pipeline_id")?,
            provider: required("provider")?,
            domain: required("domain")?,
            pipeline: parameters.get("pipeline").and_then(Value::as_str).map(str::to_string),
            trigger: Trigger::parse(&trigger).ok_or_else(|| corrupt(format!("unknown trigger {trigger:?}")))?,
            status,
            window: Window { start: date("start_date")?, end: date("end_date")? },
            attempt: parameters.get("attempt").and_then(Value::as_u64).and_then(|a| u32::try_from(a).ok()).unwrap_or(1),
            rows_written: row.get("rows_written").and_then(Value::as_u64).unwrap_or(0),
            warnings: match row.get("warnings") {
                Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
                _ => Vec::new(),
            },
            error_message: text(row, "error_message"),
            started_at: timestamp(row, "started_at"),
            finished_at: timestamp(row, "finished_at"),
            duration_ms: row.get("duration_ms").and_then(Value::as_i64),
            event: RunEvent::of_row(text(row, "event").as_deref(), status),
            event_at: timestamp(row, "event_at").unwrap_or(created_at),
            lease_expires_at: timestamp(row, "lease_expires_at"),
            claim_id: text(row, "claim_id"),
            parameters,
            created_at,
            run_id,
        })
    }

    /// Whether a delivery may claim the run now: it waits (submitted, or released after a
    /// transient failure), or its claim's lease passed without a finish (the process running it
    /// died). A run that finished, expired or was interrupted is never run again under its id;
    /// its window is submitted anew instead.
    pub fn is_claimable(&self, now: DateTime<Utc>) -> bool {
        match self.event {
            // Waiting, even past its lease (the view then reads it FAILED): a late delivery still
            // runs it, unless the tick recorded it expired and submitted its window again.
            RunEvent::Submitted | RunEvent::Retrying => true,
            RunEvent::Claimed | RunEvent::Heartbeat => self.lease_expires_at.is_some_and(|l| l < now),
            RunEvent::Finished | RunEvent::Expired | RunEvent::Interrupted => false,
        }
    }

    /// Ends a run that never started or whose process is gone: FAILED with `message` as `event`
    /// (`Finished` for a refused submission, `Expired`, `Interrupted`).
    pub fn failed(&self, event: RunEvent, message: &str, now: DateTime<Utc>) -> RunRow {
        let mut failed = self.clone();
        failed.status = RunStatus::Failed;
        failed.error_message = Some(message.to_string());
        failed.finished_at = Some(now);
        failed.duration_ms = self.started_at.map(|s| (now - s).num_milliseconds().max(0));
        failed.event = event;
        failed.event_at = now;
        failed.lease_expires_at = None;
        failed
    }

    /// The event row recording this state, as `event` at `at`.
    fn event_row(&self, event: RunEvent, at: DateTime<Utc>) -> Row {
        let ts = |t: &Option<DateTime<Utc>>| t.as_ref().map(format_timestamp);
        to_row(json!({
            "run_id": self.run_id,
            "org_slug": self.org_slug,
            "pipeline_id": self.pipeline_id,
            "provider": self.provider,
            "domain": self.domain,
            "trigger": self.trigger.as_str(),
            "status": self.status.as_str(),
            "start_date": self.window.start.to_string(),
            "end_date": self.window.end.to_string(),
            "parameters": self.parameters.to_string(),
            "rows_written": self.rows_written,
            "error_message": self.error_message,
            "warnings": self.warnings,
            "started_at": ts(&self.started_at),
            "finished_at": ts(&self.finished_at),
            "duration_ms": self.duration_ms,
            "created_at": format_timestamp(&self.created_at),
            "event": event.as_str(),
            "event_id": event_id(&self.run_id, event, at, self.claim_id.as_deref()),
            "event_at": format_timestamp(&at),
            "lease_expires_at": ts(&self.lease_expires_at),
            "claim_id": self.claim_id,
        }))
    }
}

/// A stable id per event: a retried append of the same event carries the same insert id. A
/// submission has one per run (two submitters of one run write one row on BigQuery).
fn event_id(run_id: &str, event: RunEvent, at: DateTime<Utc>, claim: Option<&str>) -> String {
    match (event, claim) {
        (RunEvent::Submitted, _) => format!("{run_id}:submitted"),
        (RunEvent::Claimed, Some(claim)) => format!("{run_id}:claimed:{claim}"),
        (RunEvent::Heartbeat, Some(claim)) => format!("{run_id}:heartbeat:{claim}:{}", at.timestamp_micros()),
        _ => format!("{run_id}:{}:{}", event.as_str(), at.timestamp_micros()),
    }
}

/// The deterministic id of a run: the same (organization, pipeline, window, trigger, attempt)
/// always gives the same id, so a repeated submission (two ticks, a retried request) is the same
/// run. Shaped like a UUID (32 hex digits of SHA-256).
pub fn run_id(org_slug: &str, pipeline_id: &str, window: Window, trigger: Trigger, attempt: u32) -> String {
    let key = format!("{org_slug}\n{pipeline_id}\n{}\n{}\n{}\n{attempt}", window.start, window.end, trigger.as_str());
    let hex = hex::encode(Sha256::digest(key.as_bytes()));
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// Whether `text` can be a run id: what [`run_id`] makes (and the random ids of older runs):
/// hex digits and dashes, at most 64. Checked before a delivered or requested id reaches a query.
pub fn is_run_id(text: &str) -> bool {
    !text.is_empty() && text.len() <= 64 && text.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// A run about to be submitted.
pub struct NewRun<'a> {
    pub org_slug: &'a str,
    pub pipeline_id: &'a str,
    pub provider: &'a str,
    pub domain: &'a str,
    pub pipeline: Option<&'a str>,
    pub file: &'a str,
    pub trigger: Trigger,
    pub window: Window,
    pub attempt: u32,
}

impl NewRun<'_> {
    /// The PENDING run this submission writes. It waits at most `lease` or an hour, whichever is
    /// longer, for a delivery (a queue backlog or an organization at its concurrency cap delays
    /// deliveries); after that it reads FAILED and its window is due again.
    pub fn pending(&self, now: DateTime<Utc>, lease: Duration) -> RunRow {
        let lease = lease.max(Duration::hours(1));
        let parameters = json!({
            "pipeline": self.pipeline,
            "file": self.file,
            "start_date": self.window.start.to_string(),
            "end_date": self.window.end.to_string(),
            "days": self.window.days(),
            "attempt": self.attempt,
        });
        RunRow {
            run_id: run_id(self.org_slug, self.pipeline_id, self.window, self.trigger, self.attempt),
            org_slug: self.org_slug.to_string(),
            pipeline_id: self.pipeline_id.to_string(),
            provider: self.provider.to_string(),
            domain: self.domain.to_string(),
            pipeline: self.pipeline.map(str::to_string),
            trigger: self.trigger,
            status: RunStatus::Pending,
            window: self.window,
            attempt: self.attempt,
            parameters,
            rows_written: 0,
            warnings: Vec::new(),
            error_message: None,
            created_at: now,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            event: RunEvent::Submitted,
            event_at: now,
            lease_expires_at: Some(now + lease),
            claim_id: None,
        }
    }
}

/// How a run ended.
pub struct Finished<'a> {
    pub success: bool,
    pub rows_written: u64,
    pub warnings: &'a [String],
    pub error: Option<&'a str>,
    pub finished_at: DateTime<Utc>,
}

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This execution owns the run until the lease in the returned row.
    Won(RunRow),
    /// Another execution holds a live claim (or took it first).
    Held(RunRow),
}

/// The run log of one warehouse's central dataset. Small and borrowed: build one where needed.
#[derive(Clone, Copy)]
pub struct RunLog<'a> {
    warehouse: &'a dyn Warehouse,
    configs: &'a Configs,
}

impl<'a> RunLog<'a> {
    pub fn new(warehouse: &'a dyn Warehouse, configs: &'a Configs) -> RunLog<'a> {
        RunLog { warehouse, configs }
    }

    fn central(&self, name: &str) -> WarehouseResult<String> {
        self.warehouse.table_ref(self.configs.central_dataset(), name)
    }

    /// Appends event rows (each with its `event_id`) to a central event table.
    async fn append(&self, table: &str, rows: &[Row]) -> RunLogResult<()> {
        let schema = self.configs.central_table(table);
        self.warehouse.append_rows(self.configs.central_dataset(), schema, "event_id", rows).await?;
        Ok(())
    }

    /// Appends run states as events (each its `event` at its `event_at`), in one statement
    /// however many: submissions and expiries of a tick, a refused enqueue, an interruption.
    pub async fn append_events(&self, runs: &[RunRow]) -> RunLogResult<()> {
        if runs.is_empty() {
            return Ok(());
        }
        let rows: Vec<Row> = runs.iter().map(|run| run.event_row(run.event, run.event_at)).collect();
        self.append(RUNS, &rows).await
    }

    /// The run as it stands, if it exists.
    pub async fn find(&self, org_slug: &str, run_id: &str) -> RunLogResult<Option<RunRow>> {
        let sql =
            format!("SELECT * FROM {} WHERE org_slug = @org_slug AND run_id = @run_id", self.central(RUNS_CURRENT)?);
        let params = Params::new().bind("org_slug", org_slug).bind("run_id", run_id);
        match self.warehouse.query(&sql, &params).await?.first() {
            Some(row) => Ok(Some(RunRow::from_row(row)?)),
            None => Ok(None),
        }
    }

    /// The organization's runs of any of `pipeline_ids` still PENDING or RUNNING (lease alive)
    /// whose window overlaps `window`, oldest first.
    pub async fn active_overlapping(
        &self,
        org_slug: &str,
        pipeline_ids: &[String],
        window: Window,
    ) -> RunLogResult<Vec<RunRow>> {
        if pipeline_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut params =
            Params::new().bind("org_slug", org_slug).bind("start_date", window.start).bind("end_date", window.end);
        let mut names = Vec::new();
        for (i, id) in pipeline_ids.iter().enumerate() {
            names.push(format!("@pipeline_id{i}"));
            params = params.bind(&format!("pipeline_id{i}"), id.as_str());
        }
        let sql = format!(
            "SELECT * FROM {} WHERE org_slug = @org_slug AND pipeline_id IN ({}) \
             AND status IN ('PENDING', 'RUNNING') AND start_date <= @end_date AND end_date >= @start_date \
             ORDER BY created_at, run_id",
            self.central(RUNS_CURRENT)?,
            names.join(", ")
        );
        self.rows(&sql, &params).await
    }

    /// The latest attempt of (organization, pipeline, window, trigger): what the next
    /// submission's attempt follows.
    pub async fn latest_attempt(
        &self,
        org_slug: &str,
        pipeline_id: &str,
        window: Window,
        trigger: Trigger,
    ) -> RunLogResult<Option<RunRow>> {
        let sql = format!(
            "SELECT * FROM {} WHERE org_slug = @org_slug AND pipeline_id = @pipeline_id AND trigger = @trigger \
             AND start_date = @start_date AND end_date = @end_date ORDER BY created_at DESC, run_id",
            self.central(RUNS_CURRENT)?
        );
        let params = Params::new()
            .bind("org_slug", org_slug)
            .bind("pipeline_id", pipeline_id)
            .bind("trigger", trigger.as_str())
            .bind("start_date", window.start)
            .bind("end_date", window.end);
        let runs = self.rows(&sql, &params).await?;
        Ok(runs.into_iter().max_by_key(|r| r.attempt))
    }

    /// Runs of the organization still PENDING or RUNNING (lease alive), except `except`.
    pub async fn count_active(
        &self,
        org_slug: &str,
        status: Option<RunStatus>,
        except: Option<&str>,
    ) -> RunLogResult<i64> {
        let statuses = match status {
            Some(s) => format!("'{}'", s.as_str()),
            None => "'PENDING', 'RUNNING'".to_string(),
        };
        let sql = format!(
            "SELECT COUNT(*) AS n FROM {} WHERE org_slug = @org_slug AND status IN ({statuses}) AND run_id <> @except",
            self.central(RUNS_CURRENT)?
        );
        let params = Params::new().bind("org_slug", org_slug).bind("except", except.unwrap_or(""));
        self.count(&sql, params).await
    }

    /// Runs of the organization submitted at or after `since`, scheduled runs left out (they do
    /// not count against the plan's run quotas).
    pub async fn count_requested_since(&self, org_slug: &str, since: DateTime<Utc>) -> RunLogResult<i64> {
        let sql = format!(
            "SELECT COUNT(*) AS n FROM {} WHERE org_slug = @org_slug AND created_at >= @since AND trigger <> 'scheduled'",
            self.central(RUNS_CURRENT)?
        );
        self.count(&sql, Params::new().bind("org_slug", org_slug).bind("since", since)).await
    }

    async fn count(&self, sql: &str, params: Params) -> RunLogResult<i64> {
        let rows = self.warehouse.query(sql, &params).await?;
        Ok(rows.first().and_then(|r| r.get("n")).and_then(Value::as_i64).unwrap_or(0))
    }

    async fn rows(&self, sql: &str, params: &Params) -> RunLogResult<Vec<RunRow>> {
        self.warehouse.query(sql, params).await?.iter().map(RunRow::from_row).collect()
    }

    /// Records a submission (PENDING). The caller checked that the run does not exist yet; if
    /// it appeared meanwhile, the same event id keeps it one run on BigQuery, and the view reads
    /// one row per run in any case.
    pub async fn submit(&self, run: &RunRow) -> RunLogResult<()> {
        self.append(RUNS, &[run.event_row(RunEvent::Submitted, run.event_at)]).await
    }

    /// Claims a PENDING run (or one whose lease expired without an expiry event) for this
    /// execution until `now + lease`: appends a claim, then reads every claim back. Claims form a
    /// chain: the first claim wins, and a later one takes over only if it was made after the
    /// lease of the one before had passed. Every reader computes the same winner.
    pub async fn claim(&self, run: &RunRow, now: DateTime<Utc>, lease: Duration) -> RunLogResult<Claim> {
        let claim_id = uuid::Uuid::new_v4().simple().to_string();
        let mut claimed = run.clone();
        claimed.status = RunStatus::Running;
        claimed.started_at = Some(now);
        claimed.finished_at = None;
        claimed.error_message = None;
        claimed.event = RunEvent::Claimed;
        claimed.event_at = now;
        claimed.lease_expires_at = Some(now + lease);
        claimed.claim_id = Some(claim_id.clone());
        self.append(RUNS, &[claimed.event_row(RunEvent::Claimed, now)]).await?;
        let sql = format!(
            "SELECT claim_id, event, event_at, lease_expires_at FROM {} WHERE org_slug = @org_slug \
             AND run_id = @run_id AND event IN ('claimed', 'heartbeat', 'retrying')",
            self.central(RUNS)?
        );
        let params = Params::new().bind("org_slug", run.org_slug.as_str()).bind("run_id", run.run_id.as_str());
        let mut claims: Vec<(DateTime<Utc>, String, DateTime<Utc>, bool)> = self
            .warehouse
            .query(&sql, &params)
            .await?
            .iter()
            .filter_map(|r| {
                let released = text(r, "event").as_deref() == Some("retrying");
                Some((timestamp(r, "event_at")?, text(r, "claim_id")?, timestamp(r, "lease_expires_at")?, released))
            })
            .collect();
        claims.sort();
        // The chain: a claim made while the holder's lease runs is void; the holder's own
        // heartbeats extend its lease, and its release (a transient failure, for a redelivery)
        // ends it.
        let mut winner: Option<(String, DateTime<Utc>)> = None;
        for (at, id, lease_end, released) in claims {
            match &mut winner {
                Some((holder, end)) if *holder == id && released => *end = (*end).min(at),
                Some((holder, end)) if *holder == id => *end = (*end).max(lease_end),
                Some((_, end)) if at <= *end => {}
                _ if released => {}
                _ => winner = Some((id, lease_end)),
            }
        }
        match winner {
            Some((id, _)) if id == claim_id => Ok(Claim::Won(claimed)),
            _ => Ok(Claim::Held(self.find(&run.org_slug, &run.run_id).await?.unwrap_or(claimed))),
        }
    }

    /// Extends the lease of a run this execution holds (`run` is its claimed state).
    pub async fn heartbeat(&self, run: &RunRow, now: DateTime<Utc>, lease: Duration) -> RunLogResult<()> {
        let mut alive = run.clone();
        alive.event = RunEvent::Heartbeat;
        alive.event_at = now;
        alive.lease_expires_at = Some(now + lease);
        self.append(RUNS, &[alive.event_row(RunEvent::Heartbeat, now)]).await
    }

    /// RUNNING → SUCCESS | FAILED. Always appended: a finish after an expiry is the later event,
    /// and the run then reads as finished.
    pub async fn finish(&self, run: &RunRow, end: &Finished<'_>) -> RunLogResult<RunRow> {
        let mut done = run.clone();
        done.status = if end.success { RunStatus::Success } else { RunStatus::Failed };
        done.rows_written = end.rows_written;
        done.warnings = end.warnings.to_vec();
        done.error_message = end.error.map(str::to_string);
        done.finished_at = Some(end.finished_at);
        done.duration_ms = run.started_at.map(|s| (end.finished_at - s).num_milliseconds().max(0));
        done.event = RunEvent::Finished;
        done.event_at = end.finished_at;
        done.lease_expires_at = None;
        self.append(RUNS, &[done.event_row(RunEvent::Finished, end.finished_at)]).await?;
        Ok(done)
    }

    /// Returns a claimed run to PENDING after a transient failure, so a redelivery may run it
    /// again (its lease restarts: a run nobody delivers again still ends FAILED).
    pub async fn release(&self, run: &RunRow, reason: &str, now: DateTime<Utc>, lease: Duration) -> RunLogResult<()> {
        let mut pending = run.clone();
        pending.status = RunStatus::Pending;
        pending.error_message = Some(reason.to_string());
        pending.event = RunEvent::Retrying;
        pending.event_at = now;
        pending.lease_expires_at = Some(now + lease);
        // The releasing claim's id stays on the event: it ends that claim in the claim chain
        // (`claim`), so a redelivery may claim the run at once, not one lease later.
        pending.claim_id = run.claim_id.clone();
        self.append(RUNS, &[pending.event_row(RunEvent::Retrying, now)]).await
    }

    /// Runs of every organization whose latest event leaves them unfinished (submitted, claimed,
    /// heartbeat or retrying), lease alive or not: what `convergence-local` recovers at start-up.
    pub async fn unfinished(&self) -> RunLogResult<Vec<RunRow>> {
        let sql = format!(
            "SELECT * FROM {} WHERE event IN ('submitted', 'claimed', 'heartbeat', 'retrying') \
             OR (event IS NULL AND status IN ('PENDING', 'RUNNING')) ORDER BY created_at, run_id",
            self.central(RUNS_CURRENT)?
        );
        self.rows(&sql, &Params::new()).await
    }

    /// The current step rows of a run, in step order.
    pub async fn steps_of(&self, org_slug: &str, run_id: &str) -> RunLogResult<Vec<Row>> {
        let sql = format!(
            "SELECT * FROM {} WHERE org_slug = @org_slug AND run_id = @run_id ORDER BY step_index, started_at",
            self.central(STEPS_CURRENT)?
        );
        Ok(self.warehouse.query(&sql, &Params::new().bind("org_slug", org_slug).bind("run_id", run_id)).await?)
    }

    /// A page of the organization's runs, newest first, optionally of one status.
    pub async fn list(
        &self,
        org_slug: &str,
        status: Option<&str>,
        limit: u32,
        offset: u32,
    ) -> RunLogResult<Vec<RunRow>> {
        let filter = if status.is_some() { " AND status = @status" } else { "" };
        let sql = format!(
            "SELECT * FROM {} WHERE org_slug = @org_slug{filter} ORDER BY created_at DESC, run_id DESC \
             LIMIT @limit OFFSET @offset",
            self.central(RUNS_CURRENT)?
        );
        let mut params =
            Params::new().bind("org_slug", org_slug).bind("limit", i64::from(limit)).bind("offset", i64::from(offset));
        if let Some(s) = status {
            params = params.bind("status", s);
        }
        self.rows(&sql, &params).await
    }

    /// Ends the steps of a run that an earlier execution started and never recorded the end of
    /// (the warehouse failed at that moment, or the process stopped): FAILED with `message`, so
    /// no step of the run reads RUNNING forever beside the ones a later execution ran. Returns
    /// how many were ended.
    pub async fn close_unfinished_steps(&self, org_slug: &str, run_id: &str, message: &str) -> RunLogResult<usize> {
        let open: Vec<Row> = self
            .steps_of(org_slug, run_id)
            .await?
            .into_iter()
            .filter(|step| step.get("status").and_then(Value::as_str) == Some("RUNNING"))
            .collect();
        let metadata = json!({"metrics": Value::Null, "warnings": []});
        let end = StepEnd { success: false, rows: 0, error: Some(message), metadata: &metadata };
        for step in &open {
            let field = |name: &str| text(step, name).unwrap_or_default();
            let (step_log_id, pipeline_id, step_id, ps_type) =
                (field("step_log_id"), field("pipeline_id"), field("step_id"), field("ps_type"));
            let new = NewStep {
                step_log_id: &step_log_id,
                run_id,
                org_slug,
                pipeline_id: &pipeline_id,
                step_id: &step_id,
                ps_type: &ps_type,
                step_index: step.get("step_index").and_then(Value::as_u64).unwrap_or(0) as usize,
                started_at: timestamp(step, "started_at").unwrap_or_else(Utc::now),
            };
            self.finish_step(&new, &end).await?;
        }
        Ok(open.len())
    }

    /// Records a step's start (RUNNING).
    pub async fn start_step(&self, step: &NewStep<'_>) -> RunLogResult<()> {
        let row = step_row(step, "RUNNING", None, &BTreeMap::new(), step.started_at);
        self.append(STEPS, &[row]).await
    }

    /// Records a step's end: SUCCESS | FAILED with rows, error, timing and metadata
    /// (`{"metrics", "warnings"}`), as a second row of its step_log_id.
    pub async fn finish_step(&self, step: &NewStep<'_>, end: &StepEnd<'_>) -> RunLogResult<()> {
        let now = Utc::now();
        let mut extra = BTreeMap::new();
        extra.insert("rows_processed", json!(end.rows));
        extra.insert("error_message", json!(end.error));
        extra.insert("finished_at", json!(format_timestamp(&now)));
        extra.insert("duration_ms", json!((now - step.started_at).num_milliseconds().max(0)));
        extra.insert("metadata", json!(end.metadata.to_string()));
        let row = step_row(step, if end.success { "SUCCESS" } else { "FAILED" }, end.error, &extra, now);
        self.append(STEPS, &[row]).await
    }
}

/// A step of a run.
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

/// How a step ended.
pub struct StepEnd<'a> {
    pub success: bool,
    pub rows: u64,
    pub error: Option<&'a str>,
    pub metadata: &'a Value,
}

fn step_row(
    step: &NewStep<'_>,
    status: &str,
    error: Option<&str>,
    extra: &BTreeMap<&str, Value>,
    at: DateTime<Utc>,
) -> Row {
    let mut row = to_row(json!({
        "step_log_id": step.step_log_id,
        "run_id": step.run_id,
        "org_slug": step.org_slug,
        "pipeline_id": step.pipeline_id,
        "step_id": step.step_id,
        "ps_type": step.ps_type,
        "step_index": step.step_index,
        "status": status,
        "error_message": error,
        "started_at": format_timestamp(&step.started_at),
        "created_at": format_timestamp(&at),
        "event_id": format!("{}:{status}", step.step_log_id),
    }));
    for (k, v) in extra {
        row.insert((*k).to_string(), v.clone());
    }
    row
}

fn text(row: &Row, name: &str) -> Option<String> {
    row.get(name).and_then(Value::as_str).map(str::to_string)
}

/// A TIMESTAMP column (canonical RFC 3339 text).
pub fn timestamp(row: &Row, name: &str) -> Option<DateTime<Utc>> {
    row.get(name)
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// A JSON column as JSON (stored as a JSON document in a string).
pub fn json_column(row: &Row, name: &str) -> Value {
    match row.get(name) {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        Some(other) => other.clone(),
        None => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: &str) -> NaiveDate {
        d.parse().unwrap()
    }

    #[test]
    fn run_ids_are_deterministic_and_distinct_per_key() {
        let w = Window { start: day("2026-11-01"), end: day("2026-11-07") };
        let a = run_id("acme", "acme-openai-usage-cost", w, Trigger::Scheduled, 1);
        assert_eq!(a, run_id("acme", "acme-openai-usage-cost", w, Trigger::Scheduled, 1));
        assert_eq!(a.len(), 36);
        assert!(is_run_id(&a));
        assert!(!is_run_id("") && !is_run_id("'; DROP") && !is_run_id(&"a".repeat(65)));
        let others = [
            run_id("acme2", "acme-openai-usage-cost", w, Trigger::Scheduled, 1),
            run_id("acme", "acme-anthropic-usage-cost", w, Trigger::Scheduled, 1),
            run_id(
                "acme",
                "acme-openai-usage-cost",
                Window { start: w.start, end: day("2026-11-06") },
                Trigger::Scheduled,
                1,
            ),
            run_id("acme", "acme-openai-usage-cost", w, Trigger::Adhoc, 1),
            run_id("acme", "acme-openai-usage-cost", w, Trigger::Scheduled, 2),
        ];
        for other in others {
            assert_ne!(a, other);
        }
    }

    #[test]
    fn a_run_row_round_trips_through_its_event_row() {
        let now = Utc::now();
        let new = NewRun {
            org_slug: "acme",
            pipeline_id: "acme-openai-usage-cost",
            provider: "openai",
            domain: "usage_cost",
            pipeline: None,
            file: "openai/usage_cost.yml",
            trigger: Trigger::Adhoc,
            window: Window { start: day("2026-11-01"), end: day("2026-11-02") },
            attempt: 3,
        };
        let run = new.pending(now, Duration::seconds(60));
        let row = run.event_row(RunEvent::Submitted, now);
        let back = RunRow::from_row(&row).unwrap();
        assert_eq!(back.attempt, 3);
        assert_eq!(back.window, run.window);
        assert_eq!(back.status, RunStatus::Pending);
        assert_eq!(
            back.lease_expires_at.map(|t| t.timestamp_micros()),
            run.lease_expires_at.map(|t| t.timestamp_micros())
        );
        let mut broken = row.clone();
        broken.insert("status".into(), json!("LOST"));
        assert!(matches!(RunRow::from_row(&broken), Err(RunLogError::Corrupt { .. })));
    }
}
