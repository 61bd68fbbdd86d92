//! `data_quality.validate`: a suite evaluated over the run's window. Every result is appended to
//! `org_meta_dq_results` (PASS, WARN or FAIL, with the observed and expected values and a
//! message); then a failed expectation of severity `fail` fails the step (and so the run) naming
//! the expectations, while `warn` ones become the step's warnings. A step with `severity: warn`
//! never fails the run; with `severity: fail` each expectation's own severity decides.

use async_trait::async_trait;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::evaluate::{evaluate, Finding, Scope};
use crate::configs::data_quality::{Severity, Suite, VALIDATE_STEP};
use crate::pipeline::{Processor, StepContext, StepError, StepOutcome};
use crate::processors::values::{date_text, opt_numeric};
use crate::processors::{DqStatus, DQ_TABLE};
use crate::warehouse::{format_timestamp, Row};

/// Settings of a `data_quality.validate` step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The suite: a file stem under `configs/data_quality/expectations/` (checked at start-up).
    pub suite: String,
    /// `warn`: failures are warnings and the run goes on; `fail`: an expectation of severity
    /// `fail` that does not hold fails the step and the run.
    pub severity: Severity,
}

pub struct DataQualityValidate;

/// Failed expectations named in a step's error or warnings; the rest are counted.
const NAMED: usize = 10;

#[async_trait]
impl Processor for DataQualityValidate {
    const TYPE: &'static str = VALIDATE_STEP;
    /// None of its own: the suite names its tables, checked against their schemas when suites
    /// are loaded.
    const TABLES: &'static [&'static str] = &[];
    type Config = Config;

    async fn run(config: &Config, ctx: &StepContext<'_>) -> Result<StepOutcome, StepError> {
        let suite = ctx.configs.dq_suites.get(&config.suite).ok_or_else(|| {
            StepError::Failed(format!("data-quality suite {:?} is not among the loaded suites", config.suite))
        })?;
        let scope = Scope {
            warehouse: ctx.warehouse,
            dataset: ctx.dataset,
            org_slug: ctx.org_slug,
            start: ctx.start_date,
            end: ctx.end_date,
        };
        let findings = evaluate(&scope, suite).await?;
        write_results(ctx, suite, config.severity, &findings).await?;
        let failed = |status: DqStatus| failures(suite, &findings, config.severity, status);
        let (errors, warnings) = (failed(DqStatus::Fail), failed(DqStatus::Warn));
        let count = |s: DqStatus| findings.iter().filter(|f| f.status(config.severity) == s).count();
        let metrics = json!({
            "suite": suite.name,
            "table": suite.table,
            "severity": config.severity.as_str(),
            "expectations": suite.expectations.len(),
            "checks": findings.len(),
            "pass": count(DqStatus::Pass),
            "warn": count(DqStatus::Warn),
            "fail": count(DqStatus::Fail),
            "failed_expectations": errors.iter().chain(&warnings).map(|f| f.json()).collect::<Vec<Value>>(),
        });
        if !errors.is_empty() {
            return Err(StepError::Failed(format!(
                "data-quality suite {} on {}: {} expectation(s) failed: {}",
                suite.name,
                suite.table,
                errors.len(),
                listed(&errors)
            )));
        }
        let warnings =
            warnings.iter().map(|w| format!("data-quality expectation did not hold: {}", w.text())).collect();
        Ok(StepOutcome { rows_written: 0, warnings, metrics })
    }
}

/// An expectation that did not hold, with its failing days.
struct Failure<'f> {
    first: &'f Finding<'f>,
    status: DqStatus,
    failed: usize,
    checked: usize,
}

impl Failure<'_> {
    fn text(&self) -> String {
        let e = self.first.expectation;
        let more = match self.failed {
            1 => String::new(),
            n => format!(" ({n} of {} checks failed; first shown)", self.checked),
        };
        format!("{} ({}) {}{more}", e.name, e.check.type_name(), strip_name(&self.first.message, &e.name))
    }

    fn json(&self) -> Value {
        let e = self.first.expectation;
        json!({
            "expectation": e.name,
            "type": e.check.type_name(),
            "status": self.status.as_str(),
            "failed_checks": self.failed,
            "checks": self.checked,
            "first_failure": self.first.message,
        })
    }
}

fn strip_name<'m>(message: &'m str, name: &str) -> &'m str {
    message.strip_prefix(name).and_then(|m| m.strip_prefix(": ")).map_or(message, |m| m)
}

/// The expectations with at least one finding of `status`, in suite order.
fn failures<'f>(suite: &Suite, findings: &'f [Finding<'f>], step: Severity, status: DqStatus) -> Vec<Failure<'f>> {
    suite
        .expectations
        .iter()
        .filter_map(|e| {
            let checks: Vec<&Finding> = findings.iter().filter(|f| std::ptr::eq(f.expectation, e)).collect();
            let failed: Vec<&Finding> = checks.iter().copied().filter(|f| f.status(step) == status).collect();
            Some(Failure { first: failed.first()?, status, failed: failed.len(), checked: checks.len() })
        })
        .collect()
}

fn listed(failures: &[Failure<'_>]) -> String {
    let mut parts: Vec<String> = failures.iter().take(NAMED).map(Failure::text).collect();
    if failures.len() > NAMED {
        parts.push(format!("and {} more", failures.len() - NAMED));
    }
    parts.join("; ")
}

/// One `org_meta_dq_results` row per finding, appended (central tables take no mutating DML;
/// `dq_results_current` shows the latest step's results of each day).
async fn write_results(
    ctx: &StepContext<'_>,
    suite: &Suite,
    step: Severity,
    findings: &[Finding<'_>],
) -> Result<u64, StepError> {
    let schema = ctx.configs.central_table(DQ_TABLE);
    let now = format_timestamp(&Utc::now());
    let rows: Vec<Row> = findings
        .iter()
        .map(|f| {
            let difference = f.observed.zip(f.expected).map(|(o, e)| o - e);
            crate::warehouse::to_row(json!({
                "dq_id": uuid::Uuid::new_v4().to_string(),
                "run_id": ctx.run_id,
                "org_slug": ctx.org_slug,
                "pipeline_id": ctx.pipeline_id,
                "step_id": ctx.step_id,
                "suite": suite.name,
                "check_name": f.expectation.name,
                "expectation_type": f.expectation.check.type_name(),
                "severity": f.severity(step).as_str(),
                "table_name": suite.table,
                "usage_date": date_text(f.usage_date),
                "dimension": f.dimension,
                "status": f.status(step).as_str(),
                "expected_value": opt_numeric(f.expected),
                "observed_value": opt_numeric(f.observed),
                "difference": opt_numeric(difference),
                "tolerance": opt_numeric(f.tolerance),
                "expected": f.expected_text,
                "message": f.message,
                "details": f.details.to_string(),
                "created_at": now,
            }))
        })
        .collect();
    Ok(ctx.warehouse.append_rows(ctx.configs.central_dataset(), schema, "dq_id", &rows).await?)
}
