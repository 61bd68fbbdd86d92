//! Deterministic synthetic usage: for one key (what the provider sees as the organization) and
//! one UTC day, the finest-grain rows the provider would aggregate, derived from SHA-256 of the
//! key and of key + date. The same key and day always give the same rows; another key or day
//! gives others.
//!
//! Row `i` of a day is model `i % M` used through API key `i / M`, so every row is a distinct
//! combination of the group keys (model, project/workspace, api key, batch/tier, context window)
//! and `rows_per_day` rows need `ceil(rows / M)` API keys spread over a few projects/workspaces.
//! A row's billed dimensions (tier, context, speed, inference geo) and whether it searches the web
//! are fixed per key and row (not per day); token counts change every day.

use chrono::{Datelike, NaiveDate};
use sha2::{Digest, Sha256};

use super::prices::{Context, Dims, Geo, Price, Speed, Tier, Tokens};

/// A model the sandbox reports, with the book entry that prices it.
#[derive(Debug, Clone)]
pub struct Model {
    /// The id the provider reports (often a dated snapshot of a book id).
    pub id: &'static str,
    pub display_name: &'static str,
    pub price: Price,
    pub embedding: bool,
}

/// One finest-grain usage row.
#[derive(Debug, Clone)]
pub struct UsageRow {
    pub model: usize,
    /// Index of the project (OpenAI) or workspace (Anthropic; 0 is the default workspace).
    pub project: usize,
    pub api_key: usize,
    pub dims: Dims,
    pub tokens: Tokens,
    pub requests: u64,
    /// Anthropic `server_tool_use.web_search_requests`.
    pub web_search_requests: u64,
}

/// The identity of the organization behind a key.
#[derive(Debug, Clone)]
pub struct Org {
    pub seed: [u8; 32],
}

impl Org {
    pub fn from_key(key: &str) -> Org {
        Org { seed: Sha256::digest(key.as_bytes()).into() }
    }

    /// A stable hex tag of `len` characters for `what` (ids, names).
    pub fn tag(&self, what: &str, index: usize, len: usize) -> String {
        let mut h = Sha256::new();
        h.update(self.seed);
        h.update(what.as_bytes());
        h.update((index as u64).to_be_bytes());
        hex::encode(h.finalize())[..len].to_string()
    }

    /// SHA-256 of key + date (+ the stream: completions, embeddings, messages), the seed of that
    /// day's numbers.
    fn day_seed(&self, stream: &str, day: NaiveDate) -> u64 {
        let mut h = Sha256::new();
        h.update(self.seed);
        h.update(day.format("%Y-%m-%d").to_string().as_bytes());
        h.update(stream.as_bytes());
        u64::from_be_bytes(h.finalize()[..8].try_into().unwrap_or_default())
    }
}

/// splitmix64: a small, fast, well-mixed generator; deterministic from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// `n × pct / 100` with `pct` uniform in `lo..=hi`.
    fn share(&mut self, n: u64, lo: u64, hi: u64) -> u64 {
        n * self.range(lo, hi) / 100
    }
}

/// How many API keys and projects/workspaces an organization has: `rows` rows over `models`
/// models need `ceil(rows / models)` keys, spread over `2 + keys / 100` projects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub keys: usize,
    pub projects: usize,
}

impl Layout {
    pub fn new(rows: usize, models: usize) -> Layout {
        let keys = rows.div_ceil(models.max(1)).max(1);
        Layout { keys, projects: 2 + keys / 100 }
    }

    /// The project/workspace API key `key` belongs to.
    pub fn project_of(&self, key: usize) -> usize {
        key % self.projects
    }
}

/// Which provider's habits the rows follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Cache reads (a subset of input) and cache writes where the model has a cache-write rate;
    /// batch, flex and priority rows; audio and image tokens where the model has their rates.
    OpenAi,
    /// Cache reads and 5 min / 1 h writes; batch rows, long context, fast mode, US-only
    /// inference and web search where the model has the rates.
    Anthropic,
}

/// What to generate: a stream of rows (`"completions"`, `"embeddings"`, `"messages"`), its models,
/// how many rows a day, and the organization's layout of keys and projects.
pub struct Spec<'a> {
    pub stream: &'a str,
    pub models: &'a [Model],
    pub rows: usize,
    pub layout: Layout,
    pub flavor: Flavor,
}

/// The billed dimensions of row `i` (model `model_index`, API key `key`), fixed per key and row.
/// A slot cycles with the key and the model, so every dimension a model offers shows up in a
/// handful of rows: slot 0 batch; OpenAI slot 1 flex and 2 priority; Anthropic slots 1 and 3 fast
/// mode, slot 2 long context; odd keys of a model with US-only inference run in the US.
fn dims_of(model: &Model, model_index: usize, key: usize, flavor: Flavor) -> Dims {
    let p = &model.price;
    let slot = (key + model_index) % 5;
    // The embeddings usage endpoint has no batch flag (nor tier), so batch embeddings could not be
    // priced from usage: the sandbox reports embeddings at the standard tier only.
    let tier = match (slot, flavor) {
        _ if model.embedding => Tier::Standard,
        (0, _) if p.has_tier(Tier::Batch) => Tier::Batch,
        (1, Flavor::OpenAi) if p.has_tier(Tier::Flex) => Tier::Flex,
        (2, Flavor::OpenAi) if p.has_tier(Tier::Priority) => Tier::Priority,
        _ => Tier::Standard,
    };
    let anthropic_standard = flavor == Flavor::Anthropic && tier == Tier::Standard;
    // Fast mode is not offered on the Batch API.
    let speed = if anthropic_standard && matches!(slot, 1 | 3) && p.fast_multiplier.is_some() {
        Speed::Fast
    } else {
        Speed::Standard
    };
    let context = if anthropic_standard && slot == 2 && p.has_long_context() { Context::Long } else { Context::Short };
    let geo = match flavor {
        Flavor::Anthropic if p.us_multiplier.is_some() => {
            if key % 2 == 1 {
                Geo::Us
            } else {
                Geo::Global
            }
        }
        _ => Geo::NotAvailable,
    };
    Dims { tier, context, speed, geo }
}

/// The day's rows for `org` (none for a day after `today`).
pub fn day_rows(org: &Org, spec: &Spec<'_>, day: NaiveDate, today: NaiveDate) -> Vec<UsageRow> {
    let (models, rows, flavor) = (spec.models, spec.rows, spec.flavor);
    if models.is_empty() || day > today {
        return Vec::new();
    }
    let m = models.len();
    let mut rng = Rng(org.day_seed(spec.stream, day));
    // Weekends are quieter.
    let weekend = matches!(day.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun);
    let mut out = Vec::with_capacity(rows);
    for i in 0..rows {
        let (model_index, key) = (i % m, i / m);
        let model = &models[model_index];
        let dims = dims_of(model, model_index, key, flavor);
        let mut requests = rng.range(5, 2_000);
        if weekend {
            requests = requests.div_ceil(2);
        }
        let per_request = match dims.context {
            Context::Long => rng.range(200_001, 400_000),
            Context::Short if model.embedding => rng.range(50, 2_000),
            Context::Short => rng.range(200, 6_000),
        };
        let input = requests * per_request;
        let tokens = if model.embedding {
            Tokens { uncached_input: input, ..Tokens::default() }
        } else {
            split(&mut rng, model, dims, input)
        };
        // Web search on a third of the keys, a few searches per hundred requests.
        let web_search_requests =
            if model.price.web_search_per_1k.is_some() && key % 3 == 1 { rng.share(requests, 1, 30).max(1) } else { 0 };
        out.push(UsageRow {
            model: model_index,
            project: spec.layout.project_of(key % spec.layout.keys),
            api_key: key % spec.layout.keys,
            dims,
            tokens,
            requests,
            web_search_requests,
        });
    }
    out
}

/// Splits `input` tokens (all modalities, cache reads and writes included) and draws the output,
/// giving a token type a share only where the row's tier and context have a rate for it.
fn split(rng: &mut Rng, model: &Model, dims: Dims, input: u64) -> Tokens {
    use super::prices::TokenType as T;
    let has = |t| model.price.rate(dims.tier, dims.context, t).is_some();
    let mut t = Tokens::default();
    let output = rng.share(input, 3, 40).max(1);
    // Audio and image first (standard tier only on the card): their own shares of the input.
    let mut text_input = input;
    if has(T::AudioInput) {
        let audio = rng.share(input, 30, 70);
        t.audio_cached_input = if has(T::AudioCachedInput) { rng.share(audio, 0, 40) } else { 0 };
        t.audio_input = audio - t.audio_cached_input;
        text_input -= audio;
    }
    if has(T::ImageInput) {
        let image = rng.share(text_input, 5, 30);
        t.image_cached_input = if has(T::ImageCachedInput) { rng.share(image, 0, 20) } else { 0 };
        t.image_input = image - t.image_cached_input;
        text_input -= image;
    }
    if has(T::CachedInput) {
        t.cached_input = rng.share(text_input, 0, 60);
    }
    if has(T::CacheWrite5m) {
        t.cache_write_5m = rng.share(text_input, 0, 10);
    }
    if has(T::CacheWrite1h) {
        t.cache_write_1h = rng.share(text_input, 0, 5);
    }
    t.uncached_input = text_input - t.cached_input - t.cache_write_5m - t.cache_write_1h;
    // Output: audio and image output where priced, the rest text (an image model has no text
    // output rate: all of its output is image).
    let mut text_output = output;
    if has(T::AudioOutput) {
        t.audio_output = rng.share(output, 50, 80);
        text_output -= t.audio_output;
    }
    if has(T::ImageOutput) {
        t.image_output = if has(T::Output) { rng.share(text_output, 50, 90) } else { text_output };
        text_output -= t.image_output;
    }
    t.output = text_output;
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::prices::{row_cost, web_search_cost};
    use crate::sandbox::rates;

    fn spec<'a>(stream: &'a str, models: &'a [Model], rows: usize, flavor: Flavor) -> Spec<'a> {
        Spec { stream, models, rows, layout: Layout::new(rows, models.len()), flavor }
    }

    #[test]
    fn rows_are_deterministic_distinct_and_priceable() {
        let day = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 4, 1).unwrap();
        let org = Org::from_key("sk-ant-admin01-sandbox-test");
        let anthropic = rates::anthropic_models();
        let openai: Vec<Model> = rates::openai_models().into_iter().filter(|m| !m.embedding).collect();
        for (stream, models, flavor) in
            [("messages", &anthropic, Flavor::Anthropic), ("completions", &openai, Flavor::OpenAi)]
        {
            let spec = spec(stream, models, 1000, flavor);
            let a = day_rows(&org, &spec, day, today);
            let b = day_rows(&org, &spec, day, today);
            assert_eq!(a.len(), 1000);
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
            let mut combos = std::collections::HashSet::new();
            for r in &a {
                assert!(combos.insert((r.model, r.api_key)));
                let price = &models[r.model].price;
                assert!(row_cost(price, r.dims, &r.tokens).is_some(), "{r:?}");
                assert!(web_search_cost(price, r.web_search_requests).is_some(), "{r:?}");
            }
            let other_day = day_rows(&org, &spec, day.succ_opt().unwrap(), today);
            assert_ne!(format!("{a:?}"), format!("{other_day:?}"));
            let other_org = day_rows(&Org::from_key("other"), &spec, day, today);
            assert_ne!(format!("{a:?}"), format!("{other_org:?}"));
            assert!(day_rows(&org, &spec, today.succ_opt().unwrap(), today).is_empty());
        }
    }

    /// The default 40 rows a day already carry every dimension the card prices.
    #[test]
    fn forty_rows_carry_every_billed_dimension() {
        let day = NaiveDate::from_ymd_opt(2025, 3, 3).unwrap();
        let org = Org::from_key("sk-admin-sandbox-acme");
        let anthropic = rates::anthropic_models();
        let rows = day_rows(&org, &spec("messages", &anthropic, 40, Flavor::Anthropic), day, day);
        let has = |f: &dyn Fn(&UsageRow) -> bool| rows.iter().any(f);
        assert!(has(&|r| r.dims.tier == Tier::Batch));
        assert!(has(&|r| r.dims.context == Context::Long));
        assert!(has(&|r| r.dims.speed == Speed::Fast && r.dims.geo == Geo::Global));
        assert!(has(&|r| r.dims.speed == Speed::Fast && r.dims.geo == Geo::Us));
        assert!(has(&|r| r.dims.tier == Tier::Batch && r.dims.geo == Geo::Us));
        assert!(has(&|r| r.dims.geo == Geo::NotAvailable));
        assert!(has(&|r| r.web_search_requests > 0));
        assert!(has(&|r| r.tokens.cache_write_1h > 0));

        let openai = rates::openai_models();
        let chat: Vec<Model> = openai.iter().filter(|m| !m.embedding).cloned().collect();
        let rows = day_rows(&org, &spec("completions", &chat, 40, Flavor::OpenAi), day, day);
        let has = |f: &dyn Fn(&UsageRow) -> bool| rows.iter().any(f);
        for tier in [Tier::Standard, Tier::Batch, Tier::Flex, Tier::Priority] {
            assert!(has(&|r| r.dims.tier == tier), "{tier:?}");
        }
        assert!(has(&|r| r.tokens.cache_write_5m > 0 && chat[r.model].id == "gpt-5.6"));
        assert!(has(&|r| r.tokens.audio_input > 0 && r.tokens.audio_cached_input > 0 && r.tokens.audio_output > 0));
        assert!(has(&|r| r.tokens.image_input > 0 && r.tokens.image_cached_input > 0));
        assert!(has(&|r| r.tokens.image_output > 0 && r.tokens.output == 0));
        assert!(has(&|r| chat[r.model].id == "gpt-4o-2024-05-13"));
        assert!(rows.iter().all(|r| r.web_search_requests == 0 && r.dims.geo == Geo::NotAvailable));
    }
}
