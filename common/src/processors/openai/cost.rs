//! `openai.cost`: `openai_usage_daily_raw` × the organization's price book → `openai_cost_daily`
//! (one row per usage row, each token type priced with the version in force on its day), then
//! reconciled with what OpenAI bills (Costs API, dollars) per day and per project into
//! `org_meta_dq_results`. Beyond the tolerance the step succeeds with a warning.
//!
//! Formula per row (DESIGN §9; OpenAI's input includes its cached tokens):
//! - standard: (input − cached) × input_per_1m + cached × cached_input_per_1m + output × output_per_1m, ÷ 1M;
//! - batch (`batch = true`): the same with batch_input_per_1m / batch_output_per_1m (the book has
//!   no batch cached rate: a batch row with cache reads is reported, not priced);
//! - embeddings: input × input_per_1m ÷ 1M.

use std::collections::BTreeMap;

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};

use super::usage;
use super::{client, http, PROVIDER};
use crate::cost::{Context, PriceBook, Tier, TokenType, Tokens, Unpriced as Why};
use crate::pipeline::{Processor, StepContext, StepError, StepOutcome};
use crate::pricebook::BookKind;
use crate::processors::{
    check_retry, col_date, col_str, col_u64, credential, date_text, decimal_text, default_page_size, finish_cost_step,
    numeric, opt_numeric, optional_decimal_text, page_size, provider_failed, read_window, reconcile, table_schema,
    Amounts, CostSummary, DqResult, Tolerance, Unpriced, WindowWriter,
};
use crate::processors::{mark_unpriced, set_price_version};
use crate::providers::openai::ReportQuery;
use crate::providers::retry::RetryPolicy;
use crate::warehouse::{to_row, Row};

pub const TABLE: &str = "openai_cost_daily";

/// Settings of an `openai.cost` step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Pull OpenAI's own costs for the window and reconcile (default true).
    #[serde(default = "yes")]
    pub reconcile: bool,
    /// Largest |computed − reported| per day (and per project) that still passes, in the price
    /// book's currency, as a decimal string (default `"0.01"`).
    #[serde(default = "default_tolerance", deserialize_with = "decimal_text")]
    pub tolerance: Decimal,
    /// Beyond this difference a check is FAIL rather than WARN (decimal string; default: none).
    #[serde(default, deserialize_with = "optional_decimal_text")]
    pub fail_tolerance: Option<Decimal>,
    /// Daily buckets per page of the Costs API, 1–31 (default 31).
    #[serde(default = "default_page_size", deserialize_with = "page_size")]
    pub page_size: u32,
    /// Retries of provider calls (429 / 5xx): attempts, backoff, per-call timeout.
    #[serde(default)]
    pub retry: RetryPolicy,
}

fn yes() -> bool {
    true
}

pub(crate) fn default_tolerance() -> Decimal {
    Decimal::new(1, 2)
}

pub struct OpenAiCost;

/// What pricing the window produced so far (the rows themselves go to the table batch by batch).
#[derive(Default)]
pub(crate) struct Priced {
    pub unpriced: Unpriced,
    /// Day totals and (day, project) totals of priced rows.
    pub daily: Amounts,
    pub by_project: Amounts,
    pub currency: String,
    pub total: Decimal,
    pub priced_rows: u64,
}

impl Priced {
    /// Prices a batch of raw rows, adding to the totals; returns the batch's cost rows. Pure: the
    /// golden tests call it directly.
    pub(crate) fn add(&mut self, org: &str, raw: &[Row], book: &mut PriceBook) -> Vec<Row> {
        let mut rows = Vec::with_capacity(raw.len());
        for r in raw {
            let Some(day) = col_date(r, "usage_date") else { continue };
            let model = col_str(r, "model").unwrap_or("(no model)");
            let (input, cached, output) =
                (col_u64(r, "input_tokens"), col_u64(r, "input_cached_tokens"), col_u64(r, "output_tokens"));
            let batch = r.get("batch").and_then(Value::as_bool);
            let tier = Tier::openai(batch, col_str(r, "service_tier"));
            let tokens = Tokens::openai(input, cached, output);
            let mut row = json!({
                "usage_date": date_text(day),
                "org_slug": org,
                "usage_type": col_str(r, "usage_type").unwrap_or("completions"),
                "model": r.get("model"),
                "project_id": r.get("project_id"),
                "api_key_id": r.get("api_key_id"),
                "batch": r.get("batch"),
                "service_tier": r.get("service_tier"),
                "input_tokens": input,
                "uncached_input_tokens": input.saturating_sub(cached),
                "cached_input_tokens": cached,
                "output_tokens": output,
                "num_model_requests": col_u64(r, "num_model_requests"),
            });
            let (version, cost) = match tokens {
                Some(t) => book.price(model, day, tier, Context::Short, &t),
                None => (None, Err(Why::RateMissing { basis: "standard", token_types: vec![TokenType::CachedInput] })),
            };
            if let Some(v) = version {
                set_price_version(&mut row, v);
            }
            match cost {
                Ok(c) => {
                    row["uncached_input_cost"] = opt_numeric(c.line(TokenType::UncachedInput));
                    row["cached_input_cost"] = opt_numeric(c.line(TokenType::CachedInput));
                    row["output_cost"] = opt_numeric(c.line(TokenType::Output));
                    row["total_cost"] = numeric(c.total);
                    row["pricing_basis"] = json!(c.basis);
                    row["cost_status"] = json!("PRICED");
                    let currency = version.map(|v| v.currency.clone()).unwrap_or_default();
                    if self.currency.is_empty() {
                        self.currency = currency;
                    }
                    *self.daily.entry((day, None)).or_default() += c.total;
                    let project = col_str(r, "project_id").unwrap_or("").to_string();
                    *self.by_project.entry((day, Some(format!("project_id={project}")))).or_default() += c.total;
                    self.total += c.total;
                    self.priced_rows += 1;
                }
                Err(why) => {
                    let basis = crate::cost::basis_name(tier, Context::Short);
                    mark_unpriced(&mut row, &mut self.unpriced, PROVIDER, (model, day, input + output), why, basis);
                }
            }
            rows.push(to_row(row));
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

/// The provider's pricing book over the window, or a clear error.
pub(crate) async fn load_book(ctx: &StepContext<'_>, provider: &str) -> Result<PriceBook, StepError> {
    let rows = crate::pricebook::versions_between(
        ctx.state,
        ctx.dataset,
        ctx.org_slug,
        provider,
        BookKind::Pricing,
        ctx.start_date,
        ctx.end_date,
    )
    .await?
    .ok_or_else(|| {
        StepError::Failed(format!(
            "organization {} has no {provider} price book: set up the {provider} integration or \
             POST /api/v1/integrations/{}/{provider}/pricing/reset",
            ctx.org_slug, ctx.org_slug
        ))
    })?;
    PriceBook::from_rows(&rows).map_err(|e| StepError::Failed(format!("the {provider} price book: {e}")))
}

#[async_trait]
impl Processor for OpenAiCost {
    const TYPE: &'static str = "openai.cost";
    type Config = Config;

    async fn run(config: &Config, ctx: &StepContext<'_>) -> Result<StepOutcome, StepError> {
        check_retry(&config.retry)?;
        let raw_schema = table_schema(ctx.state, PROVIDER, usage::TABLE)?;
        let schema = table_schema(ctx.state, PROVIDER, TABLE)?;
        let mut raw = read_window(ctx, &raw_schema, usage::OpenAiUsage::TYPE).await?;
        let mut book = load_book(ctx, PROVIDER).await?;
        // Each batch read back is priced and staged; the window lands after reconciliation.
        let mut writer = WindowWriter::start(ctx, &schema).await?;
        let mut priced = Priced::default();
        while let Some(batch) = raw.next().await {
            writer.append(priced.add(ctx.org_slug, &batch?, &mut book)).await?;
        }
        let tolerance = Tolerance { warn: config.tolerance, fail: config.fail_tolerance };

        // OpenAI's own bill, fetched in full before the window is committed.
        let mut dq: Vec<DqResult> = Vec::new();
        let mut reported_total = Decimal::ZERO;
        if config.reconcile {
            let key = credential(ctx, PROVIDER)?;
            let http = http(ctx)?;
            let api = client(ctx, &http);
            let (start, end) = (ctx.start_date, ctx.end_date);
            let mut daily: Amounts = BTreeMap::new();
            let mut by_project: Amounts = BTreeMap::new();
            let mut currencies: BTreeMap<String, Decimal> = BTreeMap::new();
            let q = ReportQuery { start, end, group_by: &["project_id"], limit: config.page_size };
            let mut report = api.costs(key, &config.retry, &q);
            while let Some(buckets) = report.next().await.map_err(provider_failed)? {
                for b in buckets {
                    let Some(day) = b.day().filter(|d| *d >= start && *d <= end) else { continue };
                    for r in b.results {
                        let amount = r.amount.value;
                        *currencies.entry(r.amount.currency.to_ascii_uppercase()).or_default() += amount;
                        *daily.entry((day, None)).or_default() += amount;
                        let project = r.project_id.unwrap_or_default();
                        *by_project.entry((day, Some(format!("project_id={project}")))).or_default() += amount;
                    }
                }
            }
            reported_total = daily.values().copied().sum();
            let foreign: Vec<&String> = currencies.keys().filter(|c| **c != priced.currency()).collect();
            let note = if foreign.is_empty() {
                Value::Null
            } else {
                json!(format!("OpenAI billed in {foreign:?}, the price book is in {}", priced.currency()))
            };
            let details = |_: &_| json!({"source": "openai costs api", "currency_mismatch": note});
            let mut day_checks =
                reconcile("cost_reconciliation_daily", &priced.daily, &daily, &tolerance, priced.currency(), details);
            if !foreign.is_empty() {
                for r in &mut day_checks {
                    r.status = crate::processors::DqStatus::Fail;
                }
            }
            dq.extend(day_checks);
            dq.extend(reconcile(
                "cost_reconciliation_daily_project",
                &priced.by_project,
                &by_project,
                &tolerance,
                priced.currency(),
                details,
            ));
        }
        dq.extend(priced.unpriced.dq_results());

        let summary = CostSummary {
            table: TABLE,
            provider: PROVIDER,
            provider_name: "OpenAI",
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
    use crate::providers::openai::{CompletionsResult, EmbeddingsResult, Page};
    use chrono::NaiveDate;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    /// A page in the Usage API's shape (provider-apis.md §1) with one model per pricing rule.
    const COMPLETIONS: &str = r#"{"object":"page","has_more":false,"next_page":null,"data":[
      {"object":"bucket","start_time":1793491200,"end_time":1793577600,"results":[
        {"object":"organization.usage.completions.result","input_tokens":182340,"input_cached_tokens":64000,
         "input_cache_write_tokens":0,"input_uncached_tokens":118340,"output_tokens":20311,"num_model_requests":412,
         "project_id":"proj_abc123","user_id":null,"api_key_id":"key_1","model":"gpt-4o-mini-2024-07-18",
         "batch":false,"service_tier":"default"},
        {"object":"organization.usage.completions.result","input_tokens":1000000,"input_cached_tokens":0,
         "output_tokens":250000,"num_model_requests":10,"project_id":"proj_abc123","api_key_id":"key_1",
         "model":"gpt-4.1-2025-04-14","batch":true,"service_tier":"default"},
        {"object":"organization.usage.completions.result","input_tokens":500,"input_cached_tokens":0,
         "output_tokens":100,"num_model_requests":1,"project_id":"proj_xyz","api_key_id":"key_2",
         "model":"davinci-3000","batch":false,"service_tier":"default"}]}]}"#;

    const EMBEDDINGS: &str = r#"{"object":"page","has_more":false,"next_page":null,"data":[
      {"object":"bucket","start_time":1793491200,"end_time":1793577600,"results":[
        {"object":"organization.usage.embeddings.result","input_tokens":3456789,"num_model_requests":12,
         "project_id":"proj_xyz","user_id":null,"api_key_id":"key_2","model":"text-embedding-3-small"}]}]}"#;

    fn raw_rows() -> Vec<Row> {
        let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let c: Page<CompletionsResult> = serde_json::from_str(COMPLETIONS).unwrap();
        let e: Page<EmbeddingsResult> = serde_json::from_str(EMBEDDINGS).unwrap();
        let mut rows: Vec<Row> =
            c.data[0].results.iter().map(|r| super::usage::completions_row("acme", day, r)).collect();
        rows.extend(e.data[0].results.iter().map(|r| super::usage::embeddings_row("acme", day, r)));
        rows
    }

    #[test]
    fn golden_openai_day() {
        let mut priced = Priced::default();
        let rows = priced.add("acme", &raw_rows(), &mut default_book("openai"));
        let by_model = |m: &str| rows.iter().find(|r| r["model"] == m).unwrap();
        // gpt-4o-mini-2024-07-18 → gpt-4o-mini, standard:
        //   (182,340 − 64,000) × 0.15 / 1M = 0.017751; 64,000 × 0.075 / 1M = 0.0048; 20,311 × 0.60 / 1M = 0.0121866
        //   total 0.0347376
        let mini = by_model("gpt-4o-mini-2024-07-18");
        assert_eq!(mini["price_model_id"], "gpt-4o-mini");
        assert_eq!(mini["uncached_input_tokens"], 118_340);
        assert_eq!(mini["uncached_input_cost"], "0.017751");
        assert_eq!(mini["cached_input_cost"], "0.0048");
        assert_eq!(mini["output_cost"], "0.0121866");
        assert_eq!(mini["total_cost"], "0.0347376");
        assert_eq!((mini["pricing_basis"].as_str(), mini["cost_status"].as_str()), (Some("standard"), Some("PRICED")));
        assert_eq!((mini["price_version"].as_i64(), mini["currency"].as_str()), (Some(1), Some("USD")));
        // gpt-4.1 batch: 1,000,000 × 1.00 / 1M + 250,000 × 4.00 / 1M = 1 + 1 = 2
        let batch = by_model("gpt-4.1-2025-04-14");
        assert_eq!((batch["total_cost"].as_str(), batch["pricing_basis"].as_str()), (Some("2"), Some("batch")));
        assert!(batch["cached_input_cost"].is_null(), "no cached tokens, no cached line");
        // text-embedding-3-small: 3,456,789 × 0.02 / 1M = 0.06913578
        assert_eq!(by_model("text-embedding-3-small")["total_cost"], "0.06913578");
        // davinci-3000 is not in the book: reported, never zero.
        let missing = by_model("davinci-3000");
        assert!(missing.get("total_cost").is_none_or(Value::is_null));
        assert_eq!(missing["cost_status"], "MODEL_NOT_IN_PRICE_BOOK");
        assert_eq!(priced.unpriced.models(), vec!["davinci-3000".to_string()]);
        let dq = priced.unpriced.dq_results();
        assert_eq!((dq.len(), dq[0].check_name), (1, "price_book_model_missing"));
        assert_eq!(dq[0].details["tokens"], 600);
        assert!(priced.unpriced.warnings("openai", "acme")[0].contains("davinci-3000"));
        // Day total: 0.0347376 + 2 + 0.06913578 = 2.10387338; per project: abc123 2.0347376, xyz 0.06913578.
        assert_eq!(priced.total, dec("2.10387338"));
        let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        assert_eq!(priced.daily[&(day, None)], dec("2.10387338"));
        assert_eq!(priced.by_project[&(day, Some("project_id=proj_abc123".into()))], dec("2.0347376"));
        assert_eq!(priced.by_project[&(day, Some("project_id=proj_xyz".into()))], dec("0.06913578"));
        // Every row fits the table.
        let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs"));
        let schema = crate::processors::load_schema(root, "openai", TABLE).unwrap();
        crate::warehouse::check_rows(&schema, &rows).unwrap();
        let raw_schema = crate::processors::load_schema(root, "openai", super::usage::TABLE).unwrap();
        crate::warehouse::check_rows(&raw_schema, &raw_rows()).unwrap();
    }

    #[test]
    fn pricing_is_deterministic() {
        // The same rows in another order or in other batches price the same.
        let (mut a, mut b) = (Priced::default(), Priced::default());
        let a_rows = a.add("acme", &raw_rows(), &mut default_book("openai"));
        let mut reversed = raw_rows();
        reversed.reverse();
        let mut book = default_book("openai");
        let (first, second) = reversed.split_at(2);
        let mut b_rows = b.add("acme", first, &mut book);
        b_rows.extend(b.add("acme", second, &mut book));
        b_rows.reverse();
        assert_eq!(serde_json::to_string(&a_rows).unwrap(), serde_json::to_string(&b_rows).unwrap());
        assert_eq!(
            (a.total, a.priced_rows, &a.daily, &a.by_project),
            (b.total, b.priced_rows, &b.daily, &b.by_project)
        );
    }
}
