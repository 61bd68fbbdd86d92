//! `anthropic.cost`: `anthropic_usage_daily_raw` × the organization's price book →
//! `anthropic_cost_daily` (one row per usage row, each token type priced with the version in
//! force on its day), reconciled with Anthropic's cost report (amounts in cents, ÷ 100) per day
//! and per model into `org_meta_dq_results`. Beyond the tolerance the step succeeds with a warning.
//!
//! Formula per row (DESIGN §9; Anthropic's token types are disjoint): `(uncached × input +
//! cache_read × cached_input + 5m_write × cache_write_5m + 1h_write × cache_write_1h + output ×
//! output) × multiplier + web_search_requests × web_search_per_1k_requests / 1000`, each rate per
//! 1M for the row's basis: standard; batch (`service_tier = batch`: the book's `batch_*` rates,
//! cache reads and writes included); long context (`context_window = 200k-1M`: the book's
//! `long_context_*` rates, batch `batch_long_context_*`, when it lists any for the model,
//! standard otherwise). The multiplier is `fast_mode_multiplier` for `speed = fast` times
//! `us_inference_multiplier` for `inference_geo = us` (`crate::cost` has every rule).
//! The report's `tokens` and `web_search` costs are compared per day, its `tokens` costs per day
//! and model; other cost types (code execution, sessions) are not in the usage report and are
//! listed beside the comparison.

use std::collections::BTreeMap;

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;

use super::usage;
use super::{client, PROVIDER};
use crate::cost::{Context, Geo, PriceBook, Speed, Tier, TokenType, Tokens, Usage};
use crate::pipeline::{Processor, StepContext, StepError, StepOutcome};
use crate::processors::llm::{credential, http, load_book, provider_failed};
use crate::processors::{
    date_text, decimal_text, default_page_size, default_tolerance, finish_cost_step, numeric, optional_decimal_text,
    page_size, read_window, reconcile, table_columns, table_schema, Amounts, CostLayout, CostSummary, DimensionAmounts,
    DqResult, DqStatus, Tolerance, Unpriced, WindowWriter,
};
use crate::processors::{mark_priced, mark_unpriced, set_price_version};
use crate::providers::anthropic::ReportQuery;
use crate::providers::retry::RetryPolicy;
use crate::warehouse::{Cell, Interner, Record};

pub const TABLE: &str = "anthropic_cost_daily";

table_columns! {
    /// `anthropic_cost_daily`, apart from the price columns every cost table has.
    pub(crate) struct CostColumns {
        usage_date, org_slug, model, workspace_id, api_key_id, service_tier, context_window, speed, inference_geo,
        uncached_input_tokens, cache_read_input_tokens, cache_write_5m_input_tokens, cache_write_1h_input_tokens,
        output_tokens, web_search_requests, uncached_input_cost, cache_read_cost, cache_write_5m_cost,
        cache_write_1h_cost, output_cost, web_search_cost, rate_multiplier, total_cost,
    }
}

/// Where the step reads raw usage and writes cost.
pub(crate) type Layout = CostLayout<usage::RawColumns, CostColumns>;

/// Settings of an `anthropic.cost` step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Pull Anthropic's cost report for the window and reconcile (default true).
    #[serde(default = "yes")]
    pub reconcile: bool,
    /// Largest |computed − reported| per day (and per model) that still passes, in the price
    /// book's currency (dollars, not cents), as a decimal string (default `"0.01"`).
    #[serde(default = "default_tolerance", deserialize_with = "decimal_text")]
    pub tolerance: Decimal,
    /// Beyond this difference a check is FAIL rather than WARN (decimal string; default: none).
    #[serde(default, deserialize_with = "optional_decimal_text")]
    pub fail_tolerance: Option<Decimal>,
    /// Daily buckets per page of the cost report, 1–31 (default 31).
    #[serde(default = "default_page_size", deserialize_with = "page_size")]
    pub page_size: u32,
    /// Retries of provider calls (429 / 5xx / 529): attempts, backoff, per-call timeout.
    #[serde(default)]
    pub retry: RetryPolicy,
}

fn yes() -> bool {
    true
}

pub struct AnthropicCost;

#[derive(Default)]
pub(crate) struct Priced {
    pub unpriced: Unpriced,
    pub daily: Amounts,
    pub by_model: DimensionAmounts,
    /// Text the cost records share (organization, price versions).
    pub names: Interner,
    pub currency: String,
    pub total: Decimal,
    pub priced_rows: u64,
}

impl Priced {
    /// Prices a batch of raw records, adding to the totals; returns the batch's cost records (the
    /// raw records' text moves into them). Pure: the golden tests call it directly.
    pub(crate) fn add(&mut self, org: &str, raw: Vec<Record>, at: &Layout, book: &mut PriceBook) -> Vec<Record> {
        let (r_, c_) = (&at.raw, &at.cost);
        let mut rows = Vec::with_capacity(raw.len());
        for mut r in raw {
            let Some(day) = r[r_.usage_date].as_date() else { continue };
            let tokens = Tokens {
                uncached_input: r[r_.uncached_input_tokens].as_u64(),
                cached_input: r[r_.cache_read_input_tokens].as_u64(),
                cache_write_5m: r[r_.cache_write_5m_input_tokens].as_u64(),
                cache_write_1h: r[r_.cache_write_1h_input_tokens].as_u64(),
                output: r[r_.output_tokens].as_u64(),
                ..Tokens::default()
            };
            let tier = Tier::anthropic(r[r_.service_tier].as_str());
            let context = Context::anthropic(r[r_.context_window].as_str());
            let (speed, geo) = (Speed::parse(r[r_.speed].as_str()), Geo::parse(r[r_.inference_geo].as_str()));
            let web_search = r[r_.web_search_requests].as_u64();
            let usage = Usage::anthropic(tokens, tier, context, speed, geo, web_search);
            let model = r[r_.model].as_str().unwrap_or("(no model)");
            let (version, cost) = book.price(model, day, &usage);
            let mut row = c_.record();
            row[c_.usage_date] = Cell::Date(day);
            row[c_.org_slug] = self.names.text(org);
            row[c_.uncached_input_tokens] = Cell::count(tokens.uncached_input);
            row[c_.cache_read_input_tokens] = Cell::count(tokens.cached_input);
            row[c_.cache_write_5m_input_tokens] = Cell::count(tokens.cache_write_5m);
            row[c_.cache_write_1h_input_tokens] = Cell::count(tokens.cache_write_1h);
            row[c_.output_tokens] = Cell::count(tokens.output);
            row[c_.web_search_requests] = Cell::count(web_search);
            if let Some(v) = version {
                set_price_version((&mut row, &at.price), &mut self.names, v, model);
            }
            match cost {
                Ok(c) => {
                    row[c_.uncached_input_cost] = Cell::opt_numeric(c.line(TokenType::UncachedInput));
                    row[c_.cache_read_cost] = Cell::opt_numeric(c.line(TokenType::CachedInput));
                    row[c_.cache_write_5m_cost] = Cell::opt_numeric(c.line(TokenType::CacheWrite5m));
                    row[c_.cache_write_1h_cost] = Cell::opt_numeric(c.line(TokenType::CacheWrite1h));
                    row[c_.output_cost] = Cell::opt_numeric(c.line(TokenType::Output));
                    row[c_.web_search_cost] = Cell::opt_numeric(c.web_search);
                    row[c_.rate_multiplier] = Cell::Numeric(c.multiplier.normalize());
                    row[c_.total_cost] = Cell::Numeric(c.total);
                    mark_priced(&mut row, &at.price, c.basis);
                    if self.currency.is_empty() {
                        self.currency = version.map(|v| v.currency.clone()).unwrap_or_default();
                    }
                    *self.daily.entry((day, None)).or_default() += c.total;
                    // Per model, token costs only: the report's web-search rows need not name one.
                    self.by_model.add(day, model, c.total - c.web_search.unwrap_or_default());
                    self.total += c.total;
                    self.priced_rows += 1;
                }
                Err(why) => {
                    let basis = crate::cost::basis_name(tier, context);
                    let what = (model, day, tokens.total());
                    mark_unpriced((&mut row, &at.price), &mut self.unpriced, PROVIDER, what, why, basis);
                }
            }
            // The dimensions move over as they are.
            row[c_.model] = r[r_.model].take();
            row[c_.workspace_id] = r[r_.workspace_id].take();
            row[c_.api_key_id] = r[r_.api_key_id].take();
            row[c_.service_tier] = r[r_.service_tier].take();
            row[c_.context_window] = r[r_.context_window].take();
            row[c_.speed] = r[r_.speed].take();
            row[c_.inference_geo] = r[r_.inference_geo].take();
            rows.push(row);
        }
        rows
    }

    /// The book's currency (USD when nothing was priced).
    pub(crate) fn currency(&self) -> &str {
        if self.currency.is_empty() {
            "USD"
        } else {
            &self.currency
        }
    }
}

#[async_trait]
impl Processor for AnthropicCost {
    const TYPE: &'static str = "anthropic.cost";
    const TABLES: &'static [&'static str] = &[usage::TABLE, TABLE];
    type Config = Config;

    async fn run(config: &Config, ctx: &StepContext<'_>) -> Result<StepOutcome, StepError> {
        let raw_schema = table_schema(ctx.configs, PROVIDER, usage::TABLE)?;
        let schema = table_schema(ctx.configs, PROVIDER, TABLE)?;
        let layout = Layout::new(raw_schema, schema)?;
        let mut raw = read_window(ctx, raw_schema, usage::AnthropicUsage::TYPE).await?;
        let mut book = load_book(ctx, PROVIDER).await?;
        // Each batch read back is priced and staged; the window lands after reconciliation.
        let mut writer = WindowWriter::start(ctx, schema).await?;
        let mut priced = Priced::default();
        while let Some(batch) = raw.next().await {
            writer.append(priced.add(ctx.org_slug, batch?, &layout, &mut book)).await?;
        }
        let tolerance = Tolerance { warn: config.tolerance, fail: config.fail_tolerance, relative: Decimal::ZERO };

        // Anthropic's own bill, fetched in full before the window is committed.
        let mut dq: Vec<DqResult> = Vec::new();
        let mut reported_total = Decimal::ZERO;
        if config.reconcile {
            let key = credential(ctx, PROVIDER)?;
            let http = http(ctx)?;
            let api = client(ctx, &http);
            let (start, end) = (ctx.start_date, ctx.end_date);
            let mut daily: Amounts = BTreeMap::new();
            let mut by_model: Amounts = BTreeMap::new();
            // Costs of types the usage report does not carry (code execution, sessions…) per day,
            // and malformed amounts.
            let mut other: BTreeMap<String, Decimal> = BTreeMap::new();
            let mut bad_amounts: Vec<String> = Vec::new();
            let mut currencies: Vec<String> = Vec::new();
            let q = ReportQuery { start, end, group_by: &["description"], limit: config.page_size };
            let mut report = api.cost_report(key, &config.retry, &q);
            while let Some(buckets) = report.next().await.map_err(provider_failed)? {
                for b in buckets {
                    let Some(day) = b.day().filter(|d| *d >= start && *d <= end) else { continue };
                    for r in b.results {
                        let Some(dollars) = r.major_units() else {
                            bad_amounts.push(r.amount.clone());
                            continue;
                        };
                        let currency = r.currency.to_ascii_uppercase();
                        if !currencies.contains(&currency) {
                            currencies.push(currency);
                        }
                        match r.cost_type.as_deref() {
                            // Web search is priced per request from the usage report's counts.
                            None | Some("tokens" | "web_search") => {
                                *daily.entry((day, None)).or_default() += dollars;
                                if r.cost_type.as_deref() != Some("web_search") {
                                    let model = r.model.unwrap_or_default();
                                    *by_model.entry((day, Some(format!("model={model}")))).or_default() += dollars;
                                }
                            }
                            Some(other_type) => {
                                *other.entry(format!("{}/{other_type}", date_text(day))).or_default() += dollars;
                            }
                        }
                    }
                }
            }
            if !bad_amounts.is_empty() {
                return Err(StepError::Provider {
                    provider: crate::providers::anthropic::NAME.to_string(),
                    status: 200,
                    message: format!("the cost report has amounts that are not decimals: {bad_amounts:?}"),
                });
            }
            reported_total = daily.values().copied().sum();
            let mismatch = currencies.iter().any(|c| *c != priced.currency());
            let details = |key: &(chrono::NaiveDate, Option<String>)| {
                let day = date_text(key.0);
                let non_token: BTreeMap<&String, String> = other
                    .iter()
                    .filter(|(k, _)| key.1.is_none() && k.starts_with(&day))
                    .map(|(k, v)| (k, numeric(*v).as_str().unwrap_or_default().to_string()))
                    .collect();
                json!({
                    "source": "anthropic cost report (cents / 100), cost_type tokens and web_search",
                    "non_token_costs_not_compared": non_token,
                    "reported_currencies": currencies,
                })
            };
            let mut day_checks =
                reconcile("cost_reconciliation_daily", &priced.daily, &daily, &tolerance, priced.currency(), details);
            if mismatch {
                for r in &mut day_checks {
                    r.status = DqStatus::Fail;
                }
            }
            dq.extend(day_checks);
            dq.extend(reconcile(
                "cost_reconciliation_daily_model",
                &priced.by_model.amounts("model"),
                &by_model,
                &tolerance,
                priced.currency(),
                details,
            ));
        }
        dq.extend(priced.unpriced.dq_results());

        let summary = CostSummary {
            table: TABLE,
            provider: PROVIDER,
            provider_name: "Anthropic",
            priced_rows: priced.priced_rows,
            unpriced: &priced.unpriced,
            total: priced.total,
            currency: priced.currency(),
            reported_total,
        };
        finish_cost_step(ctx, writer, &dq, summary).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::default_book;
    use crate::providers::anthropic::{Page, UsageResult};
    use crate::warehouse::record::check_record;
    use chrono::NaiveDate;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    /// The usage report's shape (provider-apis.md §3a; the first result is the official example).
    const USAGE: &str = r#"{"has_more":false,"next_page":null,"data":[
      {"starting_at":"2026-11-01T00:00:00Z","ending_at":"2026-11-02T00:00:00Z","results":[
        {"uncached_input_tokens":1500,"cache_creation":{"ephemeral_1h_input_tokens":1000,"ephemeral_5m_input_tokens":500},
         "cache_read_input_tokens":200,"output_tokens":500,"server_tool_use":{"web_search_requests":10},
         "api_key_id":"apikey_01Rj2N8SVvo6BePZj99NhmiT","workspace_id":"wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
         "model":"claude-sonnet-4-20250514","service_tier":"standard","context_window":"0-200k"},
        {"uncached_input_tokens":300000,"cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":10000},
         "cache_read_input_tokens":50000,"output_tokens":2000,"server_tool_use":{"web_search_requests":0},
         "api_key_id":"apikey_2","workspace_id":null,"model":"claude-sonnet-4-5-20250929",
         "service_tier":"standard","context_window":"200k-1M"},
        {"uncached_input_tokens":2000000,"cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},
         "cache_read_input_tokens":0,"output_tokens":100000,"server_tool_use":{"web_search_requests":0},
         "api_key_id":"apikey_2","workspace_id":null,"model":"claude-haiku-4-5-20251001",
         "service_tier":"batch","context_window":"0-200k"},
        {"uncached_input_tokens":10,"cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},
         "cache_read_input_tokens":0,"output_tokens":10,"server_tool_use":{"web_search_requests":0},
         "api_key_id":"apikey_2","workspace_id":null,"model":"claude-opus-4-6",
         "service_tier":"priority","context_window":"0-200k"},
        {"uncached_input_tokens":10000,"cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":4000},
         "cache_read_input_tokens":20000,"output_tokens":2000,"server_tool_use":{"web_search_requests":0},
         "api_key_id":"apikey_2","workspace_id":null,"model":"claude-opus-4-6","service_tier":"standard",
         "context_window":"0-200k","speed":"fast","inference_geo":"us"},
        {"uncached_input_tokens":10,"cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},
         "cache_read_input_tokens":0,"output_tokens":10,"server_tool_use":{"web_search_requests":0},
         "api_key_id":"apikey_2","workspace_id":null,"model":"claude-opus-4-5-20251101","service_tier":"standard",
         "context_window":"0-200k","speed":"fast","inference_geo":"global"}]}]}"#;

    #[test]
    fn golden_anthropic_day() {
        let raw = crate::processors::shipped_schema(PROVIDER, super::usage::TABLE);
        let cost = crate::processors::shipped_schema(PROVIDER, TABLE);
        let page: Page<UsageResult> = serde_json::from_str(USAGE).unwrap();
        let bucket = page.data.into_iter().next().unwrap();
        let (day, columns) = (bucket.day().unwrap(), super::usage::RawColumns::new(&raw).unwrap());
        let mut names = crate::warehouse::Interner::default();
        let raw_rows: Vec<Record> =
            bucket.results.iter().map(|r| super::usage::usage_row((&columns, &mut names), "acme", day, r)).collect();
        for r in &raw_rows {
            check_record(&raw, r).unwrap();
        }
        let mut priced = Priced::default();
        let records = priced.add("acme", raw_rows, &Layout::new(&raw, &cost).unwrap(), &mut default_book("anthropic"));
        for r in &records {
            check_record(&cost, r).unwrap();
        }
        let rows: Vec<_> = records.iter().map(|r| crate::warehouse::to_keyed_row(&cost, r)).collect();
        let by_model = |m: &str| rows.iter().find(|r| r["model"] == m).unwrap();
        // Official example, sonnet-4 standard: 1,500×3 + 200×0.30 + 500×3.75 + 1,000×6 + 500×15
        //   = 4,500 + 60 + 1,875 + 6,000 + 7,500 = 19,935 per 1M → 0.019935
        //   + its 10 web searches × 10.00 / 1000 = 0.1 → 0.119935
        let s4 = by_model("claude-sonnet-4-20250514");
        assert_eq!(s4["uncached_input_cost"], "0.0045");
        assert_eq!(s4["cache_read_cost"], "0.00006");
        assert_eq!(s4["cache_write_5m_cost"], "0.001875");
        assert_eq!(s4["cache_write_1h_cost"], "0.006");
        assert_eq!(s4["output_cost"], "0.0075");
        assert_eq!((s4["web_search_requests"].as_u64(), s4["web_search_cost"].as_str()), (Some(10), Some("0.1")));
        assert_eq!((s4["rate_multiplier"].as_str(), s4["total_cost"].as_str()), (Some("1"), Some("0.119935")));
        assert_eq!(
            (s4["matched_model"].as_str(), s4["matched_exact"].as_bool()),
            (Some("claude-sonnet-4-20250514"), Some(true))
        );
        // sonnet-4-5 long context (6.00 / 0.60 / 7.50 / 22.50):
        //   300,000×6 + 50,000×0.6 + 10,000×7.5 + 2,000×22.5 = 1,800,000 + 30,000 + 75,000 + 45,000
        //   = 1,950,000 per 1M → 1.95
        let long = by_model("claude-sonnet-4-5-20250929");
        assert_eq!((long["total_cost"].as_str(), long["pricing_basis"].as_str()), (Some("1.95"), Some("long_context")));
        // haiku-4-5 batch (0.50 / 2.50): 2,000,000×0.5 + 100,000×2.5 = 1 + 0.25 = 1.25
        let batch = by_model("claude-haiku-4-5-20251001");
        assert_eq!((batch["total_cost"].as_str(), batch["pricing_basis"].as_str()), (Some("1.25"), Some("batch")));
        // Priority tier: the book has no priority rates → RATE_MISSING, reported, not zero.
        let opus = |speed: Option<&str>| {
            rows.iter().find(|r| r["model"] == "claude-opus-4-6" && r["speed"].as_str() == speed).unwrap()
        };
        let prio = opus(None);
        assert_eq!(prio["cost_status"], "RATE_MISSING");
        assert!(prio.get("total_cost").is_none_or(serde_json::Value::is_null));
        // Fast mode with US-only inference on opus-4-6 (× 6 × 1.1 = × 6.6 on 5.00 / 0.50 / 6.25 / 25.00):
        //   (10,000×5 + 20,000×0.5 + 4,000×6.25 + 2,000×25) × 6.6 = (0.05 + 0.01 + 0.025 + 0.05) × 6.6
        //   = 0.33 + 0.066 + 0.165 + 0.33 = 0.891
        let fast = opus(Some("fast"));
        assert_eq!((fast["inference_geo"].as_str(), fast["rate_multiplier"].as_str()), (Some("us"), Some("6.6")));
        assert_eq!((fast["output_cost"].as_str(), fast["total_cost"].as_str()), (Some("0.33"), Some("0.891")));
        // Fast mode on a model without a fast-mode multiplier: unpriced, the column named.
        assert_eq!(by_model("claude-opus-4-5-20251101")["cost_status"], "RATE_MISSING");
        let reasons: Vec<String> =
            priced.unpriced.dq_results().iter().map(|r| r.details["reason"].as_str().unwrap().to_string()).collect();
        assert!(reasons.iter().any(|r| r.contains("fast_mode_multiplier")), "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("priority_input_per_1m")), "{reasons:?}");
        assert_eq!(priced.unpriced.dq_results()[0].check_name, "price_book_rate_missing");
        // Day: 0.119935 + 1.95 + 1.25 + 0.891 = 4.210935
        assert_eq!(priced.total, dec("4.210935"));
        let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let by_model = priced.by_model.amounts("model");
        assert_eq!(by_model[&(day, Some("model=claude-sonnet-4-5-20250929".into()))], dec("1.95"));
        // Per model the token costs only (the day's total has the searches): 0.119935 − 0.1 = 0.019935.
        assert_eq!(by_model[&(day, Some("model=claude-sonnet-4-20250514".into()))], dec("0.019935"));
        assert_eq!(priced.daily[&(day, None)], dec("4.210935"));
    }
}
