//! The contract between the pipeline engine and the work it runs.
//!
//! A processor is a type implementing [`Processor`]: a `TYPE` constant (`"openai.usage"`, the
//! `ps_type` of the steps it runs; its module path in the work layer mirrors it), the tables it
//! reads or writes, a typed `Config` parsed and checked when the pipeline file is loaded (unknown
//! keys refused), and `run`, which does one step of one run. Every processor is listed once, in
//! the registry the work layer assembles; it reaches the catalog as [`StepTypes`] and the engine
//! as [`StepRunners`], so the engine knows no processor.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::NaiveDate;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::configs::pipelines::StepTypes;
use crate::configs::Configs;
use crate::settings::Settings;
use crate::warehouse::{Warehouse, WarehouseError};

/// What a step runs with.
pub struct StepContext<'a> {
    pub warehouse: &'a dyn Warehouse,
    pub configs: &'a Configs,
    /// Provider bases, timeouts and limits.
    pub settings: &'a Settings,
    pub org_slug: &'a str,
    /// The organization's dataset (`{org_slug}_{env}`).
    pub dataset: &'a str,
    pub run_id: &'a str,
    pub pipeline_id: &'a str,
    pub step_id: &'a str,
    /// The window, both ends inclusive, UTC days.
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    /// The pipeline's variables after substitution (`org_slug`, `dataset`, `date`, `start_date`,
    /// `end_date`, `env`, and the file's own).
    pub variables: &'a BTreeMap<String, String>,
    /// The decrypted provider credential of this run's integration (never logged).
    pub credential: Option<&'a secrecy::SecretString>,
}

/// What a step did.
#[derive(Debug, Default, Clone)]
pub struct StepOutcome {
    pub rows_written: u64,
    /// Non-fatal findings (e.g. reconciliation beyond tolerance, models missing from the book).
    pub warnings: Vec<String>,
    /// Step-specific figures for the step log and the run result (totals, counts).
    pub metrics: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The provider failed for good (retries exhausted, or a 4xx): names provider and status.
    #[error("{provider} answered {status}: {message}")]
    Provider { provider: String, status: u16, message: String },
    #[error("warehouse: {0}")]
    Warehouse(#[from] WarehouseError),
    #[error("{0}")]
    Failed(String),
}

impl StepError {
    /// Whether trying the same step again later may succeed: the provider was rate-limited or
    /// down (after the step's own retries), or the warehouse was unavailable. A Pub/Sub delivery
    /// of such a run is answered with a retryable status instead of failing the run for good.
    pub fn is_transient(&self) -> bool {
        match self {
            StepError::Provider { status, .. } => matches!(status, 408 | 429 | 500..=599),
            StepError::Warehouse(WarehouseError::Unavailable(_)) => true,
            _ => false,
        }
    }
}

#[async_trait]
pub trait Processor: Send + Sync + 'static {
    /// The `ps_type` this processor runs.
    const TYPE: &'static str;
    /// The tables the processor reads or writes, each defined by
    /// `configs/{provider}/schemas/<table>.json` (`provider`: `TYPE` before the dot). A pipeline
    /// file naming the processor is refused at start-up when one of them has no valid schema.
    const TABLES: &'static [&'static str];
    /// The step's own settings from the pipeline file (everything but `step_id` and `ps_type`).
    type Config: DeserializeOwned + Send + Sync + 'static;

    async fn run(config: &Self::Config, ctx: &StepContext<'_>) -> Result<StepOutcome, StepError>;
}

/// The processor registry as the engine sees it: a step's settings parsed into its
/// processor's `Config` and run, by `ps_type`.
#[async_trait]
pub trait StepRunners: StepTypes + Send + Sync {
    /// Parses `config` into the settings of `ps_type`'s processor and runs the step; `None` when
    /// no processor has this `ps_type`.
    async fn run(
        &self,
        ps_type: &str,
        config: &serde_yaml::Value,
        ctx: &StepContext<'_>,
    ) -> Option<Result<StepOutcome, StepError>>;
}
