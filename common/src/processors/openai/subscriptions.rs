//! `openai.subscriptions`: the organization's OpenAI subscription book (API usage tiers, ChatGPT
//! seat plans, contracts) as it stood each month of the window → `openai_subscriptions_monthly`.
//! OpenAI has no API for seats (provider-apis.md §7): the seat counts are the organization's own,
//! kept in its subscription book (`seats`, set with `PUT .../subscriptions/{plan_name}`) and
//! effective-dated like its prices, so each organization is billed its own seats.
//!
//! One row per plan, month and book version in force during the month (a *segment*): a month
//! where the seats or the price changed has one row per stretch of days. The window covers whole
//! months: the first month from its 1st, the last to its last day.
//!
//! Cost of a segment, pro rata by day (what a seat bill does when seats are added mid-cycle):
//! `seat_price_monthly × max(seats, min_seats) × days_in_force / days_in_month`, rounded to the
//! cent (half away from zero) like an invoice line. A month without a change is one segment of
//! every day: exactly `seat_price_monthly × max(seats, min_seats)`. NULL without seats or a seat
//! price. Why pro rata and not "the count on the 1st": a seat added on the 2nd would otherwise
//! cost nothing for a month, and one removed on the 2nd would cost a whole month; a per-day
//! proration follows the book's effective dates exactly and keeps each month's total equal to the
//! sum of its days whatever the changes.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{Datelike, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Deserialize;
use serde_json::{json, Value};

use super::PROVIDER;
use crate::pipeline::{Processor, StepContext, StepError, StepOutcome};
use crate::pricebook::records::parse_decimal;
use crate::pricebook::BookKind;
use crate::processors::{col_date, col_str, date_text, numeric, table_schema, write_window};
use crate::warehouse::{add_missing_columns, create_or_extend_table, to_row, Row, WarehouseError};

pub const TABLE: &str = "openai_subscriptions_monthly";

/// Settings of an `openai.subscriptions` step. Seat counts are not settings: they are the
/// organization's, in its subscription book.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
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

fn month_end(d: NaiveDate) -> NaiveDate {
    next_month(month_start(d)).pred_opt().unwrap_or(d)
}

fn in_force(row: &Row, day: NaiveDate) -> bool {
    col_date(row, "effective_from").is_some_and(|f| f <= day) && col_date(row, "effective_to").is_none_or(|t| day < t)
}

fn money(row: &Row, column: &str) -> Option<Decimal> {
    col_str(row, column).and_then(parse_decimal)
}

/// One version of a plan over consecutive days of a month.
struct Segment<'a> {
    version: &'a Row,
    first: NaiveDate,
    last: NaiveDate,
}

/// The cost of `days` of a month of `days_in_month` at `price` per seat-month for `seats`
/// (at least `min_seats`), to the cent.
pub(crate) fn prorated_cost(price: Decimal, seats: u64, min_seats: u64, days: u32, days_in_month: u32) -> Decimal {
    let billed = Decimal::from(seats.max(min_seats));
    (price * billed * Decimal::from(days) / Decimal::from(days_in_month))
        .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// What the month rows came to.
#[derive(Debug, Default)]
pub(crate) struct Months {
    pub rows: Vec<Row>,
    pub total: Decimal,
    /// Plans with seats but no seat price (a contract whose price was never entered).
    pub seats_without_price: Vec<String>,
}

/// Month rows from book versions, for every month touching `start..=end`. Pure: tested directly.
pub(crate) fn month_rows(org: &str, versions: &[Row], config: &Config, start: NaiveDate, end: NaiveDate) -> Months {
    let mut out = Months::default();
    let mut by_plan: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for v in versions {
        let Some(plan) = col_str(v, "plan_name") else { continue };
        if config.plans.as_ref().is_some_and(|p| !p.iter().any(|x| x == plan)) {
            continue;
        }
        by_plan.entry(plan).or_default().push(v);
    }
    let mut month = month_start(start);
    while month <= end {
        let last_day = month_end(month);
        let days_in_month = last_day.day();
        for (plan, plan_versions) in &by_plan {
            // Day by day, the version in force (at most one: a plan's versions never overlap).
            let mut segments: Vec<Segment> = Vec::new();
            for day in month.iter_days().take_while(|d| *d <= last_day) {
                let Some(v) = plan_versions.iter().copied().find(|v| in_force(v, day)) else { continue };
                match segments.last_mut() {
                    Some(s) if std::ptr::eq(s.version, v) && s.last.succ_opt() == Some(day) => s.last = day,
                    _ => segments.push(Segment { version: v, first: day, last: day }),
                }
            }
            for s in segments {
                let v = s.version;
                let seats = v.get("seats").and_then(Value::as_u64);
                let min_seats = v.get("min_seats").and_then(Value::as_u64);
                let price = money(v, "seat_price_monthly");
                let days = (s.last - s.first).num_days() as u32 + 1;
                let cost = match (seats, price) {
                    (Some(n), Some(p)) => Some(prorated_cost(p, n, min_seats.unwrap_or(0), days, days_in_month)),
                    (Some(_), None) => {
                        if !out.seats_without_price.iter().any(|p| p == plan) {
                            out.seats_without_price.push(plan.to_string());
                        }
                        None
                    }
                    _ => None,
                };
                out.total += cost.unwrap_or_default();
                out.rows.push(to_row(json!({
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
                    "period_start": date_text(s.first),
                    "period_end": date_text(s.last),
                    "days_billed": days,
                    "days_in_month": days_in_month,
                    "monthly_cost": cost.map_or(Value::Null, numeric),
                    "monthly_usage_limit": money(v, "monthly_usage_limit").map_or(Value::Null, numeric),
                    "price_version_id": v.get("version_id"),
                    "price_version": v.get("version"),
                    "price_effective_from": v.get("effective_from"),
                })));
            }
        }
        month = next_month(month);
    }
    out
}

/// Gives a subscription book made before `seats` existed its new columns (only when the book
/// exists: a missing book is the integration's to create).
async fn extend_book(ctx: &StepContext<'_>) -> Result<(), StepError> {
    let Some(seed) = ctx.configs.price_books.get(PROVIDER) else { return Ok(()) };
    let schema = seed.schema(BookKind::Subscriptions);
    match ctx.warehouse.list_tables(ctx.dataset).await {
        Ok(tables) if tables.contains(&schema.name) => {
            add_missing_columns(ctx.warehouse, ctx.dataset, schema).await?;
            Ok(())
        }
        Ok(_) | Err(WarehouseError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[async_trait]
impl Processor for OpenAiSubscriptions {
    const TYPE: &'static str = "openai.subscriptions";
    const TABLES: &'static [&'static str] = &[TABLE];
    type Config = Config;

    async fn run(config: &Config, ctx: &StepContext<'_>) -> Result<StepOutcome, StepError> {
        let schema = table_schema(ctx.configs, PROVIDER, TABLE)?;
        // Whole months: the window's first month from its 1st, its last to its last day.
        let (start, end) = (month_start(ctx.start_date), month_end(ctx.end_date));
        extend_book(ctx).await?;
        let versions = crate::pricebook::versions_between(
            ctx.warehouse,
            ctx.configs,
            ctx.dataset,
            ctx.org_slug,
            PROVIDER,
            BookKind::Subscriptions,
            start,
            end,
        )
        .await?
        .ok_or_else(|| {
            StepError::Failed(format!(
                "organization {} has no {PROVIDER} subscription book: set up the {PROVIDER} integration first",
                ctx.org_slug
            ))
        })?;
        let months = month_rows(ctx.org_slug, &versions, config, start, end);
        let warnings: Vec<String> = months
            .seats_without_price
            .iter()
            .map(|plan| {
                format!(
                    "plan {plan} has seats but no seat_price_monthly: its seats are not costed (set the price with \
                     PUT .../{PROVIDER}/subscriptions/{plan})"
                )
            })
            .collect();
        // Tables written before the segment columns existed gain them.
        create_or_extend_table(ctx.warehouse, ctx.dataset, schema).await?;
        let written = write_window(ctx, schema, start, end, &months.rows).await?;
        Ok(StepOutcome {
            rows_written: written,
            warnings,
            metrics: json!({"table": TABLE, "rows": written, "total_cost": numeric(months.total)}),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::too_many_arguments)]
    fn version(
        plan: &str,
        v: i64,
        from: &str,
        to: Option<&str>,
        price: Option<&str>,
        min: Option<u64>,
        seats: Option<u64>,
    ) -> Row {
        to_row(json!({
            "plan_name": plan, "version_id": format!("{plan}-{v}"), "version": v, "effective_from": from,
            "effective_to": to, "currency": "USD", "plan_type": "seat", "seat_price_monthly": price,
            "min_seats": min, "seats": seats,
        }))
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn costs(rows: &[Row], plan: &str) -> Vec<(String, Option<String>)> {
        rows.iter()
            .filter(|r| r["plan_name"] == plan)
            .map(|r| (r["period_start"].as_str().unwrap().to_string(), r["monthly_cost"].as_str().map(String::from)))
            .collect()
    }

    #[test]
    fn whole_months_cost_seats_times_price() {
        let versions = vec![
            version("business", 1, "1970-01-01", None, Some("25"), Some(2), Some(10)),
            version("tier_1", 1, "1970-01-01", None, None, None, None),
        ];
        let m = month_rows("acme", &versions, &Config::default(), d("2026-03-15"), d("2026-05-10"));
        // March, April, May × 2 plans, one segment each.
        assert_eq!(m.rows.len(), 6);
        // 10 × 25 = 250 a month.
        assert!(costs(&m.rows, "business").iter().all(|(_, c)| c.as_deref() == Some("250")));
        assert_eq!(m.total, Decimal::from(750));
        assert!(costs(&m.rows, "tier_1").iter().all(|(_, c)| c.is_none()), "no seats, no cost");
        // Fewer seats than the minimum: billed at the minimum (2 × 25 = 50).
        let one = vec![version("business", 1, "1970-01-01", None, Some("25"), Some(2), Some(1))];
        let m = month_rows("acme", &one, &Config::default(), d("2026-05-01"), d("2026-05-31"));
        assert_eq!(costs(&m.rows, "business"), vec![("2026-05-01".into(), Some("50".into()))]);
    }

    #[test]
    fn a_change_mid_month_is_prorated_by_day() {
        // April 2026 has 30 days. 10 seats at 30 until the 2nd (1 day), then 25 a seat and 12
        // seats from the 2nd until the 21st (19 days), then 4 seats (10 days, below min 5).
        let versions = vec![
            version("business", 1, "1970-01-01", Some("2026-04-02"), Some("30"), Some(5), Some(10)),
            version("business", 2, "2026-04-02", Some("2026-04-21"), Some("25"), Some(5), Some(12)),
            version("business", 3, "2026-04-21", None, Some("25"), Some(5), Some(4)),
        ];
        let m = month_rows("acme", &versions, &Config::default(), d("2026-04-01"), d("2026-04-30"));
        // 30 × 10 × 1/30 = 10.00; 25 × 12 × 19/30 = 190.00; 25 × 5 × 10/30 = 41.666… → 41.67.
        assert_eq!(
            costs(&m.rows, "business"),
            vec![
                ("2026-04-01".into(), Some("10".into())),
                ("2026-04-02".into(), Some("190".into())),
                ("2026-04-21".into(), Some("41.67".into())),
            ]
        );
        assert_eq!(m.total, "241.67".parse::<Decimal>().unwrap());
        assert_eq!((m.rows[2]["days_billed"].as_u64(), m.rows[2]["days_in_month"].as_u64()), (Some(10), Some(30)));
        assert_eq!(m.rows[2]["period_end"], "2026-04-30");
        // A plan added on the 16th of a 31-day month costs 16/31 of it: 25 × 3 × 16/31 = 38.709… → 38.71.
        let late = vec![version("business", 1, "2026-05-16", None, Some("25"), None, Some(3))];
        let m = month_rows("acme", &late, &Config::default(), d("2026-05-01"), d("2026-05-31"));
        assert_eq!(costs(&m.rows, "business"), vec![("2026-05-16".into(), Some("38.71".into()))]);
    }

    #[test]
    fn seats_without_a_price_are_reported() {
        let versions = vec![version("enterprise", 1, "1970-01-01", None, None, None, Some(150))];
        let m = month_rows("acme", &versions, &Config::default(), d("2026-05-01"), d("2026-05-31"));
        assert!(m.rows[0]["monthly_cost"].is_null());
        assert_eq!(m.seats_without_price, vec!["enterprise".to_string()]);
    }
}
