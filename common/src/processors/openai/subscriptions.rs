//! `openai.subscriptions`: the organization's OpenAI subscription book (API usage tiers, ChatGPT
//! seat plans, contracts) as it stood each month of the window → `openai_subscriptions_monthly`,
//! one row per plan and month, with the seat cost of the plans the step declares seats for.
//! OpenAI has no API for seats (provider-apis.md §7), so the seat counts come from the config.
//!
//! Month row: `usage_date` = the month's first day; the version used is the one in force on that
//! day (or, for a plan that starts later in the month, its first version of the month);
//! `monthly_cost` = seat_price_monthly × max(seats, min_seats).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};

use super::PROVIDER;
use crate::pipeline::{Processor, StepContext, StepError, StepOutcome};
use crate::pricebook::records::parse_decimal;
use crate::pricebook::BookKind;
use crate::processors::{col_date, col_str, date_text, numeric, table_schema, write_window};
use crate::warehouse::{to_row, Row};

pub const TABLE: &str = "openai_subscriptions_monthly";

/// Settings of an `openai.subscriptions` step.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Seats per plan (`plan_name: seats`, e.g. `chatgpt_business_monthly: 12`); a plan listed
    /// here gets a monthly cost.
    #[serde(default)]
    pub seats: BTreeMap<String, u32>,
    /// Only these plans (default: every plan in the book).
    #[serde(default)]
    pub plans: Option<Vec<String>>,
}

pub struct OpenAiSubscriptions;

fn month_start(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

fn next_month(d: NaiveDate) -> NaiveDate {
    let (y, m) = if d.month() == 12 { (d.year() + 1, 1) } else { (d.year(), d.month() + 1) };
    NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(d)
}

fn in_force(row: &Row, day: NaiveDate) -> bool {
    col_date(row, "effective_from").is_some_and(|f| f <= day) && col_date(row, "effective_to").is_none_or(|t| day < t)
}

fn money(row: &Row, column: &str) -> Option<Decimal> {
    col_str(row, column).and_then(parse_decimal)
}

/// Month rows from book versions. Pure: tested directly.
pub(crate) fn month_rows(
    org: &str,
    versions: &[Row],
    config: &Config,
    start: NaiveDate,
    end: NaiveDate,
) -> (Vec<Row>, Decimal) {
    let mut rows = Vec::new();
    let mut total = Decimal::ZERO;
    let mut month = month_start(start);
    while month <= end {
        let last = next_month(month).pred_opt().unwrap_or(month).min(end);
        let mut plans: BTreeMap<&str, &Row> = BTreeMap::new();
        for v in versions {
            let Some(plan) = col_str(v, "plan_name") else { continue };
            if config.plans.as_ref().is_some_and(|p| !p.iter().any(|x| x == plan)) {
                continue;
            }
            let from = col_date(v, "effective_from").unwrap_or(month);
            // In force on the 1st, else the first version starting in the month (up to the end).
            let candidate = in_force(v, month) || (from > month && from <= last);
            if !candidate {
                continue;
            }
            let better = match plans.get(plan) {
                None => true,
                Some(old) => {
                    !in_force(old, month) && (in_force(v, month) || col_date(old, "effective_from") > Some(from))
                }
            };
            if better {
                plans.insert(plan, v);
            }
        }
        for (plan, v) in plans {
            let seats = config.seats.get(plan).copied();
            let min_seats = v.get("min_seats").and_then(Value::as_u64);
            let price = money(v, "seat_price_monthly");
            let cost = match (seats, price) {
                (Some(s), Some(p)) => Some(p * Decimal::from(u64::from(s).max(min_seats.unwrap_or(0)))),
                _ => None,
            };
            total += cost.unwrap_or_default();
            rows.push(to_row(json!({
                "usage_date": date_text(month),
                "org_slug": org,
                "plan_name": plan,
                "display_name": v.get("display_name"),
                "plan_type": v.get("plan_type"),
                "billing_cycle": v.get("billing_cycle"),
                "currency": v.get("currency"),
                "seat_price_monthly": price.map_or(Value::Null, numeric),
                "min_seats": min_seats,
                "seats": seats,
                "monthly_cost": cost.map_or(Value::Null, numeric),
                "monthly_usage_limit": money(v, "monthly_usage_limit").map_or(Value::Null, numeric),
                "price_version_id": v.get("version_id"),
                "price_version": v.get("version"),
                "price_effective_from": v.get("effective_from"),
            })));
        }
        month = next_month(month);
    }
    (rows, total)
}

#[async_trait]
impl Processor for OpenAiSubscriptions {
    const TYPE: &'static str = "openai.subscriptions";
    const TABLES: &'static [&'static str] = &[TABLE];
    type Config = Config;

    async fn run(config: &Config, ctx: &StepContext<'_>) -> Result<StepOutcome, StepError> {
        let schema = table_schema(ctx.configs, PROVIDER, TABLE)?;
        // Whole months: the window's first month from its 1st.
        let start = month_start(ctx.start_date);
        let versions = crate::pricebook::versions_between(
            ctx.warehouse,
            ctx.configs,
            ctx.dataset,
            ctx.org_slug,
            PROVIDER,
            BookKind::Subscriptions,
            start,
            ctx.end_date,
        )
        .await?
        .ok_or_else(|| {
            StepError::Failed(format!(
                "organization {} has no {PROVIDER} subscription book: set up the {PROVIDER} integration first",
                ctx.org_slug
            ))
        })?;
        let (rows, total) = month_rows(ctx.org_slug, &versions, config, start, ctx.end_date);
        let mut warnings = Vec::new();
        for plan in config.seats.keys() {
            if !rows.iter().any(|r| r.get("plan_name").and_then(Value::as_str) == Some(plan.as_str())) {
                warnings.push(format!(
                    "seats are configured for plan {plan}, which is not in the {PROVIDER} subscription book for this window"
                ));
            }
        }
        let written = write_window(ctx, schema, start, ctx.end_date, &rows).await?;
        Ok(StepOutcome {
            rows_written: written,
            warnings,
            metrics: json!({"table": TABLE, "rows": written, "total_cost": numeric(total)}),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(plan: &str, v: i64, from: &str, to: Option<&str>, price: Option<&str>, min: Option<u64>) -> Row {
        to_row(json!({
            "plan_name": plan, "version_id": format!("{plan}-{v}"), "version": v, "effective_from": from,
            "effective_to": to, "currency": "USD", "plan_type": "seat", "seat_price_monthly": price, "min_seats": min,
        }))
    }

    #[test]
    fn months_use_the_version_in_force_and_seats() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let versions = vec![
            version("business", 1, "1970-01-01", Some("2026-04-02"), Some("30"), Some(2)),
            version("business", 2, "2026-04-02", None, Some("25"), Some(2)),
            version("tier_1", 1, "1970-01-01", None, None, None),
        ];
        let config = Config { seats: [("business".to_string(), 10)].into(), plans: None };
        let (rows, total) = month_rows("acme", &versions, &config, d("2026-03-15"), d("2026-05-10"));
        // March, April, May × 2 plans.
        assert_eq!(rows.len(), 6);
        let business: Vec<&Row> = rows.iter().filter(|r| r["plan_name"] == "business").collect();
        // March: 10 × 30 = 300 (v1); April 1st still v1 (v2 starts on the 2nd): 300; May: 10 × 25 = 250.
        assert_eq!(business[0]["monthly_cost"], "300");
        assert_eq!(business[1]["price_version"], 1);
        assert_eq!(business[2]["monthly_cost"], "250");
        assert_eq!(total, Decimal::from(850));
        assert!(rows.iter().filter(|r| r["plan_name"] == "tier_1").all(|r| r["monthly_cost"].is_null()));
        // Fewer seats than the minimum: billed at the minimum (2 × 25 = 50).
        let one = Config { seats: [("business".to_string(), 1)].into(), plans: Some(vec!["business".into()]) };
        let (rows, _) = month_rows("acme", &versions, &one, d("2026-05-01"), d("2026-05-31"));
        assert_eq!((rows.len(), rows[0]["monthly_cost"].as_str()), (1, Some("50")));
    }
}
