//! The SELECT that turns one usage day of a Cloud Billing export into the rows of
//! `gcp_billing_daily_raw`, in the target table's column order, written once for both backends:
//! the few fragments where BigQuery and DuckDB SQL differ come from [`Dialect`].
//!
//! Parameters: `@org_slug`, `@usage_date` (DATE), `@day_start`/`@next_day` (the usage day, UTC),
//! `@partition_start`/`@partition_end` (the late-arrival window of partitions).
//!
//! Money is cast to NUMERIC in the query, on the source side (Google's examples do the same to
//! avoid float error): `cost`, every credit's amount before they are summed, `cost_at_list`.
//! Columns the organization's export lacks (the detailed export's `resource`, and columns Google
//! added over time) read as NULL, found from the source table's top-level columns.

use crate::pipeline::StepError;
use crate::warehouse::TableSchema;

/// The export table's alias in the query.
const SRC: &str = "src";

/// Where the query runs: the fragments that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    BigQuery,
    DuckDb,
}

impl Dialect {
    /// The dialect of a warehouse backend (`Warehouse::backend_name`).
    pub fn of_backend(name: &str) -> Dialect {
        if name == "bigquery" {
            Dialect::BigQuery
        } else {
            Dialect::DuckDb
        }
    }

    fn numeric(self, expr: &str) -> String {
        match self {
            // NUMERIC's own precision, spelt out: the same on BigQuery, and what keeps the
            // emulator (DuckDB underneath, whose bare NUMERIC is DECIMAL(18,3)) exact.
            Dialect::BigQuery => format!("CAST({expr} AS NUMERIC(38, 9))"),
            // DuckDB's NUMERIC is DECIMAL(18,3); BigQuery's is (38,9).
            Dialect::DuckDb => format!("CAST({expr} AS DECIMAL(38,9))"),
        }
    }

    /// A nested value (array, struct) as JSON: text on BigQuery (made a JSON value by
    /// [`Dialect::json_value`] at the end), already a JSON value (stored as text) on DuckDB.
    /// NULL stays NULL.
    fn json(self, expr: &str) -> String {
        match self {
            Dialect::BigQuery => format!("IF({expr} IS NULL, NULL, TO_JSON_STRING({expr}))"),
            Dialect::DuckDb => format!("to_json({expr})"),
        }
    }

    /// What [`Dialect::json`] made, as the JSON column's value.
    fn json_value(self, expr: &str) -> String {
        match self {
            Dialect::BigQuery => format!("PARSE_JSON({expr})"),
            Dialect::DuckDb => expr.to_string(),
        }
    }

    /// The sum of the credits' amounts, each cast to NUMERIC; 0 without credits.
    fn credits_total(self) -> String {
        match self {
            Dialect::BigQuery => {
                "IFNULL((SELECT SUM(CAST(c.amount AS NUMERIC(38, 9))) FROM UNNEST(credits) AS c), CAST(0 AS NUMERIC(38, 9)))"
                    .into()
            }
            Dialect::DuckDb => {
                "COALESCE(list_sum([CAST(c.amount AS DECIMAL(38,9)) FOR c IN credits]), CAST(0 AS DECIMAL(38,9)))"
                    .into()
            }
        }
    }

    /// The row key from the identifying columns (`e_`-named, each with whether it is a
    /// timestamp): 32 hex characters. It names a row, it guards nothing. BigQuery: MD5 of the
    /// columns as text (NULL as '~', timestamps as epoch microseconds). DuckDB: two 64-bit
    /// `hash()`es of the typed values, which skips turning a million rows into text (MD5 over that
    /// text was about a third of the statement's CPU; SHA-256 three times more). DuckDB's hash is
    /// stable within a DuckDB version, and a rerun replaces the whole day, so a day's keys always
    /// come from one version.
    fn row_key(self, columns: &[(&str, bool)]) -> String {
        match self {
            Dialect::BigQuery => {
                let text: Vec<String> = columns
                    .iter()
                    .map(|(c, timestamp)| {
                        let value = if *timestamp {
                            format!("CAST(UNIX_MICROS({c}) AS STRING)")
                        } else {
                            format!("CAST({c} AS STRING)")
                        };
                        format!("COALESCE({value}, '~')")
                    })
                    .collect();
                format!("TO_HEX(MD5(CONCAT({})))", text.join(", '|', "))
            }
            Dialect::DuckDb => {
                let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
                let names = names.join(", ");
                format!("printf('%016x%016x', hash({names}), hash('source_key', {names}))")
            }
        }
    }

    fn null_of(self, sql_type: &str) -> String {
        match (self, sql_type) {
            (Dialect::DuckDb, "NUMERIC") => "CAST(NULL AS DECIMAL(38,9))".into(),
            (Dialect::BigQuery, "NUMERIC") => "CAST(NULL AS NUMERIC(38, 9))".into(),
            (Dialect::DuckDb, "FLOAT64") => "CAST(NULL AS DOUBLE)".into(),
            (Dialect::DuckDb, "STRING") => "CAST(NULL AS VARCHAR)".into(),
            (Dialect::DuckDb, "TIMESTAMP") => "CAST(NULL AS TIMESTAMPTZ)".into(),
            (_, t) => format!("CAST(NULL AS {t})"),
        }
    }
}

/// The source: a rendered table reference, its top-level columns, and the expression of each
/// row's partition time.
pub struct ExportSource<'a> {
    pub table_ref: &'a str,
    pub columns: &'a [String],
    pub partition_time: &'a str,
}

/// Which column holds a row's partition time: the `_PARTITIONTIME` column of a copy that has one
/// (the sandbox, the emulator), the pseudo-column of an ingestion-time partitioned table, the
/// partitioning column of a table partitioned by one, else `export_time` (a day's export time is
/// when it landed, which is what the partition says).
pub fn partition_time_expr(columns: &[String], ingestion_time: bool, field: Option<&str>) -> String {
    use crate::configs::bq_etl::PARTITION_TIME;
    if columns.iter().any(|c| c.eq_ignore_ascii_case(PARTITION_TIME)) || ingestion_time {
        PARTITION_TIME.to_string()
    } else if let Some(f) = field.filter(|f| crate::domain::is_identifier(f) && columns.iter().any(|c| c == f)) {
        format!("TIMESTAMP({f})")
    } else {
        "export_time".to_string()
    }
}

/// The export's required top-level columns that `columns` lacks.
pub fn missing_required(columns: &[String]) -> Vec<&'static str> {
    crate::configs::bq_etl::REQUIRED_EXPORT_COLUMNS
        .into_iter()
        .filter(|c| !columns.iter().any(|have| have.eq_ignore_ascii_case(c)))
        .collect()
}

/// The day's SELECT: one row per export row, columns in `target`'s order.
pub fn day_select(dialect: Dialect, source: &ExportSource<'_>, target: &TableSchema) -> Result<String, StepError> {
    let has = |c: &str| source.columns.iter().any(|have| have.eq_ignore_ascii_case(c));
    let d = dialect;
    // A nested column when its top-level column exists, else NULL of its type.
    // A RECORD's field is qualified with the table's alias (`src.location.location`): unqualified,
    // `location.location` reads as table.column to the emulator's SQL translation in a MERGE.
    let sub = |col: &str, field: &str, ty: &str| if has(col) { format!("{SRC}.{col}.{field}") } else { d.null_of(ty) };
    let plain = |col: &str, ty: &str| if has(col) { col.to_string() } else { d.null_of(ty) };
    let json = |expr: String, present: bool| if present { d.json(&expr) } else { d.null_of("STRING") };

    let inner: Vec<String> = vec![
        format!("{} AS e_billing_account_id", plain("billing_account_id", "STRING")),
        format!("{} AS e_invoice_month", sub("invoice", "month", "STRING")),
        format!("{} AS e_cost_type", plain("cost_type", "STRING")),
        format!("{} AS e_service_id", sub("service", "id", "STRING")),
        format!("{} AS e_service_description", sub("service", "description", "STRING")),
        format!("{} AS e_sku_id", sub("sku", "id", "STRING")),
        format!("{} AS e_sku_description", sub("sku", "description", "STRING")),
        format!("{} AS e_usage_start_time", plain("usage_start_time", "TIMESTAMP")),
        format!("{} AS e_usage_end_time", plain("usage_end_time", "TIMESTAMP")),
        format!("{} AS e_project_id", sub("project", "id", "STRING")),
        format!("{} AS e_project_name", sub("project", "name", "STRING")),
        format!("{} AS e_project_number", sub("project", "number", "STRING")),
        format!("{} AS e_project_labels", json(format!("{SRC}.project.labels"), has("project"))),
        format!("{} AS e_location", sub("location", "location", "STRING")),
        format!("{} AS e_country", sub("location", "country", "STRING")),
        format!("{} AS e_region", sub("location", "region", "STRING")),
        format!("{} AS e_zone", sub("location", "zone", "STRING")),
        format!("{} AS e_resource_name", sub("resource", "name", "STRING")),
        format!("{} AS e_resource_global_name", sub("resource", "global_name", "STRING")),
        format!("{} AS e_usage_amount", sub("usage", "amount", "FLOAT64")),
        format!("{} AS e_usage_unit", sub("usage", "unit", "STRING")),
        format!("{} AS e_usage_amount_in_pricing_units", sub("usage", "amount_in_pricing_units", "FLOAT64")),
        format!("{} AS e_pricing_unit", sub("usage", "pricing_unit", "STRING")),
        format!("{} AS e_cost", d.numeric("cost")),
        format!("{} AS e_credits", json("credits".into(), has("credits"))),
        format!(
            "{} AS e_credits_total",
            if has("credits") { d.credits_total() } else { format!("CAST(0 AS {})", numeric_type(d)) }
        ),
        format!(
            "{} AS e_cost_at_list",
            if has("cost_at_list") { d.numeric("cost_at_list") } else { d.null_of("NUMERIC") }
        ),
        format!("{} AS e_currency", plain("currency", "STRING")),
        format!("{} AS e_currency_conversion_rate", plain("currency_conversion_rate", "FLOAT64")),
        format!("{} AS e_labels", json("labels".into(), has("labels"))),
        format!("{} AS e_system_labels", json("system_labels".into(), has("system_labels"))),
        format!("{} AS e_adjustment_info", json("adjustment_info".into(), has("adjustment_info"))),
        format!("{} AS e_export_time", plain("export_time", "TIMESTAMP")),
        format!("{} AS e_partition_time", source.partition_time),
    ];
    // Inner names carry `e_`: a name shared with a RECORD of the export (`location`) is
    // ambiguous to the emulator's SQL translation once the query is a MERGE's source.
    let json_columns = ["project_labels", "credits", "labels", "system_labels", "adjustment_info"];
    // What one export row is: its identifying columns and export time; credits follow from the
    // rest and are left out (their JSON is the longest value of a row). Identical export rows
    // (the same in every one of them) are one row to every reader; they share a key. Numbering
    // them (ROW_NUMBER) would hold the whole day in memory to sort it.
    let identity: Vec<(String, bool)> = [
        ("billing_account_id", false),
        ("service_id", false),
        ("sku_id", false),
        ("usage_start_time", true),
        ("usage_end_time", true),
        ("project_id", false),
        ("location", false),
        ("resource_name", false),
        ("cost_type", false),
        ("invoice_month", false),
        ("adjustment_info", false),
        ("currency", false),
        ("cost", false),
        ("usage_amount", false),
        ("labels", false),
        ("system_labels", false),
        ("export_time", true),
    ]
    .iter()
    .map(|(c, ts)| (format!("e_{c}"), *ts))
    .collect();
    let identity: Vec<(&str, bool)> = identity.iter().map(|(c, ts)| (c.as_str(), *ts)).collect();
    let mut outer = Vec::with_capacity(target.fields.len());
    for field in &target.fields {
        let name = field.name.as_str();
        let expr = match name {
            "usage_date" => "@usage_date".to_string(),
            "org_slug" => "@org_slug".to_string(),
            "source_key" => d.row_key(&identity),
            "net_cost" => "e_cost + e_credits_total".to_string(),
            c if json_columns.contains(&c) => d.json_value(&format!("e_{c}")),
            c if inner.iter().any(|i| i.ends_with(&format!(" AS e_{c}"))) => format!("e_{c}"),
            other => {
                return Err(StepError::Failed(format!(
                    "table {} has a column {other} that gcp.bq_etl does not fill",
                    target.name
                )))
            }
        };
        outer.push(format!("{expr} AS {name}"));
    }
    Ok(format!(
        "SELECT {} FROM (SELECT {} FROM {} AS {SRC} WHERE usage_start_time >= @day_start AND usage_start_time < @next_day \
         AND {p} >= @partition_start AND {p} < @partition_end) AS export_rows",
        outer.join(", "),
        inner.join(", "),
        source.table_ref,
        p = source.partition_time,
    ))
}

fn numeric_type(d: Dialect) -> &'static str {
    match d {
        Dialect::BigQuery => "NUMERIC(38, 9)",
        Dialect::DuckDb => "DECIMAL(38,9)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn partition_time_follows_the_table() {
        let cols = columns(&["cost", "export_time", "_PARTITIONTIME"]);
        assert_eq!(partition_time_expr(&cols, false, None), "_PARTITIONTIME");
        let cols = columns(&["cost", "export_time", "day"]);
        assert_eq!(partition_time_expr(&cols, true, None), "_PARTITIONTIME");
        assert_eq!(partition_time_expr(&cols, false, Some("day")), "TIMESTAMP(day)");
        assert_eq!(partition_time_expr(&cols, false, Some("nope")), "export_time");
        assert_eq!(partition_time_expr(&cols, false, None), "export_time");
    }

    #[test]
    fn absent_columns_read_as_null_and_every_target_column_is_filled() {
        let target = crate::processors::shipped_schema("gcp", super::super::bq_etl::TABLE);
        let standard = columns(&[
            "billing_account_id",
            "service",
            "sku",
            "usage_start_time",
            "usage_end_time",
            "project",
            "labels",
            "system_labels",
            "location",
            "export_time",
            "cost",
            "currency",
            "currency_conversion_rate",
            "usage",
            "credits",
            "invoice",
            "cost_type",
            "_PARTITIONTIME",
        ]);
        let source = ExportSource { table_ref: "\"s\".\"t\"", columns: &standard, partition_time: "_PARTITIONTIME" };
        let sql = day_select(Dialect::DuckDb, &source, &target).unwrap();
        assert!(sql.contains("CAST(NULL AS VARCHAR) AS e_resource_name"), "{sql}");
        assert!(sql.contains("CAST(NULL AS DECIMAL(38,9)) AS e_cost_at_list"), "{sql}");
        assert!(!sql.contains("resource.name"), "{sql}");
        let bq = day_select(Dialect::BigQuery, &source, &target).unwrap();
        assert!(bq.contains("CAST(cost AS NUMERIC(38, 9)) AS e_cost") && bq.contains("FROM UNNEST(credits)"), "{bq}");
        // The row key: typed hashes on DuckDB, MD5 of the text on BigQuery.
        assert!(sql.contains("hash('source_key', e_billing_account_id, e_service_id,"), "{sql}");
        assert!(bq.contains("TO_HEX(MD5(CONCAT(COALESCE(CAST(e_billing_account_id AS STRING), '~'), '|',"), "{bq}");
        assert!(bq.contains("COALESCE(CAST(UNIX_MICROS(e_export_time) AS STRING), '~')))) AS source_key"), "{bq}");
        let mut extra = target.clone();
        extra.fields.push(crate::warehouse::Field {
            name: "surprise".into(),
            field_type: crate::warehouse::FieldType::String,
            mode: crate::warehouse::Mode::Nullable,
            description: String::new(),
            fields: vec![],
        });
        assert!(day_select(Dialect::DuckDb, &source, &extra).is_err());
        assert_eq!(
            missing_required(&columns(&["cost", "currency"])),
            vec!["usage_start_time", "export_time", "service", "sku"]
        );
    }
}
