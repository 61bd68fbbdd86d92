//! The processors: one [`Processor`](crate::pipeline::Processor) per `ps_type`, the module path
//! mirroring it (`openai.usage` is [`openai::usage::OpenAiUsage`]), all listed in [`REGISTRY`]
//! ([`registry`]), which is handed to the pipeline catalog and the engine. What they share has a
//! file each: column positions (`columns`), their table schemas ([`schemas`]:
//! `configs/{provider}/schemas/<table>.json`, loaded with the configs at start-up), fields of
//! step settings (`step_config`), the window write and read (`window`), data-quality and
//! reconciliation rows (`quality`), what cost steps share (`cost_step`), which cost rows a past-dated price change left stale
//! ([`repricing`], for the pricing routes), keyed-row values
//! (`values`), and what both LLM providers' steps use (`llm`).
//!
//! Invariants every processor keeps:
//! - a window is streamed, never held whole: each page (or batch of rows read back) is priced
//!   or converted and staged as it arrives ([`WindowWriter`]), then the window is swapped in with
//!   one atomic replace of `usage_date BETWEEN @start_date AND @end_date`. A failed provider call
//!   leaves the table as it was, and a rerun replaces the window (no run ids or timestamps in
//!   data rows, and rows stored in the order they are produced, so five reruns leave
//!   byte-identical tables);
//! - money is `rust_decimal` in Rust and NUMERIC in the warehouse (a `Cell::Numeric` in the
//!   records pipelines stage, a decimal string in keyed rows).

pub mod anthropic;
pub mod data_quality;
pub mod gcp;
pub mod openai;

pub(crate) mod columns;
pub(crate) mod cost_step;
pub(crate) mod llm;
pub(crate) mod quality;
pub mod registry;
pub mod repricing;
pub mod schemas;
pub(crate) mod step_config;
pub(crate) mod values;
pub(crate) mod window;

pub(crate) use columns::table_columns;
pub(crate) use cost_step::{
    finish_cost_step, mark_priced, mark_unpriced, set_price_version, CostLayout, CostSummary, Unpriced,
};
pub(crate) use quality::{reconcile, Amounts, DimensionAmounts, Tolerance};
pub use quality::{DqResult, DqStatus, DQ_TABLE};
pub use registry::{Registry, REGISTRY};
#[cfg(test)]
pub(crate) use schemas::shipped_schema;
pub use schemas::table_schema;
pub(crate) use step_config::{decimal_text, default_page_size, default_tolerance, optional_decimal_text, page_size};
pub(crate) use values::{col_date, col_str, date_text, numeric};
pub(crate) use window::{read_window, write_window, WindowWriter};
