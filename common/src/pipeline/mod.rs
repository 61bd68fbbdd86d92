//! The pipeline engine (DESIGN §8): the catalog of pipeline files under `configs/`, the one
//! registry of processors, the executor that runs a pipeline's steps for one window, and the run
//! and step log rows it writes.
//!
//! Lifecycle of a run: the API writes a PENDING run row and enqueues it ([`crate::queue`]); a
//! delivery claims it (PENDING → RUNNING, once: a duplicate delivery finds nothing to claim),
//! runs the steps in order (a step row each), and finishes it SUCCESS or FAILED. A run that
//! outlives its lease is presumed dead: it is marked FAILED and its window may run again.

pub mod catalog;
pub mod executor;
pub mod processor;
pub mod registry;
pub mod runlog;

pub use catalog::{Catalog, Pipeline, PipelineKey, Schedule, Step};
pub use processor::{Processor, StepContext, StepError, StepOutcome};
