//! The sandbox's own rate card: what each model it reports costs at the provider, typed in here
//! (USD per 1M tokens) with its source, and read by nothing else. The sandbox plays the
//! provider's bill; if it priced from the price catalog Convergence seeds (configs/), a wrong rate
//! there would be on both sides of every reconciliation and pass it. With its own card, a catalog
//! rate that differs from the provider's shows as a mismatch.
//!
//! Sources: the providers' per-token prices as tabulated in `shared/reference/provider-apis.md` §6
//! (LiteLLM's `model_prices_and_context_window.json` @00035b69; batch rates from LiteLLM
//! 1.110.2), and for Anthropic the published multipliers of the base input rate (cache read 0.1×,
//! 5 min cache write 1.25×, 1 h cache write 2×, batch 0.5×; above 200k input tokens input 2× and
//! output 1.5×), which every Anthropic row below satisfies (checked by a test).

use rust_decimal::Decimal;

use super::data::Model;
use super::prices::{Price, Rates};

/// One model's card. Empty text: the provider has no such rate for the model.
struct Card {
    /// The id the provider reports (OpenAI: a dated snapshot of the model's family).
    id: &'static str,
    display_name: &'static str,
    embedding: bool,
    input: &'static str,
    cached_input: &'static str,
    cache_write_5m: &'static str,
    cache_write_1h: &'static str,
    output: &'static str,
    batch_input: &'static str,
    batch_output: &'static str,
    /// Rates above 200k input tokens (Anthropic `context_window = "200k-1M"`): input, cache
    /// read, 5 min write, 1 h write, output.
    long: [&'static str; 5],
    source: &'static str,
}

const OPENAI_SOURCE: &str = "provider-apis.md §6 (LiteLLM @00035b69)";
const OPENAI_BATCH_SOURCE: &str = "provider-apis.md §6 (LiteLLM @00035b69; batch from LiteLLM 1.110.2)";
const ANTHROPIC_SOURCE: &str = "provider-apis.md §6 (LiteLLM @00035b69) and Anthropic's multipliers";
const NO_LONG: [&str; 5] = ["", "", "", "", ""];

const fn openai(
    id: &'static str,
    display_name: &'static str,
    [input, cached_input, output]: [&'static str; 3],
    [batch_input, batch_output]: [&'static str; 2],
    source: &'static str,
) -> Card {
    Card {
        id,
        display_name,
        embedding: false,
        input,
        cached_input,
        cache_write_5m: "",
        cache_write_1h: "",
        output,
        batch_input,
        batch_output,
        long: NO_LONG,
        source,
    }
}

const fn embedding(id: &'static str, input: &'static str, batch_input: &'static str) -> Card {
    Card {
        embedding: true,
        output: "0",
        batch_output: "0",
        ..openai(id, id, [input, "", "0"], [batch_input, "0"], OPENAI_SOURCE)
    }
}

const fn anthropic(
    id: &'static str,
    display_name: &'static str,
    [input, cached_input, cache_write_5m, cache_write_1h, output]: [&'static str; 5],
    [batch_input, batch_output]: [&'static str; 2],
    long: [&'static str; 5],
) -> Card {
    Card {
        id,
        display_name,
        embedding: false,
        input,
        cached_input,
        cache_write_5m,
        cache_write_1h,
        output,
        batch_input,
        batch_output,
        long,
        source: ANTHROPIC_SOURCE,
    }
}

const OPENAI: [Card; 8] = [
    openai("gpt-4o-2024-08-06", "GPT-4o", ["2.50", "1.25", "10.00"], ["1.25", "5.00"], OPENAI_SOURCE),
    openai("gpt-4o-mini-2024-07-18", "GPT-4o mini", ["0.15", "0.075", "0.60"], ["0.075", "0.30"], OPENAI_SOURCE),
    openai("gpt-4.1-2025-04-14", "GPT-4.1", ["2.00", "0.50", "8.00"], ["1.00", "4.00"], OPENAI_SOURCE),
    openai("gpt-4.1-mini-2025-04-14", "GPT-4.1 mini", ["0.40", "0.10", "1.60"], ["0.20", "0.80"], OPENAI_SOURCE),
    openai("o4-mini-2025-04-16", "o4-mini", ["1.10", "0.275", "4.40"], ["0.55", "2.20"], OPENAI_BATCH_SOURCE),
    openai("gpt-5-mini-2025-08-07", "GPT-5 mini", ["0.25", "0.025", "2.00"], ["0.125", "1.00"], OPENAI_BATCH_SOURCE),
    embedding("text-embedding-3-small", "0.02", "0.01"),
    embedding("text-embedding-3-large", "0.13", "0.065"),
];

const ANTHROPIC: [Card; 5] = [
    anthropic(
        "claude-sonnet-4-5-20250929",
        "Claude Sonnet 4.5",
        ["3.00", "0.30", "3.75", "6.00", "15.00"],
        ["1.50", "7.50"],
        ["6.00", "0.60", "7.50", "12.00", "22.50"],
    ),
    anthropic(
        "claude-haiku-4-5-20251001",
        "Claude Haiku 4.5",
        ["1.00", "0.10", "1.25", "2.00", "5.00"],
        ["0.50", "2.50"],
        NO_LONG,
    ),
    anthropic(
        "claude-opus-4-6",
        "Claude Opus 4.6",
        ["5.00", "0.50", "6.25", "10.00", "25.00"],
        ["2.50", "12.50"],
        NO_LONG,
    ),
    // Long context without a 1 h write rate in the sources: the sandbox reports no long-context
    // usage for it (the generator needs every long rate).
    anthropic(
        "claude-sonnet-4-20250514",
        "Claude Sonnet 4",
        ["3.00", "0.30", "3.75", "6.00", "15.00"],
        ["", ""],
        ["6.00", "0.60", "7.50", "", "22.50"],
    ),
    anthropic(
        "claude-3-5-haiku-20241022",
        "Claude Haiku 3.5",
        ["0.80", "0.08", "1.00", "1.60", "4.00"],
        ["", ""],
        NO_LONG,
    ),
];

fn rate(text: &str) -> Option<Decimal> {
    (!text.is_empty()).then(|| text.parse().unwrap_or_else(|e| panic!("sandbox rate {text:?}: {e}")))
}

impl Card {
    fn model(&self) -> Model {
        let [long_input, long_cached, long_5m, long_1h, long_output] = self.long;
        let price = Price {
            model_id: self.id.to_string(),
            standard: Rates {
                input: rate(self.input),
                cached_input: rate(self.cached_input),
                cache_write_5m: rate(self.cache_write_5m),
                cache_write_1h: rate(self.cache_write_1h),
                output: rate(self.output),
            },
            batch: Rates { input: rate(self.batch_input), output: rate(self.batch_output), ..Rates::default() },
            long: Rates {
                input: rate(long_input),
                cached_input: rate(long_cached),
                cache_write_5m: rate(long_5m),
                cache_write_1h: rate(long_1h),
                output: rate(long_output),
            },
        };
        Model { id: self.id, display_name: self.display_name, price, embedding: self.embedding }
    }
}

/// The OpenAI models the sandbox reports, chat and embedding.
pub fn openai_models() -> Vec<Model> {
    OPENAI.iter().map(Card::model).collect()
}

/// The Anthropic models the sandbox reports.
pub fn anthropic_models() -> Vec<Model> {
    ANTHROPIC.iter().map(Card::model).collect()
}

/// Each model's source, for the sandbox's documentation and tests.
pub fn sources() -> impl Iterator<Item = (&'static str, &'static str)> {
    OPENAI.iter().chain(ANTHROPIC.iter()).map(|c| (c.id, c.source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::prices::{row_cost, Context, Tier, Tokens};

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn model(id: &str) -> Model {
        openai_models().into_iter().chain(anthropic_models()).find(|m| m.id == id).unwrap()
    }

    /// The test mix: 1,000,000 uncached input, 200,000 cache reads, 100,000 5 min and 50,000 1 h
    /// cache writes (Anthropic only), 300,000 output.
    fn mix(cache_writes: bool) -> Tokens {
        Tokens {
            uncached_input: 1_000_000,
            cached_input: 200_000,
            cache_write_5m: if cache_writes { 100_000 } else { 0 },
            cache_write_1h: if cache_writes { 50_000 } else { 0 },
            output: 300_000,
        }
    }

    /// Every model the sandbox reports, priced by hand: standard = input × 1 + cached × 0.2
    /// (+ 5 min write × 0.1 + 1 h write × 0.05) + output × 0.3; batch = 1M input + 1M output at
    /// the batch rates; long = the standard mix at the long rates.
    #[test]
    fn every_model_has_a_hand_computed_golden_cost() {
        // (model, standard, batch, long)
        let golden: [(&str, &str, Option<&str>, Option<&str>); 13] = [
            // 2.50 + 0.25 + 3.00 = 5.75; batch 1.25 + 5.00 = 6.25
            ("gpt-4o-2024-08-06", "5.75", Some("6.25"), None),
            // 0.15 + 0.015 + 0.18 = 0.345; batch 0.075 + 0.30 = 0.375
            ("gpt-4o-mini-2024-07-18", "0.345", Some("0.375"), None),
            // 2.00 + 0.10 + 2.40 = 4.50; batch 1.00 + 4.00 = 5.00
            ("gpt-4.1-2025-04-14", "4.5", Some("5"), None),
            // 0.40 + 0.02 + 0.48 = 0.90; batch 0.20 + 0.80 = 1.00
            ("gpt-4.1-mini-2025-04-14", "0.9", Some("1"), None),
            // 1.10 + 0.055 + 1.32 = 2.475; batch 0.55 + 2.20 = 2.75
            ("o4-mini-2025-04-16", "2.475", Some("2.75"), None),
            // 0.25 + 0.005 + 0.60 = 0.855; batch 0.125 + 1.00 = 1.125
            ("gpt-5-mini-2025-08-07", "0.855", Some("1.125"), None),
            // embeddings: input only. 0.02; batch 0.01
            ("text-embedding-3-small", "0.02", Some("0.01"), None),
            // 0.13; batch 0.065
            ("text-embedding-3-large", "0.13", Some("0.065"), None),
            // 3.00 + 0.06 + 0.375 + 0.30 + 4.50 = 8.235; batch 1.50 + 7.50 = 9;
            // long 6.00 + 0.12 + 0.75 + 0.60 + 6.75 = 14.22
            ("claude-sonnet-4-5-20250929", "8.235", Some("9"), Some("14.22")),
            // 1.00 + 0.02 + 0.125 + 0.10 + 1.50 = 2.745; batch 0.50 + 2.50 = 3
            ("claude-haiku-4-5-20251001", "2.745", Some("3"), None),
            // 5.00 + 0.10 + 0.625 + 0.50 + 7.50 = 13.725; batch 2.50 + 12.50 = 15
            ("claude-opus-4-6", "13.725", Some("15"), None),
            // 3.00 + 0.06 + 0.375 + 0.30 + 4.50 = 8.235; no batch; long lacks the 1 h write
            ("claude-sonnet-4-20250514", "8.235", None, None),
            // 0.80 + 0.016 + 0.10 + 0.08 + 1.20 = 2.196
            ("claude-3-5-haiku-20241022", "2.196", None, None),
        ];
        assert_eq!(golden.len(), sources().count(), "one golden row per model the sandbox reports");
        for (id, standard, batch, long) in golden {
            let m = model(id);
            let anthropic = id.starts_with("claude");
            let tokens =
                if m.embedding { Tokens { uncached_input: 1_000_000, ..Tokens::default() } } else { mix(anthropic) };
            assert_eq!(row_cost(&m.price, Tier::Standard, Context::Short, &tokens), Some(dec(standard)), "{id}");
            let batch_tokens = Tokens {
                uncached_input: 1_000_000,
                output: if m.embedding { 0 } else { 1_000_000 },
                ..Tokens::default()
            };
            assert_eq!(row_cost(&m.price, Tier::Batch, Context::Short, &batch_tokens), batch.map(dec), "{id} batch");
            assert_eq!(m.price.has_long_context(), long.is_some(), "{id}");
            if let Some(long) = long {
                assert_eq!(row_cost(&m.price, Tier::Standard, Context::Long, &tokens), Some(dec(long)), "{id} long");
            }
        }
    }

    /// Anthropic's published multipliers hold in every Anthropic row: a typo in one rate fails.
    #[test]
    fn anthropic_rates_follow_the_published_multipliers() {
        for m in anthropic_models() {
            let p = &m.price;
            let input = p.standard.input.unwrap();
            assert_eq!(p.standard.cached_input, Some(input * dec("0.1")), "{}", m.id);
            assert_eq!(p.standard.cache_write_5m, Some(input * dec("1.25")), "{}", m.id);
            assert_eq!(p.standard.cache_write_1h, Some(input * dec("2")), "{}", m.id);
            if let Some(batch) = p.batch.input {
                assert_eq!(batch, input * dec("0.5"), "{}", m.id);
                assert_eq!(p.batch.output, p.standard.output.map(|o| o * dec("0.5")), "{}", m.id);
            }
            if let Some(long) = p.long.input {
                assert_eq!(long, input * dec("2"), "{}", m.id);
                assert_eq!(p.long.output, p.standard.output.map(|o| o * dec("1.5")), "{}", m.id);
                assert_eq!(p.long.cached_input, Some(long * dec("0.1")), "{}", m.id);
            }
        }
    }

    #[test]
    fn every_rate_names_its_source() {
        for (id, source) in sources() {
            assert!(source.contains("provider-apis.md"), "{id}: {source}");
        }
    }
}
