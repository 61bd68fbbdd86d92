//! The one place the sandbox turns usage into money: the default price book's rates (per 1M
//! tokens) applied to each token type, exactly, in decimal. Both the usage endpoints' data and
//! the cost endpoints' amounts come from the same rows, so a reconciliation of computed against
//! reported cost agrees to the last digit.
//!
//! Rules (DESIGN §9): OpenAI cached input is a subset of input and priced at the cached rate, the
//! rest at the input rate; Anthropic cache reads and 5 min / 1 h cache writes are priced
//! separately from uncached input; batch usage at the batch rates; long-context usage (Anthropic
//! `context_window = "200k-1M"`) at the long-context rates. The generator only produces usage the
//! book can price (no cache tokens in batch, long context only where every long rate exists).
//!
//! Deliberately not `common::cost`: the sandbox plays the provider's bill, so reconciliation
//! compares two independent computations; sharing the code would make agreement automatic.

use rust_decimal::Decimal;
use serde_json::Value;

use common::pricebook::Entry;

/// The token types the sandbox reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TokenType {
    /// Input not read from cache (OpenAI: input − cached; Anthropic: `uncached_input_tokens`).
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

/// Standard or batch pricing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    Standard,
    Batch,
}

/// Short (default) or long context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Context {
    Short,
    Long,
}

/// Rates per 1M tokens of one context length.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    pub input: Option<Decimal>,
    pub cached_input: Option<Decimal>,
    pub cache_write_5m: Option<Decimal>,
    pub cache_write_1h: Option<Decimal>,
    pub output: Option<Decimal>,
}

impl Rates {
    fn get(&self, t: TokenType) -> Option<Decimal> {
        match t {
            TokenType::UncachedInput => self.input,
            TokenType::CachedInput => self.cached_input,
            TokenType::CacheWrite5m => self.cache_write_5m,
            TokenType::CacheWrite1h => self.cache_write_1h,
            TokenType::Output => self.output,
        }
    }
}

/// One model's prices from the book.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Price {
    pub model_id: String,
    pub standard: Rates,
    /// Batch rates: input and output only (the book has no batch cache rates).
    pub batch: Rates,
    /// Long-context rates, when the book lists them.
    pub long: Rates,
}

fn money(entry: &Entry, column: &str) -> Option<Decimal> {
    match entry.get(column)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

impl Price {
    /// From a checked price-book entry (Money columns are decimal strings).
    pub fn from_entry(entry: &Entry) -> Option<Price> {
        let model_id = entry.get("model_id")?.as_str()?.to_string();
        Some(Price {
            model_id,
            standard: Rates {
                input: money(entry, "input_per_1m"),
                cached_input: money(entry, "cached_input_per_1m"),
                cache_write_5m: money(entry, "cache_write_5m_per_1m"),
                cache_write_1h: money(entry, "cache_write_1h_per_1m"),
                output: money(entry, "output_per_1m"),
            },
            batch: Rates {
                input: money(entry, "batch_input_per_1m"),
                output: money(entry, "batch_output_per_1m"),
                ..Rates::default()
            },
            long: Rates {
                input: money(entry, "long_context_input_per_1m"),
                cached_input: money(entry, "long_context_cached_input_per_1m"),
                cache_write_5m: money(entry, "long_context_cache_write_5m_per_1m"),
                cache_write_1h: money(entry, "long_context_cache_write_1h_per_1m"),
                output: money(entry, "long_context_output_per_1m"),
            },
        })
    }

    /// The rate per 1M tokens of a token type in a tier and context, if the book has one.
    pub fn rate(&self, tier: Tier, context: Context, t: TokenType) -> Option<Decimal> {
        match (tier, context) {
            (Tier::Standard, Context::Short) => self.standard.get(t),
            (Tier::Batch, Context::Short) => self.batch.get(t),
            (Tier::Standard, Context::Long) => self.long.get(t),
            (Tier::Batch, Context::Long) => None,
        }
    }

    pub fn has_batch(&self) -> bool {
        self.batch.input.is_some() && self.batch.output.is_some()
    }

    /// Every long-context rate present (the generator only reports long context then).
    pub fn has_long_context(&self) -> bool {
        TOKEN_TYPES.iter().all(|t| self.long.get(*t).is_some())
    }
}

/// Token counts of one usage row, by type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub uncached_input: u64,
    pub cached_input: u64,
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
    pub output: u64,
}

impl Tokens {
    pub fn get(&self, t: TokenType) -> u64 {
        match t {
            TokenType::UncachedInput => self.uncached_input,
            TokenType::CachedInput => self.cached_input,
            TokenType::CacheWrite5m => self.cache_write_5m,
            TokenType::CacheWrite1h => self.cache_write_1h,
            TokenType::Output => self.output,
        }
    }

    pub fn add(&mut self, other: &Tokens) {
        self.uncached_input += other.uncached_input;
        self.cached_input += other.cached_input;
        self.cache_write_5m += other.cache_write_5m;
        self.cache_write_1h += other.cache_write_1h;
        self.output += other.output;
    }
}

/// `tokens × rate / 1,000,000`, exact.
pub fn token_cost(tokens: u64, rate_per_1m: Decimal) -> Decimal {
    Decimal::from(tokens) * rate_per_1m / Decimal::from(1_000_000u32)
}

/// The cost of each non-zero token type of a row, in dollars; `None` when the book lacks a rate
/// the row needs (the generator never produces such a row).
pub fn line_costs(
    price: &Price,
    tier: Tier,
    context: Context,
    tokens: &Tokens,
) -> Option<Vec<(TokenType, u64, Decimal)>> {
    let mut out = Vec::new();
    for t in TOKEN_TYPES {
        let n = tokens.get(t);
        if n == 0 {
            continue;
        }
        out.push((t, n, token_cost(n, price.rate(tier, context, t)?)));
    }
    Some(out)
}

/// Total cost of a row in dollars.
pub fn row_cost(price: &Price, tier: Tier, context: Context, tokens: &Tokens) -> Option<Decimal> {
    Some(line_costs(price, tier, context, tokens)?.iter().map(|(_, _, c)| *c).sum())
}

/// The book entry a reported model id is priced with: the exact id, else the longest book id
/// that is a dated-snapshot prefix (`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`).
pub fn match_model<'a>(prices: &'a [Price], model: &str) -> Option<&'a Price> {
    if let Some(p) = prices.iter().find(|p| p.model_id == model) {
        return Some(p);
    }
    prices
        .iter()
        .filter(|p| {
            model.len() > p.model_id.len()
                && model.starts_with(&p.model_id)
                && model[p.model_id.len()..].starts_with('-')
        })
        .max_by_key(|p| p.model_id.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn book(provider: &str) -> Vec<Price> {
        let path = format!("{}/../../configs/{provider}/seed/data/default_pricing.csv", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).unwrap();
        // The catalog's current prices (the sandbox bills today's rates).
        common::pricebook::records::parse_catalog_csv(&text)
            .unwrap()
            .iter()
            .filter(|r| r.effective_to.is_none())
            .map(|r| Price::from_entry(&r.entry).unwrap())
            .collect()
    }

    #[test]
    fn openai_cached_input_is_priced_at_the_cached_rate() {
        let prices = book("openai");
        let p = match_model(&prices, "gpt-4o-mini-2024-07-18").unwrap();
        assert_eq!(p.model_id, "gpt-4o-mini");
        // 182,340 input of which 64,000 cached, 20,311 output:
        // 118,340 × 0.15 / 1M = 0.017751; 64,000 × 0.075 / 1M = 0.0048; 20,311 × 0.60 / 1M = 0.0121866
        let t = Tokens { uncached_input: 118_340, cached_input: 64_000, output: 20_311, ..Tokens::default() };
        let lines = line_costs(p, Tier::Standard, Context::Short, &t).unwrap();
        assert_eq!(
            lines,
            vec![
                (TokenType::UncachedInput, 118_340, dec("0.017751")),
                (TokenType::CachedInput, 64_000, dec("0.0048")),
                (TokenType::Output, 20_311, dec("0.0121866")),
            ]
        );
        assert_eq!(row_cost(p, Tier::Standard, Context::Short, &t), Some(dec("0.0347376")));
    }

    #[test]
    fn openai_batch_uses_batch_rates() {
        let prices = book("openai");
        let p = match_model(&prices, "gpt-4.1-2025-04-14").unwrap();
        assert_eq!(p.model_id, "gpt-4.1");
        // 1,000,000 × 1.00 / 1M + 250,000 × 4.00 / 1M = 1 + 1 = 2
        let t = Tokens { uncached_input: 1_000_000, output: 250_000, ..Tokens::default() };
        assert_eq!(row_cost(p, Tier::Batch, Context::Short, &t), Some(dec("2")));
        // No batch cache rate: a cached batch row cannot be priced.
        let cached = Tokens { cached_input: 1, ..t };
        assert_eq!(row_cost(p, Tier::Batch, Context::Short, &cached), None);
        // o1-mini has no batch prices at all.
        assert!(!match_model(&prices, "o1-mini").unwrap().has_batch());
    }

    #[test]
    fn anthropic_cache_reads_and_writes_are_priced_separately() {
        let prices = book("anthropic");
        let p = match_model(&prices, "claude-sonnet-4-5-20250929").unwrap();
        // The official example: 1500 uncached, 1000 1h write, 500 5m write, 200 read, 500 output.
        // 1500×3 + 1000×6 + 500×3.75 + 200×0.30 + 500×15 = 4500 + 6000 + 1875 + 60 + 7500 = 19935 → $0.019935
        let t =
            Tokens { uncached_input: 1500, cache_write_1h: 1000, cache_write_5m: 500, cached_input: 200, output: 500 };
        assert_eq!(row_cost(p, Tier::Standard, Context::Short, &t), Some(dec("0.019935")));
        // Long context: 1500×6 + 1000×12 + 500×7.5 + 200×0.6 + 500×22.5 = 9000+12000+3750+120+11250 = 36120
        assert_eq!(row_cost(p, Tier::Standard, Context::Long, &t), Some(dec("0.03612")));
        assert!(p.has_long_context());
        // Sonnet 4 lacks the long-context 1h write rate.
        assert!(!match_model(&prices, "claude-sonnet-4-20250514").unwrap().has_long_context());
        // Batch: 2,000,000 × 1.50 + 100,000 × 7.50 = 3 + 0.75
        let b = Tokens { uncached_input: 2_000_000, output: 100_000, ..Tokens::default() };
        assert_eq!(row_cost(p, Tier::Batch, Context::Short, &b), Some(dec("3.75")));
    }

    #[test]
    fn model_matching_is_exact_then_longest_prefix() {
        let prices = book("openai");
        assert_eq!(match_model(&prices, "gpt-5").unwrap().model_id, "gpt-5");
        assert_eq!(match_model(&prices, "gpt-5-mini-2025-08-07").unwrap().model_id, "gpt-5-mini");
        assert_eq!(match_model(&prices, "o4-mini-2025-04-16").unwrap().model_id, "o4-mini");
        assert!(match_model(&prices, "gpt-4ominister").is_none());
        assert!(match_model(&prices, "davinci-002").is_none());
    }
}
