//! Data-quality suites as pipeline steps: `data_quality.validate` evaluates a suite
//! (`configs/data_quality/expectations/<suite>.json`, checked at start-up) inside the warehouse
//! over the run's window and records one `org_meta_dq_results` row per expectation and day;
//! `pipeline::dq_results` reads a run's failed expectations back (run API, notifications).

pub(crate) mod evaluate;
pub mod validate;
