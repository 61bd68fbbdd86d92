//! `openai.cost`: `openai_usage_daily_raw` × the organization's price book → `openai_cost_daily`
//! (one row per usage row, each token type priced with the version in force on its day), then
//! reconciled with what OpenAI bills (Costs API, dollars, grouped by `line_item` and
//! `project_id`) into `org_meta_dq_results`: per day, per day and project, and per day and line
//! item (model × tier × token type, [`line_items`](super::line_items)), each within the larger of
//! the absolute `tolerance` and `relative_tolerance` × the billed amount. Billed line items of
//! kinds we do not price (images, storage, web search, fine-tuning…) are left out of those
//! comparisons and reported on their own (`billed_line_item_unpriced`, status UNPRICED). Beyond
//! the tolerance the step succeeds with a warning.
//!
//! Formula per row (DESIGN §9; OpenAI's input includes its cached tokens):
//! - standard: (input − cached) × input_per_1m + cached × cached_input_per_1m + output × output_per_1m, ÷ 1M;
//! - batch (`batch = true`): the same with batch_input_per_1m / batch_output_per_1m (the book has
//!   no batch cached rate: a batch row with cache reads is reported, not priced);
//! - embeddings: input × input_per_1m ÷ 1M.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};

use super::line_items::{self, LineItem};
use super::usage;
use super::{client, PROVIDER};
use crate::cost::{Context, PriceBook, RowCost, Tier, TokenType, Tokens, Unpriced as Why, TOKEN_TYPES};
use crate::pipeline::{Processor, StepContext, StepError, StepOutcome};
use crate::processors::llm::{credential, http, load_book, provider_failed};
use crate::processors::DqStatus;
use crate::processors::{
    decimal_text, default_page_size, default_tolerance, finish_cost_step, optional_decimal_text, page_size,
    read_window, reconcile, table_columns, table_schema, Amounts, CostLayout, CostSummary, DimensionAmounts, DqResult,
    Tolerance, Unpriced, WindowWriter,
};
use crate::processors::{mark_priced, mark_unpriced, set_price_version};
use crate::providers::openai::{CostsResult, ReportQuery};
use crate::providers::retry::RetryPolicy;
use crate::warehouse::{numeric_text, Cell, Interner, Record};

pub const TABLE: &str = "openai_cost_daily";

table_columns! {
    /// `openai_cost_daily`, apart from the price columns every cost table has.
    pub(crate) struct CostColumns {
        usage_date, org_slug, usage_type, model, project_id, api_key_id, batch, service_tier, input_tokens,
        uncached_input_tokens, cached_input_tokens, output_tokens, num_model_requests, uncached_input_cost,
        cached_input_cost, output_cost, total_cost,
    }
}

/// Where the step reads raw usage and writes cost.
pub(crate) type Layout = CostLayout<usage::RawColumns, CostColumns>;

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
    /// Share of the billed amount a check may also differ by, as a decimal fraction string
    /// (`"0.01"` = 1 %); the allowance is the larger of this share and `tolerance`, which is then
    /// the absolute floor (default `"0"`: `tolerance` alone).
    #[serde(default, deserialize_with = "decimal_text")]
    pub relative_tolerance: Decimal,
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

pub struct OpenAiCost;

/// One model's cost and tokens of a day, per tier and token type.
pub(crate) type ModelLines = BTreeMap<(Tier, TokenType), (Decimal, u64)>;

/// What pricing the window produced so far (the rows themselves go to the table batch by batch).
#[derive(Default)]
pub(crate) struct Priced {
    pub unpriced: Unpriced,
    /// Day totals and (day, project) totals of priced rows.
    pub daily: Amounts,
    pub by_project: DimensionAmounts,
    /// Cost and tokens per day, model (as reported), tier and token type: the bill's line items.
    pub by_line: BTreeMap<NaiveDate, HashMap<String, ModelLines>>,
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
            let (input, cached, output) =
                (r[r_.input_tokens].as_u64(), r[r_.input_cached_tokens].as_u64(), r[r_.output_tokens].as_u64());
            let tier = Tier::openai(r[r_.batch].as_bool(), r[r_.service_tier].as_str());
            let model = r[r_.model].as_str().unwrap_or("(no model)");
            let tokens = Tokens::openai(input, cached, output);
            let (version, cost) = match &tokens {
                Some(t) => book.price(model, day, tier, Context::Short, t),
                None => (None, Err(Why::RateMissing { basis: "standard", token_types: vec![TokenType::CachedInput] })),
            };
            let mut row = c_.record();
            row[c_.usage_date] = Cell::Date(day);
            row[c_.org_slug] = self.names.text(org);
            row[c_.input_tokens] = Cell::count(input);
            row[c_.uncached_input_tokens] = Cell::count(input.saturating_sub(cached));
            row[c_.cached_input_tokens] = Cell::count(cached);
            row[c_.output_tokens] = Cell::count(output);
            row[c_.num_model_requests] = Cell::count(r[r_.num_model_requests].as_u64());
            if let Some(v) = version {
                set_price_version((&mut row, &at.price), &mut self.names, v);
            }
            match cost {
                Ok(c) => {
                    row[c_.uncached_input_cost] = Cell::opt_numeric(c.line(TokenType::UncachedInput));
                    row[c_.cached_input_cost] = Cell::opt_numeric(c.line(TokenType::CachedInput));
                    row[c_.output_cost] = Cell::opt_numeric(c.line(TokenType::Output));
                    row[c_.total_cost] = Cell::Numeric(c.total);
                    mark_priced(&mut row, &at.price, c.basis);
                    if self.currency.is_empty() {
                        self.currency = version.map(|v| v.currency.clone()).unwrap_or_default();
                    }
                    *self.daily.entry((day, None)).or_default() += c.total;
                    let project = r[r_.project_id].as_str().unwrap_or("");
                    self.by_project.add(day, project, c.total);
                    if let Some(t) = &tokens {
                        self.add_lines(day, model, tier, t, &c);
                    }
                    self.total += c.total;
                    self.priced_rows += 1;
                }
                Err(why) => {
                    let basis = crate::cost::basis_name(tier, Context::Short);
                    let tokens = input + output;
                    mark_unpriced(
                        (&mut row, &at.price),
                        &mut self.unpriced,
                        PROVIDER,
                        (model, day, tokens),
                        why,
                        basis,
                    );
                }
            }
            // The dimensions move over as they are.
            row[c_.usage_type] = match r[r_.usage_type].take() {
                Cell::Null => Cell::Static("completions"),
                usage_type => usage_type,
            };
            row[c_.model] = r[r_.model].take();
            row[c_.project_id] = r[r_.project_id].take();
            row[c_.api_key_id] = r[r_.api_key_id].take();
            row[c_.batch] = r[r_.batch].take();
            row[c_.service_tier] = r[r_.service_tier].take();
            rows.push(row);
        }
        rows
    }

    /// Adds a priced row's token lines to its day's line items (a model seen before costs a
    /// lookup, not an allocated key).
    fn add_lines(&mut self, day: NaiveDate, model: &str, tier: Tier, tokens: &Tokens, cost: &RowCost) {
        let models = self.by_line.entry(day).or_default();
        if !models.contains_key(model) {
            models.insert(model.to_string(), BTreeMap::new());
        }
        let Some(kinds) = models.get_mut(model) else { return };
        for token in TOKEN_TYPES {
            let n = tokens.get(token);
            if let Some(cost) = cost.line(token).filter(|_| n > 0) {
                let e = kinds.entry((tier, token)).or_default();
                e.0 += cost;
                e.1 += n;
            }
        }
    }

    /// Computed cost and tokens per (day, canonical line item).
    pub(crate) fn line_items(&self) -> BTreeMap<(NaiveDate, String), (Decimal, u64)> {
        let mut out = BTreeMap::new();
        for (day, models) in &self.by_line {
            for (model, kinds) in models {
                for ((tier, token), amount) in kinds {
                    if let Some(key) = line_items::line_key(model, *tier, *token) {
                        let e: &mut (Decimal, u64) = out.entry((*day, key)).or_default();
                        e.0 += amount.0;
                        e.1 += amount.1;
                    }
                }
            }
        }
        out
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
impl Processor for OpenAiCost {
    const TYPE: &'static str = "openai.cost";
    const TABLES: &'static [&'static str] = &[usage::TABLE, TABLE];
    type Config = Config;

    async fn run(config: &Config, ctx: &StepContext<'_>) -> Result<StepOutcome, StepError> {
        let raw_schema = table_schema(ctx.configs, PROVIDER, usage::TABLE)?;
        let schema = table_schema(ctx.configs, PROVIDER, TABLE)?;
        let layout = Layout::new(raw_schema, schema)?;
        let mut raw = read_window(ctx, raw_schema, usage::OpenAiUsage::TYPE).await?;
        let mut book = load_book(ctx, PROVIDER).await?;
        // Each batch read back is priced and staged; the window lands after reconciliation.
        let mut writer = WindowWriter::start(ctx, schema).await?;
        let mut priced = Priced::default();
        while let Some(batch) = raw.next().await {
            writer.append(priced.add(ctx.org_slug, batch?, &layout, &mut book)).await?;
        }
        let tolerance =
            Tolerance { warn: config.tolerance, fail: config.fail_tolerance, relative: config.relative_tolerance };

        // OpenAI's own bill, fetched in full before the window is committed.
        let mut dq: Vec<DqResult> = Vec::new();
        let mut reported_total = Decimal::ZERO;
        let mut unpriced_bill = UnpricedBill::default();
        if config.reconcile {
            let key = credential(ctx, PROVIDER)?;
            let http = http(ctx)?;
            let api = client(ctx, &http);
            let (start, end) = (ctx.start_date, ctx.end_date);
            let mut bill = Bill::default();
            let q = ReportQuery { start, end, group_by: &["line_item", "project_id"], limit: config.page_size };
            let mut report = api.costs(key, &config.retry, &q);
            while let Some(buckets) = report.next().await.map_err(provider_failed)? {
                for b in buckets {
                    let Some(day) = b.day().filter(|d| *d >= start && *d <= end) else { continue };
                    for r in b.results {
                        bill.add(day, r, &mut unpriced_bill);
                    }
                }
            }
            reported_total = bill.daily.values().copied().sum();
            let foreign: Vec<&String> = bill.currencies.keys().filter(|c| **c != priced.currency()).collect();
            let note = if foreign.is_empty() {
                Value::Null
            } else {
                json!(format!("OpenAI billed in {foreign:?}, the price book is in {}", priced.currency()))
            };
            let tolerance_note =
                json!({"absolute": numeric_text(tolerance.warn), "relative": numeric_text(tolerance.relative)});
            let details =
                |_: &_| json!({"source": "openai costs api", "currency_mismatch": note, "tolerance": tolerance_note});
            let mut day_checks = reconcile(
                "cost_reconciliation_daily",
                &priced.daily,
                &bill.daily,
                &tolerance,
                priced.currency(),
                details,
            );
            if !foreign.is_empty() {
                for r in &mut day_checks {
                    r.status = DqStatus::Fail;
                }
            }
            dq.extend(day_checks);
            dq.extend(reconcile(
                "cost_reconciliation_daily_project",
                &priced.by_project.amounts("project_id"),
                &bill.by_project,
                &tolerance,
                priced.currency(),
                details,
            ));
            // Per day and line item: where a wrong rate or a wrong token count shows.
            let computed_lines = priced.line_items();
            let computed: Amounts = computed_lines
                .iter()
                .map(|((day, k), (amount, _))| ((*day, Some(line_dimension(k))), *amount))
                .collect();
            let billed: Amounts =
                bill.lines.iter().map(|((day, k), line)| ((*day, Some(line_dimension(k))), line.amount)).collect();
            let line_details = |(day, dimension): &(NaiveDate, Option<String>)| {
                let k = dimension.as_deref().and_then(|d| d.strip_prefix(LINE_DIMENSION)).unwrap_or_default();
                let billed = bill.lines.get(&(*day, k.to_string()));
                json!({
                    "source": "openai costs api",
                    "line_item": k,
                    "billed_as": billed.map(|l| l.texts.iter().collect::<Vec<_>>()),
                    "billed_quantity": billed.and_then(|l| l.quantity).map(numeric_text),
                    "computed_tokens": computed_lines.get(&(*day, k.to_string())).map(|(_, n)| *n),
                    "currency_mismatch": note,
                    "tolerance": tolerance_note,
                })
            };
            let mut line_checks = reconcile(
                "cost_reconciliation_daily_line_item",
                &computed,
                &billed,
                &tolerance,
                priced.currency(),
                line_details,
            );
            if !foreign.is_empty() {
                for r in &mut line_checks {
                    r.status = DqStatus::Fail;
                }
            }
            dq.extend(line_checks);
            dq.extend(unpriced_bill.dq_results(priced.currency()));
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
        let mut outcome = finish_cost_step(ctx, writer, &dq, summary).await?;
        if let Some(warning) = unpriced_bill.warning(priced.currency()) {
            outcome.warnings.push(warning);
        }
        outcome.metrics["billed_unpriced_cost"] = json!(numeric_text(unpriced_bill.total()));
        Ok(outcome)
    }
}

/// How a line item is written in a result's `dimension`.
const LINE_DIMENSION: &str = "line_item=";

fn line_dimension(key: &str) -> String {
    format!("{LINE_DIMENSION}{key}")
}

/// One billed line item of a day (all projects).
#[derive(Debug, Default)]
pub(crate) struct BilledLine {
    pub amount: Decimal,
    /// OpenAI's `quantity` (tokens, for the kinds we price), when it gave one.
    pub quantity: Option<Decimal>,
    pub quantity_unit: Option<String>,
    /// The texts the bill used for it (one, unless OpenAI spells one line two ways).
    pub texts: std::collections::BTreeSet<String>,
    pub projects: std::collections::BTreeSet<String>,
}

impl BilledLine {
    fn add(&mut self, r: &CostsResult, text: &str) {
        self.amount += r.amount.value;
        if let Some(q) = r.quantity {
            *self.quantity.get_or_insert(Decimal::ZERO) += q;
        }
        if self.quantity_unit.is_none() {
            self.quantity_unit.clone_from(&r.quantity_unit);
        }
        if !self.texts.contains(text) {
            self.texts.insert(text.to_string());
        }
        if let Some(p) = r.project_id.as_deref().filter(|p| !self.projects.contains(*p)) {
            self.projects.insert(p.to_string());
        }
    }
}

/// What OpenAI billed for the kinds we price, per day, project and line item.
#[derive(Default)]
pub(crate) struct Bill {
    pub daily: Amounts,
    pub by_project: Amounts,
    /// Per (day, canonical line item).
    pub lines: BTreeMap<(NaiveDate, String), BilledLine>,
    /// Every amount by currency, unpriced kinds included.
    pub currencies: BTreeMap<String, Decimal>,
}

impl Bill {
    /// Files one result: a kind we price into the comparisons, any other into `unpriced`.
    pub(crate) fn add(&mut self, day: NaiveDate, r: CostsResult, unpriced: &mut UnpricedBill) {
        let amount = r.amount.value;
        *self.currencies.entry(r.amount.currency.to_ascii_uppercase()).or_default() += amount;
        let text = r.line_item.as_deref().unwrap_or("(no line item)");
        match line_items::parse(text) {
            LineItem::Priced(key) => {
                *self.daily.entry((day, None)).or_default() += amount;
                let project = r.project_id.as_deref().unwrap_or_default();
                *self.by_project.entry((day, Some(format!("project_id={project}")))).or_default() += amount;
                self.lines.entry((day, key)).or_default().add(&r, text);
            }
            LineItem::Unpriced(text) => unpriced.lines.entry((day, text.clone())).or_default().add(&r, &text),
        }
    }
}

/// Billed line items of kinds we do not price, per (day, billed text).
#[derive(Default)]
pub(crate) struct UnpricedBill {
    pub lines: BTreeMap<(NaiveDate, String), BilledLine>,
}

impl UnpricedBill {
    pub fn total(&self) -> Decimal {
        self.lines.values().map(|l| l.amount).sum()
    }

    /// One UNPRICED result per day and line item: what was billed, with no computed side.
    pub fn dq_results(&self, currency: &str) -> Vec<DqResult> {
        self.lines
            .iter()
            .map(|((day, text), line)| DqResult {
                check_name: "billed_line_item_unpriced",
                usage_date: *day,
                dimension: Some(line_dimension(text)),
                status: DqStatus::Unpriced,
                expected: Some(line.amount),
                observed: None,
                tolerance: None,
                currency: Some(currency.to_string()),
                details: json!({
                    "source": "openai costs api",
                    "line_item": text,
                    "reason": "OpenAI bills this line item; the price book prices token usage only, so it is reported, not reconciled",
                    "billed_quantity": line.quantity.map(numeric_text),
                    "quantity_unit": line.quantity_unit,
                    "projects": line.projects,
                }),
            })
            .collect()
    }

    pub fn warning(&self, currency: &str) -> Option<String> {
        if self.lines.is_empty() {
            return None;
        }
        let names: std::collections::BTreeSet<&str> = self.lines.keys().map(|(_, t)| t.as_str()).collect();
        let shown: Vec<&str> = names.iter().copied().take(5).collect();
        let more = names.len().saturating_sub(shown.len());
        Some(format!(
            "OpenAI billed {} {currency} on line items not priced here ({}{}): reported as billed_line_item_unpriced, not reconciled",
            numeric_text(self.total()),
            shown.join("; "),
            if more > 0 { format!(" and {more} more") } else { String::new() },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::default_book;
    use crate::providers::openai::{CompletionsResult, EmbeddingsResult, Page};
    use crate::warehouse::record::check_record;
    use crate::warehouse::TableSchema;
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

    /// The raw and cost tables' shipped schemas.
    fn schemas() -> (TableSchema, TableSchema) {
        let load = |table| crate::processors::shipped_schema(PROVIDER, table);
        (load(super::usage::TABLE), load(TABLE))
    }

    /// The pages as the usage step's records, each checked against the raw table.
    fn raw_rows(raw: &TableSchema) -> Vec<Record> {
        let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let columns = super::usage::RawColumns::new(raw).unwrap();
        let mut names = crate::warehouse::Interner::default();
        let c: Page<CompletionsResult> = serde_json::from_str(COMPLETIONS).unwrap();
        let e: Page<EmbeddingsResult> = serde_json::from_str(EMBEDDINGS).unwrap();
        let completions = c.data.into_iter().flat_map(|b| b.results);
        let mut rows: Vec<Record> =
            completions.map(|r| super::usage::completions_row((&columns, &mut names), "acme", day, &r)).collect();
        let embeddings = e.data.into_iter().flat_map(|b| b.results);
        rows.extend(embeddings.map(|r| super::usage::embeddings_row((&columns, &mut names), "acme", day, &r)));
        for r in &rows {
            check_record(raw, r).unwrap();
        }
        rows
    }

    /// Cost records as keyed rows, each checked against the cost table.
    fn keyed(cost: &TableSchema, records: &[Record]) -> Vec<crate::warehouse::Row> {
        records
            .iter()
            .map(|r| {
                check_record(cost, r).unwrap();
                crate::warehouse::to_keyed_row(cost, r)
            })
            .collect()
    }

    #[test]
    fn golden_openai_day() {
        let (raw, cost) = schemas();
        let layout = Layout::new(&raw, &cost).unwrap();
        let mut priced = Priced::default();
        let rows = keyed(&cost, &priced.add("acme", raw_rows(&raw), &layout, &mut default_book("openai")));
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
        let by_project = priced.by_project.amounts("project_id");
        assert_eq!(by_project[&(day, Some("project_id=proj_abc123".into()))], dec("2.0347376"));
        assert_eq!(by_project[&(day, Some("project_id=proj_xyz".into()))], dec("0.06913578"));
    }

    #[test]
    fn golden_line_items_against_a_bill_with_a_planted_error() {
        let (raw, cost) = schemas();
        let layout = Layout::new(&raw, &cost).unwrap();
        let mut priced = Priced::default();
        priced.add("acme", raw_rows(&raw), &layout, &mut default_book("openai"));
        let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let lines = priced.line_items();
        let line = |k: &str| lines[&(day, k.to_string())];
        // The golden day's lines (see golden_openai_day): tokens and cost.
        assert_eq!(line("gpt-4o-mini-2024-07-18, input"), (dec("0.017751"), 118_340));
        assert_eq!(line("gpt-4o-mini-2024-07-18, cached input"), (dec("0.0048"), 64_000));
        assert_eq!(line("gpt-4o-mini-2024-07-18, output"), (dec("0.0121866"), 20_311));
        assert_eq!(line("gpt-4.1-2025-04-14, batch input"), (dec("1"), 1_000_000));
        assert_eq!(line("gpt-4.1-2025-04-14, batch output"), (dec("1"), 250_000));
        assert_eq!(line("text-embedding-3-small, input"), (dec("0.06913578"), 3_456_789));
        assert_eq!(lines.len(), 6, "no zero lines, nothing for the unpriced model: {lines:?}");

        // OpenAI's bill for the day: every line as computed, but batch output 3 % high (1.03),
        // plus image generation we do not price.
        let page = r#"{"object":"page","has_more":false,"next_page":null,"data":[
          {"object":"bucket","start_time":1793491200,"end_time":1793577600,"results":[
            {"object":"organization.costs.result","amount":{"value":0.017751,"currency":"usd"},"line_item":"gpt-4o-mini-2024-07-18, input","project_id":"proj_abc123","quantity":118340,"quantity_unit":"tokens"},
            {"object":"organization.costs.result","amount":{"value":0.0048,"currency":"usd"},"line_item":"gpt-4o-mini-2024-07-18, cached input","project_id":"proj_abc123","quantity":64000,"quantity_unit":"tokens"},
            {"object":"organization.costs.result","amount":{"value":0.0121866,"currency":"usd"},"line_item":"gpt-4o-mini-2024-07-18, output","project_id":"proj_abc123","quantity":20311,"quantity_unit":"tokens"},
            {"object":"organization.costs.result","amount":{"value":1,"currency":"usd"},"line_item":"gpt-4.1-2025-04-14, batch input","project_id":"proj_abc123","quantity":1000000,"quantity_unit":"tokens"},
            {"object":"organization.costs.result","amount":{"value":1.03,"currency":"usd"},"line_item":"gpt-4.1-2025-04-14, output (batch)","project_id":"proj_abc123","quantity":250000,"quantity_unit":"tokens"},
            {"object":"organization.costs.result","amount":{"value":0.06913578,"currency":"usd"},"line_item":"text-embedding-3-small, input","project_id":"proj_xyz","quantity":3456789,"quantity_unit":"tokens"},
            {"object":"organization.costs.result","amount":{"value":0.12,"currency":"usd"},"line_item":"Image models","project_id":"proj_xyz","quantity":3,"quantity_unit":"images"}]}]}"#;
        let page: Page<CostsResult> = serde_json::from_str(page).unwrap();
        let (mut bill, mut unpriced) = (Bill::default(), UnpricedBill::default());
        for r in page.data.into_iter().flat_map(|b| b.results) {
            bill.add(day, r, &mut unpriced);
        }
        // 2.10387338 used; 2.13387338 billed for what we price; 0.12 for images, apart.
        assert_eq!(bill.daily[&(day, None)], dec("2.13387338"));
        assert_eq!(unpriced.total(), dec("0.12"));
        let tolerance = Tolerance { warn: dec("0.001"), fail: None, relative: dec("0.01") };
        let computed: Amounts = lines.iter().map(|((d, k), (a, _))| ((*d, Some(line_dimension(k))), *a)).collect();
        let billed: Amounts = bill.lines.iter().map(|((d, k), l)| ((*d, Some(line_dimension(k))), l.amount)).collect();
        let checks =
            reconcile("cost_reconciliation_daily_line_item", &computed, &billed, &tolerance, "USD", |_| Value::Null);
        let off: Vec<&DqResult> = checks.iter().filter(|r| r.status != DqStatus::Pass).collect();
        // 1.03 − 1 = 0.03 > max(0.001, 1 % × 1.03 = 0.0103): the one line found; the rest agree.
        assert_eq!(off.len(), 1, "{checks:?}");
        assert_eq!(off[0].dimension.as_deref(), Some("line_item=gpt-4.1-2025-04-14, batch output"));
        assert_eq!((off[0].status, off[0].tolerance), (DqStatus::Warn, Some(dec("0.0103"))));
        // The day total alone would let it pass at 2 %: 0.03 < 2 % × 2.13387338.
        let lenient = Tolerance { relative: dec("0.02"), ..tolerance };
        assert_eq!(lenient.status(dec("-0.03"), dec("2.13387338")), DqStatus::Pass);
        let images = unpriced.dq_results("USD");
        assert_eq!((images.len(), images[0].status, images[0].expected), (1, DqStatus::Unpriced, Some(dec("0.12"))));
        assert_eq!(images[0].details["quantity_unit"], "images");
        assert!(unpriced.warning("USD").unwrap().contains("0.12 USD"));
    }

    #[test]
    fn pricing_is_deterministic() {
        // The same rows in another order or in other batches price the same.
        let (raw, cost) = schemas();
        let layout = Layout::new(&raw, &cost).unwrap();
        let (mut a, mut b) = (Priced::default(), Priced::default());
        let a_rows = a.add("acme", raw_rows(&raw), &layout, &mut default_book("openai"));
        let mut reversed = raw_rows(&raw);
        reversed.reverse();
        let mut book = default_book("openai");
        let second = reversed.split_off(2);
        let mut b_rows = b.add("acme", reversed, &layout, &mut book);
        b_rows.extend(b.add("acme", second, &layout, &mut book));
        b_rows.reverse();
        let (a_rows, b_rows) = (keyed(&cost, &a_rows), keyed(&cost, &b_rows));
        assert_eq!(serde_json::to_string(&a_rows).unwrap(), serde_json::to_string(&b_rows).unwrap());
        assert_eq!(
            (a.total, a.priced_rows, &a.daily, &a.by_project),
            (b.total, b.priced_rows, &b.daily, &b.by_project)
        );
    }
}
