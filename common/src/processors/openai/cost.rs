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
//! Formula per row (DESIGN §9; `crate::cost` has every rule): OpenAI's input includes its
//! cached, cache-write, audio and image tokens, so a row is split into disjoint types first
//! (`Tokens::openai_split`: a row whose counts do not add up is reported, never clamped), each
//! priced per 1M at its rate for the row's tier (standard; batch `batch = true`: `batch_*`, cache
//! reads at `batch_cached_input_per_1m`; flex `flex_*`; priority `priority_*`):
//! - text: uncached input × input, cached × cached_input, output × output;
//! - cache writes × `cache_write_5m_per_1m`, or as uncached input when the model has no such rate;
//! - audio input / cached / output × `audio_*` (no rate: unpriced);
//! - image input / cached × `image_*`, or the text input / cached rate when the model has none;
//!   image output × `image_output_per_1m` (no rate: unpriced);
//! - embeddings: input × input_per_1m (the embeddings usage endpoint cannot be grouped by
//!   `batch`, so batch embeddings are priced at the standard rate; the line-item reconciliation
//!   shows any batch discount).

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};

use super::line_items::{self, LineItem};
use super::usage;
use super::{client, PROVIDER};
use crate::cost::{OpenAiCounts, PriceBook, RowCost, Tier, TokenType, Tokens, Unpriced as Why, Usage, TOKEN_TYPES};
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
        uncached_input_tokens, cached_input_tokens, output_tokens, cache_write_tokens, audio_input_tokens,
        audio_cached_input_tokens, audio_output_tokens, image_input_tokens, image_cached_input_tokens,
        image_output_tokens, num_model_requests, uncached_input_cost, cached_input_cost, output_cost,
        cache_write_cost, audio_input_cost, audio_cached_input_cost, audio_output_cost, image_input_cost,
        image_cached_input_cost, image_output_cost, total_cost,
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
            let optional = |c: &Cell| (!c.is_null()).then(|| c.as_u64());
            let counts = OpenAiCounts {
                input: r[r_.input_tokens].as_u64(),
                cached: r[r_.input_cached_tokens].as_u64(),
                cache_write: optional(&r[r_.input_cache_write_tokens]),
                output: r[r_.output_tokens].as_u64(),
                input_audio: optional(&r[r_.input_audio_tokens]),
                cached_audio: optional(&r[r_.input_cached_audio_tokens]),
                output_audio: optional(&r[r_.output_audio_tokens]),
                input_image: optional(&r[r_.input_image_tokens]),
                cached_image: optional(&r[r_.input_cached_image_tokens]),
                output_image: optional(&r[r_.output_image_tokens]),
            };
            let tier = Tier::openai(r[r_.batch].as_bool(), r[r_.service_tier].as_str());
            let model = r[r_.model].as_str().unwrap_or("(no model)");
            let tokens = Tokens::openai_split(&counts);
            let (version, cost) = match &tokens {
                Ok(t) => book.price(model, day, &Usage::openai(*t, tier)),
                Err(difference) => (None, Err(Why::TokenCounts(difference.clone()))),
            };
            let mut row = c_.record();
            row[c_.usage_date] = Cell::Date(day);
            row[c_.org_slug] = self.names.text(org);
            row[c_.input_tokens] = Cell::count(counts.input);
            row[c_.output_tokens] = Cell::count(counts.output);
            row[c_.num_model_requests] = Cell::count(r[r_.num_model_requests].as_u64());
            // The types as priced (cache writes without a rate of their own are input), else as split.
            let priced_tokens = match (&cost, &tokens) {
                (Ok(c), _) => Some(c.tokens),
                (Err(_), Ok(t)) => Some(*t),
                (Err(_), Err(_)) => None,
            };
            if let Some(t) = priced_tokens {
                for (column, n) in [
                    (c_.uncached_input_tokens, t.uncached_input),
                    (c_.cached_input_tokens, t.cached_input),
                    (c_.cache_write_tokens, t.cache_write_5m + t.cache_write_1h),
                    (c_.audio_input_tokens, t.audio_input),
                    (c_.audio_cached_input_tokens, t.audio_cached_input),
                    (c_.audio_output_tokens, t.audio_output),
                    (c_.image_input_tokens, t.image_input),
                    (c_.image_cached_input_tokens, t.image_cached_input),
                    (c_.image_output_tokens, t.image_output),
                ] {
                    row[column] = Cell::count(n);
                }
            } else {
                // Counts that do not add up: the reported ones, unsplit.
                row[c_.uncached_input_tokens] = Cell::count(counts.input.saturating_sub(counts.cached));
                row[c_.cached_input_tokens] = Cell::count(counts.cached);
            }
            if let Some(v) = version {
                set_price_version((&mut row, &at.price), &mut self.names, v, model);
            }
            match cost {
                Ok(c) => {
                    for (column, token) in [
                        (c_.uncached_input_cost, TokenType::UncachedInput),
                        (c_.cached_input_cost, TokenType::CachedInput),
                        (c_.output_cost, TokenType::Output),
                        (c_.cache_write_cost, TokenType::CacheWrite5m),
                        (c_.audio_input_cost, TokenType::AudioInput),
                        (c_.audio_cached_input_cost, TokenType::AudioCachedInput),
                        (c_.audio_output_cost, TokenType::AudioOutput),
                        (c_.image_input_cost, TokenType::ImageInput),
                        (c_.image_cached_input_cost, TokenType::ImageCachedInput),
                        (c_.image_output_cost, TokenType::ImageOutput),
                    ] {
                        row[column] = Cell::opt_numeric(c.line(token));
                    }
                    row[c_.total_cost] = Cell::Numeric(c.total);
                    mark_priced(&mut row, &at.price, c.basis);
                    if self.currency.is_empty() {
                        self.currency = version.map(|v| v.currency.clone()).unwrap_or_default();
                    }
                    *self.daily.entry((day, None)).or_default() += c.total;
                    let project = r[r_.project_id].as_str().unwrap_or("");
                    self.by_project.add(day, project, c.total);
                    self.add_lines(day, model, tier, &c);
                    self.total += c.total;
                    self.priced_rows += 1;
                }
                Err(why) => {
                    let basis = crate::cost::basis_name(tier, crate::cost::Context::Short);
                    let tokens = counts.input + counts.output;
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
    /// lookup, not an allocated key). Image input priced at the text rate is billed as text: it
    /// joins the text lines.
    fn add_lines(&mut self, day: NaiveDate, model: &str, tier: Tier, cost: &RowCost) {
        let models = self.by_line.entry(day).or_default();
        if !models.contains_key(model) {
            models.insert(model.to_string(), BTreeMap::new());
        }
        let Some(kinds) = models.get_mut(model) else { return };
        for token in TOKEN_TYPES {
            let n = cost.tokens.get(token);
            if let Some(line) = cost.line(token).filter(|_| n > 0) {
                let e = kinds.entry((tier, cost.billed_as(token))).or_default();
                e.0 += line;
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
        assert_eq!(
            (mini["matched_model"].as_str(), mini["matched_exact"].as_bool()),
            (Some("gpt-4o-mini"), Some(false))
        );
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

    /// One completions result per billed dimension of issue 14 (provider-apis.md §1 fields).
    const DIMENSIONS: &str = r#"{"object":"page","has_more":false,"next_page":null,"data":[
      {"object":"bucket","start_time":1793491200,"end_time":1793577600,"results":[
        {"object":"organization.usage.completions.result","input_tokens":600000,"input_cached_tokens":150000,
         "input_cache_write_tokens":0,"input_audio_tokens":300000,"input_cached_audio_tokens":100000,
         "output_tokens":250000,"output_audio_tokens":200000,"input_image_tokens":0,"input_cached_image_tokens":0,
         "output_image_tokens":0,"num_model_requests":40,"project_id":"proj_abc123","api_key_id":"key_1",
         "model":"gpt-realtime-2025-08-28","batch":false,"service_tier":"default"},
        {"object":"organization.usage.completions.result","input_tokens":100000,"input_cached_tokens":20000,
         "input_image_tokens":30000,"input_cached_image_tokens":10000,"output_tokens":5000,"num_model_requests":9,
         "project_id":"proj_abc123","api_key_id":"key_1","model":"gpt-4o-2024-08-06","batch":false,"service_tier":"default"},
        {"object":"organization.usage.completions.result","input_tokens":1000000,"input_cached_tokens":200000,
         "output_tokens":100000,"num_model_requests":30,"project_id":"proj_abc123","api_key_id":"key_1",
         "model":"gpt-5","batch":false,"service_tier":"flex"},
        {"object":"organization.usage.completions.result","input_tokens":100000,"input_cached_tokens":20000,
         "input_cache_write_tokens":30000,"output_tokens":1000,"num_model_requests":3,"project_id":"proj_abc123",
         "api_key_id":"key_1","model":"gpt-5-2025-08-07","batch":false,"service_tier":"default"},
        {"object":"organization.usage.completions.result","input_tokens":10,"input_cached_tokens":5,
         "input_cache_write_tokens":20,"output_tokens":1,"num_model_requests":1,"project_id":"proj_abc123",
         "api_key_id":"key_1","model":"gpt-4o-mini","batch":false,"service_tier":"default"}]}]}"#;

    #[test]
    fn golden_openai_billed_dimensions() {
        let (raw, cost) = schemas();
        let layout = Layout::new(&raw, &cost).unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let columns = super::usage::RawColumns::new(&raw).unwrap();
        let mut names = crate::warehouse::Interner::default();
        let page: Page<CompletionsResult> = serde_json::from_str(DIMENSIONS).unwrap();
        let raw_rows: Vec<Record> = page
            .data
            .into_iter()
            .flat_map(|b| b.results)
            .map(|r| super::usage::completions_row((&columns, &mut names), "acme", day, &r))
            .collect();
        for r in &raw_rows {
            check_record(&raw, r).unwrap();
        }
        let mut priced = Priced::default();
        let rows = keyed(&cost, &priced.add("acme", raw_rows, &layout, &mut default_book("openai")));
        let by_model = |m: &str| rows.iter().find(|r| r["model"] == m).unwrap();
        // gpt-realtime (text 4.00 / 0.40 / 16.00, audio 32.00 / 0.40 / 64.00); split:
        //   audio input 300,000 − 100,000 = 200,000; text cached 150,000 − 100,000 = 50,000;
        //   text input 600,000 − 150,000 − 0 − 200,000 = 250,000; text output 250,000 − 200,000 = 50,000
        //   250,000×4 + 50,000×0.4 + 50,000×16 + 200,000×32 + 100,000×0.4 + 200,000×64
        //   = 1 + 0.02 + 0.8 + 6.4 + 0.04 + 12.8 = 21.06
        let rt = by_model("gpt-realtime-2025-08-28");
        assert_eq!(
            (rt["uncached_input_tokens"].as_u64(), rt["audio_input_tokens"].as_u64()),
            (Some(250_000), Some(200_000))
        );
        assert_eq!(
            (rt["audio_input_cost"].as_str(), rt["audio_cached_input_cost"].as_str()),
            (Some("6.4"), Some("0.04"))
        );
        assert_eq!((rt["audio_output_cost"].as_str(), rt["output_cost"].as_str()), (Some("12.8"), Some("0.8")));
        assert_eq!((rt["total_cost"].as_str(), rt["matched_model"].as_str()), (Some("21.06"), Some("gpt-realtime")));
        // gpt-4o images at the text rates (2.50 / 1.25), as OpenAI bills them: image input
        //   30,000 − 10,000 = 20,000, text input 100,000 − 20,000 − 20,000 = 60,000, text cached 10,000:
        //   60,000×2.5 + 10,000×1.25 + 20,000×2.5 + 10,000×1.25 + 5,000×10 = 0.15 + 0.0125 + 0.05 + 0.0125 + 0.05 = 0.275
        let vision = by_model("gpt-4o-2024-08-06");
        assert_eq!((vision["image_input_cost"].as_str(), vision["total_cost"].as_str()), (Some("0.05"), Some("0.275")));
        // gpt-5 flex (0.625 / 0.0625 / 5.00): 800,000×0.625 + 200,000×0.0625 + 100,000×5 = 0.5 + 0.0125 + 0.5 = 1.0125
        let flex = by_model("gpt-5");
        assert_eq!((flex["pricing_basis"].as_str(), flex["total_cost"].as_str()), (Some("flex"), Some("1.0125")));
        // gpt-5 cache writes with no cache-write rate are input: (50,000 + 30,000)×1.25 + 20,000×0.125 + 1,000×10
        //   = 0.1 + 0.0025 + 0.01 = 0.1125
        let writes = by_model("gpt-5-2025-08-07");
        assert_eq!(
            (writes["uncached_input_tokens"].as_u64(), writes["cache_write_tokens"].as_u64()),
            (Some(80_000), Some(0))
        );
        assert!(writes["cache_write_cost"].is_null());
        assert_eq!(writes["total_cost"], "0.1125");
        // 5 cached + 20 cache writes of 10 input: the counts do not add up, reported, not clamped.
        let bad = by_model("gpt-4o-mini");
        assert_eq!(bad["cost_status"], "TOKEN_COUNTS_INCONSISTENT");
        assert!(bad["total_cost"].is_null());
        let dq = priced.unpriced.dq_results();
        assert_eq!((dq.len(), dq[0].check_name), (1, "usage_token_counts_inconsistent"));
        // Day: 21.06 + 0.275 + 1.0125 + 0.1125 = 22.46
        assert_eq!(priced.total, dec("22.46"));

        // The bill's line items, by kind: vision input joins the text lines; cache writes the input line.
        let lines = priced.line_items();
        let line = |k: &str| lines[&(day, k.to_string())];
        assert_eq!(line("gpt-realtime-2025-08-28, audio input"), (dec("6.4"), 200_000));
        assert_eq!(line("gpt-realtime-2025-08-28, cached audio input"), (dec("0.04"), 100_000));
        assert_eq!(line("gpt-realtime-2025-08-28, audio output"), (dec("12.8"), 200_000));
        assert_eq!(line("gpt-realtime-2025-08-28, input"), (dec("1"), 250_000));
        // 60,000 × 2.5 + 20,000 × 2.5 = 0.2; 10,000 × 1.25 + 10,000 × 1.25 = 0.025
        assert_eq!(line("gpt-4o-2024-08-06, input"), (dec("0.2"), 80_000));
        assert_eq!(line("gpt-4o-2024-08-06, cached input"), (dec("0.025"), 20_000));
        assert!(!lines.contains_key(&(day, "gpt-4o-2024-08-06, image input".to_string())));
        assert_eq!(line("gpt-5, flex input"), (dec("0.5"), 800_000));
        assert_eq!(line("gpt-5, flex cached input"), (dec("0.0125"), 200_000));
        assert_eq!(line("gpt-5-2025-08-07, input"), (dec("0.1"), 80_000));
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
