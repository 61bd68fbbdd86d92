//! Runs one delivered pipeline run: reads the run once, claims it, checks the provider credential
//! once, substitutes variables, runs the steps in order (a step event each), and records the end.
//! A failed step stops the run with its message. While it runs, heartbeats extend its lease
//! (`RUN_LEASE_SECS`), so a live run is never mistaken for a dead one and a dead one is noticed
//! within a lease; a run longer than `RUN_TIMEOUT_SECS` is stopped and FAILED.
//!
//! The answer ([`Execution`]) tells a Pub/Sub push delivery what to reply: done (now or before),
//! still running elsewhere, or failed transiently (the run went back to PENDING for a redelivery).

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate, Utc};
use secrecy::SecretString;
use serde_json::{json, Value};

use super::catalog::{substitute, substitute_value, Pipeline};
use super::processor::{StepContext, StepError};
use super::runlog::{Claim, Finished, NewStep, RunEvent, RunLog, RunLogError, RunRow, RunStatus, StepEnd};
use super::Pipelines;
use crate::credentials::CredentialError;

/// How the run's transient failures are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// In-process queue (`convergence-local`): nothing delivers again, so a transient failure
    /// fails the run (its window is due again at the next tick).
    InProcess,
    /// Pub/Sub push: a transient failure returns the run to PENDING and asks for a redelivery;
    /// the organization's concurrency cap is enforced here (a delivery over it is retried later).
    Push,
}

/// What a delivery did.
#[derive(Debug)]
pub enum Execution {
    /// No run with this id in this organization (a stale message): nothing to do.
    Missing,
    /// This delivery ran it; it ended SUCCESS or FAILED (for good).
    Finished(RunRow),
    /// It had already ended (finished, expired or interrupted) before this delivery.
    AlreadyDone(RunRow),
    /// Another execution holds it under a live lease; the outcome is not known yet.
    Running(RunRow),
    /// The organization already runs as many runs as its plan allows; deliver again later.
    Busy { retry_after_secs: u64 },
    /// It failed transiently and is PENDING again (Delivery::Push only).
    Retry { run: RunRow, reason: String },
}

/// The variables of one run: the built-in ones, then the file's own (which may use them).
pub fn variables(
    pipelines: &Pipelines,
    org_slug: &str,
    pipeline: &Pipeline,
    start: NaiveDate,
    end: NaiveDate,
) -> BTreeMap<String, String> {
    let env = pipelines
        .configs
        .dataset_types
        .environments
        .get(pipelines.settings.environment.as_str())
        .cloned()
        .unwrap_or_else(|| "dev".into());
    let mut vars = BTreeMap::from([
        ("org_slug".to_string(), org_slug.to_string()),
        ("dataset".to_string(), pipelines.org_dataset(org_slug)),
        // The logical date of a run is the last day of its window.
        ("date".to_string(), end.to_string()),
        ("start_date".to_string(), start.to_string()),
        ("end_date".to_string(), end.to_string()),
        ("env".to_string(), env),
    ]);
    let own: Vec<(String, String)> =
        pipeline.variables.iter().map(|(k, v)| (k.clone(), substitute(v, &vars))).collect();
    vars.extend(own);
    vars
}

/// How the steps went.
struct Outcome {
    rows: u64,
    warnings: Vec<String>,
    error: Option<String>,
    /// The error may pass if tried again later.
    transient: bool,
}

impl Outcome {
    fn failed(message: String, transient: bool) -> Outcome {
        Outcome { rows: 0, warnings: Vec::new(), error: Some(message), transient }
    }
}

impl Pipelines {
    /// Executes a delivered run. Errors are only those of the run log itself (the warehouse
    /// cannot record anything): every failure of the run is recorded on it.
    pub async fn execute(&self, org_slug: &str, run_id: &str, delivery: Delivery) -> Result<Execution, RunLogError> {
        // Every line the run writes carries its organization and run id (Cloud Logging labels).
        crate::logging::in_run(org_slug, run_id, self.execute_in_run(org_slug, run_id, delivery)).await
    }

    async fn execute_in_run(&self, org_slug: &str, run_id: &str, delivery: Delivery) -> Result<Execution, RunLogError> {
        let log = RunLog::new(self.warehouse.as_ref(), &self.configs);
        // Deliveries of one run to this instance take turns from reading it to claiming it, so
        // only one of them claims. Across instances the claim chain decides; in the rare case
        // that two claims both read back as winners (their clocks and writes crossed), the run
        // executes twice and its atomic window replace writes the same rows twice.
        let claiming = crate::locks::lock(&format!("run-claim:{org_slug}:{run_id}")).await;
        let Some(run) = log.find(org_slug, run_id).await? else {
            tracing::warn!(org = org_slug, run_id, "delivered run does not exist; dropped");
            return Ok(Execution::Missing);
        };
        let now = Utc::now();
        if !run.is_claimable(now) {
            return Ok(if run.status.is_active() { Execution::Running(run) } else { Execution::AlreadyDone(run) });
        }
        if delivery == Delivery::Push {
            if let Some(retry_after_secs) = self.over_concurrency_cap(&log, &run).await? {
                return Ok(Execution::Busy { retry_after_secs });
            }
        }
        let lease = self.run_lease();
        let delivered_before = run.event != RunEvent::Submitted;
        let run = match log.claim(&run, now, lease).await? {
            Claim::Won(run) => run,
            Claim::Held(other) => {
                tracing::info!(org = org_slug, run_id, "run claimed by another execution; skipped");
                return Ok(if other.status.is_active() {
                    Execution::Running(other)
                } else {
                    Execution::AlreadyDone(other)
                });
            }
        };
        drop(claiming);
        if delivered_before {
            close_abandoned_steps(&log, &run).await;
        }
        let outcome = self.run_with_heartbeats(&log, &run, lease).await;
        if let (Some(reason), true, Delivery::Push) = (&outcome.error, outcome.transient, delivery) {
            log.release(&run, reason, Utc::now(), lease).await?;
            tracing::warn!(org = org_slug, run_id, reason = %reason, "run failed transiently; released for a redelivery");
            let mut pending = run.clone();
            pending.status = RunStatus::Pending;
            pending.error_message = Some(reason.clone());
            self.notify(&pending, false, delivery).await;
            return Ok(Execution::Retry { run, reason: reason.clone() });
        }
        let end = Finished {
            success: outcome.error.is_none(),
            rows_written: outcome.rows,
            warnings: &outcome.warnings,
            error: outcome.error.as_deref(),
            finished_at: Utc::now(),
        };
        let done = record_finish(&log, &run, &end).await?;
        tracing::info!(
            org = org_slug,
            run_id,
            success = end.success,
            rows = end.rows_written,
            duration_ms = done.duration_ms.unwrap_or_default(),
            "run finished"
        );
        self.notify(&done, true, delivery).await;
        Ok(Execution::Finished(done))
    }

    /// Hands a run whose end is recorded to the notifier, on a task of its own so a notifier's
    /// failure (a panic included) cannot touch the outcome. A push delivery waits for it (bounded
    /// by the channels' own delivery budgets) before answering, because Cloud Run gives no CPU
    /// once the request is answered; the in-process queue lets it run on.
    async fn notify(&self, run: &RunRow, finished: bool, delivery: Delivery) {
        let Some(notifier) = self.notifier.clone() else { return };
        let run = run.clone();
        let task = tokio::spawn(async move {
            let (org, id) = (run.org_slug.clone(), run.run_id.clone());
            crate::logging::in_run(&org, &id, notifier.run_ended(&run, finished)).await
        });
        if delivery == Delivery::Push {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "run notification task failed");
            }
        }
    }

    /// Runs the steps while keeping the claim alive: a heartbeat every third of the lease extends
    /// it, so a run may outlast its lease (and Pub/Sub's 600 s ack deadline: a redelivery meanwhile
    /// finds a live lease and is answered 429), while a run whose process died is free to be
    /// claimed again one lease after its last heartbeat. The run is stopped at `RUN_TIMEOUT_SECS`.
    async fn run_with_heartbeats(&self, log: &RunLog<'_>, run: &RunRow, lease: Duration) -> Outcome {
        let budget = std::time::Duration::from_secs(self.settings.run_timeout_secs);
        let every = (lease / 3).to_std().unwrap_or_default().max(std::time::Duration::from_secs(1));
        let steps = self.run_steps(log, run);
        tokio::pin!(steps);
        let deadline = tokio::time::sleep(budget);
        tokio::pin!(deadline);
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                outcome = &mut steps => return outcome,
                () = &mut deadline => {
                    return Outcome::failed(
                        format!("the run took longer than RUN_TIMEOUT_SECS ({} s) and was stopped", budget.as_secs()),
                        false,
                    )
                }
                _ = beat.tick() => {
                    if let Err(e) = log.heartbeat(run, Utc::now(), lease).await {
                        // The run goes on; if its lease lapses meanwhile, a second execution may
                        // start, and the window's atomic replace keeps that harmless.
                        tracing::warn!(run_id = %run.run_id, error = %e, "heartbeat not recorded");
                    }
                }
            }
        }
    }

    /// `Some(seconds to wait)` when the organization already runs as many runs as its plan allows.
    async fn over_concurrency_cap(&self, log: &RunLog<'_>, run: &RunRow) -> Result<Option<u64>, RunLogError> {
        let org = self.orgs.get(self.warehouse.as_ref(), &self.configs, &run.org_slug).await?;
        let Some(max) = org.as_ref().and_then(|o| o.quotas.max_concurrent_runs) else { return Ok(None) };
        let running = log.count_active(&run.org_slug, Some(RunStatus::Running), Some(&run.run_id)).await?;
        Ok((running >= max).then_some(30))
    }

    /// The credential the run's provider calls use, checked once: the integration VALID and its
    /// secret decryptable. `Err` is the message recorded on the run, and whether it is transient.
    async fn credential(&self, run: &RunRow) -> Result<SecretString, (String, bool)> {
        let (org, provider) = (run.org_slug.as_str(), run.provider.as_str());
        let stored = crate::credentials::find_secret(self.warehouse.as_ref(), &self.configs, org, provider).await;
        let cipher = match stored {
            Ok(Some(stored)) if stored.status == "VALID" => stored.ciphertext,
            Ok(Some(stored)) => {
                return Err((
                    format!(
                        "the {provider} integration is {}; validate or set it up again before running",
                        stored.status
                    ),
                    false,
                ))
            }
            Ok(None) => {
                return Err((
                    format!(
                        "no {provider} integration: set it up with POST /api/v1/integrations/{org}/{provider}/setup"
                    ),
                    false,
                ))
            }
            Err(e) => return Err(credential_failure(provider, &e)),
        };
        crate::credentials::decrypt(self.kms.as_ref(), org, provider, &cipher)
            .await
            .map_err(|e| credential_failure(provider, &e))
    }

    /// The steps of one claimed run.
    async fn run_steps(&self, log: &RunLog<'_>, run: &RunRow) -> Outcome {
        let Some(pipeline) = self.configs.pipelines.get(&run.provider, &run.domain, run.pipeline.as_deref()) else {
            return Outcome::failed(
                format!("pipeline {}/{} is no longer in the catalog", run.provider, run.domain),
                false,
            );
        };
        let credential = match self.credential(run).await {
            Ok(secret) => secret,
            Err((message, transient)) => return Outcome::failed(message, transient),
        };
        let (start, end) = (run.window.start, run.window.end);
        let vars = variables(self, &run.org_slug, pipeline, start, end);
        let dataset = self.org_dataset(&run.org_slug);
        let mut outcome = Outcome { rows: 0, warnings: Vec::new(), error: None, transient: false };
        for (index, step) in pipeline.steps.iter().enumerate() {
            let step_log_id = uuid::Uuid::new_v4().to_string();
            let new = NewStep {
                step_log_id: &step_log_id,
                run_id: &run.run_id,
                org_slug: &run.org_slug,
                pipeline_id: &run.pipeline_id,
                step_id: &step.step_id,
                ps_type: &step.ps_type,
                step_index: index,
                started_at: Utc::now(),
            };
            if let Err(e) = log.start_step(&new).await {
                return Outcome::failed(
                    format!("step {}: cannot record its start: {}", step.step_id, log_error(&e)),
                    true,
                );
            }
            let ctx = StepContext {
                warehouse: self.warehouse.as_ref(),
                configs: &self.configs,
                settings: &self.settings,
                org_slug: &run.org_slug,
                dataset: &dataset,
                run_id: &run.run_id,
                pipeline_id: &run.pipeline_id,
                step_id: &step.step_id,
                start_date: start,
                end_date: end,
                variables: &vars,
                credential: Some(&credential),
            };
            let config = substitute_value(&step.config, &vars);
            let result = match self.registry.run(&step.ps_type, &config, &ctx).await {
                Some(result) => result,
                None => Err(StepError::Failed(format!("ps_type {} is not registered", step.ps_type))),
            };
            tracing::info!(org = %run.org_slug, run_id = %run.run_id, step = %step.step_id, ok = result.is_ok(), "step finished");
            let (recorded, failure) = match result {
                Ok(done) => {
                    let metadata = json!({"metrics": done.metrics, "warnings": done.warnings});
                    let end = StepEnd { success: true, rows: done.rows_written, error: None, metadata: &metadata };
                    outcome.rows += done.rows_written;
                    outcome.warnings.extend(done.warnings.iter().map(|w| format!("{}: {w}", step.step_id)));
                    (log.finish_step(&new, &end).await, None)
                }
                Err(e) => {
                    let message = step_error_message(&e);
                    let metadata = json!({"metrics": Value::Null, "warnings": []});
                    let end = StepEnd { success: false, rows: 0, error: Some(&message), metadata: &metadata };
                    (
                        log.finish_step(&new, &end).await,
                        Some((format!("step {} failed: {message}", step.step_id), e.is_transient())),
                    )
                }
            };
            if let Err(e) = recorded {
                return Outcome::failed(
                    format!("step {}: cannot record its end: {}", step.step_id, log_error(&e)),
                    true,
                );
            }
            if let Some((message, transient)) = failure {
                outcome.error = Some(message);
                outcome.transient = transient;
                break;
            }
        }
        outcome
    }
}

/// What a step left RUNNING by an earlier execution of its run says once it is ended.
pub const ABANDONED_STEP: &str =
    "its end was not recorded (the warehouse failed, or the process stopped, while it ran); the run was delivered again";

/// Ends the steps an earlier execution of `run` started and could not record the end of (a
/// run released for a redelivery because its step log could not be written, or whose process
/// stopped). A failure here is logged, not the run's: its own steps' records come next, and
/// fail the run if the warehouse still cannot be written.
async fn close_abandoned_steps(log: &RunLog<'_>, run: &RunRow) {
    match log.close_unfinished_steps(&run.org_slug, &run.run_id, ABANDONED_STEP).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(run_id = %run.run_id, steps = n, "ended steps an earlier execution left unfinished"),
        Err(e) => tracing::warn!(run_id = %run.run_id, error = %e, "could not end steps an earlier execution left"),
    }
}

/// Attempts at recording a run's end while the warehouse is unavailable.
const FINISH_ATTEMPTS: u32 = 3;

/// Records the run's end, trying again briefly while the warehouse is unavailable: an end not
/// recorded leaves the run RUNNING (and its window taken) until its lease lapses. The same
/// event each time (its time fixed in `end`), so a write that landed unseen is not doubled.
async fn record_finish(log: &RunLog<'_>, run: &RunRow, end: &Finished<'_>) -> Result<RunRow, RunLogError> {
    let mut attempt = 1;
    loop {
        match log.finish(run, end).await {
            Err(RunLogError::Warehouse(crate::warehouse::WarehouseError::Unavailable(e)))
                if attempt < FINISH_ATTEMPTS =>
            {
                tracing::warn!(run_id = %run.run_id, attempt, error = %e, "run end not recorded; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(500 * u64::from(attempt))).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// What a run may say about a credential it could not use (never the secret, never KMS detail).
fn credential_failure(provider: &str, e: &CredentialError) -> (String, bool) {
    match e {
        CredentialError::Warehouse(w) => {
            tracing::error!(provider, error = %w, "credential cannot be read");
            (format!("the {provider} credential cannot be read: the warehouse is unavailable"), true)
        }
        CredentialError::Kms(k) => {
            tracing::error!(provider, error = %k, "credential cannot be decrypted");
            let transient = matches!(k, crate::kms::KmsError::Unavailable(_));
            let what = if transient { "KMS is unavailable" } else { "set it up again" };
            (format!("the {provider} credential cannot be decrypted: {what}"), transient)
        }
        CredentialError::Corrupt { .. } => (format!("{e}; set it up again"), false),
    }
}

/// A run-log failure in a run's message: its kind, not the warehouse's text (logged instead).
fn log_error(e: &RunLogError) -> &'static str {
    tracing::error!(error = %e, "run log write failed");
    match e {
        RunLogError::Warehouse(crate::warehouse::WarehouseError::Unavailable(_)) => "the warehouse is unavailable",
        _ => "the warehouse refused the write",
    }
}

/// What a run row may say about a failed step: provider and processor messages as they are
/// (they name the provider and status, never the credential); warehouse errors by kind, their
/// text only in the log.
fn step_error_message(e: &StepError) -> String {
    match e {
        StepError::Warehouse(w) => {
            tracing::error!(error = %w, "step failed in the warehouse");
            match w {
                crate::warehouse::WarehouseError::Unavailable(_) => {
                    "the warehouse was unavailable; the run may be retried".into()
                }
                _ => "the warehouse refused a write or a query; see the service log".into(),
            }
        }
        other => other.to_string(),
    }
}
