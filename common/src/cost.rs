//! The cost model (DESIGN §9): usage priced to the cent from the effective-dated prices of the
//! organization (its overrides, else the system-wide catalog), one token type at a time.
//!
//! A usage row is priced from (model, day, token type, service tier, batch, context band, speed,
//! region) and its per-request tool use ([`Usage`]); each has one rule, and a dimension the
//! book has no rate for leaves the row unpriced and reported, never priced at zero nor at
//! another dimension's rate (two deliberate OpenAI exceptions below):
//!
//! - **Model**: the exact id, else the longest book id the model extends by a dated-snapshot
//!   suffix (`-2024-07-18`, `-20250929`, `-0613`), so `gpt-4o-mini-2024-07-18` → `gpt-4o-mini`,
//!   never `gpt-4o`, and `gpt-4o-2024-05-13` (its own row) is never priced as `gpt-4o`.
//! - **Day**: the version in force that day: the organization's override, else the catalog's.
//! - **Token types** are disjoint ([`TokenType`]): text uncached input, cache read, cache write
//!   5 min / 1 h, output; audio input, cached audio input, audio output; image likewise.
//!   OpenAI's `input_tokens` *includes* cached, cache-write and every modality's tokens
//!   ([`Tokens::openai_split`]); Anthropic reports its types separately.
//! - **Tier** picks the rate set: standard `*`, batch `batch_*`, flex `flex_*`, priority
//!   `priority_*` ([`Basis`]).
//! - **Context**: long (Anthropic's `200k-1M`) → `long_context_*`, batch → `batch_long_context_*`;
//!   a model with no long-context rates at all has no surcharge (standard or batch rates).
//! - **Modalities** have standard-tier rates only (`audio_*`, `image_*`). Audio without a rate
//!   is unpriced. Image input and cached image input without an image rate take the text rate of
//!   the row's basis (OpenAI bills vision input of chat models as text tokens: deliberate);
//!   image output without a rate is unpriced.
//! - **Cache writes** (OpenAI): without a cache-write rate they are uncached input (OpenAI bills
//!   them as input where it publishes no cache-write price: deliberate, [`CacheWrites`]).
//!   Anthropic's cache writes always need their own rate.
//! - **Speed** `fast` × `fast_mode_multiplier`, **region** `us` × `us_inference_multiplier`, on
//!   every token rate of the row (not on web search); `standard` / `global` / `not_available` /
//!   none × 1.
//! - **Web search**: requests × `web_search_per_1k_requests` / 1000.
//!
//! Arithmetic: `tokens × rate_per_1M × multipliers / 1,000,000` in `rust_decimal`, each line
//! rounded once, half away from zero, to 9 decimal places (NUMERIC's scale), the row total the
//! sum of its lines.

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

/// The token types a price book prices separately (disjoint counts of one usage row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TokenType {
    /// Text input not read from (or, for Anthropic, written to) the cache.
    UncachedInput,
    /// Text cache reads (OpenAI `input_cached_tokens` less cached audio and image, Anthropic
    /// `cache_read_input_tokens`).
    CachedInput,
    /// Anthropic `cache_creation.ephemeral_5m_input_tokens`; OpenAI `input_cache_write_tokens`
    /// (OpenAI's one cache-write price is held in `cache_write_5m_per_1m`).
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

impl TokenType {
    /// The price-book column stem (`input` → `input_per_1m`, `batch_input_per_1m`, …).
    pub fn book_stem(self) -> &'static str {
        match self {
            TokenType::UncachedInput => "input",
            TokenType::CachedInput => "cached_input",
            TokenType::CacheWrite5m => "cache_write_5m",
            TokenType::CacheWrite1h => "cache_write_1h",
            TokenType::Output => "output",
            TokenType::AudioInput => "audio_input",
            TokenType::AudioCachedInput => "audio_cached_input",
            TokenType::AudioOutput => "audio_output",
            TokenType::ImageInput => "image_input",
            TokenType::ImageCachedInput => "image_cached_input",
            TokenType::ImageOutput => "image_output",
        }
    }

    /// Audio and image tokens: their rates exist on the standard tier only.
    pub fn is_modality(self) -> bool {
        self.index() >= TokenType::AudioInput.index()
    }

    /// The text type whose rate image input falls back to (see the module docs).
    pub fn text_fallback(self) -> Option<TokenType> {
        match self {
            TokenType::ImageInput => Some(TokenType::UncachedInput),
            TokenType::ImageCachedInput => Some(TokenType::CachedInput),
            _ => None,
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

/// Anthropic's `speed` (fast mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Speed {
    /// `standard` or not reported: × 1.
    Standard,
    /// `fast`: × `fast_mode_multiplier`.
    Fast,
    /// A value this code does not know; never priced.
    Unknown,
}

impl Speed {
    pub fn parse(speed: Option<&str>) -> Speed {
        match speed.map(str::to_ascii_lowercase).as_deref() {
            None | Some("" | "standard") => Speed::Standard,
            Some("fast") => Speed::Fast,
            Some(_) => Speed::Unknown,
        }
    }
}

/// Anthropic's `inference_geo` (where inference ran).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Geo {
    /// `global`, `not_available` (models before inference_geo existed) or not reported: × 1.
    Global,
    /// `us` (US-only inference): × `us_inference_multiplier`.
    Us,
    /// A value this code does not know; never priced.
    Unknown,
}

impl Geo {
    pub fn parse(inference_geo: Option<&str>) -> Geo {
        match inference_geo.map(str::to_ascii_lowercase).as_deref() {
            None | Some("" | "global" | "not_available") => Geo::Global,
            Some("us") => Geo::Us,
            Some(_) => Geo::Unknown,
        }
    }
}

/// What cache writes cost when the rate set has no cache-write rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheWrites {
    /// They need their own rate (Anthropic: cache writes are always billed at their own price).
    OwnRate,
    /// They are uncached input (OpenAI bills them as input where it publishes no cache-write
    /// price).
    InputWithoutRate,
}

/// Token counts of one usage row, by type (disjoint).
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

/// An OpenAI completions result's counts as reported (`None`: the field was absent, as in
/// captures older than the field). Every input count is part of `input`, every output count
/// part of `output`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenAiCounts {
    pub input: u64,
    pub cached: u64,
    pub cache_write: Option<u64>,
    pub output: u64,
    pub input_audio: Option<u64>,
    pub cached_audio: Option<u64>,
    pub output_audio: Option<u64>,
    pub input_image: Option<u64>,
    pub cached_image: Option<u64>,
    pub output_image: Option<u64>,
}

impl Tokens {
    /// OpenAI text-only counts: cached tokens are a subset of input. `None` when the provider
    /// says more tokens were cached than were input (a row that cannot be priced honestly).
    pub fn openai(input: u64, cached: u64, output: u64) -> Option<Tokens> {
        Tokens::openai_split(&OpenAiCounts { input, cached, output, ..OpenAiCounts::default() }).ok()
    }

    /// OpenAI's counts split into disjoint types (absent fields count 0, so a row without
    /// modality fields is all text):
    /// audio input = `input_audio − cached_audio`, audio cached = `cached_audio`, audio output =
    /// `output_audio`; image likewise; cache write = `input_cache_write`; text cached =
    /// `cached − cached audio − cached image`; text uncached = `input − cached − cache write −
    /// uncached audio − uncached image`; text output = `output − audio output − image output`.
    /// A negative difference is an error naming it (the row is reported, never clamped).
    pub fn openai_split(c: &OpenAiCounts) -> Result<Tokens, String> {
        let n = |v: Option<u64>| v.unwrap_or(0);
        let sub = |a: u64, b: u64, what: &str| a.checked_sub(b).ok_or_else(|| format!("{what} ({a} − {b} < 0)"));
        let audio_input = sub(n(c.input_audio), n(c.cached_audio), "input_audio_tokens − input_cached_audio_tokens")?;
        let image_input = sub(n(c.input_image), n(c.cached_image), "input_image_tokens − input_cached_image_tokens")?;
        let cached_modal = n(c.cached_audio) + n(c.cached_image);
        let cached_input = sub(c.cached, cached_modal, "input_cached_tokens − cached audio − cached image")?;
        let uncached_input = sub(
            c.input,
            c.cached + n(c.cache_write) + audio_input + image_input,
            "input_tokens − input_cached_tokens − input_cache_write_tokens − uncached audio − uncached image",
        )?;
        let output =
            sub(c.output, n(c.output_audio) + n(c.output_image), "output_tokens − audio output − image output")?;
        Ok(Tokens {
            uncached_input,
            cached_input,
            cache_write_5m: n(c.cache_write),
            cache_write_1h: 0,
            output,
            audio_input,
            audio_cached_input: n(c.cached_audio),
            audio_output: n(c.output_audio),
            image_input,
            image_cached_input: n(c.cached_image),
            image_output: n(c.output_image),
        })
    }

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

    fn slot(&mut self, t: TokenType) -> &mut u64 {
        match t {
            TokenType::UncachedInput => &mut self.uncached_input,
            TokenType::CachedInput => &mut self.cached_input,
            TokenType::CacheWrite5m => &mut self.cache_write_5m,
            TokenType::CacheWrite1h => &mut self.cache_write_1h,
            TokenType::Output => &mut self.output,
            TokenType::AudioInput => &mut self.audio_input,
            TokenType::AudioCachedInput => &mut self.audio_cached_input,
            TokenType::AudioOutput => &mut self.audio_output,
            TokenType::ImageInput => &mut self.image_input,
            TokenType::ImageCachedInput => &mut self.image_cached_input,
            TokenType::ImageOutput => &mut self.image_output,
        }
    }

    pub fn total(&self) -> u64 {
        TOKEN_TYPES.iter().map(|t| self.get(*t)).sum()
    }
}

/// One usage row, everything its price depends on besides the model and day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub tokens: Tokens,
    pub tier: Tier,
    pub context: Context,
    pub speed: Speed,
    pub geo: Geo,
    pub web_search_requests: u64,
    pub cache_writes: CacheWrites,
}

impl Usage {
    /// An OpenAI row: short context, standard speed and region, cache writes as input without
    /// a cache-write rate.
    pub fn openai(tokens: Tokens, tier: Tier) -> Usage {
        Usage {
            tokens,
            tier,
            context: Context::Short,
            speed: Speed::Standard,
            geo: Geo::Global,
            web_search_requests: 0,
            cache_writes: CacheWrites::InputWithoutRate,
        }
    }

    /// An Anthropic row: every dimension as reported; cache writes need their own rate.
    pub fn anthropic(tokens: Tokens, tier: Tier, context: Context, speed: Speed, geo: Geo, web_search: u64) -> Usage {
        Usage { tokens, tier, context, speed, geo, web_search_requests: web_search, cache_writes: CacheWrites::OwnRate }
    }
}

/// A rate set of the book: its column prefix and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Basis {
    Standard,
    Batch,
    Flex,
    Priority,
    LongContext,
    BatchLongContext,
}

const BASES: [Basis; 6] =
    [Basis::Standard, Basis::Batch, Basis::Flex, Basis::Priority, Basis::LongContext, Basis::BatchLongContext];

impl Basis {
    /// The column prefix: `batch_` → `batch_input_per_1m`.
    pub fn prefix(self) -> &'static str {
        match self {
            Basis::Standard => "",
            Basis::Batch => "batch_",
            Basis::Flex => "flex_",
            Basis::Priority => "priority_",
            Basis::LongContext => "long_context_",
            Basis::BatchLongContext => "batch_long_context_",
        }
    }

    /// The name a cost row's `pricing_basis` shows.
    pub fn name(self) -> &'static str {
        match self {
            Basis::Standard => "standard",
            Basis::Batch => "batch",
            Basis::Flex => "flex",
            Basis::Priority => "priority",
            Basis::LongContext => "long_context",
            Basis::BatchLongContext => "batch_long_context",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Rates per 1M tokens of one version: (basis, token type) → rate. Modality rates exist on the
/// standard basis only; the other bases' modality slots stay empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates([[Option<Decimal>; 11]; 6]);

impl Rates {
    fn from_row(row: &Row) -> Rates {
        let mut rates = Rates::default();
        for basis in BASES {
            for t in TOKEN_TYPES {
                if basis == Basis::Standard || !t.is_modality() {
                    rates.0[basis.index()][t.index()] =
                        money(row, &format!("{}{}_per_1m", basis.prefix(), t.book_stem()));
                }
            }
        }
        rates
    }

    pub fn get(&self, basis: Basis, t: TokenType) -> Option<Decimal> {
        self.0[basis.index()][t.index()]
    }

    /// Whether the version lists any rate of the basis.
    fn any(&self, basis: Basis) -> bool {
        self.0[basis.index()].iter().any(Option::is_some)
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
    pub rates: Rates,
    /// USD (the version's currency) per 1,000 web-search requests.
    pub web_search_per_1k: Option<Decimal>,
    pub fast_mode_multiplier: Option<Decimal>,
    pub us_inference_multiplier: Option<Decimal>,
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
        Ok(PriceVersion {
            source: PriceSource::Override,
            version_id: text("version_id").unwrap_or_default(),
            version: row.get("version").and_then(Value::as_i64).unwrap_or(0),
            effective_from,
            effective_to: text("effective_to").as_deref().and_then(parse_date),
            currency: text("currency").unwrap_or_else(|| "USD".into()),
            rates: Rates::from_row(row),
            web_search_per_1k: money(row, "web_search_per_1k_requests"),
            fast_mode_multiplier: money(row, "fast_mode_multiplier"),
            us_inference_multiplier: money(row, "us_inference_multiplier"),
            model_id,
        })
    }

    /// In force on `day`: `effective_from <= day < effective_to`.
    pub fn in_force(&self, day: NaiveDate) -> bool {
        self.effective_from <= day && self.effective_to.is_none_or(|to| day < to)
    }

    /// Whether the version has long-context rates (any `long_context_*` or
    /// `batch_long_context_*`); without them long context is priced like short.
    pub fn has_long_context(&self) -> bool {
        self.rates.any(Basis::LongContext) || self.rates.any(Basis::BatchLongContext)
    }

    /// The rate set a tier and context call for on this version, or the name of one the book
    /// cannot hold (flex or priority with long context, an unknown tier).
    pub fn basis(&self, tier: Tier, context: Context) -> Result<Basis, &'static str> {
        let long = context == Context::Long && self.has_long_context();
        match (tier, long) {
            (Tier::Standard, false) => Ok(Basis::Standard),
            (Tier::Standard, true) => Ok(Basis::LongContext),
            (Tier::Batch, false) => Ok(Basis::Batch),
            (Tier::Batch, true) => Ok(Basis::BatchLongContext),
            (Tier::Flex, false) => Ok(Basis::Flex),
            (Tier::Priority, false) => Ok(Basis::Priority),
            (Tier::Flex, true) => Err("flex_long_context"),
            (Tier::Priority, true) => Err("priority_long_context"),
            (Tier::Unknown, _) => Err("unknown_tier"),
        }
    }
}

/// The name of the rates a tier and context call for when no version says more (what a row
/// whose model is missing would have used).
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
    pub lines: [Option<Decimal>; 11],
    /// Web-search requests × the per-request rate; None without requests.
    pub web_search: Option<Decimal>,
    pub total: Decimal,
    /// `standard`, `batch`, `flex`, `priority`, `long_context`, `batch_long_context`.
    pub basis: &'static str,
    /// The product of the speed and region multipliers applied to every token rate (1 for none).
    pub multiplier: Decimal,
    /// The tokens as priced: OpenAI cache writes without a cache-write rate are in
    /// `uncached_input`.
    pub tokens: Tokens,
    /// Token types priced at their text type's rate (image input without an image rate).
    pub at_text_rate: [bool; 11],
}

impl RowCost {
    pub fn line(&self, t: TokenType) -> Option<Decimal> {
        self.lines[t.index()]
    }

    /// The type a line is billed as: image input priced at the text rate is text input on the
    /// provider's bill too.
    pub fn billed_as(&self, t: TokenType) -> TokenType {
        match t.text_fallback() {
            Some(text) if self.at_text_rate[t.index()] => text,
            _ => t,
        }
    }
}

/// Why a row could not be priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unpriced {
    /// No price-book entry matches the model on that day.
    ModelMissing,
    /// The entry lacks rates the row needs: the basis, and each missing rate by its column name
    /// (or a description where the book has no such column).
    RateMissing { basis: &'static str, missing: Vec<String> },
    /// The provider's counts do not add up (which difference went negative).
    TokenCounts(String),
}

/// `tokens × rate × multiplier / 1M`, rounded once to [`COST_SCALE`].
pub fn token_cost(tokens: u64, rate_per_1m: Decimal, multiplier: Decimal) -> Decimal {
    (Decimal::from(tokens) * rate_per_1m * multiplier / Decimal::from(1_000_000u32))
        .round_dp_with_strategy(COST_SCALE, RoundingStrategy::MidpointAwayFromZero)
}

/// `requests × rate per 1,000 / 1000`, rounded to [`COST_SCALE`].
pub fn request_cost(requests: u64, rate_per_1k: Decimal) -> Decimal {
    (Decimal::from(requests) * rate_per_1k / Decimal::from(1_000u32))
        .round_dp_with_strategy(COST_SCALE, RoundingStrategy::MidpointAwayFromZero)
}

/// The rate of token type `t` on `basis` and whether it is its text type's rate, or the name of
/// the rate that is missing.
fn rate_of(version: &PriceVersion, basis: Basis, t: TokenType) -> Result<(Decimal, bool), String> {
    let column = |b: Basis, t: TokenType| format!("{}{}_per_1m", b.prefix(), t.book_stem());
    if !t.is_modality() {
        return version.rates.get(basis, t).map(|r| (r, false)).ok_or_else(|| column(basis, t));
    }
    let own = version.rates.get(Basis::Standard, t);
    match (own, basis, t.text_fallback()) {
        (Some(rate), Basis::Standard, _) => Ok((rate, false)),
        // A modality rate is a standard-tier rate: the book holds none for other rate sets.
        (Some(_), _, _) => Err(format!("{} for the {} rates", column(Basis::Standard, t), basis.name())),
        (None, _, Some(text)) => version.rates.get(basis, text).map(|r| (r, true)).ok_or_else(|| column(basis, text)),
        (None, _, None) => Err(column(Basis::Standard, t)),
    }
}

/// Prices a usage row with one version: every token type with tokens, the multipliers its speed
/// and region call for, and its web searches each need a rate.
pub fn price(version: &PriceVersion, usage: &Usage) -> Result<RowCost, Unpriced> {
    let basis = match version.basis(usage.tier, usage.context) {
        Ok(b) => b,
        Err(name) => {
            return Err(Unpriced::RateMissing { basis: name, missing: vec![format!("{name} rates (no such columns)")] })
        }
    };
    let mut missing = Vec::new();
    let mut multiplier = Decimal::ONE;
    match (usage.speed, version.fast_mode_multiplier) {
        (Speed::Standard, _) => {}
        (Speed::Fast, Some(m)) => multiplier *= m,
        (Speed::Fast, None) => missing.push("fast_mode_multiplier".to_string()),
        (Speed::Unknown, _) => missing.push("a rate for this speed (not standard or fast)".to_string()),
    }
    match (usage.geo, version.us_inference_multiplier) {
        (Geo::Global, _) => {}
        (Geo::Us, Some(m)) => multiplier *= m,
        (Geo::Us, None) => missing.push("us_inference_multiplier".to_string()),
        (Geo::Unknown, _) => {
            missing.push("a rate for this inference_geo (not global, us or not_available)".to_string())
        }
    }
    let mut tokens = usage.tokens;
    if usage.cache_writes == CacheWrites::InputWithoutRate {
        for write in [TokenType::CacheWrite5m, TokenType::CacheWrite1h] {
            if tokens.get(write) > 0 && version.rates.get(basis, write).is_none() {
                let n = std::mem::take(tokens.slot(write));
                tokens.uncached_input += n;
            }
        }
    }
    let mut lines = [None; 11];
    let mut at_text_rate = [false; 11];
    let mut total = Decimal::ZERO;
    for t in TOKEN_TYPES {
        let n = tokens.get(t);
        if n == 0 {
            continue;
        }
        match rate_of(version, basis, t) {
            Ok((rate, as_text)) => {
                let cost = token_cost(n, rate, multiplier);
                total += cost;
                lines[t.index()] = Some(cost);
                at_text_rate[t.index()] = as_text;
            }
            Err(column) => missing.push(column),
        }
    }
    let mut web_search = None;
    if usage.web_search_requests > 0 {
        match version.web_search_per_1k {
            Some(rate) => {
                let cost = request_cost(usage.web_search_requests, rate);
                total += cost;
                web_search = Some(cost);
            }
            None => missing.push("web_search_per_1k_requests".to_string()),
        }
    }
    if missing.is_empty() {
        Ok(RowCost { lines, web_search, total, basis: basis.name(), multiplier, tokens, at_text_rate })
    } else {
        Err(Unpriced::RateMissing { basis: basis.name(), missing })
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

    /// Prices a usage row of `model` on `day`: the version used (its `model_id` is the matched
    /// book id: `== model` for an exact match) and its cost, or why not.
    pub fn price(
        &mut self,
        model: &str,
        day: NaiveDate,
        usage: &Usage,
    ) -> (Option<&PriceVersion>, Result<RowCost, Unpriced>) {
        match self.lookup(model, day) {
            None => (None, Err(Unpriced::ModelMissing)),
            Some(v) => {
                let cost = price(v, usage);
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

    /// A day every shipped price below is in force on.
    fn today() -> NaiveDate {
        day("2026-11-01")
    }

    fn openai(tokens: Tokens, tier: Tier) -> Usage {
        Usage::openai(tokens, tier)
    }

    fn split(c: OpenAiCounts) -> Tokens {
        Tokens::openai_split(&c).unwrap()
    }

    fn anthropic(tokens: Tokens, tier: Tier, context: Context) -> Usage {
        Usage::anthropic(tokens, tier, context, Speed::Standard, Geo::Global, 0)
    }

    /// provider-apis.md §3a: the official usage-report example's token counts.
    fn official_example() -> Tokens {
        Tokens {
            uncached_input: 1_500,
            cache_write_1h: 1_000,
            cache_write_5m: 500,
            cached_input: 200,
            output: 500,
            ..Tokens::default()
        }
    }

    fn missing(basis: &'static str, columns: &[&str]) -> Result<RowCost, Unpriced> {
        Err(Unpriced::RateMissing { basis, missing: columns.iter().map(|c| c.to_string()).collect() })
    }

    /// One override row (a whole price row) for the tests that need a rate no shipped model has.
    fn override_row(model: &str, extra: serde_json::Value) -> Row {
        let mut row: Row = serde_json::from_value(json!({
            "model_id": model, "version_id": "org-v1", "version": 1, "effective_from": "1970-01-01",
            "currency": "USD", "input_per_1m": "1.25", "cached_input_per_1m": "0.125", "output_per_1m": "10.00",
        }))
        .unwrap();
        row.extend(serde_json::from_value::<Row>(extra).unwrap());
        row
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
        let (v, cost) = book.price("gpt-4o-mini-2024-07-18", today(), &openai(tokens, Tier::Standard));
        assert_eq!(v.unwrap().model_id, "gpt-4o-mini");
        let cost = cost.unwrap();
        assert_eq!(cost.line(TokenType::UncachedInput), Some(dec("0.017751")));
        assert_eq!(cost.line(TokenType::CachedInput), Some(dec("0.0048")));
        assert_eq!(cost.line(TokenType::Output), Some(dec("0.0121866")));
        assert_eq!(cost.total, dec("0.0347376"));
        assert_eq!((cost.basis, cost.multiplier), ("standard", Decimal::ONE));
        // Pricing all 182,340 at the input rate (the classic mistake) would give 0.0395376.
        assert_ne!(cost.total, dec("0.0395376"));
    }

    #[test]
    fn openai_golden_batch_batch_cache_reads_and_embeddings() {
        let mut book = default_book("openai");
        // gpt-4.1 batch: 1,000,000 × 1.00 / 1M + 250,000 × 4.00 / 1M = 1 + 1 = 2
        let t = Tokens::openai(1_000_000, 0, 250_000).unwrap();
        let (_, c) = book.price("gpt-4.1-2025-04-14", today(), &openai(t, Tier::openai(Some(true), None)));
        assert_eq!((c.as_ref().unwrap().total, c.unwrap().basis), (dec("2"), "batch"));
        // Standard for comparison: 1,000,000 × 2.00 + 250,000 × 8.00 = 2 + 2 = 4
        let (_, c) = book.price("gpt-4.1-2025-04-14", today(), &openai(t, Tier::openai(Some(false), Some("default"))));
        assert_eq!(c.unwrap().total, dec("4"));
        // Batch with cache reads on gpt-5 (batch 0.625 / cached 0.0625 / output 5.00):
        //   (1,000,000 − 400,000) × 0.625 = 0.375; 400,000 × 0.0625 = 0.025; 100,000 × 5 = 0.5 → 0.9
        let cached = Tokens::openai(1_000_000, 400_000, 100_000).unwrap();
        let (_, c) = book.price("gpt-5-2025-08-07", today(), &openai(cached, Tier::Batch));
        let c = c.unwrap();
        assert_eq!(c.line(TokenType::CachedInput), Some(dec("0.025")));
        assert_eq!((c.total, c.basis), (dec("0.9"), "batch"));
        // gpt-4.1 lists no batch cached rate: reported, naming the column, not zero.
        let (_, c) = book.price("gpt-4.1", today(), &openai(cached, Tier::Batch));
        assert_eq!(c, missing("batch", &["batch_cached_input_per_1m"]));
        // text-embedding-3-small: 3,456,789 × 0.02 / 1M = 0.06913578
        let e = Tokens::openai(3_456_789, 0, 0).unwrap();
        let (_, c) = book.price("text-embedding-3-small", today(), &openai(e, Tier::Standard));
        assert_eq!(c.unwrap().total, dec("0.06913578"));
        // More cached than input is refused.
        assert_eq!(Tokens::openai(10, 11, 0), None);
    }

    #[test]
    fn openai_golden_flex_and_priority() {
        // gpt-5, 1,000,000 input of which 200,000 cached, 100,000 output:
        //   standard (1.25 / 0.125 / 10):   800,000 × 1.25 + 200,000 × 0.125 + 100,000 × 10 = 1 + 0.025 + 1 = 2.025
        //   flex     (0.625 / 0.0625 / 5):  800,000 × 0.625 + 200,000 × 0.0625 + 100,000 × 5 = 0.5 + 0.0125 + 0.5 = 1.0125
        //   priority (2.50 / 0.25 / 20):    800,000 × 2.5 + 200,000 × 0.25 + 100,000 × 20 = 2 + 0.05 + 2 = 4.05
        let mut book = default_book("openai");
        let t = Tokens::openai(1_000_000, 200_000, 100_000).unwrap();
        for (service_tier, total, basis) in
            [("default", "2.025", "standard"), ("flex", "1.0125", "flex"), ("priority", "4.05", "priority")]
        {
            let (_, c) = book.price("gpt-5", today(), &openai(t, Tier::openai(Some(false), Some(service_tier))));
            let c = c.unwrap();
            assert_eq!((c.total, c.basis), (dec(total), basis), "{service_tier}");
        }
        // gpt-5-nano has flex rates but no priority ones: every priority rate it needs is named.
        let (_, c) = book.price("gpt-5-nano", today(), &openai(t, Tier::Priority));
        assert_eq!(
            c,
            missing("priority", &["priority_input_per_1m", "priority_cached_input_per_1m", "priority_output_per_1m"])
        );
        // gpt-4.1 has priority rates but no flex ones: flex usage is unpriced, never at standard.
        let (_, c) = book.price("gpt-4.1", today(), &openai(t, Tier::Flex));
        assert_eq!(c, missing("flex", &["flex_input_per_1m", "flex_cached_input_per_1m", "flex_output_per_1m"]));
        // An unknown tier is never priced at another tier's rate.
        let (_, c) = book.price("gpt-5", today(), &openai(t, Tier::openai(None, Some("turbo"))));
        assert!(matches!(c, Err(Unpriced::RateMissing { basis: "unknown_tier", .. })), "{c:?}");
    }

    #[test]
    fn openai_counts_split_into_disjoint_types() {
        // input 600,000 (cached 150,000 of which 100,000 audio; audio 300,000), output 250,000
        // (audio 200,000):
        //   audio input  300,000 − 100,000                         = 200,000
        //   text cached  150,000 − 100,000                         =  50,000
        //   text input   600,000 − 150,000 − 0 − 200,000 − 0       = 250,000
        //   text output  250,000 − 200,000                         =  50,000
        let c = OpenAiCounts {
            input: 600_000,
            cached: 150_000,
            cache_write: Some(0),
            output: 250_000,
            input_audio: Some(300_000),
            cached_audio: Some(100_000),
            output_audio: Some(200_000),
            ..OpenAiCounts::default()
        };
        let t = split(c);
        assert_eq!(
            (t.uncached_input, t.cached_input, t.output, t.audio_input, t.audio_cached_input, t.audio_output),
            (250_000, 50_000, 50_000, 200_000, 100_000, 200_000)
        );
        assert_eq!(t.total(), 600_000 + 250_000, "disjoint: every token counted once");
        // A negative difference is reported, never clamped.
        let bad = OpenAiCounts { input: 10, input_audio: Some(5), cached_audio: Some(6), cached: 6, ..c };
        assert!(Tokens::openai_split(&bad).unwrap_err().contains("input_audio_tokens − input_cached_audio_tokens"));
        let bad = OpenAiCounts { input: 100, cached: 10, cache_write: Some(95), ..OpenAiCounts::default() };
        assert!(Tokens::openai_split(&bad).unwrap_err().starts_with("input_tokens − input_cached_tokens"));
        let bad = OpenAiCounts { output: 10, output_image: Some(11), ..OpenAiCounts::default() };
        assert!(Tokens::openai_split(&bad).unwrap_err().starts_with("output_tokens"));
        // Without modality fields (old captures) the row is all text, as before.
        let old = split(OpenAiCounts { input: 1_000, cached: 400, output: 10, ..OpenAiCounts::default() });
        assert_eq!(old, Tokens::openai(1_000, 400, 10).unwrap());
    }

    #[test]
    fn openai_golden_audio_tokens_at_their_own_rates() {
        // gpt-realtime (text 4.00 / 0.40 / 16.00, audio 32.00 / 0.40 / 64.00), the counts of
        // openai_counts_split_into_disjoint_types:
        //   text input   250,000 × 4    = 1.0
        //   text cached   50,000 × 0.40 = 0.02
        //   text output   50,000 × 16   = 0.8
        //   audio input  200,000 × 32   = 6.4
        //   audio cached 100,000 × 0.40 = 0.04
        //   audio output 200,000 × 64   = 12.8
        //   total                         21.06
        let mut book = default_book("openai");
        let t = split(OpenAiCounts {
            input: 600_000,
            cached: 150_000,
            output: 250_000,
            input_audio: Some(300_000),
            cached_audio: Some(100_000),
            output_audio: Some(200_000),
            ..OpenAiCounts::default()
        });
        let (_, c) = book.price("gpt-realtime-2025-08-28", today(), &openai(t, Tier::Standard));
        let c = c.unwrap();
        assert_eq!(c.line(TokenType::AudioInput), Some(dec("6.4")));
        assert_eq!(c.line(TokenType::AudioCachedInput), Some(dec("0.04")));
        assert_eq!(c.line(TokenType::AudioOutput), Some(dec("12.8")));
        assert_eq!(c.total, dec("21.06"));
        // At the text rate (before issue 14): 450,000 × 4 + 150,000 × 0.40 + 250,000 × 16 = 1.8 + 0.06 + 4 = 5.86.
        assert_ne!(c.total, dec("5.86"));
        // gpt-audio lists no cached-audio rate, gpt-4o-mini no audio rate at all: unpriced, named.
        let (_, c) = book.price("gpt-audio", today(), &openai(t, Tier::Standard));
        assert_eq!(c, missing("standard", &["cached_input_per_1m", "audio_cached_input_per_1m"]));
        let (_, c) = book.price("gpt-4o-mini", today(), &openai(t, Tier::Standard));
        assert_eq!(c, missing("standard", &["audio_input_per_1m", "audio_cached_input_per_1m", "audio_output_per_1m"]));
        // Audio rates are standard-tier rates: a batch row with audio is unpriced.
        let (_, c) = book.price("gpt-realtime", today(), &openai(t, Tier::Batch));
        let Err(Unpriced::RateMissing { missing, .. }) = c else { panic!("{c:?}") };
        assert!(missing.contains(&"audio_input_per_1m for the batch rates".to_string()), "{missing:?}");
    }

    #[test]
    fn an_exact_snapshot_wins_over_its_family() {
        // 10,000 audio input, 5,000 audio output:
        //   gpt-4o-audio-preview-2025-06-03, its own row (40 / 80):  10,000 × 40 + 5,000 × 80 = 0.4 + 0.4 = 0.8
        //   gpt-4o-audio-preview-2024-10-01 → family (100 / 200):    10,000 × 100 + 5,000 × 200 = 1 + 1 = 2
        let mut book = default_book("openai");
        let t = Tokens { audio_input: 10_000, audio_output: 5_000, ..Tokens::default() };
        let (v, c) = book.price("gpt-4o-audio-preview-2025-06-03", today(), &openai(t, Tier::Standard));
        assert_eq!((v.unwrap().model_id.as_str(), c.unwrap().total), ("gpt-4o-audio-preview-2025-06-03", dec("0.8")));
        let (v, c) = book.price("gpt-4o-audio-preview-2024-10-01", today(), &openai(t, Tier::Standard));
        assert_eq!((v.unwrap().model_id.as_str(), c.unwrap().total), ("gpt-4o-audio-preview", dec("2")));
        // The first GPT-4o snapshot: 1,000,000 × 5.00 = 5; a later one takes the family's 2.50.
        let t = Tokens::openai(1_000_000, 0, 0).unwrap();
        let (v, c) = book.price("gpt-4o-2024-05-13", day("2025-01-01"), &openai(t, Tier::Standard));
        assert_eq!((v.unwrap().model_id.as_str(), c.unwrap().total), ("gpt-4o-2024-05-13", dec("5")));
        let (v, c) = book.price("gpt-4o-2024-08-06", day("2025-01-01"), &openai(t, Tier::Standard));
        assert_eq!((v.unwrap().model_id.as_str(), c.unwrap().total), ("gpt-4o", dec("2.5")));
    }

    #[test]
    fn openai_golden_image_tokens_with_and_without_an_image_rate() {
        // input 100,000 (cached 20,000 of which 10,000 image; image 30,000), output 5,000:
        //   image input 30,000 − 10,000 = 20,000; image cached 10,000; text cached 20,000 − 10,000 = 10,000;
        //   text input 100,000 − 20,000 − 0 − 0 − 20,000 = 60,000
        let counts = OpenAiCounts {
            input: 100_000,
            cached: 20_000,
            output: 5_000,
            input_image: Some(30_000),
            cached_image: Some(10_000),
            ..OpenAiCounts::default()
        };
        let t = split(counts);
        let mut book = default_book("openai");
        // gpt-realtime has image input rates (5.00 / 0.50):
        //   60,000 × 4 + 10,000 × 0.40 + 20,000 × 5 + 10,000 × 0.50 + 5,000 × 16
        //   = 0.24 + 0.004 + 0.1 + 0.005 + 0.08 = 0.429
        let (_, c) = book.price("gpt-realtime", today(), &openai(t, Tier::Standard));
        let c = c.unwrap();
        assert_eq!(
            (c.line(TokenType::ImageInput), c.line(TokenType::ImageCachedInput)),
            (Some(dec("0.1")), Some(dec("0.005")))
        );
        assert_eq!(c.total, dec("0.429"));
        assert_eq!(c.billed_as(TokenType::ImageInput), TokenType::ImageInput);
        // gpt-4o has none: image input at the text rates (2.50 / 1.25), as OpenAI bills vision input:
        //   60,000 × 2.5 + 10,000 × 1.25 + 20,000 × 2.5 + 10,000 × 1.25 + 5,000 × 10
        //   = 0.15 + 0.0125 + 0.05 + 0.0125 + 0.05 = 0.275 (= the row priced as text)
        let (_, c) = book.price("gpt-4o", today(), &openai(t, Tier::Standard));
        let c = c.unwrap();
        assert_eq!((c.line(TokenType::ImageInput), c.total), (Some(dec("0.05")), dec("0.275")));
        // … and is billed as text input, so the line-item reconciliation files it there.
        assert_eq!(c.billed_as(TokenType::ImageInput), TokenType::UncachedInput);
        // … and on the batch tier at the batch text rate: 20,000 image × 1.25 = 0.025.
        let image_only = Tokens { image_input: 20_000, ..Tokens::default() };
        let (_, c) = book.price("gpt-4o", today(), &openai(image_only, Tier::Batch));
        assert_eq!(c.unwrap().total, dec("0.025"));
        // Image output with no image-output rate: unpriced.
        let out = Tokens { image_output: 1_000, ..t };
        let (_, c) = book.price("gpt-realtime", today(), &openai(out, Tier::Standard));
        assert_eq!(c, missing("standard", &["image_output_per_1m"]));
        // gpt-image-1 (text 5.00, image 10.00 / out 40.00): 1,000 × 5 + 4,000 × 10 + 100,000 × 40
        //   = 0.005 + 0.04 + 4 = 4.045
        let generation = split(OpenAiCounts {
            input: 5_000,
            input_image: Some(4_000),
            output: 100_000,
            output_image: Some(100_000),
            ..OpenAiCounts::default()
        });
        let (_, c) = book.price("gpt-image-1", today(), &openai(generation, Tier::Standard));
        assert_eq!(c.unwrap().total, dec("4.045"));
        // It has image rates, standard-tier ones: on the batch tier they are not guessed.
        let (_, c) = book.price("gpt-image-1", today(), &openai(generation, Tier::Batch));
        assert_eq!(
            c,
            missing("batch", &["image_input_per_1m for the batch rates", "image_output_per_1m for the batch rates"])
        );
    }

    #[test]
    fn openai_golden_cache_writes_with_and_without_a_rate() {
        // gpt-5, input 100,000 (cached 20,000, cache write 30,000), output 1,000:
        //   split: cache write 30,000; text input 100,000 − 20,000 − 30,000 = 50,000.
        let t = split(OpenAiCounts {
            input: 100_000,
            cached: 20_000,
            cache_write: Some(30_000),
            output: 1_000,
            ..OpenAiCounts::default()
        });
        assert_eq!((t.uncached_input, t.cache_write_5m), (50_000, 30_000));
        // No cache-write rate: the writes are input, as OpenAI bills them:
        //   (50,000 + 30,000) × 1.25 + 20,000 × 0.125 + 1,000 × 10 = 0.1 + 0.0025 + 0.01 = 0.1125
        let (_, c) = default_book("openai").price("gpt-5", today(), &openai(t, Tier::Standard));
        let c = c.unwrap();
        assert_eq!((c.tokens.uncached_input, c.tokens.cache_write_5m), (80_000, 0));
        assert_eq!((c.line(TokenType::CacheWrite5m), c.total), (None, dec("0.1125")));
        // With one (1.50): 50,000 × 1.25 + 30,000 × 1.50 + 20,000 × 0.125 + 1,000 × 10
        //   = 0.0625 + 0.045 + 0.0025 + 0.01 = 0.12
        let row = override_row("gpt-5", json!({"cache_write_5m_per_1m": "1.50"}));
        let (_, c) = PriceBook::from_rows(&[row]).unwrap().price("gpt-5", today(), &openai(t, Tier::Standard));
        let c = c.unwrap();
        assert_eq!((c.line(TokenType::CacheWrite5m), c.total), (Some(dec("0.045")), dec("0.12")));
        // Anthropic's cache writes always need their own rate.
        let row = override_row("claude-x", json!({}));
        let writes = Tokens { cache_write_5m: 1_000, ..Tokens::default() };
        let (_, c) = PriceBook::from_rows(&[row]).unwrap().price(
            "claude-x",
            today(),
            &anthropic(writes, Tier::Standard, Context::Short),
        );
        assert_eq!(c, missing("standard", &["cache_write_5m_per_1m"]));
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
        let t = official_example();
        let u = anthropic(t, Tier::anthropic(Some("standard")), Context::anthropic(Some("0-200k")));
        let (v, c) = book.price("claude-sonnet-4-20250514", today(), &u);
        assert_eq!(v.unwrap().model_id, "claude-sonnet-4-20250514");
        let c = c.unwrap();
        assert_eq!(c.total, dec("0.019935"));
        assert_eq!(c.line(TokenType::CacheWrite1h), Some(dec("0.006")));
        assert_eq!(c.line(TokenType::CacheWrite5m), Some(dec("0.001875")));
        assert_eq!(c.line(TokenType::CachedInput), Some(dec("0.00006")));
        // Long context on sonnet-4-5 (6.00 / 0.60 / 7.50 / 12.00 / 22.50):
        //   1,500×6 + 200×0.6 + 500×7.5 + 1,000×12 + 500×22.5 = 9,000+120+3,750+12,000+11,250 = 36,120 → 0.03612
        let long = anthropic(t, Tier::Standard, Context::anthropic(Some("200k-1M")));
        let (_, c) = book.price("claude-sonnet-4-5-20250929", today(), &long);
        assert_eq!((c.as_ref().unwrap().total, c.unwrap().basis), (dec("0.03612"), "long_context"));
        // Sonnet 4 lists no long-context 1h write rate: that rate is reported missing.
        let (_, c) = book.price("claude-sonnet-4-20250514", today(), &long);
        assert_eq!(c, missing("long_context", &["long_context_cache_write_1h_per_1m"]));
        // Opus 4.6 has 1M context without a surcharge: long context at standard rates.
        //   1,500×5 + 200×0.5 + 500×6.25 + 1,000×10 + 500×25 = 7,500+100+3,125+10,000+12,500 = 33,225 → 0.033225
        let (_, c) = book.price("claude-opus-4-6", today(), &long);
        assert_eq!((c.as_ref().unwrap().total, c.unwrap().basis), (dec("0.033225"), "standard"));
        // Batch on haiku-4-5 (0.50 / 2.50): 2,000,000 × 0.5 + 100,000 × 2.5 = 1 + 0.25 = 1.25
        let b = Tokens { uncached_input: 2_000_000, output: 100_000, ..Tokens::default() };
        let (_, c) = book.price(
            "claude-haiku-4-5-20251001",
            today(),
            &anthropic(b, Tier::anthropic(Some("batch")), Context::Short),
        );
        assert_eq!(c.unwrap().total, dec("1.25"));
    }

    #[test]
    fn anthropic_golden_batch_with_cache_and_with_long_context() {
        let mut book = default_book("anthropic");
        let t = official_example();
        // Batch + cache on sonnet-4-5 (batch 1.50 / read 0.15 / 5m 1.875 / 1h 3.00 / out 7.50: the
        // batch discount stacks with the cache multipliers):
        //   1,500×1.5 + 200×0.15 + 500×1.875 + 1,000×3 + 500×7.5 = 2,250+30+937.5+3,000+3,750 = 9,967.5 → 0.0099675
        let (_, c) = book.price("claude-sonnet-4-5-20250929", today(), &anthropic(t, Tier::Batch, Context::Short));
        let c = c.unwrap();
        assert_eq!(
            (c.line(TokenType::CachedInput), c.line(TokenType::CacheWrite1h)),
            (Some(dec("0.00003")), Some(dec("0.003")))
        );
        assert_eq!((c.total, c.basis), (dec("0.0099675"), "batch"));
        // Batch + long context (3.00 / 0.30 / 3.75 / 6.00 / 11.25):
        //   1,500×3 + 200×0.3 + 500×3.75 + 1,000×6 + 500×11.25 = 4,500+60+1,875+6,000+5,625 = 18,060 → 0.01806
        let (_, c) = book.price("claude-sonnet-4-5-20250929", today(), &anthropic(t, Tier::Batch, Context::Long));
        let c = c.unwrap();
        assert_eq!((c.total, c.basis), (dec("0.01806"), "batch_long_context"));
        // Sonnet 4 has long-context rates but no batch long-context 1h write: unpriced, named.
        let (_, c) = book.price("claude-sonnet-4-20250514", today(), &anthropic(t, Tier::Batch, Context::Long));
        assert_eq!(c, missing("batch_long_context", &["batch_long_context_cache_write_1h_per_1m"]));
        // Haiku 4.5 batch with cache reads (0.50 / 0.05 / 2.50):
        //   2,000,000×0.5 + 1,000,000×0.05 + 100,000×2.5 = 1 + 0.05 + 0.25 = 1.3
        let b = Tokens { uncached_input: 2_000_000, cached_input: 1_000_000, output: 100_000, ..Tokens::default() };
        let (_, c) = book.price("claude-haiku-4-5-20251001", today(), &anthropic(b, Tier::Batch, Context::Short));
        assert_eq!(c.unwrap().total, dec("1.3"));
        // A model with batch rates but no batch cache-write rate: batch cache writes are unpriced.
        let row = override_row(
            "claude-x",
            json!({"cache_write_5m_per_1m": "1.25", "batch_input_per_1m": "0.50",
            "batch_output_per_1m": "5.00"}),
        );
        let writes = Tokens { uncached_input: 1_000, cache_write_5m: 1_000, output: 10, ..Tokens::default() };
        let (_, c) = PriceBook::from_rows(&[row]).unwrap().price(
            "claude-x",
            today(),
            &anthropic(writes, Tier::Batch, Context::Short),
        );
        assert_eq!(c, missing("batch", &["batch_cache_write_5m_per_1m"]));
        // Priority with long context has no rate set at all.
        let (_, c) = book.price("claude-sonnet-4-5-20250929", today(), &anthropic(t, Tier::Priority, Context::Long));
        assert!(matches!(c, Err(Unpriced::RateMissing { basis: "priority_long_context", .. })), "{c:?}");
    }

    #[test]
    fn anthropic_golden_fast_mode_and_us_inference() {
        // claude-opus-4-6 (5.00 / 0.50 / 6.25 / 25.00; fast × 6, US × 1.1), uncached 10,000,
        // read 20,000, 5m write 4,000, output 2,000:
        //   standard: 10,000×5 + 20,000×0.5 + 4,000×6.25 + 2,000×25 = 0.05 + 0.01 + 0.025 + 0.05 = 0.135
        //   fast ×6:   0.3  + 0.06  + 0.15   + 0.3   = 0.81 ($30 / $150 per MTok: the documented fast price)
        //   US ×1.1:   0.055 + 0.011 + 0.0275 + 0.055 = 0.1485
        //   both ×6.6: 0.33 + 0.066 + 0.165  + 0.33  = 0.891
        let mut book = default_book("anthropic");
        let t = Tokens {
            uncached_input: 10_000,
            cached_input: 20_000,
            cache_write_5m: 4_000,
            output: 2_000,
            ..Tokens::default()
        };
        let usage = |speed: &str, geo: &str| {
            Usage::anthropic(t, Tier::Standard, Context::Short, Speed::parse(Some(speed)), Geo::parse(Some(geo)), 0)
        };
        for (speed, geo, total, multiplier) in [
            ("standard", "global", "0.135", "1"),
            ("standard", "not_available", "0.135", "1"),
            ("fast", "global", "0.81", "6"),
            ("standard", "us", "0.1485", "1.1"),
            ("fast", "us", "0.891", "6.6"),
        ] {
            let (_, c) = book.price("claude-opus-4-6", today(), &usage(speed, geo));
            let c = c.unwrap();
            assert_eq!((c.total, c.multiplier), (dec(total), dec(multiplier)), "{speed} {geo}");
        }
        let (_, c) = book.price("claude-opus-4-6", today(), &usage("fast", "us"));
        assert_eq!(c.unwrap().line(TokenType::Output), Some(dec("0.33")));
        // A model without the multiplier: unpriced, never at × 1.
        let (_, c) = book.price("claude-opus-4-5-20251101", today(), &usage("fast", "global"));
        assert_eq!(c, missing("standard", &["fast_mode_multiplier"]));
        let (_, c) = book.price("claude-haiku-4-5-20251001", today(), &usage("standard", "us"));
        assert_eq!(c, missing("standard", &["us_inference_multiplier"]));
        let (_, c) = book.price("claude-opus-4-5-20251101", today(), &usage("fast", "us"));
        assert_eq!(c, missing("standard", &["fast_mode_multiplier", "us_inference_multiplier"]));
        let (_, c) = book.price("claude-opus-4-6", today(), &usage("turbo", "eu"));
        let Err(Unpriced::RateMissing { missing, .. }) = c else { panic!("{c:?}") };
        assert_eq!(missing.len(), 2, "{missing:?}");
        // Fast batch: the multiplier on the batch rates. 10,000×2.5 + 20,000×0.25 + 4,000×3.125 + 2,000×12.5
        //   = 0.025 + 0.005 + 0.0125 + 0.025 = 0.0675; × 6 = 0.405
        let fast_batch = Usage { tier: Tier::Batch, ..usage("fast", "global") };
        assert_eq!(book.price("claude-opus-4-6", today(), &fast_batch).1.unwrap().total, dec("0.405"));
    }

    #[test]
    fn anthropic_golden_web_search_per_request() {
        let mut book = default_book("anthropic");
        // The official example with its 10 web searches on sonnet-4: 0.019935 + 10 × 10.00 / 1000 = 0.119935
        let u = Usage::anthropic(official_example(), Tier::Standard, Context::Short, Speed::Standard, Geo::Global, 10);
        let (_, c) = book.price("claude-sonnet-4-20250514", today(), &u);
        let c = c.unwrap();
        assert_eq!((c.web_search, c.total), (Some(dec("0.1")), dec("0.119935")));
        // US-only: × 1.1 on the tokens, not on the searches (opus-4-6 tokens of the official example
        // 0.033225 × 1.1 per line: 0.00825 + 0.00011 + 0.0034375 + 0.011 + 0.01375 = 0.0365475), + 0.1 = 0.1365475
        let us = Usage { geo: Geo::Us, ..u };
        let (_, c) = book.price("claude-opus-4-6", today(), &us);
        assert_eq!(c.unwrap().total, dec("0.1365475"));
        // Searches and no rate: unpriced, named.
        let row = override_row("claude-x", json!({}));
        let searches = Usage { tokens: Tokens::default(), ..u };
        let (_, c) = PriceBook::from_rows(&[row]).unwrap().price("claude-x", today(), &searches);
        assert_eq!(c, missing("standard", &["web_search_per_1k_requests"]));
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
        let u = openai(t_input(1_000_000), Tier::Standard);
        let (v, c) = book.price("gpt-4o-2024-08-06", day("2026-03-04"), &u);
        assert_eq!((v.unwrap().version, c.unwrap().total), (1, dec("2.5")));
        let (v, c) = book.price("gpt-4o-2024-08-06", day("2026-03-05"), &u);
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
        let u = openai(Tokens::openai(1_000_000, 200_000, 100_000).unwrap(), Tier::Standard);
        let (v, c) = book.price("o3-2025-04-16", day("2025-06-09"), &u);
        assert_eq!((v.unwrap().model_id.as_str(), c.unwrap().total), ("o3", dec("12.5")));
        let (v, c) = book.price("o3-2025-04-16", day("2025-06-10"), &u);
        assert_eq!(v.unwrap().effective_from, day("2025-06-10"));
        assert_eq!(c.unwrap().total, dec("2.5"));
        // Flex came with the later price only: flex usage before the cut is unpriced, not guessed.
        let flex = Usage { tier: Tier::Flex, ..u };
        assert!(book.price("o3", day("2025-06-09"), &flex).1.is_err());
        // From the cut (1.00 / 0.25 / 4.00): 800,000 × 1 + 200,000 × 0.25 + 100,000 × 4 = 0.8 + 0.05 + 0.4 = 1.25
        assert_eq!(book.price("o3", day("2025-06-10"), &flex).1.unwrap().total, dec("1.25"));
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
        let u = openai(t_input(1_000_000), Tier::Standard);
        // 2025-05-31: catalog 10.00; 2025-06-01..19: override 3.00; from 2025-06-20: catalog 2.00.
        for (d, total, source) in [
            ("2025-05-31", "10", PriceSource::Catalog),
            ("2025-06-15", "3", PriceSource::Override),
            ("2025-06-20", "2", PriceSource::Catalog),
        ] {
            let (v, c) = book.price("o3", day(d), &u);
            assert_eq!((v.unwrap().source, c.unwrap().total), (source, dec(total)), "{d}");
        }
    }

    #[test]
    fn costs_round_once_to_numeric_scale() {
        // 1 token × 0.0000000015 / 1M = 1.5e-15 → 0 at 9 places; 7 × 0.123456789 / 1M = 0.000000864197523 → 0.000000864
        assert_eq!(token_cost(1, dec("0.0000000015"), Decimal::ONE), Decimal::ZERO);
        assert_eq!(token_cost(7, dec("0.123456789"), Decimal::ONE), dec("0.000000864"));
        // 5 × 0.0001 / 1M = 5e-10 → rounds half away from zero to 0.000000001
        assert_eq!(token_cost(5, dec("0.0001"), Decimal::ONE), dec("0.000000001"));
        // With a multiplier, rounded once: 1 × 0.0005 × 6 / 1M = 3e-9 → 0.000000003 (rounding
        // before multiplying would give 0.000000001 × 6 = 0.000000006).
        assert_eq!(token_cost(1, dec("0.0005"), dec("6")), dec("0.000000003"));
        // 3 web searches × 10.00 / 1000 = 0.03
        assert_eq!(request_cost(3, dec("10")), dec("0.03"));
    }
}
