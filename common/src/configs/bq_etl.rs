//! `configs/gcp/bq_etl/`: how `gcp.bq_etl` reads an organization's Cloud Billing export
//! (`config.yml`) and the export table's template (`schema_template.json`: the columns the step
//! reads, with their types, and the table the local sandbox generates). Loaded and checked with
//! the other configs at start-up when the `gcp` provider is configured.

use serde::Deserialize;

use super::schema::{FieldType, Mode, TableSchema};

/// `config.yml` directory and files, relative to `configs/`.
pub const DIR: &str = "gcp/bq_etl";
pub const CONFIG_FILE: &str = "gcp/bq_etl/config.yml";
pub const TEMPLATE_FILE: &str = "gcp/bq_etl/schema_template.json";

/// The pseudo-column of an ingestion-time partitioned table (a real column in copies of the
/// export that cannot have pseudo-columns: the DuckDB sandbox, the BigQuery emulator).
pub const PARTITION_TIME: &str = "_PARTITIONTIME";

/// How rows move from the export into the organization's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transfer {
    /// Server-side when the warehouse itself can read the export, else paged.
    Auto,
    /// One statement per day inside the warehouse; fails when the warehouse cannot read it.
    ServerSide,
    /// A query job with the organization's service account, read page by page.
    Paged,
}

/// `configs/gcp/bq_etl/config.yml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BqEtlSettings {
    /// Partitions read for usage day D: `_PARTITIONTIME` in [D, D + late_arrival_days], 0–31.
    pub late_arrival_days: u32,
    pub transfer: Transfer,
    /// Rows per page (paged mode) and per staged batch, 100–100,000.
    pub page_rows: u32,
    /// Sandbox export rows per usage day unless the table id says `-rows<N>`.
    pub sandbox_rows_per_day: u64,
    /// The most rows per day a sandbox table id may ask for.
    pub sandbox_max_rows_per_day: u64,
}

/// Both files, checked.
#[derive(Debug, Clone)]
pub struct BqEtlConfig {
    pub settings: BqEtlSettings,
    /// The export table's template (named `gcp_billing_export_v1_template`).
    pub export_template: TableSchema,
}

/// Top-level columns of the template the step cannot do without: the day filter, the money and
/// the row's identity. Others missing from an organization's export are read as NULL.
pub const REQUIRED_EXPORT_COLUMNS: [&str; 6] =
    ["usage_start_time", "cost", "currency", "export_time", "service", "sku"];

impl BqEtlSettings {
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.late_arrival_days > 31 {
            p.push(format!("late_arrival_days must be between 0 and 31, not {}", self.late_arrival_days));
        }
        if !(100..=100_000).contains(&self.page_rows) {
            p.push(format!("page_rows must be between 100 and 100000, not {}", self.page_rows));
        }
        if self.sandbox_rows_per_day == 0 || self.sandbox_rows_per_day > self.sandbox_max_rows_per_day {
            p.push("sandbox_rows_per_day must be at least 1 and at most sandbox_max_rows_per_day".into());
        }
        if self.sandbox_max_rows_per_day > 50_000_000 {
            p.push("sandbox_max_rows_per_day must be at most 50000000".into());
        }
        p
    }
}

/// What the template must hold for the step's query: every column it reads, with the type it
/// reads it as (a RECORD's sub-fields by name).
pub fn template_problems(t: &TableSchema) -> Vec<String> {
    let mut p = Vec::new();
    let expect = |p: &mut Vec<String>, path: &str, ty: FieldType, mode: Mode| {
        let mut parts = path.split('.');
        let mut field = parts.next().and_then(|first| t.field(first));
        for sub in parts {
            field = field.and_then(|f| f.fields.iter().find(|s| s.name == sub));
        }
        match field {
            Some(f) if f.field_type == ty && (f.mode == Mode::Repeated) == (mode == Mode::Repeated) => {}
            Some(_) => {
                p.push(format!("column {path} must be {ty:?}{}", if mode == Mode::Repeated { " REPEATED" } else { "" }))
            }
            None => p.push(format!("column {path} is missing")),
        }
    };
    use FieldType::{Float64, Record, Timestamp};
    const STRING: FieldType = FieldType::String;
    for (path, ty) in [
        ("billing_account_id", STRING),
        ("service.id", STRING),
        ("service.description", STRING),
        ("sku.id", STRING),
        ("sku.description", STRING),
        ("usage_start_time", Timestamp),
        ("usage_end_time", Timestamp),
        ("project.id", STRING),
        ("project.name", STRING),
        ("project.number", STRING),
        ("location.location", STRING),
        ("location.country", STRING),
        ("location.region", STRING),
        ("location.zone", STRING),
        ("resource.name", STRING),
        ("resource.global_name", STRING),
        ("export_time", Timestamp),
        ("cost", Float64),
        ("currency", STRING),
        ("currency_conversion_rate", Float64),
        ("usage.amount", Float64),
        ("usage.unit", STRING),
        ("usage.amount_in_pricing_units", Float64),
        ("usage.pricing_unit", STRING),
        ("invoice.month", STRING),
        ("cost_type", STRING),
        ("adjustment_info.id", STRING),
        ("cost_at_list", Float64),
        (PARTITION_TIME, Timestamp),
    ] {
        expect(&mut p, path, ty, Mode::Nullable);
    }
    for path in ["project.labels", "labels", "system_labels", "credits"] {
        expect(&mut p, path, Record, Mode::Repeated);
    }
    expect(&mut p, "credits.amount", Float64, Mode::Nullable);
    p
}
