//! Data-quality rows (`org_meta_dq_results`) and the reconciliation of computed cost with what a
//! provider billed: amounts per day and dimension, held against a tolerance, one result each.

use std::collections::BTreeMap;

use chrono::{NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::values::{date_text, opt_numeric};
use crate::pipeline::{StepContext, StepError};
use crate::warehouse::{format_timestamp, Row};

/// The central table data-quality results go to.
pub const DQ_TABLE: &str = "org_meta_dq_results";

/// A data-quality outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DqStatus {
    Pass,
    /// Not a check that passed or failed: something the provider billed that we do not price
    /// (an OpenAI line item such as image generation or storage), reported so it is seen, never
    /// counted as a mismatch.
    Unpriced,
    Warn,
    Fail,
}

impl DqStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DqStatus::Pass => "PASS",
            DqStatus::Unpriced => "UNPRICED",
            DqStatus::Warn => "WARN",
            DqStatus::Fail => "FAIL",
        }
    }
}

/// One row of `org_meta_dq_results`.
#[derive(Debug, Clone)]
pub struct DqResult {
    pub check_name: &'static str,
    pub usage_date: NaiveDate,
    pub dimension: Option<String>,
    pub status: DqStatus,
    pub expected: Option<Decimal>,
    pub observed: Option<Decimal>,
    pub tolerance: Option<Decimal>,
    pub currency: Option<String>,
    pub details: Value,
}

/// Records this run's data-quality results about `table` for the step's window.
pub(crate) async fn write_dq(ctx: &StepContext<'_>, table: &str, results: &[DqResult]) -> Result<u64, StepError> {
    let central = ctx.configs.central_dataset();
    let schema = ctx.configs.central_table(DQ_TABLE);
    let now = format_timestamp(&Utc::now());
    let rows: Vec<Row> = results
        .iter()
        .map(|r| {
            let diff = match (r.observed, r.expected) {
                (Some(o), Some(e)) => Some(o - e),
                _ => None,
            };
            let v = json!({
                "dq_id": uuid::Uuid::new_v4().to_string(),
                "run_id": ctx.run_id,
                "org_slug": ctx.org_slug,
                "pipeline_id": ctx.pipeline_id,
                "step_id": ctx.step_id,
                "check_name": r.check_name,
                "table_name": table,
                "usage_date": date_text(r.usage_date),
                "dimension": r.dimension,
                "status": r.status.as_str(),
                "expected_value": opt_numeric(r.expected),
                "observed_value": opt_numeric(r.observed),
                "difference": opt_numeric(diff),
                "tolerance": opt_numeric(r.tolerance),
                "currency": r.currency,
                "details": r.details.to_string(),
                "created_at": now,
            });
            crate::warehouse::to_row(v)
        })
        .collect();
    // Appended, never replaced: org_meta_dq_results is a central table, and central tables take
    // no mutating DML (DESIGN §12). `dq_results_current` reads each day's results of the latest
    // run that checked it.
    Ok(ctx.warehouse.append_rows(central, schema, "dq_id", &rows).await?)
}

/// How computed cost is held against what the provider billed. A difference passes up to the
/// allowance: the larger of the absolute floor `warn` and `relative` × |reported| (so a large
/// line may be off by its share, a small one by the floor: a fraction of a cent never fails on
/// relative terms alone). Beyond it: WARN, or FAIL when also beyond `fail`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tolerance {
    /// Absolute floor of the allowance.
    pub warn: Decimal,
    /// Beyond this absolute difference (when set, and beyond the allowance): FAIL.
    pub fail: Option<Decimal>,
    /// Share of the reported amount allowed (`0.01` = 1 %); zero: the floor alone.
    pub relative: Decimal,
}

impl Tolerance {
    /// The difference allowed against `reported`.
    pub fn allowance(&self, reported: Decimal) -> Decimal {
        // NUMERIC holds 9 decimal places (a share of an amount may have more).
        self.warn.max(self.relative * reported.abs()).round_dp(9)
    }

    pub fn status(&self, difference: Decimal, reported: Decimal) -> DqStatus {
        let d = difference.abs();
        if d <= self.allowance(reported) {
            return DqStatus::Pass;
        }
        match self.fail {
            Some(fail) if d > fail => DqStatus::Fail,
            _ => DqStatus::Warn,
        }
    }
}

/// Amounts per (day, dimension); the dimension is None for the day's total.
pub(crate) type Amounts = BTreeMap<(NaiveDate, Option<String>), Decimal>;

/// Amounts per day and value of one dimension (a project, a model), added to once per priced
/// row: a value seen before costs a lookup, not an allocated key.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct DimensionAmounts {
    by_day: BTreeMap<NaiveDate, std::collections::HashMap<String, Decimal>>,
}

impl DimensionAmounts {
    pub fn add(&mut self, day: NaiveDate, value: &str, amount: Decimal) {
        let values = self.by_day.entry(day).or_default();
        match values.get_mut(value) {
            Some(total) => *total += amount,
            None => {
                values.insert(value.to_string(), amount);
            }
        }
    }

    /// As reconciliation amounts, the dimension written `{name}={value}`.
    pub fn amounts(&self, name: &str) -> Amounts {
        let mut out = Amounts::new();
        for (day, values) in &self.by_day {
            for (value, amount) in values {
                out.insert((*day, Some(format!("{name}={value}"))), *amount);
            }
        }
        out
    }
}

/// Computed vs reported, one result per key either side has: expected = reported, observed =
/// computed. A key one side lacks counts as zero there.
pub(crate) fn reconcile(
    check_name: &'static str,
    computed: &Amounts,
    reported: &Amounts,
    tolerance: &Tolerance,
    currency: &str,
    details: impl Fn(&(NaiveDate, Option<String>)) -> Value,
) -> Vec<DqResult> {
    let mut keys: Vec<&(NaiveDate, Option<String>)> = computed.keys().chain(reported.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|key| {
            let observed = computed.get(key).copied().unwrap_or_default();
            let expected = reported.get(key).copied().unwrap_or_default();
            DqResult {
                check_name,
                usage_date: key.0,
                dimension: key.1.clone(),
                status: tolerance.status(observed - expected, expected),
                expected: Some(expected),
                observed: Some(observed),
                tolerance: Some(tolerance.allowance(expected)),
                currency: Some(currency.to_string()),
                details: details(key),
            }
        })
        .collect()
}

/// Counts of PASS / WARN / FAIL (and UNPRICED, when there are any).
pub(crate) fn tally(results: &[DqResult]) -> Value {
    let count = |s: DqStatus| results.iter().filter(|r| r.status == s).count();
    let mut out = json!({"checks": results.len(), "pass": count(DqStatus::Pass), "warn": count(DqStatus::Warn), "fail": count(DqStatus::Fail)});
    if count(DqStatus::Unpriced) > 0 {
        out["unpriced"] = json!(count(DqStatus::Unpriced));
    }
    out
}

/// The warning for reconciliation results beyond tolerance (None when all passed).
pub(crate) fn reconciliation_warning(provider: &str, results: &[DqResult]) -> Option<String> {
    let checks: Vec<&DqResult> = results.iter().filter(|r| r.check_name.starts_with("cost_reconciliation")).collect();
    let off: Vec<&DqResult> =
        checks.iter().copied().filter(|r| matches!(r.status, DqStatus::Warn | DqStatus::Fail)).collect();
    let worst = off.iter().max_by_key(|r| (r.observed.unwrap_or_default() - r.expected.unwrap_or_default()).abs())?;
    Some(format!(
        "reconciliation: {} of {} computed-vs-{provider} cost checks beyond tolerance {} {}; largest on {}{}: computed {} vs reported {}",
        off.len(),
        checks.len(),
        worst.tolerance.unwrap_or_default(),
        worst.currency.as_deref().unwrap_or(""),
        date_text(worst.usage_date),
        worst.dimension.as_deref().map(|d| format!(" ({d})")).unwrap_or_default(),
        worst.observed.unwrap_or_default(),
        worst.expected.unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_and_reconciliation() {
        let t = Tolerance { warn: "0.01".parse().unwrap(), fail: Some("1".parse().unwrap()), ..Default::default() };
        let z = Decimal::ZERO;
        assert_eq!(t.status("0.01".parse().unwrap(), z), DqStatus::Pass);
        assert_eq!(t.status("-0.011".parse().unwrap(), z), DqStatus::Warn);
        assert_eq!(t.status("1.5".parse().unwrap(), z), DqStatus::Fail);
        // 1 % of the reported amount, at least the floor: 2 % off 10.00 is beyond 0.10, 0.5 % is
        // within; on 0.50 the floor (0.01) is the allowance.
        let r = Tolerance { relative: "0.01".parse().unwrap(), ..t.clone() };
        let ten = Decimal::from(10);
        assert_eq!((r.status("0.2".parse().unwrap(), ten), r.allowance(ten)), (DqStatus::Warn, "0.1".parse().unwrap()));
        assert_eq!(r.status("0.05".parse().unwrap(), ten), DqStatus::Pass);
        assert_eq!(r.allowance("0.5".parse().unwrap()), "0.01".parse().unwrap());
        let d = |s: &str| crate::pricebook::records::parse_date(s).unwrap();
        let computed: Amounts = [((d("2026-01-01"), None), "1.00".parse().unwrap())].into();
        let reported: Amounts =
            [((d("2026-01-01"), None), "1.005".parse().unwrap()), ((d("2026-01-02"), None), "0.5".parse().unwrap())]
                .into();
        let r = reconcile("cost_reconciliation_daily", &computed, &reported, &t, "USD", |_| Value::Null);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].status, DqStatus::Pass);
        assert_eq!((r[1].status, r[1].observed), (DqStatus::Warn, Some(Decimal::ZERO)), "a day only the provider has");
        assert!(reconciliation_warning("OpenAI", &r).unwrap().contains("1 of 2"));
    }
}
