//! The pipeline engine (DESIGN §8): the catalog of pipeline files under `configs/` (parsed with
//! the rest of the configs, [`crate::configs::pipelines`]), the processor registry it is handed
//! ([`StepRunners`], assembled in the work layer), the one way to start a run
//! ([`Pipelines::submit`]), the executor that runs a pipeline's steps for one window
//! ([`Pipelines::execute`]), the scheduler tick's due windows, and the run log (insert-only
//! events) they write.
//!
//! Lifecycle of a run: a submission writes a PENDING run event and enqueues it
//! ([`crate::queue`]); a delivery claims it (first live claim wins: a duplicate delivery finds it
//! claimed or done), runs the steps in order (step events), and records SUCCESS or FAILED. A run
//! that outlives its lease reads FAILED and its window may run again.

/// Pipeline files are parsed and checked with the rest of `configs/`.
pub use crate::configs::pipelines as catalog;
pub mod dq_results;
pub mod executor;
pub mod local;
pub mod notifier;
pub mod processor;
pub mod runlog;
pub mod schedule;
pub mod submit;

use std::sync::Arc;

pub use catalog::{Catalog, Pipeline, PipelineKey, Schedule, Step};
pub use executor::{Delivery, Execution};
pub use notifier::RunNotifier;
pub use processor::{Processor, StepContext, StepError, StepOutcome, StepRunners};
pub use submit::{Submission, SubmitError, Submitted};

use crate::configs::Configs;
use crate::kms::Kms;
use crate::orgs::OrgDirectory;
use crate::queue::RunQueue;
use crate::settings::Settings;
use crate::warehouse::Warehouse;

/// The parts of the application the pipeline layer works with (DESIGN §1: never the edge's
/// `AppState`). Cheap to clone; the composition root builds one.
#[derive(Clone)]
pub struct Pipelines {
    pub settings: Arc<Settings>,
    pub configs: Arc<Configs>,
    pub warehouse: Arc<dyn Warehouse>,
    pub kms: Arc<dyn Kms>,
    pub orgs: Arc<OrgDirectory>,
    pub queue: Arc<dyn RunQueue>,
    /// What steps run with: the registry assembled in the work layer and handed down.
    pub registry: &'static dyn StepRunners,
    /// Told about every run's end once it is recorded (email, Slack); `None`: nobody is.
    pub notifier: Option<Arc<dyn RunNotifier>>,
}

impl Pipelines {
    /// The per-organization dataset name for this environment.
    pub fn org_dataset(&self, org_slug: &str) -> String {
        self.configs.org_dataset(org_slug, self.settings.environment)
    }

    /// A claimed run's lease (`RUN_LEASE_SECS`, at most a day by the settings' check).
    pub fn run_lease(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.settings.run_lease_secs).unwrap_or(86_400))
    }

    /// The run log of the central dataset.
    pub fn run_log(&self) -> runlog::RunLog<'_> {
        runlog::RunLog::new(self.warehouse.as_ref(), &self.configs)
    }
}
