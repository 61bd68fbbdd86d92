//! Deterministic synthetic usage: for one key (what the provider sees as the organization) and
//! one UTC day, the finest-grain rows the provider would aggregate, derived from SHA-256 of the
//! key and of key + date. The same key and day always give the same rows; another key or day
//! gives others.
//!
//! Row `i` of a day is model `i % M` used through API key `i / M`, so every row is a distinct
//! combination of the group keys (model, project/workspace, api key, batch/tier, context window)
//! and `rows_per_day` rows need `ceil(rows / M)` API keys spread over a few projects/workspaces.
//! Whether a row is batch or long-context is fixed per key and row (not per day); token counts
//! change every day.

use chrono::{Datelike, NaiveDate};
use sha2::{Digest, Sha256};

use super::prices::{Context, Price, Tier, Tokens};

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
    pub tier: Tier,
    pub context: Context,
    pub tokens: Tokens,
    pub requests: u64,
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

    fn stable(&self, stream: &str, index: usize) -> u64 {
        let mut h = Sha256::new();
        h.update(self.seed);
        h.update(stream.as_bytes());
        h.update((index as u64).to_be_bytes());
        u64::from_be_bytes(h.finalize()[..8].try_into().unwrap_or_default())
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
    /// Cache reads only (a subset of input), batch on some rows.
    OpenAi,
    /// Cache reads and 5 min / 1 h writes, batch on some rows, long context on some.
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
        let stable = org.stable(spec.stream, i);
        // The embeddings usage endpoint has no batch flag, so batch embeddings could not be
        // priced from usage: the sandbox reports embeddings at the standard tier only.
        let tier = if model.price.has_batch() && !model.embedding && stable.is_multiple_of(5) {
            Tier::Batch
        } else {
            Tier::Standard
        };
        let context = if flavor == Flavor::Anthropic
            && tier == Tier::Standard
            && model.price.has_long_context()
            && (stable >> 8).is_multiple_of(4)
        {
            Context::Long
        } else {
            Context::Short
        };
        let mut requests = rng.range(5, 2_000);
        if weekend {
            requests = requests.div_ceil(2);
        }
        let per_request = match context {
            Context::Long => rng.range(200_001, 400_000),
            Context::Short if model.embedding => rng.range(50, 2_000),
            Context::Short => rng.range(200, 6_000),
        };
        let input = requests * per_request;
        let mut tokens = Tokens::default();
        let rates = |t| model.price.rate(tier, context, t).is_some();
        use super::prices::TokenType as T;
        if !model.embedding {
            tokens.output = rng.share(input, 3, 40).max(1);
            if tier == Tier::Standard {
                if rates(T::CachedInput) {
                    tokens.cached_input = rng.share(input, 0, 60);
                }
                if flavor == Flavor::Anthropic {
                    if rates(T::CacheWrite5m) {
                        tokens.cache_write_5m = rng.share(input, 0, 10);
                    }
                    if rates(T::CacheWrite1h) {
                        tokens.cache_write_1h = rng.share(input, 0, 5);
                    }
                }
            }
        }
        tokens.uncached_input = input - tokens.cached_input - tokens.cache_write_5m - tokens.cache_write_1h;
        out.push(UsageRow {
            model: model_index,
            project: spec.layout.project_of(key % spec.layout.keys),
            api_key: key % spec.layout.keys,
            tier,
            context,
            tokens,
            requests,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::prices::{row_cost, Rates};
    use rust_decimal::Decimal;

    fn model(id: &'static str, batch: bool, long: bool) -> Model {
        let r = |v: &str| Some(v.parse::<Decimal>().unwrap());
        let full = Rates {
            input: r("3"),
            cached_input: r("0.3"),
            cache_write_5m: r("3.75"),
            cache_write_1h: r("6"),
            output: r("15"),
        };
        Model {
            id,
            display_name: id,
            price: Price {
                model_id: id.into(),
                standard: full.clone(),
                batch: if batch {
                    Rates { input: r("1.5"), output: r("7.5"), ..Rates::default() }
                } else {
                    Rates::default()
                },
                long: if long { full } else { Rates::default() },
            },
            embedding: false,
        }
    }

    #[test]
    fn rows_are_deterministic_distinct_and_priceable() {
        let models = vec![model("a", true, true), model("b", false, false), model("c", true, false)];
        let org = Org::from_key("sk-ant-admin01-sandbox-test");
        let day = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 4, 1).unwrap();
        let spec = Spec {
            stream: "messages",
            models: &models,
            rows: 1000,
            layout: Layout::new(1000, 3),
            flavor: Flavor::Anthropic,
        };
        let a = day_rows(&org, &spec, day, today);
        let b = day_rows(&org, &spec, day, today);
        assert_eq!(a.len(), 1000);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        let mut combos = std::collections::HashSet::new();
        for r in &a {
            assert!(combos.insert((r.model, r.api_key)));
            assert!(row_cost(&models[r.model].price, r.tier, r.context, &r.tokens).is_some(), "{r:?}");
        }
        assert!(a.iter().any(|r| r.tier == Tier::Batch) && a.iter().any(|r| r.context == Context::Long));
        let other_day = day_rows(&org, &spec, day.succ_opt().unwrap(), today);
        assert_ne!(format!("{a:?}"), format!("{other_day:?}"));
        let other_org = day_rows(&Org::from_key("other"), &spec, day, today);
        assert_ne!(format!("{a:?}"), format!("{other_org:?}"));
        assert!(day_rows(&org, &spec, today.succ_opt().unwrap(), today).is_empty());
    }
}
