//! A suite evaluated inside the warehouse: the common subset of DuckDB and BigQuery SQL, one
//! aggregate query per table the suite reads (a row per day: counts, NULLs, values out of range,
//! newest values, sums) and one per uniqueness check, scoped to the organization and the window.
//! The comparisons with the suite's bounds happen here, on those few aggregates.
//!
//! Column names reach the SQL only from a suite checked against its table's schema at start-up
//! (identifiers, so unquoted text is the same in both dialects); bounds, the organization and the
//! window are parameters.

use std::collections::BTreeMap;

use chrono::{DateTime, Days, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::configs::data_quality::{Check, Expectation, Severity, Suite};
use crate::processors::DqStatus;
use crate::warehouse::{Params, Row, Warehouse, WarehouseResult};

/// Where a suite is evaluated.
pub(crate) struct Scope<'a> {
    pub warehouse: &'a dyn Warehouse,
    pub dataset: &'a str,
    pub org_slug: &'a str,
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl Scope<'_> {
    fn days(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.start.iter_days().take_while(move |d| *d <= self.end)
    }

    fn params(&self) -> Params {
        Params::new().bind("org_slug", self.org_slug).bind("start_date", self.start).bind("end_date", self.end)
    }
}

/// The outcome of one expectation on one day (or, for freshness, on the window).
#[derive(Debug, Clone)]
pub(crate) struct Finding<'s> {
    pub expectation: &'s Expectation,
    pub usage_date: NaiveDate,
    /// The column a per-column check is about.
    pub dimension: Option<String>,
    pub passed: bool,
    pub observed: Option<Decimal>,
    pub expected: Option<Decimal>,
    pub tolerance: Option<Decimal>,
    /// What was expected, in words.
    pub expected_text: String,
    /// The outcome in words, naming the expectation's subject, observed and expected values.
    pub message: String,
    pub details: Value,
}

impl Finding<'_> {
    /// PASS, or the failure as the expectation's severity under the step's: a `warn` step never
    /// fails the run.
    pub fn status(&self, step: Severity) -> DqStatus {
        match (self.passed, self.severity(step)) {
            (true, _) => DqStatus::Pass,
            (false, Severity::Warn) => DqStatus::Warn,
            (false, Severity::Fail) => DqStatus::Fail,
        }
    }

    pub fn severity(&self, step: Severity) -> Severity {
        step.min(self.expectation.severity)
    }
}

/// Aggregates over one table, one row per day.
#[derive(Default)]
struct Profile {
    aggregates: Vec<String>,
    params: Params,
}

impl Profile {
    /// Adds an aggregate; returns its column alias.
    fn add(&mut self, sql: String) -> String {
        let alias = format!("a{}", self.aggregates.len());
        self.aggregates.push(format!("{sql} AS {alias}"));
        alias
    }

    fn bind(&mut self, name: String, value: Decimal) -> String {
        let at = format!("@{name}");
        self.params.0.push((name, value.into()));
        at
    }
}

/// A day's aggregates by alias.
type ByDay = BTreeMap<NaiveDate, Row>;

fn int(row: Option<&Row>, alias: &str) -> i64 {
    match row.and_then(|r| r.get(alias)) {
        Some(Value::Number(n)) => n.as_i64().unwrap_or_default(),
        Some(Value::String(s)) => s.parse().unwrap_or_default(),
        _ => 0,
    }
}

fn dec(row: Option<&Row>, alias: &str) -> Option<Decimal> {
    match row.and_then(|r| r.get(alias))? {
        Value::Number(n) => {
            let text = n.to_string();
            text.parse().ok().or_else(|| Decimal::from_scientific(&text).ok())
        }
        Value::String(s) => s.parse().ok().or_else(|| Decimal::from_scientific(s).ok()),
        _ => None,
    }
}

fn text(row: Option<&Row>, alias: &str) -> Option<String> {
    match row.and_then(|r| r.get(alias))? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// The instant a freshness value stands for: a TIMESTAMP itself, a DATE the end of its day.
fn instant(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(day) = value.parse::<NaiveDate>() {
        return day.checked_add_days(Days::new(1))?.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    }
    DateTime::parse_from_rfc3339(value).ok().map(|t| t.with_timezone(&Utc))
}

fn range_text(min: Option<impl std::fmt::Display>, max: Option<impl std::fmt::Display>) -> String {
    match (min, max) {
        (Some(lo), Some(hi)) => format!("between {lo} and {hi}"),
        (Some(lo), None) => format!("at least {lo}"),
        (None, Some(hi)) => format!("at most {hi}"),
        (None, None) => "any value".into(),
    }
}

/// Runs a table's profile: its rows of the window by day (none when the table does not exist
/// yet: the organization has not loaded it).
async fn run_profile(scope: &Scope<'_>, table: &str, profile: &Profile, exists: bool) -> WarehouseResult<ByDay> {
    if !exists {
        return Ok(ByDay::new());
    }
    let mut columns = vec!["usage_date".to_string(), "COUNT(*) AS row_count".to_string()];
    columns.extend(profile.aggregates.iter().cloned());
    let sql = format!(
        "SELECT {} FROM {} WHERE org_slug = @org_slug AND usage_date BETWEEN @start_date AND @end_date \
         GROUP BY usage_date",
        columns.join(", "),
        scope.warehouse.table_ref(scope.dataset, table)?
    );
    let mut params = scope.params();
    params.0.extend(profile.params.0.iter().cloned());
    by_day(scope.warehouse.query(&sql, &params).await?)
}

fn by_day(rows: Vec<Row>) -> WarehouseResult<ByDay> {
    rows.into_iter()
        .map(|r| {
            let day = r.get("usage_date").and_then(Value::as_str).and_then(|d| d.parse::<NaiveDate>().ok());
            day.map(|d| (d, r)).ok_or_else(|| {
                crate::warehouse::WarehouseError::Backend("a data-quality aggregate came back without its day".into())
            })
        })
        .collect()
}

/// Per day: keys of `columns` held by more than one row, and the rows beyond the first of each.
async fn duplicates(scope: &Scope<'_>, table: &str, columns: &[String], exists: bool) -> WarehouseResult<ByDay> {
    if !exists {
        return Ok(ByDay::new());
    }
    let mut key = vec!["usage_date"];
    key.extend(columns.iter().map(String::as_str).filter(|c| *c != "usage_date"));
    let sql = format!(
        "SELECT usage_date, COUNT(*) AS duplicate_keys, SUM(n) - COUNT(*) AS duplicate_rows FROM (\
         SELECT usage_date, COUNT(*) AS n FROM {} \
         WHERE org_slug = @org_slug AND usage_date BETWEEN @start_date AND @end_date \
         GROUP BY {} HAVING COUNT(*) > 1) AS d GROUP BY usage_date",
        scope.warehouse.table_ref(scope.dataset, table)?,
        key.join(", ")
    );
    by_day(scope.warehouse.query(&sql, &scope.params()).await?)
}

/// An expectation's check with the aliases of what it needs from the profiles.
enum Plan<'s> {
    NotNull(Vec<(String, String)>),
    Unique(&'s [String]),
    Between {
        column: &'s str,
        min: Option<Decimal>,
        max: Option<Decimal>,
        out: String,
        lo: String,
        hi: String,
    },
    RowCount {
        min: Option<u64>,
        max: Option<u64>,
    },
    Freshness {
        column: &'s str,
        max_lag_hours: u32,
        newest: String,
    },
    Total {
        what: String,
        source_table: &'s str,
        source_what: String,
        tolerance: Decimal,
        observed: Vec<String>,
        source: Vec<String>,
    },
}

/// Evaluates every expectation of `suite` over the scope: one finding per expectation, day and
/// (for per-column checks) column.
pub(crate) async fn evaluate<'s>(scope: &Scope<'_>, suite: &'s Suite) -> WarehouseResult<Vec<Finding<'s>>> {
    let existing = scope.warehouse.list_tables(scope.dataset).await?;
    let exists = |t: &str| existing.iter().any(|e| e == t);
    let mut profiles: BTreeMap<&str, Profile> = BTreeMap::from([(suite.table.as_str(), Profile::default())]);
    let mut plans = Vec::with_capacity(suite.expectations.len());
    for (i, e) in suite.expectations.iter().enumerate() {
        let main = profiles.get_mut(suite.table.as_str()).expect("the suite's own table");
        let plan = match &e.check {
            Check::NotNull { columns } => {
                Plan::NotNull(columns.iter().map(|c| (c.clone(), main.add(format!("COUNT(*) - COUNT({c})")))).collect())
            }
            Check::Unique { columns } => Plan::Unique(columns),
            Check::Between { column, min, max } => {
                let mut outside = Vec::new();
                if let Some(min) = min {
                    outside.push(format!("{column} < {}", main.bind(format!("e{i}_min"), *min)));
                }
                if let Some(max) = max {
                    outside.push(format!("{column} > {}", main.bind(format!("e{i}_max"), *max)));
                }
                Plan::Between {
                    column,
                    min: *min,
                    max: *max,
                    out: main.add(format!("COUNT(CASE WHEN {} THEN 1 END)", outside.join(" OR "))),
                    lo: main.add(format!("MIN({column})")),
                    hi: main.add(format!("MAX({column})")),
                }
            }
            Check::RowCount { min, max } => Plan::RowCount { min: *min, max: *max },
            Check::Freshness { column, max_lag_hours } => {
                Plan::Freshness { column, max_lag_hours: *max_lag_hours, newest: main.add(format!("MAX({column})")) }
            }
            Check::TotalMatches { columns, source_table, source_columns, tolerance } => {
                let observed = columns.iter().map(|c| main.add(format!("SUM({c})"))).collect();
                let source_profile = profiles.entry(source_table.as_str()).or_default();
                let source = source_columns.iter().map(|c| source_profile.add(format!("SUM({c})"))).collect();
                Plan::Total {
                    what: columns.join(" + "),
                    source_table,
                    source_what: format!("{} of {source_table}", source_columns.join(" + ")),
                    tolerance: *tolerance,
                    observed,
                    source,
                }
            }
        };
        plans.push(plan);
    }
    let mut results: BTreeMap<&str, ByDay> = BTreeMap::new();
    for (table, profile) in &profiles {
        results.insert(table, run_profile(scope, table, profile, exists(table)).await?);
    }
    let main = &results[suite.table.as_str()];
    let mut findings = Vec::new();
    for (e, plan) in suite.expectations.iter().zip(plans) {
        let finding = |day: NaiveDate| Finding {
            expectation: e,
            usage_date: day,
            dimension: None,
            passed: true,
            observed: None,
            expected: None,
            tolerance: None,
            expected_text: String::new(),
            message: String::new(),
            details: json!({"type": e.check.type_name(), "suite": suite.name}),
        };
        match plan {
            Plan::NotNull(columns) => {
                for day in scope.days() {
                    let row = main.get(&day);
                    let rows = int(row, "row_count");
                    for (column, alias) in &columns {
                        let nulls = int(row, alias);
                        let mut f = finding(day);
                        f.dimension = Some(column.clone());
                        f.passed = nulls == 0;
                        (f.observed, f.expected) = (Some(nulls.into()), Some(Decimal::ZERO));
                        f.expected_text = format!("no NULL {column}");
                        f.message = if f.passed {
                            format!("{}: no NULL {column} in {rows} rows of {day}", e.name)
                        } else {
                            format!("{}: {nulls} of {rows} rows of {day} have NULL {column} (expected none)", e.name)
                        };
                        f.details["rows"] = rows.into();
                        findings.push(f);
                    }
                }
            }
            Plan::Unique(columns) => {
                let dups = duplicates(scope, &suite.table, columns, exists(&suite.table)).await?;
                let key = columns.join(", ");
                for day in scope.days() {
                    let row = dups.get(&day);
                    let (keys, rows) = (int(row, "duplicate_keys"), int(row, "duplicate_rows"));
                    let mut f = finding(day);
                    f.passed = keys == 0;
                    (f.observed, f.expected) = (Some(rows.into()), Some(Decimal::ZERO));
                    f.expected_text = format!("one row per ({key}) each day");
                    f.message = if f.passed {
                        format!("{}: one row per ({key}) on {day}", e.name)
                    } else {
                        format!(
                            "{}: {keys} values of ({key}) on {day} have more than one row, {rows} rows too many \
                             (expected one each)",
                            e.name
                        )
                    };
                    f.details["duplicate_keys"] = keys.into();
                    findings.push(f);
                }
            }
            Plan::Between { column, min, max, out, lo, hi } => {
                let range = range_text(min, max);
                for day in scope.days() {
                    let row = main.get(&day);
                    let (outside, rows) = (int(row, &out), int(row, "row_count"));
                    let (low, high) = (dec(row, &lo), dec(row, &hi));
                    let mut f = finding(day);
                    f.dimension = Some(column.to_string());
                    f.passed = outside == 0;
                    (f.observed, f.expected) = (Some(outside.into()), Some(Decimal::ZERO));
                    f.expected_text = format!("{column} {range}");
                    let seen = match (low, high) {
                        (Some(l), Some(h)) => format!("observed {l} to {h}"),
                        _ => "no values".to_string(),
                    };
                    f.message = if f.passed {
                        format!("{}: {column} {range} on {day} ({seen})", e.name)
                    } else {
                        format!("{}: {outside} of {rows} rows of {day} have {column} outside {range} ({seen})", e.name)
                    };
                    f.details["min"] = json!(min.map(|d| d.to_string()));
                    f.details["max"] = json!(max.map(|d| d.to_string()));
                    f.details["observed_min"] = json!(low.map(|d| d.to_string()));
                    f.details["observed_max"] = json!(high.map(|d| d.to_string()));
                    findings.push(f);
                }
            }
            Plan::RowCount { min, max } => {
                let range = range_text(min, max);
                for day in scope.days() {
                    let rows = int(main.get(&day), "row_count");
                    let n = u64::try_from(rows).unwrap_or_default();
                    let low = min.is_some_and(|m| n < m);
                    let high = max.is_some_and(|m| n > m);
                    let mut f = finding(day);
                    f.passed = !low && !high;
                    f.observed = Some(rows.into());
                    // The bound that was crossed, else the one that bounds from below.
                    f.expected = if high { max } else { min.or(max) }.map(Decimal::from);
                    f.expected_text = format!("{range} rows a day");
                    f.message = if f.passed {
                        format!("{}: {rows} rows on {day} ({range})", e.name)
                    } else {
                        format!("{}: {rows} rows on {day} (expected {range})", e.name)
                    };
                    findings.push(f);
                }
            }
            Plan::Freshness { column, max_lag_hours, newest } => {
                let newest = main.values().filter_map(|r| text(Some(r), &newest)).filter_map(|v| {
                    let at = instant(&v)?;
                    Some((at, v))
                });
                let newest = newest.max_by_key(|(at, _)| *at);
                let window_end = scope.end.checked_add_days(Days::new(1)).and_then(|d| d.and_hms_opt(0, 0, 0));
                let window_end = window_end.map(|t| t.and_utc()).unwrap_or_default();
                let limit = Decimal::from(max_lag_hours);
                let mut f = finding(scope.end);
                f.dimension = Some(column.to_string());
                f.expected = Some(limit);
                f.expected_text = format!("newest {column} at most {max_lag_hours} hours before the window's end");
                let end_text = crate::warehouse::format_timestamp(&window_end);
                match newest {
                    Some((at, value)) => {
                        let lag = (Decimal::from((window_end - at).num_seconds()) / Decimal::from(3600)).round_dp(2);
                        f.passed = lag <= limit;
                        f.observed = Some(lag);
                        f.message = format!(
                            "{}: newest {column} {value} is {lag} hours before the window's end {end_text} \
                             (expected at most {max_lag_hours})",
                            e.name
                        );
                        f.details["newest"] = json!(value);
                    }
                    None => {
                        f.passed = false;
                        f.message = format!(
                            "{}: no {column} in the window {} to {} (expected one at most {max_lag_hours} hours \
                             before {end_text})",
                            e.name, scope.start, scope.end
                        );
                    }
                }
                f.details["window_end"] = json!(end_text);
                findings.push(f);
            }
            Plan::Total { what, source_table, source_what, tolerance, observed, source } => {
                let source_days = &results[source_table];
                for day in scope.days() {
                    let sum = |days: &ByDay, aliases: &[String]| -> Decimal {
                        aliases.iter().filter_map(|a| dec(days.get(&day), a)).sum()
                    };
                    let (got, want) = (sum(main, &observed), sum(source_days, &source));
                    let mut f = finding(day);
                    f.passed = (got - want).abs() <= tolerance;
                    (f.observed, f.expected, f.tolerance) = (Some(got), Some(want), Some(tolerance));
                    f.expected_text = format!("SUM({what}) equal to SUM({source_what}) within {tolerance}");
                    f.message = format!(
                        "{}: SUM({what}) {got} vs SUM({source_what}) {want} on {day}: difference {} ({} tolerance \
                         {tolerance})",
                        e.name,
                        got - want,
                        if f.passed { "within" } else { "beyond" },
                    );
                    f.details["source_table"] = json!(source_table);
                    findings.push(f);
                }
            }
        }
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_instants() {
        assert_eq!(
            instant("2026-11-01").unwrap(),
            "2026-11-02T00:00:00Z".parse::<DateTime<Utc>>().unwrap(),
            "a day is fresh until it ends"
        );
        assert_eq!(
            instant("2026-11-01T05:30:00.000000Z").unwrap(),
            "2026-11-01T05:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(instant("yesterday").is_none());
    }

    #[test]
    fn aggregates_read_from_either_backend_form() {
        let row: Row = serde_json::from_value(json!({"a": 3, "b": "12.500", "c": 1.5e-7, "d": null})).unwrap();
        assert_eq!(int(Some(&row), "a"), 3);
        assert_eq!(dec(Some(&row), "b"), Some("12.5".parse().unwrap()));
        assert_eq!(dec(Some(&row), "c"), Some("0.00000015".parse().unwrap()));
        assert_eq!((dec(Some(&row), "d"), int(None, "a")), (None, 0));
    }
}
