//! Data-quality suites: `configs/data_quality/expectations/<suite>.json`, one per table, loaded
//! and checked at start-up against the table's schema (`configs/{provider}/schemas/<table>.json`)
//! so that a `data_quality.validate` step only ever puts column names from a checked suite into
//! SQL. Every problem is reported with its file.
//!
//! ```json
//! {
//!   "description": "What the suite guards.",
//!   "provider": "gcp",
//!   "table": "gcp_billing_daily_raw",
//!   "expectations": [
//!     {"name": "keys_not_null", "type": "not_null", "columns": ["source_key"], "severity": "fail"},
//!     {"name": "one_row_per_source_key", "type": "unique", "columns": ["source_key"]},
//!     {"name": "cost_in_range", "type": "between", "column": "cost", "min": "-1000000", "max": "1000000"},
//!     {"name": "rows_per_day", "type": "row_count", "min": 1, "max": 10000000, "severity": "warn"},
//!     {"name": "export_is_fresh", "type": "freshness", "column": "export_time", "max_lag_hours": 48},
//!     {"name": "net_is_cost_plus_credits", "type": "total_matches", "columns": ["net_cost"],
//!      "source": {"table": "gcp_billing_daily_raw", "columns": ["cost", "credits_total"]}, "tolerance": "0.01"}
//!   ]
//! }
//! ```
//!
//! Every check is scoped to the organization and the run's window (`usage_date`), and all but
//! freshness are evaluated per day. `severity` (default `fail`) is what a failure does when the
//! step's own severity is `fail`; a step with severity `warn` never fails the run.

use std::collections::BTreeMap;
use std::path::Path;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::pipelines::Catalog;
use super::schema::{FieldType, Mode, TableSchema};

/// Where suites live, relative to `configs/`.
pub const SUITES_DIR: &str = "data_quality/expectations";

/// The `ps_type` of the step that evaluates a suite (its processor is registered in the work
/// layer; loading checks that such a step names a suite that exists).
pub const VALIDATE_STEP: &str = "data_quality.validate";

/// The expectation types, as written in `type`.
pub const EXPECTATION_TYPES: [&str; 6] = ["not_null", "unique", "between", "row_count", "freshness", "total_matches"];

/// Longest freshness lag a suite may allow: a year.
const MAX_LAG_HOURS: u32 = 24 * 366;

/// What a failed expectation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Recorded (WARN) and reported as a warning; the run goes on.
    Warn,
    /// Recorded (FAIL); the step, and so the run, fails.
    Fail,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warn => "warn",
            Severity::Fail => "fail",
        }
    }
}

/// One suite, checked.
#[derive(Debug, Clone)]
pub struct Suite {
    /// The file stem: what a step's `suite` names.
    pub name: String,
    /// The file, relative to `configs/` (for messages).
    pub file: String,
    pub description: String,
    /// The provider whose schemas define `table` and every source table.
    pub provider: String,
    pub table: String,
    pub expectations: Vec<Expectation>,
}

/// One expectation of a suite.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// Unique within the suite; the `check_name` of its results.
    pub name: String,
    pub severity: Severity,
    pub description: String,
    pub check: Check,
}

/// What an expectation checks. Column names are the table's (checked at load).
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// No NULL in any of `columns`.
    NotNull { columns: Vec<String> },
    /// No two rows of a day share the values of `columns`.
    Unique { columns: Vec<String> },
    /// Every non-NULL value of `column` within `[min, max]` (either bound may be open).
    Between { column: String, min: Option<Decimal>, max: Option<Decimal> },
    /// Rows per day within `[min, max]`.
    RowCount { min: Option<u64>, max: Option<u64> },
    /// The newest value of `column` (DATE: the end of that day) at most `max_lag_hours` before
    /// the end of the window: measured against the window, so a backfill is judged like a
    /// daily run.
    Freshness { column: String, max_lag_hours: u32 },
    /// Per day, the sum of `columns` equals the sum of `source_columns` in `source_table` within
    /// `tolerance` (absolute).
    TotalMatches { columns: Vec<String>, source_table: String, source_columns: Vec<String>, tolerance: Decimal },
}

impl Check {
    /// The `type` it is written as.
    pub fn type_name(&self) -> &'static str {
        match self {
            Check::NotNull { .. } => "not_null",
            Check::Unique { .. } => "unique",
            Check::Between { .. } => "between",
            Check::RowCount { .. } => "row_count",
            Check::Freshness { .. } => "freshness",
            Check::TotalMatches { .. } => "total_matches",
        }
    }
}

/// Every suite, by name.
#[derive(Debug, Clone, Default)]
pub struct Suites {
    suites: BTreeMap<String, Suite>,
}

impl Suites {
    pub fn get(&self, name: &str) -> Option<&Suite> {
        self.suites.get(name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.suites.keys().map(String::as_str).collect()
    }

    pub fn len(&self) -> usize {
        self.suites.len()
    }

    pub fn is_empty(&self) -> bool {
        self.suites.is_empty()
    }

    /// Loads every suite under `root/data_quality/expectations/` (none when the folder is
    /// missing), each checked against `schemas` (provider → table → schema). Returns the valid
    /// suites and every problem as (file relative to `root`, reason).
    pub fn load(
        root: &Path,
        schemas: &BTreeMap<String, BTreeMap<String, TableSchema>>,
    ) -> (Suites, Vec<(String, String)>) {
        let mut problems = Vec::new();
        let mut suites = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(root.join(SUITES_DIR)) else { return (Suites { suites }, problems) };
        let mut names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect();
        names.sort();
        for file_name in names {
            let file = format!("{SUITES_DIR}/{file_name}");
            let Some(stem) = file_name.strip_suffix(".json").filter(|s| crate::domain::is_identifier(s)) else {
                problems.push((file, "unexpected file: this folder holds suites, <suite>.json (snake_case)".into()));
                continue;
            };
            let text = match std::fs::read_to_string(root.join(&file)) {
                Ok(text) => text,
                Err(e) => {
                    problems.push((file, format!("cannot read: {e}")));
                    continue;
                }
            };
            match parse_suite(stem, &file, &text, schemas) {
                Ok(suite) => {
                    suites.insert(suite.name.clone(), suite);
                }
                Err(found) => problems.extend(found.into_iter().map(|p| (file.clone(), p))),
            }
        }
        (Suites { suites }, problems)
    }

    /// Problems of the pipelines' validate steps: a suite that does not exist, or one of another
    /// provider's tables. As (pipeline file, reason).
    pub fn check_steps(&self, catalog: &Catalog) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for pipeline in catalog.iter() {
            for step in pipeline.steps.iter().filter(|s| s.ps_type == VALIDATE_STEP) {
                let at = format!("step {} ({})", step.step_id, step.ps_type);
                let Some(name) = step.config.get("suite").and_then(|v| v.as_str()) else { continue };
                match self.get(name) {
                    None => problems.push((
                        pipeline.file.clone(),
                        format!("{at}: suite {name:?} is not in {SUITES_DIR}/ (suites: {})", self.names().join(", ")),
                    )),
                    Some(s) if s.provider != pipeline.key.provider => problems.push((
                        pipeline.file.clone(),
                        format!(
                            "{at}: suite {name} checks {} (a {} table), not one of this {} pipeline's",
                            s.table, s.provider, pipeline.key.provider
                        ),
                    )),
                    Some(_) => {}
                }
            }
        }
        problems
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteFile {
    description: String,
    provider: String,
    table: String,
    expectations: Vec<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnsArgs {
    columns: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BetweenArgs {
    column: String,
    #[serde(default)]
    min: Option<Value>,
    #[serde(default)]
    max: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RowCountArgs {
    #[serde(default)]
    min: Option<u64>,
    #[serde(default)]
    max: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FreshnessArgs {
    column: String,
    max_lag_hours: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TotalArgs {
    columns: Vec<String>,
    source: SourceArgs,
    tolerance: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceArgs {
    table: String,
    columns: Vec<String>,
}

/// A decimal written as a JSON string or number (exact either way).
fn decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.to_string().parse().ok().or_else(|| Decimal::from_scientific(&n.to_string()).ok()),
        _ => None,
    }
}

fn is_numeric(t: FieldType) -> bool {
    matches!(t, FieldType::Int64 | FieldType::Numeric | FieldType::Float64)
}

/// The table's columns, checked as a check uses them.
struct Columns<'a> {
    schema: &'a TableSchema,
    problems: &'a mut Vec<String>,
    at: String,
}

impl Columns<'_> {
    /// The column named, when the table has it as a scalar whose type `ok` accepts.
    fn check(&mut self, name: &str, ok: impl Fn(FieldType) -> bool, want: &str) {
        match self.schema.fields.iter().find(|f| f.name == name) {
            None => self.problems.push(format!("{}: column {name:?} is not in {}", self.at, self.schema.name)),
            Some(f) if f.mode == Mode::Repeated || !ok(f.field_type) => self.problems.push(format!(
                "{}: column {name} of {} is {}{:?}, not {want}",
                self.at,
                self.schema.name,
                if f.mode == Mode::Repeated { "a REPEATED " } else { "" },
                f.field_type
            )),
            Some(_) => {}
        }
    }

    fn check_list(&mut self, names: &[String], ok: impl Fn(FieldType) -> bool + Copy, want: &str) {
        if names.is_empty() {
            self.problems.push(format!("{}: columns must name at least one column", self.at));
        }
        let mut seen = std::collections::HashSet::new();
        for n in names {
            if !seen.insert(n) {
                self.problems.push(format!("{}: column {n} is listed twice", self.at));
            }
            self.check(n, ok, want);
        }
    }
}

/// A table a suite may read: the provider's, with the `org_slug` and `usage_date` every check
/// is scoped by.
fn scoped_table<'a>(
    schemas: &'a BTreeMap<String, BTreeMap<String, TableSchema>>,
    provider: &str,
    table: &str,
    problems: &mut Vec<String>,
    at: &str,
) -> Option<&'a TableSchema> {
    let Some(schema) = schemas.get(provider).and_then(|t| t.get(table)) else {
        problems.push(format!("{at}table {table:?} has no valid schema in {provider}/schemas/{table}.json"));
        return None;
    };
    for (column, want) in [("org_slug", FieldType::String), ("usage_date", FieldType::Date)] {
        if !schema.fields.iter().any(|f| f.name == column && f.field_type == want && f.mode != Mode::Repeated) {
            problems.push(format!("{at}table {table} has no {want:?} column {column}, which checks are scoped by"));
        }
    }
    Some(schema)
}

fn parse_suite(
    stem: &str,
    file: &str,
    text: &str,
    schemas: &BTreeMap<String, BTreeMap<String, TableSchema>>,
) -> Result<Suite, Vec<String>> {
    let raw: SuiteFile = serde_json::from_str(text).map_err(|e| vec![e.to_string()])?;
    let mut problems = Vec::new();
    if raw.description.trim().is_empty() {
        problems.push("description must say what the suite guards".to_string());
    }
    let schema = scoped_table(schemas, &raw.provider, &raw.table, &mut problems, "");
    if raw.expectations.is_empty() {
        problems.push("expectations must list at least one expectation".to_string());
    }
    let mut names = std::collections::HashSet::new();
    let mut expectations = Vec::new();
    for (i, mut e) in raw.expectations.into_iter().enumerate() {
        let name = e.remove("name").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let at = if name.is_empty() { format!("expectation #{}", i + 1) } else { format!("expectation {name}") };
        if !crate::domain::is_identifier(&name) {
            problems.push(format!("{at}: name must be a snake_case identifier, got {name:?}"));
        } else if !names.insert(name.clone()) {
            problems.push(format!("{at}: name is used twice in the suite"));
        }
        let kind = e.remove("type").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let severity = match e.remove("severity") {
            None => Severity::Fail,
            Some(v) => match serde_json::from_value::<Severity>(v.clone()) {
                Ok(s) => s,
                Err(_) => {
                    problems.push(format!("{at}: severity must be warn or fail, got {v}"));
                    Severity::Fail
                }
            },
        };
        let description =
            e.remove("description").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default().to_string();
        let args = Value::Object(e);
        let parsed = match kind.as_str() {
            "not_null" => serde_json::from_value::<ColumnsArgs>(args).map(|a| Check::NotNull { columns: a.columns }),
            "unique" => serde_json::from_value::<ColumnsArgs>(args).map(|a| Check::Unique { columns: a.columns }),
            "between" => serde_json::from_value::<BetweenArgs>(args).map(|a| {
                let bound = |v: Option<Value>, which: &str, problems: &mut Vec<String>| {
                    v.and_then(|v| {
                        let d = decimal(&v);
                        if d.is_none() {
                            problems.push(format!("{at}: {which} must be a number, got {v}"));
                        }
                        d
                    })
                };
                let (min, max) = (bound(a.min, "min", &mut problems), bound(a.max, "max", &mut problems));
                Check::Between { column: a.column, min, max }
            }),
            "row_count" => {
                serde_json::from_value::<RowCountArgs>(args).map(|a| Check::RowCount { min: a.min, max: a.max })
            }
            "freshness" => serde_json::from_value::<FreshnessArgs>(args)
                .map(|a| Check::Freshness { column: a.column, max_lag_hours: a.max_lag_hours }),
            "total_matches" => serde_json::from_value::<TotalArgs>(args).map(|a| {
                let tolerance = decimal(&a.tolerance).unwrap_or_else(|| {
                    problems.push(format!("{at}: tolerance must be a number, got {}", a.tolerance));
                    Decimal::ZERO
                });
                Check::TotalMatches {
                    columns: a.columns,
                    source_table: a.source.table,
                    source_columns: a.source.columns,
                    tolerance,
                }
            }),
            "" => {
                problems.push(format!("{at}: type is missing; one of {}", EXPECTATION_TYPES.join(", ")));
                continue;
            }
            other => {
                problems.push(format!("{at}: unknown type {other:?}; one of {}", EXPECTATION_TYPES.join(", ")));
                continue;
            }
        };
        let check = match parsed {
            Ok(check) => check,
            Err(err) => {
                problems.push(format!("{at} ({kind}): {err}"));
                continue;
            }
        };
        if let Some(schema) = schema {
            check_expectation(&at, &check, schema, &raw.provider, schemas, &mut problems);
        }
        expectations.push(Expectation { name, severity, description, check });
    }
    if problems.is_empty() {
        Ok(Suite {
            name: stem.to_string(),
            file: file.to_string(),
            description: raw.description,
            provider: raw.provider,
            table: raw.table,
            expectations,
        })
    } else {
        Err(problems)
    }
}

/// Columns against the table, bounds against each other.
fn check_expectation(
    at: &str,
    check: &Check,
    schema: &TableSchema,
    provider: &str,
    schemas: &BTreeMap<String, BTreeMap<String, TableSchema>>,
    problems: &mut Vec<String>,
) {
    let at = format!("{at} ({})", check.type_name());
    let comparable = |t: FieldType| !matches!(t, FieldType::Json | FieldType::Record);
    match check {
        Check::NotNull { columns } => {
            Columns { schema, problems, at: at.clone() }.check_list(columns, |_| true, "a scalar column")
        }
        Check::Unique { columns } => {
            Columns { schema, problems, at: at.clone() }.check_list(columns, comparable, "a groupable column")
        }
        Check::Between { column, min, max } => {
            Columns { schema, problems, at: at.clone() }.check(
                column,
                is_numeric,
                "a number (INT64, NUMERIC, FLOAT64)",
            );
            match (min, max) {
                (None, None) => problems.push(format!("{at}: needs min, max or both")),
                (Some(lo), Some(hi)) if lo > hi => problems.push(format!("{at}: min {lo} is above max {hi}")),
                _ => {}
            }
        }
        Check::RowCount { min, max } => match (min, max) {
            (None, None) => problems.push(format!("{at}: needs min, max or both")),
            (Some(lo), Some(hi)) if lo > hi => problems.push(format!("{at}: min {lo} is above max {hi}")),
            _ => {}
        },
        Check::Freshness { column, max_lag_hours } => {
            Columns { schema, problems, at: at.clone() }.check(
                column,
                |t| matches!(t, FieldType::Date | FieldType::Timestamp),
                "a DATE or TIMESTAMP",
            );
            if *max_lag_hours == 0 || *max_lag_hours > MAX_LAG_HOURS {
                problems.push(format!("{at}: max_lag_hours must be between 1 and {MAX_LAG_HOURS}"));
            }
        }
        Check::TotalMatches { columns, source_table, source_columns, tolerance } => {
            Columns { schema, problems, at: at.clone() }.check_list(columns, is_numeric, "a number");
            if let Some(source) = scoped_table(schemas, provider, source_table, problems, &format!("{at}: source ")) {
                Columns { schema: source, problems, at: format!("{at}: source") }.check_list(
                    source_columns,
                    is_numeric,
                    "a number",
                );
            }
            if tolerance.is_sign_negative() {
                problems.push(format!("{at}: tolerance must not be negative"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemas() -> BTreeMap<String, BTreeMap<String, TableSchema>> {
        let schema: TableSchema = serde_json::from_str(
            r#"{"description": "t", "fields": [
              {"name": "usage_date", "type": "DATE", "mode": "REQUIRED"},
              {"name": "org_slug", "type": "STRING", "mode": "REQUIRED"},
              {"name": "k", "type": "STRING"}, {"name": "n", "type": "INT64"},
              {"name": "cost", "type": "NUMERIC"}, {"name": "labels", "type": "JSON"},
              {"name": "at", "type": "TIMESTAMP"}]}"#,
        )
        .unwrap();
        let mut t = schema.clone();
        t.name = "t".into();
        BTreeMap::from([("p".to_string(), BTreeMap::from([("t".to_string(), t)]))])
    }

    fn parse(expectations: &str) -> Result<Suite, Vec<String>> {
        let text =
            format!(r#"{{"description": "d", "provider": "p", "table": "t", "expectations": [{expectations}]}}"#);
        parse_suite("s", "data_quality/expectations/s.json", &text, &schemas())
    }

    #[test]
    fn every_type_parses() {
        let s = parse(
            r#"{"name": "a", "type": "not_null", "columns": ["k", "n"]},
               {"name": "b", "type": "unique", "columns": ["k"], "severity": "warn"},
               {"name": "c", "type": "between", "column": "cost", "min": "-1.5", "max": 100},
               {"name": "d", "type": "row_count", "min": 1},
               {"name": "e", "type": "freshness", "column": "at", "max_lag_hours": 36},
               {"name": "f", "type": "total_matches", "columns": ["cost"], "source": {"table": "t", "columns": ["n"]}, "tolerance": "0.01"}"#,
        )
        .unwrap();
        let types: Vec<&str> = s.expectations.iter().map(|e| e.check.type_name()).collect();
        assert_eq!(types, EXPECTATION_TYPES);
        assert_eq!(s.expectations[0].severity, Severity::Fail, "fail unless the suite says otherwise");
        assert_eq!(s.expectations[1].severity, Severity::Warn);
        assert_eq!(
            s.expectations[2].check,
            Check::Between { column: "cost".into(), min: Some("-1.5".parse().unwrap()), max: Some(100.into()) }
        );
    }

    #[test]
    fn every_problem_is_named() {
        let err = parse(
            r#"{"name": "a", "type": "not_nul", "columns": ["k"]},
               {"name": "b", "type": "not_null", "columns": ["nope"]},
               {"name": "c", "type": "between", "column": "k", "min": 5, "max": 1},
               {"name": "d", "type": "row_count"},
               {"name": "e", "type": "freshness", "column": "n", "max_lag_hours": 0},
               {"name": "f", "type": "total_matches", "columns": ["cost"], "source": {"table": "u", "columns": ["n"]}, "tolerance": "-1"},
               {"name": "g", "type": "unique", "columns": ["labels"], "extra": 1},
               {"name": "g", "type": "unique", "columns": ["labels"], "severity": "loud"}"#,
        )
        .unwrap_err();
        for expected in [
            "expectation a: unknown type \"not_nul\"; one of not_null, unique, between",
            "expectation b (not_null): column \"nope\" is not in t",
            "expectation c (between): column k of t is String, not a number",
            "expectation c (between): min 5 is above max 1",
            "expectation d (row_count): needs min, max or both",
            "expectation e (freshness): column n of t is Int64, not a DATE or TIMESTAMP",
            "expectation e (freshness): max_lag_hours must be between 1 and",
            "expectation f (total_matches): source table \"u\" has no valid schema in p/schemas/u.json",
            "expectation f (total_matches): tolerance must not be negative",
            "expectation g (unique): unknown field `extra`",
            "expectation g: name is used twice",
            "expectation g: severity must be warn or fail, got \"loud\"",
        ] {
            assert!(err.iter().any(|p| p.contains(expected)), "missing {expected:?} in {err:#?}");
        }
    }
}
