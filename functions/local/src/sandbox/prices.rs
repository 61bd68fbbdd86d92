//! The one place the sandbox turns usage into money: its own rate card's rates ([`super::rates`],
//! per 1M tokens) applied to each token type, in decimal. Both the usage endpoints' data and the
//! cost endpoints' amounts come from the same rows, so a reconciliation of computed against
//! reported cost agrees to the last digit when the catalog holds the provider's rates.
//!
//! Rules (DESIGN §9, and the billed dimensions of issue 14): token types are disjoint counts
//! (text uncached input, cache reads, 5 min / 1 h cache writes, output; OpenAI audio and image
//! input, cached input and output). Each is priced at the rate of the row's tier (standard,
//! batch, flex, priority) and context (long context: Anthropic `context_window = "200k-1M"`), then
//! multiplied by the Anthropic fast-mode factor (`speed = fast`) and the US-only factor
//! (`inference_geo = us`); each line is rounded once, half away from zero, to 9 decimals
//! (nanodollars), as the pipeline rounds. Web search requests are priced per request, without
//! those factors. OpenAI has one cache-write rate, held in the 5 min slot. The generator only
//! produces usage the card can price.
//!
//! Deliberately not `common::cost`: the sandbox plays the provider's bill, so reconciliation
//! compares two independent computations; sharing the code would make agreement automatic.

use rust_decimal::{Decimal, RoundingStrategy};

/// The token types the sandbox reports, disjoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TokenType {
    /// Text input not read from cache nor written to it (OpenAI: input − cached − cache write −
    /// uncached audio − uncached image; Anthropic: `uncached_input_tokens`).
    UncachedInput,
    /// Text cache reads (OpenAI `input_cached_tokens` less cached audio and image, Anthropic
    /// `cache_read_input_tokens`).
    CachedInput,
    /// Anthropic `cache_creation.ephemeral_5m_input_tokens`; OpenAI `input_cache_write_tokens`.
    CacheWrite5m,
    /// Anthropic `cache_creation.ephemeral_1h_input_tokens`.
    CacheWrite1h,
    /// Text output.
    Output,
    /// OpenAI `input_audio_tokens − input_cached_audio_tokens`.
    AudioInput,
    /// OpenAI `input_cached_audio_tokens`.
    AudioCachedInput,
    /// OpenAI `output_audio_tokens`.
    AudioOutput,
    /// OpenAI `input_image_tokens − input_cached_image_tokens`.
    ImageInput,
    /// OpenAI `input_cached_image_tokens`.
    ImageCachedInput,
    /// OpenAI `output_image_tokens`.
    ImageOutput,
}

pub const TOKEN_TYPES: [TokenType; 11] = [
    TokenType::UncachedInput,
    TokenType::CachedInput,
    TokenType::CacheWrite5m,
    TokenType::CacheWrite1h,
    TokenType::Output,
    TokenType::AudioInput,
    TokenType::AudioCachedInput,
    TokenType::AudioOutput,
    TokenType::ImageInput,
    TokenType::ImageCachedInput,
    TokenType::ImageOutput,
];

/// The tier a row is billed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    Standard,
    Batch,
    /// OpenAI `service_tier = flex`.
    Flex,
    /// OpenAI `service_tier = priority`.
    Priority,
}

/// Short (default) or long context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Context {
    Short,
    Long,
}

/// Anthropic `speed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Speed {
    Standard,
    /// Fast mode: every token rate × the model's fast-mode multiplier.
    Fast,
}

/// Anthropic `inference_geo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Geo {
    Global,
    /// US-only inference: every token rate × the model's US multiplier.
    Us,
    /// A model that predates the parameter (and every OpenAI row).
    NotAvailable,
}

/// The dimensions a row is billed by, besides its model and token types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dims {
    pub tier: Tier,
    pub context: Context,
    pub speed: Speed,
    pub geo: Geo,
}

impl Dims {
    /// Standard tier, short context, standard speed, no inference geo.
    pub const STANDARD: Dims =
        Dims { tier: Tier::Standard, context: Context::Short, speed: Speed::Standard, geo: Geo::NotAvailable };

    pub fn tier(tier: Tier) -> Dims {
        Dims { tier, ..Dims::STANDARD }
    }
}

/// Rates per 1M tokens of one tier and context.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    pub input: Option<Decimal>,
    pub cached_input: Option<Decimal>,
    pub cache_write_5m: Option<Decimal>,
    pub cache_write_1h: Option<Decimal>,
    pub output: Option<Decimal>,
    pub audio_input: Option<Decimal>,
    pub audio_cached_input: Option<Decimal>,
    pub audio_output: Option<Decimal>,
    pub image_input: Option<Decimal>,
    pub image_cached_input: Option<Decimal>,
    pub image_output: Option<Decimal>,
}

impl Rates {
    pub fn get(&self, t: TokenType) -> Option<Decimal> {
        match t {
            TokenType::UncachedInput => self.input,
            TokenType::CachedInput => self.cached_input,
            TokenType::CacheWrite5m => self.cache_write_5m,
            TokenType::CacheWrite1h => self.cache_write_1h,
            TokenType::Output => self.output,
            TokenType::AudioInput => self.audio_input,
            TokenType::AudioCachedInput => self.audio_cached_input,
            TokenType::AudioOutput => self.audio_output,
            TokenType::ImageInput => self.image_input,
            TokenType::ImageCachedInput => self.image_cached_input,
            TokenType::ImageOutput => self.image_output,
        }
    }

    /// Input and output both priced: the tier exists for the model.
    pub fn offered(&self) -> bool {
        self.input.is_some() && self.output.is_some()
    }
}

/// One model's prices on the card.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Price {
    pub model_id: String,
    pub standard: Rates,
    pub batch: Rates,
    pub flex: Rates,
    pub priority: Rates,
    /// Long-context rates (standard tier), when the card lists them.
    pub long: Rates,
    /// Anthropic fast mode: the factor on every token rate (`speed = fast`).
    pub fast_multiplier: Option<Decimal>,
    /// Anthropic US-only inference: the factor on every token rate (`inference_geo = us`).
    pub us_multiplier: Option<Decimal>,
    /// USD per 1,000 web search requests.
    pub web_search_per_1k: Option<Decimal>,
}

impl Price {
    /// The rates of a tier and context, if the card has such a combination.
    fn rates(&self, tier: Tier, context: Context) -> Option<&Rates> {
        match (tier, context) {
            (Tier::Standard, Context::Short) => Some(&self.standard),
            (Tier::Batch, Context::Short) => Some(&self.batch),
            (Tier::Flex, Context::Short) => Some(&self.flex),
            (Tier::Priority, Context::Short) => Some(&self.priority),
            (Tier::Standard, Context::Long) => Some(&self.long),
            (_, Context::Long) => None,
        }
    }

    /// The rate per 1M tokens of a token type in a tier and context, before multipliers.
    pub fn rate(&self, tier: Tier, context: Context, t: TokenType) -> Option<Decimal> {
        self.rates(tier, context)?.get(t)
    }

    /// The factor of a row's speed and inference geo; None when the card lacks one it needs.
    pub fn multiplier(&self, speed: Speed, geo: Geo) -> Option<Decimal> {
        let fast = match speed {
            Speed::Standard => Decimal::ONE,
            Speed::Fast => self.fast_multiplier?,
        };
        let us = match geo {
            Geo::Global | Geo::NotAvailable => Decimal::ONE,
            Geo::Us => self.us_multiplier?,
        };
        Some(fast * us)
    }

    pub fn has_tier(&self, tier: Tier) -> bool {
        self.rates(tier, Context::Short).is_some_and(Rates::offered)
    }

    /// Every text long-context rate present (the generator only reports long context then).
    pub fn has_long_context(&self) -> bool {
        TOKEN_TYPES[..5].iter().all(|t| self.long.get(*t).is_some())
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
    pub audio_input: u64,
    pub audio_cached_input: u64,
    pub audio_output: u64,
    pub image_input: u64,
    pub image_cached_input: u64,
    pub image_output: u64,
}

impl Tokens {
    pub fn get(&self, t: TokenType) -> u64 {
        match t {
            TokenType::UncachedInput => self.uncached_input,
            TokenType::CachedInput => self.cached_input,
            TokenType::CacheWrite5m => self.cache_write_5m,
            TokenType::CacheWrite1h => self.cache_write_1h,
            TokenType::Output => self.output,
            TokenType::AudioInput => self.audio_input,
            TokenType::AudioCachedInput => self.audio_cached_input,
            TokenType::AudioOutput => self.audio_output,
            TokenType::ImageInput => self.image_input,
            TokenType::ImageCachedInput => self.image_cached_input,
            TokenType::ImageOutput => self.image_output,
        }
    }

    pub fn add(&mut self, other: &Tokens) {
        self.uncached_input += other.uncached_input;
        self.cached_input += other.cached_input;
        self.cache_write_5m += other.cache_write_5m;
        self.cache_write_1h += other.cache_write_1h;
        self.output += other.output;
        self.audio_input += other.audio_input;
        self.audio_cached_input += other.audio_cached_input;
        self.audio_output += other.audio_output;
        self.image_input += other.image_input;
        self.image_cached_input += other.image_cached_input;
        self.image_output += other.image_output;
    }

    /// Every input token, all modalities, cached and cache writes included (OpenAI `input_tokens`).
    pub fn input(&self) -> u64 {
        self.uncached_input
            + self.cached_input
            + self.cache_write_5m
            + self.cache_write_1h
            + self.audio_input
            + self.audio_cached_input
            + self.image_input
            + self.image_cached_input
    }

    /// Every cache read, all modalities (OpenAI `input_cached_tokens`).
    pub fn cached(&self) -> u64 {
        self.cached_input + self.audio_cached_input + self.image_cached_input
    }

    /// Every output token, all modalities (OpenAI `output_tokens`).
    pub fn all_output(&self) -> u64 {
        self.output + self.audio_output + self.image_output
    }
}

/// `tokens × rate × multiplier / 1,000,000`, rounded once, half away from zero, to nanodollars.
pub fn token_cost(tokens: u64, rate_per_1m: Decimal, multiplier: Decimal) -> Decimal {
    nanodollars(Decimal::from(tokens) * rate_per_1m * multiplier / Decimal::from(1_000_000u32))
}

/// Rounded half away from zero to 9 decimals, trailing zeros dropped.
pub fn nanodollars(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(9, RoundingStrategy::MidpointAwayFromZero).normalize()
}

/// The cost of each non-zero token type of a row, in dollars; `None` when the card lacks a rate
/// or a multiplier the row needs (the generator never produces such a row).
pub fn line_costs(price: &Price, dims: Dims, tokens: &Tokens) -> Option<Vec<(TokenType, u64, Decimal)>> {
    let multiplier = price.multiplier(dims.speed, dims.geo)?;
    let mut out = Vec::new();
    for t in TOKEN_TYPES {
        let n = tokens.get(t);
        if n == 0 {
            continue;
        }
        out.push((t, n, token_cost(n, price.rate(dims.tier, dims.context, t)?, multiplier)));
    }
    Some(out)
}

/// Web search requests × the card's rate per 1,000; `None` when requests need a rate it lacks.
pub fn web_search_cost(price: &Price, requests: u64) -> Option<Decimal> {
    if requests == 0 {
        return Some(Decimal::ZERO);
    }
    Some(nanodollars(Decimal::from(requests) * price.web_search_per_1k? / Decimal::from(1_000u32)))
}

/// Total token cost of a row in dollars.
pub fn row_cost(price: &Price, dims: Dims, tokens: &Tokens) -> Option<Decimal> {
    Some(line_costs(price, dims, tokens)?.iter().map(|(_, _, c)| *c).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::rates;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn model(id: &str) -> Price {
        rates::openai_models().into_iter().chain(rates::anthropic_models()).find(|m| m.id == id).unwrap().price
    }

    #[test]
    fn openai_cached_input_is_priced_at_the_cached_rate() {
        let p = model("gpt-4o-mini-2024-07-18");
        // 182,340 input of which 64,000 cached, 20,311 output:
        // 118,340 × 0.15 / 1M = 0.017751; 64,000 × 0.075 / 1M = 0.0048; 20,311 × 0.60 / 1M = 0.0121866
        let t = Tokens { uncached_input: 118_340, cached_input: 64_000, output: 20_311, ..Tokens::default() };
        let lines = line_costs(&p, Dims::STANDARD, &t).unwrap();
        assert_eq!(
            lines,
            vec![
                (TokenType::UncachedInput, 118_340, dec("0.017751")),
                (TokenType::CachedInput, 64_000, dec("0.0048")),
                (TokenType::Output, 20_311, dec("0.0121866")),
            ]
        );
        assert_eq!(row_cost(&p, Dims::STANDARD, &t), Some(dec("0.0347376")));
    }

    #[test]
    fn a_rate_the_card_lacks_prices_nothing() {
        // No batch cache rate: a cached batch row cannot be priced.
        let p = model("gpt-4.1-2025-04-14");
        let cached = Tokens { uncached_input: 1_000_000, cached_input: 1, ..Tokens::default() };
        assert_eq!(row_cost(&p, Dims::tier(Tier::Batch), &cached), None);
        assert!(p.has_tier(Tier::Batch) && !p.has_tier(Tier::Flex) && p.has_tier(Tier::Priority));
        assert!(!model("claude-3-5-haiku-20241022").has_tier(Tier::Batch));
        // Audio on a text model, fast mode or US-only inference on a model without the factor.
        let audio = Tokens { audio_input: 1, ..Tokens::default() };
        assert_eq!(row_cost(&p, Dims::STANDARD, &audio), None);
        let one = Tokens { uncached_input: 1, ..Tokens::default() };
        let sonnet = model("claude-sonnet-4-5-20250929");
        assert_eq!(row_cost(&sonnet, Dims { speed: Speed::Fast, ..Dims::STANDARD }, &one), None);
        assert_eq!(row_cost(&sonnet, Dims { geo: Geo::Us, ..Dims::STANDARD }, &one), None);
        assert_eq!(row_cost(&sonnet, Dims { geo: Geo::Global, ..Dims::STANDARD }, &one), Some(dec("0.000003")));
    }

    #[test]
    fn anthropic_cache_reads_and_writes_are_priced_separately() {
        let p = model("claude-sonnet-4-5-20250929");
        // Anthropic's example: 1500 uncached, 1000 1h write, 500 5m write, 200 read, 500 output.
        // 1500×3 + 1000×6 + 500×3.75 + 200×0.30 + 500×15 = 4500 + 6000 + 1875 + 60 + 7500 = 19935 → $0.019935
        let t = Tokens {
            uncached_input: 1500,
            cache_write_1h: 1000,
            cache_write_5m: 500,
            cached_input: 200,
            output: 500,
            ..Tokens::default()
        };
        assert_eq!(row_cost(&p, Dims::STANDARD, &t), Some(dec("0.019935")));
        // Long context: 1500×6 + 1000×12 + 500×7.5 + 200×0.6 + 500×22.5 = 9000+12000+3750+120+11250 = 36120
        let long = Dims { context: Context::Long, ..Dims::STANDARD };
        assert_eq!(row_cost(&p, long, &t), Some(dec("0.03612")));
    }

    #[test]
    fn fast_mode_and_us_inference_multiply_every_token_rate_and_stack() {
        let p = model("claude-opus-4-6");
        // 1,000 uncached input and 100 output at $5 / $25: 0.005 + 0.0025 = 0.0075 standard.
        let t = Tokens { uncached_input: 1_000, output: 100, ..Tokens::default() };
        let dims = |speed, geo| Dims { speed, geo, ..Dims::STANDARD };
        assert_eq!(row_cost(&p, dims(Speed::Standard, Geo::Global), &t), Some(dec("0.0075")));
        // Fast ×6: 0.03 + 0.015 = 0.045.
        assert_eq!(row_cost(&p, dims(Speed::Fast, Geo::Global), &t), Some(dec("0.045")));
        // US ×1.1: 0.0055 + 0.00275 = 0.00825.
        assert_eq!(row_cost(&p, dims(Speed::Standard, Geo::Us), &t), Some(dec("0.00825")));
        // Both ×6.6: 0.033 + 0.0165 = 0.0495.
        assert_eq!(row_cost(&p, dims(Speed::Fast, Geo::Us), &t), Some(dec("0.0495")));
        // US on batch ×1.1: 1,000 × 2.50 × 1.1 = 0.00275; 100 × 12.50 × 1.1 = 0.001375 → 0.004125.
        let batch_us = Dims { tier: Tier::Batch, geo: Geo::Us, ..Dims::STANDARD };
        assert_eq!(row_cost(&p, batch_us, &t), Some(dec("0.004125")));
    }

    #[test]
    fn web_search_is_priced_per_request_without_multipliers() {
        let p = model("claude-opus-4-6");
        // 37 requests × $10 / 1,000 = $0.37, whatever the row's speed or geo.
        assert_eq!(web_search_cost(&p, 37), Some(dec("0.37")));
        assert_eq!(web_search_cost(&p, 0), Some(Decimal::ZERO));
        assert_eq!(web_search_cost(&model("gpt-4.1-2025-04-14"), 1), None);
    }

    #[test]
    fn each_line_is_rounded_once_to_nanodollars_half_away_from_zero() {
        let p = model("gpt-5-mini-2025-08-07");
        // Flex cached input at $0.0125: 3 × 0.0125 / 1M = 0.0000000375 → 0.000000038 (half up);
        // 1 × 0.0125 / 1M = 0.0000000125 → 0.000000013.
        let flex = Dims::tier(Tier::Flex);
        let three = Tokens { cached_input: 3, ..Tokens::default() };
        assert_eq!(row_cost(&p, flex, &three), Some(dec("0.000000038")));
        let one = Tokens { cached_input: 1, ..Tokens::default() };
        assert_eq!(row_cost(&p, flex, &one), Some(dec("0.000000013")));
    }

    #[test]
    fn openai_modalities_are_priced_at_their_own_rates() {
        let p = model("gpt-realtime-2025-08-28");
        // text 1,000 × 4 = 0.004; text cached 1,000 × 0.40 = 0.0004; text output 1,000 × 16 = 0.016;
        // audio 1,000 × 32 = 0.032; cached audio 1,000 × 0.40 = 0.0004; audio output 1,000 × 64 = 0.064;
        // image 1,000 × 5 = 0.005; cached image 1,000 × 0.50 = 0.0005.
        // 0.004 + 0.0004 + 0.016 + 0.032 + 0.0004 + 0.064 + 0.005 + 0.0005 = 0.1223
        let t = Tokens {
            uncached_input: 1_000,
            cached_input: 1_000,
            output: 1_000,
            audio_input: 1_000,
            audio_cached_input: 1_000,
            audio_output: 1_000,
            image_input: 1_000,
            image_cached_input: 1_000,
            ..Tokens::default()
        };
        assert_eq!(row_cost(&p, Dims::STANDARD, &t), Some(dec("0.1223")));
        assert_eq!((t.input(), t.cached(), t.all_output()), (6_000, 3_000, 2_000));
        // No image output rate on the realtime model.
        assert_eq!(row_cost(&p, Dims::STANDARD, &Tokens { image_output: 1, ..Tokens::default() }), None);
    }
}
