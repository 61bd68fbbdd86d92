//! Google Cloud's processors: `gcp.bq_etl` reads an organization's Cloud Billing export.

pub mod bq_etl;
pub(crate) mod export_query;
pub(crate) mod reader;

/// The provider these processors belong to (`configs/gcp/`).
pub const PROVIDER: &str = "gcp";
