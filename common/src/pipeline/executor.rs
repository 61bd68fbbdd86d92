//! Runs one pipeline run: claims it, loads the provider credential, substitutes variables, runs
//! the steps in order (a step row each), and finishes the run row. A failed step stops the run
//! with its message. A run that outlives its lease (`RUN_LEASE_SECS`) is stopped and FAILED, so a
//! live run is never mistaken for a dead one.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use serde_json::{json, Value};

use super::catalog::{substitute, substitute_value, Pipeline};
use super::processor::{StepContext, StepError};
use super::registry;
use super::runlog::{self, Finished, NewStep};
use crate::app::AppState;
use crate::queue::RunRequest;
use crate::warehouse::Row;

/// The variables of one run: the built-in ones, then the file's own (which may use them).
pub fn variables(
    state: &AppState,
    org_slug: &str,
    pipeline: &Pipeline,
    start: NaiveDate,
    end: NaiveDate,
) -> BTreeMap<String, String> {
    let env = state
        .configs
        .dataset_types
        .environments
        .get(state.settings.environment.as_str())
        .cloned()
        .unwrap_or_else(|| "dev".into());
    let mut vars = BTreeMap::from([
        ("org_slug".to_string(), org_slug.to_string()),
        ("dataset".to_string(), state.org_dataset(org_slug)),
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

/// Executes a delivered run. Never panics on bad data: every failure ends in the run row.
pub async fn execute(state: AppState, request: RunRequest) {
    if let Err(e) = execute_inner(&state, &request).await {
        tracing::error!(org = %request.org_slug, run_id = %request.run_id, error = %e, "run could not be recorded");
        let _ = runlog::fail_pending(&state, &request.org_slug, &request.run_id, "internal error while running").await;
    }
}

async fn execute_inner(state: &AppState, request: &RunRequest) -> Result<(), crate::warehouse::WarehouseError> {
    let org = request.org_slug.as_str();
    let Some(run) = runlog::find(state, org, &request.run_id).await? else {
        tracing::warn!(org, run_id = %request.run_id, "delivered run does not exist; dropped");
        return Ok(());
    };
    let started_at = Utc::now();
    if !runlog::claim(state, org, &request.run_id, started_at).await? {
        tracing::info!(org, run_id = %request.run_id, "run is not PENDING (duplicate delivery or expired); skipped");
        return Ok(());
    }
    let lease = Duration::from_secs(state.settings.run_lease_secs);
    let outcome = match tokio::time::timeout(lease, run_steps(state, &run)).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(message)) => Outcome { rows: 0, warnings: Vec::new(), error: Some(message) },
        Err(_) => Outcome {
            rows: 0,
            warnings: Vec::new(),
            error: Some(format!("the run took longer than its lease of {} s and was stopped", lease.as_secs())),
        },
    };
    let finished_at = Utc::now();
    let end = Finished {
        success: outcome.error.is_none(),
        rows_written: outcome.rows,
        warnings: &outcome.warnings,
        error: outcome.error.as_deref(),
        started_at,
        finished_at,
    };
    runlog::finish(state, &run, &end).await?;
    tracing::info!(
        org,
        run_id = %request.run_id,
        success = end.success,
        rows = end.rows_written,
        duration_ms = (finished_at - started_at).num_milliseconds(),
        "run finished"
    );
    Ok(())
}

struct Outcome {
    rows: u64,
    warnings: Vec<String>,
    error: Option<String>,
}

/// The steps of one run; `Err` is a message for the run row when the run cannot start at all.
async fn run_steps(state: &AppState, run: &Row) -> Result<Outcome, String> {
    let text = |name: &str| run.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
    let (org, run_id, pipeline_id) = (text("org_slug"), text("run_id"), text("pipeline_id"));
    let (provider, domain) = (text("provider"), text("domain"));
    let parameters = runlog::json_column(run, "parameters");
    let name = parameters.get("pipeline").and_then(Value::as_str);
    let Some(pipeline) = state.configs.pipelines.get(&provider, &domain, name) else {
        return Err(format!("pipeline {provider}/{domain} is no longer in the catalog"));
    };
    let date = |name: &str| {
        NaiveDate::parse_from_str(&text(name), "%Y-%m-%d").map_err(|_| format!("the run has no valid {name}"))
    };
    let (start, end) = (date("start_date")?, date("end_date")?);

    let credential = match crate::credentials::find_secret(state, &org, &provider).await {
        Ok(Some(stored)) if stored.status == "VALID" => {
            match crate::credentials::decrypt(state, &org, &provider, &stored.ciphertext).await {
                Ok(secret) => secret,
                Err(e) => {
                    tracing::error!(org = %org, provider = %provider, error = ?e.cause, "credential cannot be decrypted");
                    return Err(format!("the {provider} credential cannot be decrypted; set it up again"));
                }
            }
        }
        Ok(Some(stored)) => {
            return Err(format!(
                "the {provider} integration is {}; validate or set it up again before running",
                stored.status
            ))
        }
        Ok(None) => {
            return Err(format!(
                "no {provider} integration: set it up with POST /api/v1/integrations/{org}/{provider}/setup"
            ))
        }
        Err(e) => return Err(format!("the {provider} credential cannot be read: {}", e.message)),
    };

    let vars = variables(state, &org, pipeline, start, end);
    let dataset = state.org_dataset(&org);
    let mut outcome = Outcome { rows: 0, warnings: Vec::new(), error: None };
    for (index, step) in pipeline.steps.iter().enumerate() {
        let step_log_id = uuid::Uuid::new_v4().to_string();
        let step_started = Utc::now();
        let new = NewStep {
            step_log_id: &step_log_id,
            run_id: &run_id,
            org_slug: &org,
            pipeline_id: &pipeline_id,
            step_id: &step.step_id,
            ps_type: &step.ps_type,
            step_index: index,
            started_at: step_started,
        };
        runlog::start_step(state, &new).await.map_err(|e| format!("step {}: cannot log: {e}", step.step_id))?;
        let ctx = StepContext {
            state,
            org_slug: &org,
            dataset: &dataset,
            run_id: &run_id,
            pipeline_id: &pipeline_id,
            step_id: &step.step_id,
            start_date: start,
            end_date: end,
            variables: &vars,
            credential: Some(&credential),
        };
        let config = substitute_value(&step.config, &vars);
        let result = match registry::find(&step.ps_type) {
            Some(runner) => runner.run(&config, &ctx).await,
            None => Err(StepError::Failed(format!("ps_type {} is not registered", step.ps_type))),
        };
        tracing::info!(org = %org, run_id = %run_id, step = %step.step_id, ok = result.is_ok(), "step finished");
        match result {
            Ok(done) => {
                let metadata = json!({"metrics": done.metrics, "warnings": done.warnings});
                runlog::finish_step(state, &org, &step_log_id, true, done.rows_written, None, step_started, &metadata)
                    .await
                    .map_err(|e| format!("step {}: cannot log: {e}", step.step_id))?;
                outcome.rows += done.rows_written;
                outcome.warnings.extend(done.warnings.into_iter().map(|w| format!("{}: {w}", step.step_id)));
            }
            Err(e) => {
                let message = step_error_message(&e);
                let metadata = json!({"metrics": Value::Null, "warnings": []});
                runlog::finish_step(state, &org, &step_log_id, false, 0, Some(&message), step_started, &metadata)
                    .await
                    .map_err(|e| format!("step {}: cannot log: {e}", step.step_id))?;
                outcome.error = Some(format!("step {} failed: {message}", step.step_id));
                break;
            }
        }
    }
    Ok(outcome)
}

/// What a run row may say about a failed step: provider and processor messages as they are
/// (they name the provider and status, never the credential); warehouse errors only in the log.
fn step_error_message(e: &StepError) -> String {
    match e {
        StepError::Warehouse(w) => {
            tracing::error!(error = %w, "step failed in the warehouse");
            "the warehouse refused a write or a query; see the service log".into()
        }
        other => other.to_string(),
    }
}
