//! The cost model (DESIGN §9): usage priced to the cent from the effective-dated prices of the
//! organization (its overrides, else the system-wide catalog), one token type at a time.
//!
//! - Token types are explicit ([`TokenType`]). OpenAI's `input_tokens` *includes* its cached
//!   tokens, so uncached input = input − cached; Anthropic reports uncached input, cache reads and
//!   5 min / 1 h cache writes separately, each priced at its own rate.
//! - Tiers: standard, batch (the book's `batch_*` rates), long context (the book's
//!   `long_context_*` rates, for Anthropic's `200k-1M` context window when the book lists them;
//!   a model without long-context rates has no surcharge). The book has no flex or priority
//!   rates, so such usage is reported as unpriced, never priced at another tier's rate.
//! - A rate the usage needs and the book lacks (a model missing from the book, a batch cache
//!   read) leaves the row unpriced and reported: never priced at zero.
//! - The price is the version in force on the usage day: the organization's override in force
//!   that day, else the catalog's; each cost row names it (catalog version ids read
//!   `{provider}/{model}/v{n}`, override ids are UUIDs).
//! - Model ids are matched deterministically: the exact id, else the longest book id that the
//!   model id extends by a date-snapshot suffix (`-2024-07-18`, `-20250929`, `-0613`), so
//!   `gpt-4o-mini-2024-07-18` → `gpt-4o-mini`, never `gpt-4o`.
//!
//! Arithmetic: `tokens × rate_per_1M / 1,000,000` in `rust_decimal`, each token type's cost
//! rounded half away from zero to 9 decimal places (NUMERIC's scale; exact for any rate with at
//! most 3 decimals per 1M tokens, which every shipped price has), the row total the sum of those.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::NaiveDate;
use regex::Regex;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

use crate::pricebook::records::{parse_date, parse_decimal};
use crate::warehouse::Row;

/// Decimal places a cost keeps (BigQuery NUMERIC's scale).
pub const COST_SCALE: u32 = 9;

/// The token types a price book prices separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TokenType {
    /// Input not read from (or, for Anthropic, written to) the cache.
    UncachedInput,
    /// Cache reads (OpenAI `input_cached_tokens`, Anthropic `cache_read_input_tokens`).
    CachedInput,
    /// Anthropic `cache_creation.ephemeral_5m_input_tokens`.
    CacheWrite5m,
    /// Anthropic `cache_creation.ephemeral_1h_input_tokens`.
    CacheWrite1h,
    Output,
}

pub const TOKEN_TYPES: [TokenType; 5] = [
    TokenType::UncachedInput,
    TokenType::CachedInput,
    TokenType::CacheWrite5m,
    TokenType::CacheWrite1h,
    TokenType::Output,
];

impl TokenType {
    /// The price-book column stem (`input` → `input_per_1m`, `batch_input_per_1m`, …).
    pub fn book_stem(self) -> &'static str {
        match self {
            TokenType::UncachedInput => "input",
            TokenType::CachedInput => "cached_input",
            TokenType::CacheWrite5m => "cache_write_5m",
            TokenType::CacheWrite1h => "cache_write_1h",
            TokenType::Output => "output",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Service tier of a usage row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    Standard,
    Batch,
    Flex,
    Priority,
    /// A tier this code does not know; never priced.
    Unknown,
}

impl Tier {
    /// OpenAI: `batch: true` wins; `service_tier` null/`default`/`auto` is standard.
    pub fn openai(batch: Option<bool>, service_tier: Option<&str>) -> Tier {
        if batch == Some(true) {
            return Tier::Batch;
        }
        Self::named(service_tier)
    }

    /// Anthropic `service_tier` (`standard`, `batch`, `priority`, `priority_on_demand`, `flex`, …).
    pub fn anthropic(service_tier: Option<&str>) -> Tier {
        Self::named(service_tier)
    }

    fn named(service_tier: Option<&str>) -> Tier {
        match service_tier.map(str::to_ascii_lowercase).as_deref() {
            None | Some("" | "default" | "auto" | "standard") => Tier::Standard,
            Some("batch") => Tier::Batch,
            Some("flex" | "flex_discount") => Tier::Flex,
            Some("priority" | "priority_on_demand" | "scale") => Tier::Priority,
            Some(_) => Tier::Unknown,
        }
    }
}

/// Context-window pricing band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Context {
    Short,
    /// Anthropic's `200k-1M` window.
    Long,
}

impl Context {
    pub fn anthropic(context_window: Option<&str>) -> Context {
        match context_window {
            Some(w) if w.eq_ignore_ascii_case("200k-1M") => Context::Long,
            _ => Context::Short,
        }
    }
}

/// Token counts of one usage row, by type (disjoint).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub uncached_input: u64,
    pub cached_input: u64,
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
    pub output: u64,
}

impl Tokens {
    /// OpenAI: cached tokens are a subset of input. `None` when the provider says more tokens
    /// were cached than were input (a row that cannot be priced honestly).
    pub fn openai(input: u64, cached: u64, output: u64) -> Option<Tokens> {
        Some(Tokens { uncached_input: input.checked_sub(cached)?, cached_input: cached, output, ..Tokens::default() })
    }

    pub fn get(&self, t: TokenType) -> u64 {
        match t {
            TokenType::UncachedInput => self.uncached_input,
            TokenType::CachedInput => self.cached_input,
            TokenType::CacheWrite5m => self.cache_write_5m,
            TokenType::CacheWrite1h => self.cache_write_1h,
            TokenType::Output => self.output,
        }
    }

    pub fn total(&self) -> u64 {
        TOKEN_TYPES.iter().map(|t| self.get(*t)).sum()
    }
}

/// Rates per 1M tokens, by token type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates([Option<Decimal>; 5]);

impl Rates {
    fn from_row(row: &Row, prefix: &str) -> Rates {
        let mut rates = Rates::default();
        for t in TOKEN_TYPES {
            rates.0[t.index()] = money(row, &format!("{prefix}{}_per_1m", t.book_stem()));
        }
        rates
    }

    pub fn get(&self, t: TokenType) -> Option<Decimal> {
        self.0[t.index()]
    }

    fn any(&self) -> bool {
        self.0.iter().any(Option::is_some)
    }
}

fn money(row: &Row, column: &str) -> Option<Decimal> {
    match row.get(column)? {
        Value::String(s) => parse_decimal(s),
        Value::Number(n) => parse_decimal(&n.to_string()),
        _ => None,
    }
}

/// Where a price version comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSource {
    /// The system-wide catalog (`price_catalog`).
    Catalog,
    /// The organization's pricing book (`{provider}_model_pricing`).
    Override,
}

/// One version of one model's prices, as stored in the catalog or an organization's book.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceVersion {
    pub model_id: String,
    pub source: PriceSource,
    pub version_id: String,
    pub version: i64,
    pub effective_from: NaiveDate,
    /// Exclusive; None while current.
    pub effective_to: Option<NaiveDate>,
    pub currency: String,
    pub standard: Rates,
    pub batch: Rates,
    /// The long-context rates, when the book lists any for this model.
    pub long: Option<Rates>,
}

impl PriceVersion {
    /// A version from a pricing-table row (canonical row form: money as decimal strings).
    pub fn from_row(row: &Row) -> Result<PriceVersion, String> {
        let text = |c: &str| row.get(c).and_then(Value::as_str).map(str::to_string);
        let model_id = text("model_id").ok_or("a price row has no model_id")?;
        let effective_from = text("effective_from")
            .as_deref()
            .and_then(parse_date)
            .ok_or_else(|| format!("price of {model_id}: effective_from is missing or malformed"))?;
        let long = Rates::from_row(row, "long_context_");
        Ok(PriceVersion {
            source: PriceSource::Override,
            version_id: text("version_id").unwrap_or_default(),
            version: row.get("version").and_then(Value::as_i64).unwrap_or(0),
            effective_from,
            effective_to: text("effective_to").as_deref().and_then(parse_date),
            currency: text("currency").unwrap_or_else(|| "USD".into()),
            standard: Rates::from_row(row, ""),
            batch: Rates::from_row(row, "batch_"),
            long: long.any().then_some(long),
            model_id,
        })
    }

    /// In force on `day`: `effective_from <= day < effective_to`.
    pub fn in_force(&self, day: NaiveDate) -> bool {
        self.effective_from <= day && self.effective_to.is_none_or(|to| day < to)
    }

    /// The rates for a tier and context, and the name of that basis; None for a tier the book
    /// has no rates for.
    pub fn rates(&self, tier: Tier, context: Context) -> (Option<&Rates>, &'static str) {
        match (tier, context, &self.long) {
            (Tier::Standard, Context::Short, _) | (Tier::Standard, Context::Long, None) => {
                (Some(&self.standard), "standard")
            }
            (Tier::Standard, Context::Long, Some(long)) => (Some(long), "long_context"),
            (Tier::Batch, Context::Short, _) | (Tier::Batch, Context::Long, None) => (Some(&self.batch), "batch"),
            // The book has no batch long-context rates.
            (Tier::Batch, Context::Long, Some(_)) => (None, "batch_long_context"),
            (Tier::Flex, ..) => (None, "flex"),
            (Tier::Priority, ..) => (None, "priority"),
            (Tier::Unknown, ..) => (None, "unknown_tier"),
        }
    }
}

/// The name of the rates a tier and context call for (what a row that could not be priced would
/// have used).
pub fn basis_name(tier: Tier, context: Context) -> &'static str {
    match (tier, context) {
        (Tier::Standard, Context::Short) => "standard",
        (Tier::Standard, Context::Long) => "long_context",
        (Tier::Batch, Context::Short) => "batch",
        (Tier::Batch, Context::Long) => "batch_long_context",
        (Tier::Flex, _) => "flex",
        (Tier::Priority, _) => "priority",
        (Tier::Unknown, _) => "unknown_tier",
    }
}

/// Cost of one usage row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowCost {
    /// Per token type; None where the row has no tokens of that type.
    pub lines: [Option<Decimal>; 5],
    pub total: Decimal,
    /// `standard`, `batch`, `long_context`.
    pub basis: &'static str,
}

impl RowCost {
    pub fn line(&self, t: TokenType) -> Option<Decimal> {
        self.lines[t.index()]
    }
}

/// Why a row could not be priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unpriced {
    /// No price-book entry matches the model on that day.
    ModelMissing,
    /// The entry lacks a rate the row needs (the basis, and the token types without a rate).
    RateMissing { basis: &'static str, token_types: Vec<TokenType> },
}

/// `tokens × rate / 1M`, rounded to [`COST_SCALE`].
pub fn token_cost(tokens: u64, rate_per_1m: Decimal) -> Decimal {
    (Decimal::from(tokens) * rate_per_1m / Decimal::from(1_000_000u32))
        .round_dp_with_strategy(COST_SCALE, RoundingStrategy::MidpointAwayFromZero)
}

/// Prices a row with one version. Every token type with tokens needs a rate.
pub fn price(version: &PriceVersion, tier: Tier, context: Context, tokens: &Tokens) -> Result<RowCost, Unpriced> {
    let (rates, basis) = version.rates(tier, context);
    let mut lines = [None; 5];
    let mut missing = Vec::new();
    let mut total = Decimal::ZERO;
    for t in TOKEN_TYPES {
        let n = tokens.get(t);
        if n == 0 {
            continue;
        }
        match rates.and_then(|r| r.get(t)) {
            Some(rate) => {
                let cost = token_cost(n, rate);
                total += cost;
                lines[t.index()] = Some(cost);
            }
            None => missing.push(t),
        }
    }
    if missing.is_empty() {
        Ok(RowCost { lines, total, basis })
    } else {
        Err(Unpriced::RateMissing { basis, token_types: missing })
    }
}

static SNAPSHOT_SUFFIX: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$").expect("snapshot suffix pattern"));

/// The book id a reported model id is priced with: the exact id, else the longest id the model
/// extends by a dated-snapshot suffix only.
pub fn match_model<'a>(ids: impl IntoIterator<Item = &'a str>, model: &str) -> Option<&'a str> {
    let mut best: Option<&'a str> = None;
    for id in ids {
        if id == model {
            return Some(id);
        }
        let is_snapshot = model.strip_prefix(id).is_some_and(|rest| SNAPSHOT_SUFFIX.is_match(rest));
        if is_snapshot && best.is_none_or(|b| id.len() > b.len()) {
            best = Some(id);
        }
    }
    best
}

/// A provider's prices over a window: every version in force on some day of it, overrides and
/// catalog.
#[derive(Debug, Clone, Default)]
pub struct PriceBook {
    versions: Vec<PriceVersion>,
    /// (day, reported model) → index of the version, memoized.
    cache: HashMap<(NaiveDate, String), Option<usize>>,
}

impl PriceBook {
    /// From pricing-table rows (all overrides); a malformed row is an error naming it.
    pub fn from_rows(rows: &[Row]) -> Result<PriceBook, String> {
        let versions = rows.iter().map(PriceVersion::from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(PriceBook::new(versions))
    }

    /// The merged prices: the organization's override rows over the catalog's rows.
    pub fn merged(overrides: &[Row], catalog: &[Row]) -> Result<PriceBook, String> {
        let mut versions = overrides.iter().map(PriceVersion::from_row).collect::<Result<Vec<_>, _>>()?;
        for row in catalog {
            let mut v = PriceVersion::from_row(row).map_err(|e| format!("catalog: {e}"))?;
            v.source = PriceSource::Catalog;
            versions.push(v);
        }
        Ok(PriceBook::new(versions))
    }

    pub fn new(mut versions: Vec<PriceVersion>) -> PriceBook {
        versions.sort_by(|a, b| (&a.model_id, a.effective_from).cmp(&(&b.model_id, b.effective_from)));
        PriceBook { versions, cache: HashMap::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    /// The version pricing `model` on `day`, if any: among the prices of that day (each
    /// model's override in force, else its catalog version), the exact id, else the longest
    /// family the model is a dated snapshot of.
    pub fn lookup(&mut self, model: &str, day: NaiveDate) -> Option<&PriceVersion> {
        let key = (day, model.to_string());
        let index = match self.cache.get(&key) {
            Some(i) => *i,
            None => {
                let overridden: std::collections::HashSet<&str> = self
                    .versions
                    .iter()
                    .filter(|v| v.source == PriceSource::Override && v.in_force(day))
                    .map(|v| v.model_id.as_str())
                    .collect();
                let in_force: Vec<usize> = (0..self.versions.len())
                    .filter(|i| {
                        let v = &self.versions[*i];
                        v.in_force(day)
                            && (v.source == PriceSource::Override || !overridden.contains(v.model_id.as_str()))
                    })
                    .collect();
                let id = match_model(in_force.iter().map(|i| self.versions[*i].model_id.as_str()), model)
                    .map(str::to_string);
                let i = id.and_then(|id| in_force.iter().copied().find(|i| self.versions[*i].model_id == id));
                self.cache.insert(key, i);
                i
            }
        };
        index.map(|i| &self.versions[i])
    }

    /// Prices a row of `model` on `day`: the version used and its cost, or why not.
    pub fn price(
        &mut self,
        model: &str,
        day: NaiveDate,
        tier: Tier,
        context: Context,
        tokens: &Tokens,
    ) -> (Option<&PriceVersion>, Result<RowCost, Unpriced>) {
        match self.lookup(model, day) {
            None => (None, Err(Unpriced::ModelMissing)),
            Some(v) => {
                let cost = price(v, tier, context, tokens);
                (Some(v), cost)
            }
        }
    }
}

#[cfg(test)]
/// The shipped catalog of a provider with its history (what bootstrap loads), no overrides.
pub(crate) fn default_book(provider: &str) -> PriceBook {
    PriceBook::merged(&[], &catalog_rows(provider)).unwrap()
}

#[cfg(test)]
/// The shipped catalog file of a provider as catalog rows.
pub(crate) fn catalog_rows(provider: &str) -> Vec<Row> {
    let path = format!("{}/../configs/{provider}/seed/data/default_pricing.csv", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let rows = crate::pricebook::records::parse_catalog_csv(&text).unwrap();
    rows.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let mut e = r.entry;
            e.insert(
                "version_id".into(),
                serde_json::json!(format!("{provider}/{}/line{}", e["model_id"].as_str().unwrap(), i)),
            );
            e.insert("version".into(), serde_json::json!(1));
            e.insert("effective_from".into(), serde_json::json!(r.effective_from.to_string()));
            e.insert("effective_to".into(), r.effective_to.map_or(Value::Null, |d| serde_json::json!(d.to_string())));
            e
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn day(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    #[test]
    fn openai_golden_cached_tokens_are_a_subset_of_input() {
        // provider-apis.md §1 example: input 182,340 of which 64,000 cached, output 20,311,
        // model gpt-4o-mini-2024-07-18 → book gpt-4o-mini (0.15 / 0.075 / 0.60 per 1M).
        //   uncached 182,340 − 64,000 = 118,340 × 0.15 / 1M  = 0.017751
        //   cached              64,000 × 0.075 / 1M        = 0.0048
        //   output              20,311 × 0.60 / 1M         = 0.0121866
        //   total                                            0.0347376
        let mut book = default_book("openai");
        let tokens = Tokens::openai(182_340, 64_000, 20_311).unwrap();
        assert_eq!(tokens.uncached_input, 118_340);
        let (v, cost) =
            book.price("gpt-4o-mini-2024-07-18", day("2026-11-01"), Tier::Standard, Context::Short, &tokens);
        assert_eq!(v.unwrap().model_id, "gpt-4o-mini");
        let cost = cost.unwrap();
        assert_eq!(cost.line(TokenType::UncachedInput), Some(dec("0.017751")));
        assert_eq!(cost.line(TokenType::CachedInput), Some(dec("0.0048")));
        assert_eq!(cost.line(TokenType::Output), Some(dec("0.0121866")));
        assert_eq!(cost.total, dec("0.0347376"));
        assert_eq!(cost.basis, "standard");
        // Pricing all 182,340 at the input rate (the classic mistake) would give 0.0395376.
        assert_ne!(cost.total, dec("0.0395376"));
    }

    #[test]
    fn openai_golden_batch_and_embeddings() {
        let mut book = default_book("openai");
        let d = day("2026-11-01");
        // gpt-4.1 batch: 1,000,000 × 1.00 / 1M + 250,000 × 4.00 / 1M = 1 + 1 = 2
        let t = Tokens::openai(1_000_000, 0, 250_000).unwrap();
        let (_, c) = book.price("gpt-4.1-2025-04-14", d, Tier::openai(Some(true), None), Context::Short, &t);
        assert_eq!(c.as_ref().unwrap().total, dec("2"));
        assert_eq!(c.unwrap().basis, "batch");
        // Standard for comparison: 1,000,000 × 2.00 + 250,000 × 8.00 = 2 + 2 = 4
        let (_, c) =
            book.price("gpt-4.1-2025-04-14", d, Tier::openai(Some(false), Some("default")), Context::Short, &t);
        assert_eq!(c.unwrap().total, dec("4"));
        // A batch row with cache reads: the book has no batch cached rate → reported, not zero.
        let cached = Tokens::openai(1_000, 400, 10).unwrap();
        let (_, c) = book.price("gpt-4.1", d, Tier::Batch, Context::Short, &cached);
        assert_eq!(c, Err(Unpriced::RateMissing { basis: "batch", token_types: vec![TokenType::CachedInput] }));
        // text-embedding-3-small: 3,456,789 × 0.02 / 1M = 0.06913578
        let e = Tokens::openai(3_456_789, 0, 0).unwrap();
        let (_, c) = book.price("text-embedding-3-small", d, Tier::Standard, Context::Short, &e);
        assert_eq!(c.unwrap().total, dec("0.06913578"));
        // Flex has no rates in the book: unpriced.
        let (_, c) = book.price("gpt-5", d, Tier::openai(None, Some("flex")), Context::Short, &t);
        assert!(matches!(c, Err(Unpriced::RateMissing { basis: "flex", .. })));
        // More cached than input is refused.
        assert_eq!(Tokens::openai(10, 11, 0), None);
    }

    #[test]
    fn anthropic_golden_cache_reads_and_writes_are_separate() {
        // provider-apis.md §3a example on claude-sonnet-4-20250514 (3.00 / 0.30 / 3.75 / 6.00 / 15.00):
        //   uncached 1,500 × 3.00 = 4,500
        //   1h write 1,000 × 6.00 = 6,000
        //   5m write   500 × 3.75 = 1,875
        //   read       200 × 0.30 =    60
        //   output     500 × 15.0 = 7,500
        //   sum 19,935 / 1M = 0.019935
        let mut book = default_book("anthropic");
        let t = Tokens {
            uncached_input: 1_500,
            cache_write_1h: 1_000,
            cache_write_5m: 500,
            cached_input: 200,
            output: 500,
        };
        let d = day("2026-11-01");
        let (v, c) = book.price(
            "claude-sonnet-4-20250514",
            d,
            Tier::anthropic(Some("standard")),
            Context::anthropic(Some("0-200k")),
            &t,
        );
        assert_eq!(v.unwrap().model_id, "claude-sonnet-4-20250514");
        let c = c.unwrap();
        assert_eq!(c.total, dec("0.019935"));
        assert_eq!(c.line(TokenType::CacheWrite1h), Some(dec("0.006")));
        assert_eq!(c.line(TokenType::CacheWrite5m), Some(dec("0.001875")));
        assert_eq!(c.line(TokenType::CachedInput), Some(dec("0.00006")));
        // Long context on sonnet-4-5 (6.00 / 0.60 / 7.50 / 12.00 / 22.50):
        //   1,500×6 + 200×0.6 + 500×7.5 + 1,000×12 + 500×22.5 = 9,000+120+3,750+12,000+11,250 = 36,120 → 0.03612
        let (_, c) =
            book.price("claude-sonnet-4-5-20250929", d, Tier::Standard, Context::anthropic(Some("200k-1M")), &t);
        assert_eq!(c.as_ref().unwrap().total, dec("0.03612"));
        assert_eq!(c.unwrap().basis, "long_context");
        // Sonnet 4 lists no long-context 1h write rate: that token type is reported missing.
        let (_, c) = book.price("claude-sonnet-4-20250514", d, Tier::Standard, Context::Long, &t);
        assert_eq!(c, Err(Unpriced::RateMissing { basis: "long_context", token_types: vec![TokenType::CacheWrite1h] }));
        // Opus 4.6 has 1M context without a surcharge: long context at standard rates.
        //   1,500×5 + 200×0.5 + 500×6.25 + 1,000×10 + 500×25 = 7,500+100+3,125+10,000+12,500 = 33,225 → 0.033225
        let (_, c) = book.price("claude-opus-4-6", d, Tier::Standard, Context::Long, &t);
        assert_eq!(c.unwrap().total, dec("0.033225"));
        // Batch on haiku-4-5 (0.50 / 2.50): 2,000,000 × 0.5 + 100,000 × 2.5 = 1 + 0.25 = 1.25
        let b = Tokens { uncached_input: 2_000_000, output: 100_000, ..Tokens::default() };
        let (_, c) = book.price("claude-haiku-4-5-20251001", d, Tier::anthropic(Some("batch")), Context::Short, &b);
        assert_eq!(c.unwrap().total, dec("1.25"));
    }

    #[test]
    fn models_match_exactly_then_by_snapshot_suffix_only() {
        let ids = ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o4-mini", "claude-sonnet-4-5", "gpt-4"];
        let m = |model: &str| match_model(ids, model);
        assert_eq!(m("gpt-4o"), Some("gpt-4o"));
        assert_eq!(m("gpt-4o-mini-2024-07-18"), Some("gpt-4o-mini"));
        assert_eq!(m("gpt-4o-2024-08-06"), Some("gpt-4o"));
        assert_eq!(m("gpt-4.1-mini-2025-04-14"), Some("gpt-4.1-mini"));
        assert_eq!(m("claude-sonnet-4-5-20250929"), Some("claude-sonnet-4-5"));
        assert_eq!(m("gpt-4-0613"), Some("gpt-4"));
        // Never a shorter family name.
        assert_eq!(match_model(["gpt-4o"], "gpt-4o-mini-2024-07-18"), None);
        assert_eq!(m("gpt-4o-realtime-preview"), None);
        assert_eq!(m("ft:gpt-4o-mini-2024-07-18:acme::x1"), None);
        assert_eq!(m("gpt-4ominister"), None);
        // Independent of order.
        assert_eq!(match_model(["gpt-4o-mini", "gpt-4o"], "gpt-4o-mini-2024-07-18"), Some("gpt-4o-mini"));
    }

    #[test]
    fn the_price_in_force_on_the_usage_day_is_used() {
        let row = |id: &str, v: i64, from: &str, to: Option<&str>, input: &str| -> Row {
            serde_json::from_value(json!({
                "model_id": "gpt-4o", "version_id": id, "version": v, "effective_from": from,
                "effective_to": to, "currency": "USD", "input_per_1m": input, "output_per_1m": "10.00",
            }))
            .unwrap()
        };
        let mut book = PriceBook::from_rows(&[
            row("v1", 1, "1970-01-01", Some("2026-03-05"), "2.50"),
            row("v2", 2, "2026-03-05", None, "2.00"),
        ])
        .unwrap();
        let t = Tokens::openai(1_000_000, 0, 0).unwrap();
        let (v, c) = book.price("gpt-4o-2024-08-06", day("2026-03-04"), Tier::Standard, Context::Short, &t);
        assert_eq!((v.unwrap().version, c.unwrap().total), (1, dec("2.5")));
        let (v, c) = book.price("gpt-4o-2024-08-06", day("2026-03-05"), Tier::Standard, Context::Short, &t);
        assert_eq!((v.unwrap().version_id.as_str(), c.unwrap().total), ("v2", dec("2")));
        // A day before any version: missing, not zero.
        let early = PriceBook::from_rows(&[row("v3", 1, "2026-01-01", None, "1")])
            .unwrap()
            .lookup("gpt-4o", day("2025-12-31"))
            .cloned();
        assert_eq!(early, None);
    }

    #[test]
    fn o3_is_priced_at_the_price_of_its_day_across_the_cut() {
        // 1,000,000 input of which 200,000 cached, 100,000 output:
        //   before 2025-06-10 (10.00 / 2.50 / 40.00): 800,000 × 10 + 200,000 × 2.5 + 100,000 × 40 = 8 + 0.5 + 4 = 12.5
        //   from 2025-06-10    (2.00 / 0.50 / 8.00):  800,000 × 2  + 200,000 × 0.5 + 100,000 × 8  = 1.6 + 0.1 + 0.8 = 2.5
        let mut book = default_book("openai");
        let t = Tokens::openai(1_000_000, 200_000, 100_000).unwrap();
        let (v, c) = book.price("o3-2025-04-16", day("2025-06-09"), Tier::Standard, Context::Short, &t);
        assert_eq!((v.unwrap().model_id.as_str(), c.unwrap().total), ("o3", dec("12.5")));
        let (v, c) = book.price("o3-2025-04-16", day("2025-06-10"), Tier::Standard, Context::Short, &t);
        assert_eq!(v.unwrap().effective_from, day("2025-06-10"));
        assert_eq!(c.unwrap().total, dec("2.5"));
        // The first GPT-4o snapshot has its own price: 1,000,000 × 5.00 / 1M = 5 (the family's would be 2.50).
        let (v, c) =
            book.price("gpt-4o-2024-05-13", day("2025-01-01"), Tier::Standard, Context::Short, &t_input(1_000_000));
        assert_eq!((v.unwrap().model_id.as_str(), c.unwrap().total), ("gpt-4o-2024-05-13", dec("5")));
    }

    fn t_input(n: u64) -> Tokens {
        Tokens::openai(n, 0, 0).unwrap()
    }

    #[test]
    fn an_override_wins_over_the_catalog_only_while_in_force() {
        let o: Row = serde_json::from_value(json!({
            "model_id": "o3", "version_id": "org-v1", "version": 1, "effective_from": "2025-06-01",
            "effective_to": "2025-06-20", "currency": "USD", "input_per_1m": "3.00", "output_per_1m": "9.00",
        }))
        .unwrap();
        let mut book = PriceBook::merged(&[o], &catalog_rows("openai")).unwrap();
        let t = t_input(1_000_000);
        // 2025-05-31: catalog 10.00; 2025-06-01..19: override 3.00; from 2025-06-20: catalog 2.00.
        for (d, total, source) in [
            ("2025-05-31", "10", PriceSource::Catalog),
            ("2025-06-15", "3", PriceSource::Override),
            ("2025-06-20", "2", PriceSource::Catalog),
        ] {
            let (v, c) = book.price("o3", day(d), Tier::Standard, Context::Short, &t);
            assert_eq!((v.unwrap().source, c.unwrap().total), (source, dec(total)), "{d}");
        }
    }

    #[test]
    fn costs_round_to_numeric_scale() {
        // 1 token × 0.0000000015 / 1M = 1.5e-15 → 0 at 9 places; 7 × 0.123456789 / 1M = 0.000000864197523 → 0.000000864
        assert_eq!(token_cost(1, dec("0.0000000015")), Decimal::ZERO);
        assert_eq!(token_cost(7, dec("0.123456789")), dec("0.000000864"));
        // 5 × 0.0001 / 1M = 5e-10 → rounds half away from zero to 0.000000001
        assert_eq!(token_cost(5, dec("0.0001")), dec("0.000000001"));
    }
}
