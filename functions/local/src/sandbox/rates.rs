//! The sandbox's own rate card: what each model it reports costs at the provider, typed in here
//! (USD per 1M tokens) with its source, and read by nothing else. The sandbox plays the
//! provider's bill; if it priced from the price catalog Convergence seeds (configs/), a wrong rate
//! there would be on both sides of every reconciliation and pass it. With its own card, a catalog
//! rate that differs from the provider's shows as a mismatch.
//!
//! Sources (each card names its own in `source`, and the comment above a rate says where a rate
//! outside the card's main source comes from):
//! - [`LITELLM`]: the per-token prices tabulated in `shared/reference/provider-apis.md` §6 (LiteLLM's
//!   `model_prices_and_context_window.json` @00035b69; batch rates from LiteLLM 1.110.2);
//! - [`LITELLM_1110`]: LiteLLM 1.110.2 (PyPI, 2026-11-20), `model_prices_and_context_window_backup.json`
//!   — the `*_priority` and `*_flex` keys, `input_cost_per_audio_token`, `cache_read_input_audio_token_cost`,
//!   `output_cost_per_audio_token`, the `*_image_token*` keys, `cache_creation_input_token_cost`
//!   (OpenAI's one cache-write rate), `search_context_cost_per_query` and Anthropic's
//!   `provider_specific_entry` (`us`: 1.1);
//! - Anthropic's published multipliers of the base input rate (cache read 0.1×, 5 min cache write
//!   1.25×, 1 h cache write 2×, batch 0.5×; above 200k input tokens input 2× and output 1.5×), which
//!   every Anthropic row below satisfies (checked by a test);
//! - [`FAST_MODE`]: Anthropic's fast-mode page (platform.claude.com/docs/en/build-with-claude/fast-mode,
//!   2026-02): Opus 4.6 fast mode is 6× the standard rates ($30 / $150 per MTok), stacking with the
//!   other modifiers;
//! - [`US_ONLY`]: Anthropic's data-residency pages (platform.claude.com/docs/en/manage-claude/data-residency;
//!   docs.aws.amazon.com/claude-platform/latest/userguide/data-residency.html: "A 1.1x pricing
//!   multiplier applies"): US-only inference on Opus 4.6 and later; older models report
//!   `inference_geo = not_available`;
//! - [`WEB_SEARCH`]: Anthropic's pricing page, web search $10 per 1,000 searches (LiteLLM 1.110.2
//!   `search_context_cost_per_query` 0.01 on every Claude 4 entry).

use rust_decimal::Decimal;

use super::data::Model;
use super::prices::{Price, Rates};

pub const LITELLM: &str = "provider-apis.md §6 (LiteLLM @00035b69)";
pub const LITELLM_1110: &str = "LiteLLM 1.110.2 model_prices_and_context_window_backup.json";
pub const FAST_MODE: &str = "Anthropic fast-mode docs (Opus 4.6: 6× standard rates)";
pub const US_ONLY: &str = "Anthropic data-residency docs (US-only inference: 1.1×)";
pub const WEB_SEARCH: &str = "Anthropic pricing (web search: $10 per 1,000 searches)";

/// One model's card. Empty text: the provider has no such rate for the model (or the sandbox
/// reports no usage that would need it).
struct Card {
    /// The id the provider reports (OpenAI: often a dated snapshot of the model's family).
    id: &'static str,
    display_name: &'static str,
    embedding: bool,
    /// Input, cache read, 5 min cache write (OpenAI: its one cache-write rate), 1 h cache write,
    /// output.
    standard: [&'static str; 5],
    /// Input, output.
    batch: [&'static str; 2],
    /// OpenAI flex: input, cache read, output.
    flex: [&'static str; 3],
    /// OpenAI priority: input, cache read, output.
    priority: [&'static str; 3],
    /// OpenAI audio tokens (standard tier): input, cache read, output.
    audio: [&'static str; 3],
    /// OpenAI image tokens (standard tier): input, cache read, output.
    image: [&'static str; 3],
    /// Rates above 200k input tokens (Anthropic `context_window = "200k-1M"`): input, cache
    /// read, 5 min write, 1 h write, output.
    long: [&'static str; 5],
    /// Anthropic fast mode (`speed = fast`): the factor on every token rate.
    fast_multiplier: &'static str,
    /// Anthropic US-only inference (`inference_geo = us`): the factor on every token rate.
    us_multiplier: &'static str,
    /// USD per 1,000 web search requests.
    web_search_per_1k: &'static str,
    /// Where the rates come from.
    source: &'static str,
}

const BLANK: Card = Card {
    id: "",
    display_name: "",
    embedding: false,
    standard: [""; 5],
    batch: [""; 2],
    flex: [""; 3],
    priority: [""; 3],
    audio: [""; 3],
    image: [""; 3],
    long: [""; 5],
    fast_multiplier: "",
    us_multiplier: "",
    web_search_per_1k: "",
    source: "",
};

const OPENAI: [Card; 12] = [
    Card {
        id: "gpt-4o-2024-08-06",
        display_name: "GPT-4o",
        standard: ["2.50", "1.25", "", "", "10.00"],
        batch: ["1.25", "5.00"],
        // LiteLLM 1.110.2 `*_priority`.
        priority: ["4.25", "2.125", "17.00"],
        source: LITELLM,
        ..BLANK
    },
    Card {
        id: "gpt-4o-mini-2024-07-18",
        display_name: "GPT-4o mini",
        standard: ["0.15", "0.075", "", "", "0.60"],
        batch: ["0.075", "0.30"],
        // LiteLLM 1.110.2 `*_priority`.
        priority: ["0.25", "0.125", "1.00"],
        source: LITELLM,
        ..BLANK
    },
    Card {
        id: "gpt-4.1-2025-04-14",
        display_name: "GPT-4.1",
        standard: ["2.00", "0.50", "", "", "8.00"],
        batch: ["1.00", "4.00"],
        // LiteLLM 1.110.2 `*_priority`.
        priority: ["3.50", "0.875", "14.00"],
        source: LITELLM,
        ..BLANK
    },
    Card {
        id: "gpt-4.1-mini-2025-04-14",
        display_name: "GPT-4.1 mini",
        standard: ["0.40", "0.10", "", "", "1.60"],
        batch: ["0.20", "0.80"],
        // LiteLLM 1.110.2 `*_priority`.
        priority: ["0.70", "0.175", "2.80"],
        source: LITELLM,
        ..BLANK
    },
    Card {
        id: "o4-mini-2025-04-16",
        display_name: "o4-mini",
        standard: ["1.10", "0.275", "", "", "4.40"],
        // Batch, flex and priority: LiteLLM 1.110.2 (`*_batches`, `*_flex`, `*_priority`).
        batch: ["0.55", "2.20"],
        flex: ["0.55", "0.138", "2.20"],
        priority: ["2.00", "0.50", "8.00"],
        source: LITELLM,
        ..BLANK
    },
    Card {
        id: "gpt-5-mini-2025-08-07",
        display_name: "GPT-5 mini",
        standard: ["0.25", "0.025", "", "", "2.00"],
        // Batch, flex and priority: LiteLLM 1.110.2 (`*_batches`, `*_flex`, `*_priority`).
        batch: ["0.125", "1.00"],
        flex: ["0.125", "0.0125", "1.00"],
        priority: ["0.45", "0.045", "3.60"],
        source: LITELLM,
        ..BLANK
    },
    Card {
        id: "text-embedding-3-small",
        display_name: "text-embedding-3-small",
        embedding: true,
        standard: ["0.02", "", "", "", "0"],
        batch: ["0.01", "0"],
        source: LITELLM,
        ..BLANK
    },
    Card {
        id: "text-embedding-3-large",
        display_name: "text-embedding-3-large",
        embedding: true,
        standard: ["0.13", "", "", "", "0"],
        batch: ["0.065", "0"],
        source: LITELLM,
        ..BLANK
    },
    // The first GPT-4o snapshot keeps its own, higher price (no cached-input discount): an exact
    // snapshot must win over the gpt-4o family (provider-apis.md §6 note; LiteLLM 1.110.2).
    Card {
        id: "gpt-4o-2024-05-13",
        display_name: "GPT-4o (2024-05-13)",
        standard: ["5.00", "", "", "", "15.00"],
        batch: ["2.50", "7.50"],
        priority: ["8.75", "", "26.25"],
        source: LITELLM_1110,
        ..BLANK
    },
    // A model with a published cache-write rate (`cache_creation_input_token_cost` 5e-06).
    Card {
        id: "gpt-5.6",
        display_name: "GPT-5.6",
        standard: ["4.00", "0.40", "5.00", "", "20.00"],
        batch: ["2.00", "10.00"],
        flex: ["2.00", "0.20", "10.00"],
        priority: ["8.00", "0.80", "40.00"],
        source: LITELLM_1110,
        ..BLANK
    },
    // Text, audio (with cached audio) and image input at their own rates; no image output.
    Card {
        id: "gpt-realtime-2025-08-28",
        display_name: "gpt-realtime",
        standard: ["4.00", "0.40", "", "", "16.00"],
        audio: ["32.00", "0.40", "64.00"],
        image: ["5.00", "0.50", ""],
        source: LITELLM_1110,
        ..BLANK
    },
    // Image generation: text and image input, image output only (no text output rate).
    Card {
        id: "gpt-image-1",
        display_name: "GPT Image 1",
        standard: ["5.00", "1.25", "", "", ""],
        image: ["10.00", "2.50", "40.00"],
        source: LITELLM_1110,
        ..BLANK
    },
];

const ANTHROPIC: [Card; 5] = [
    Card {
        id: "claude-sonnet-4-5-20250929",
        display_name: "Claude Sonnet 4.5",
        standard: ["3.00", "0.30", "3.75", "6.00", "15.00"],
        batch: ["1.50", "7.50"],
        long: ["6.00", "0.60", "7.50", "12.00", "22.50"],
        web_search_per_1k: "10.00",
        source: LITELLM,
        ..BLANK
    },
    Card {
        id: "claude-haiku-4-5-20251001",
        display_name: "Claude Haiku 4.5",
        standard: ["1.00", "0.10", "1.25", "2.00", "5.00"],
        batch: ["0.50", "2.50"],
        web_search_per_1k: "10.00",
        source: LITELLM,
        ..BLANK
    },
    // 1M context without a long-context surcharge; the one model here with fast mode and
    // US-only inference.
    Card {
        id: "claude-opus-4-6",
        display_name: "Claude Opus 4.6",
        standard: ["5.00", "0.50", "6.25", "10.00", "25.00"],
        batch: ["2.50", "12.50"],
        fast_multiplier: "6",
        us_multiplier: "1.1",
        web_search_per_1k: "10.00",
        source: LITELLM,
        ..BLANK
    },
    // Long context without a 1 h write rate in the sources: the sandbox reports no long-context
    // usage for it (the generator needs every long rate).
    Card {
        id: "claude-sonnet-4-20250514",
        display_name: "Claude Sonnet 4",
        standard: ["3.00", "0.30", "3.75", "6.00", "15.00"],
        long: ["6.00", "0.60", "7.50", "", "22.50"],
        web_search_per_1k: "10.00",
        source: LITELLM,
        ..BLANK
    },
    Card {
        id: "claude-3-5-haiku-20241022",
        display_name: "Claude Haiku 3.5",
        standard: ["0.80", "0.08", "1.00", "1.60", "4.00"],
        web_search_per_1k: "10.00",
        source: LITELLM,
        ..BLANK
    },
];

fn rate(text: &str) -> Option<Decimal> {
    (!text.is_empty()).then(|| text.parse().unwrap_or_else(|e| panic!("sandbox rate {text:?}: {e}")))
}

/// Text rates from (input, cache read, 5 min write, 1 h write, output).
fn text([input, cached, w5m, w1h, output]: [&str; 5]) -> Rates {
    Rates {
        input: rate(input),
        cached_input: rate(cached),
        cache_write_5m: rate(w5m),
        cache_write_1h: rate(w1h),
        output: rate(output),
        ..Rates::default()
    }
}

impl Card {
    fn model(&self) -> Model {
        let [input, output] = self.batch;
        let [flex_input, flex_cached, flex_output] = self.flex;
        let [priority_input, priority_cached, priority_output] = self.priority;
        let [audio_input, audio_cached, audio_output] = self.audio;
        let [image_input, image_cached, image_output] = self.image;
        let price = Price {
            model_id: self.id.to_string(),
            standard: Rates {
                audio_input: rate(audio_input),
                audio_cached_input: rate(audio_cached),
                audio_output: rate(audio_output),
                image_input: rate(image_input),
                image_cached_input: rate(image_cached),
                image_output: rate(image_output),
                ..text(self.standard)
            },
            batch: text([input, "", "", "", output]),
            flex: text([flex_input, flex_cached, "", "", flex_output]),
            priority: text([priority_input, priority_cached, "", "", priority_output]),
            long: text(self.long),
            fast_multiplier: rate(self.fast_multiplier),
            us_multiplier: rate(self.us_multiplier),
            web_search_per_1k: rate(self.web_search_per_1k),
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
    use crate::sandbox::prices::{row_cost, web_search_cost, Context, Dims, Geo, Speed, Tier, TokenType, Tokens};

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn model(id: &str) -> Model {
        openai_models().into_iter().chain(anthropic_models()).find(|m| m.id == id).unwrap()
    }

    /// The standard test mix, each count where the model has a standard rate for it:
    /// 1,000,000 text input, 200,000 cache reads, 100,000 5 min (OpenAI: all) and 50,000 1 h cache
    /// writes, 300,000 text output; 400,000 audio input, 100,000 cached audio, 200,000 audio
    /// output; 500,000 image input, 50,000 cached image, 250,000 image output.
    fn mix(m: &Model) -> Tokens {
        let counts =
            [1_000_000, 200_000, 100_000, 50_000, 300_000, 400_000, 100_000, 200_000, 500_000, 50_000, 250_000];
        let mut t = Tokens::default();
        let slots = [
            &mut t.uncached_input,
            &mut t.cached_input,
            &mut t.cache_write_5m,
            &mut t.cache_write_1h,
            &mut t.output,
            &mut t.audio_input,
            &mut t.audio_cached_input,
            &mut t.audio_output,
            &mut t.image_input,
            &mut t.image_cached_input,
            &mut t.image_output,
        ];
        for ((slot, n), ty) in slots.into_iter().zip(counts).zip(crate::sandbox::prices::TOKEN_TYPES) {
            if m.price.standard.get(ty).is_some() {
                *slot = n;
            }
        }
        t
    }

    /// A tier's mix: 1,000,000 input, 200,000 cache reads where the tier has a cached rate,
    /// 1,000,000 output.
    fn tier_mix(m: &Model, tier: Tier) -> Tokens {
        let cached = m.price.rate(tier, Context::Short, TokenType::CachedInput).is_some();
        Tokens {
            uncached_input: 1_000_000,
            cached_input: if cached { 200_000 } else { 0 },
            output: if m.embedding { 0 } else { 1_000_000 },
            ..Tokens::default()
        }
    }

    /// Every model the sandbox reports, priced by hand: standard = the [`mix`] at the standard
    /// rates; batch = 1M input + 1M output at the batch rates; long = the standard mix at the long
    /// rates.
    #[test]
    fn every_model_has_a_hand_computed_golden_cost() {
        // (model, standard, batch, long)
        let golden: [(&str, &str, Option<&str>, Option<&str>); 17] = [
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
            // No cached rate: 1M × 5.00 + 0.3M × 15.00 = 5.00 + 4.50 = 9.50; batch 2.50 + 7.50 = 10
            ("gpt-4o-2024-05-13", "9.5", Some("10"), None),
            // 4.00 + 0.2M × 0.40 = 0.08 + 0.1M cache write × 5.00 = 0.50 + 0.3M × 20.00 = 6.00 → 10.58;
            // batch 2.00 + 10.00 = 12
            ("gpt-5.6", "10.58", Some("12"), None),
            // text 4.00 + 0.08 + 0.3M × 16 = 4.80; audio 0.4M × 32 = 12.80, 0.1M × 0.40 = 0.04,
            // 0.2M × 64 = 12.80; image 0.5M × 5 = 2.50, 0.05M × 0.50 = 0.025
            // → 4 + 0.08 + 4.8 + 12.8 + 0.04 + 12.8 + 2.5 + 0.025 = 37.045
            ("gpt-realtime-2025-08-28", "37.045", None, None),
            // text 5.00 + 0.2M × 1.25 = 0.25; image 0.5M × 10 = 5.00, 0.05M × 2.50 = 0.125,
            // output 0.25M × 40 = 10.00 → 20.375
            ("gpt-image-1", "20.375", None, None),
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
            assert_eq!(row_cost(&m.price, Dims::STANDARD, &mix(&m)), Some(dec(standard)), "{id}");
            assert_eq!(m.price.has_tier(Tier::Batch), batch.is_some(), "{id}");
            if let Some(batch) = batch {
                let batch_tokens = Tokens { cached_input: 0, ..tier_mix(&m, Tier::Batch) };
                assert_eq!(row_cost(&m.price, Dims::tier(Tier::Batch), &batch_tokens), Some(dec(batch)), "{id}");
            }
            assert_eq!(m.price.has_long_context(), long.is_some(), "{id}");
            if let Some(long) = long {
                let dims = Dims { context: Context::Long, ..Dims::STANDARD };
                assert_eq!(row_cost(&m.price, dims, &mix(&m)), Some(dec(long)), "{id} long");
            }
        }
    }

    /// Every flex and priority rate, by hand: 1M input + 0.2M cache reads (where the tier has a
    /// cached rate) + 1M output.
    #[test]
    fn every_flex_and_priority_rate_has_a_hand_computed_golden_cost() {
        let golden: [(&str, Tier, &str); 9] = [
            // 4.25 + 0.2 × 2.125 = 0.425 + 17.00 = 21.675
            ("gpt-4o-2024-08-06", Tier::Priority, "21.675"),
            // 0.25 + 0.2 × 0.125 = 0.025 + 1.00 = 1.275
            ("gpt-4o-mini-2024-07-18", Tier::Priority, "1.275"),
            // 3.50 + 0.2 × 0.875 = 0.175 + 14.00 = 17.675
            ("gpt-4.1-2025-04-14", Tier::Priority, "17.675"),
            // 0.70 + 0.2 × 0.175 = 0.035 + 2.80 = 3.535
            ("gpt-4.1-mini-2025-04-14", Tier::Priority, "3.535"),
            // 0.55 + 0.2 × 0.138 = 0.0276 + 2.20 = 2.7776; priority 2.00 + 0.10 + 8.00 = 10.10
            ("o4-mini-2025-04-16", Tier::Flex, "2.7776"),
            ("o4-mini-2025-04-16", Tier::Priority, "10.1"),
            // 0.125 + 0.2 × 0.0125 = 0.0025 + 1.00 = 1.1275; priority 0.45 + 0.009 + 3.60 = 4.059
            ("gpt-5-mini-2025-08-07", Tier::Flex, "1.1275"),
            ("gpt-5-mini-2025-08-07", Tier::Priority, "4.059"),
            // No cached rate: 8.75 + 26.25 = 35
            ("gpt-4o-2024-05-13", Tier::Priority, "35"),
        ];
        let more: [(&str, Tier, &str); 2] = [
            // 2.00 + 0.2 × 0.20 = 0.04 + 10.00 = 12.04; priority 8.00 + 0.16 + 40.00 = 48.16
            ("gpt-5.6", Tier::Flex, "12.04"),
            ("gpt-5.6", Tier::Priority, "48.16"),
        ];
        let all: Vec<_> = golden.iter().chain(&more).collect();
        let offered: usize = openai_models()
            .iter()
            .map(|m| [Tier::Flex, Tier::Priority].iter().filter(|t| m.price.has_tier(**t)).count())
            .sum();
        assert_eq!(all.len(), offered, "a golden row per flex and priority rate set");
        for (id, tier, expected) in all {
            let m = model(id);
            assert_eq!(
                row_cost(&m.price, Dims::tier(*tier), &tier_mix(&m, *tier)),
                Some(dec(expected)),
                "{id} {tier:?}"
            );
        }
    }

    /// Opus 4.6's fast mode (×6) and US-only inference (×1.1) on the standard mix, and web search
    /// on every Anthropic model.
    #[test]
    fn fast_mode_us_inference_and_web_search_have_hand_computed_golden_costs() {
        let opus = model("claude-opus-4-6");
        let t = mix(&opus);
        let at = |speed, geo| row_cost(&opus.price, Dims { speed, geo, ..Dims::STANDARD }, &t);
        // ×6: 1M × 30 = 30 + 0.2M × 3 = 0.6 + 0.1M × 37.5 = 3.75 + 0.05M × 60 = 3 + 0.3M × 150 = 45
        // → 82.35 (= 13.725 × 6)
        assert_eq!(at(Speed::Fast, Geo::Global), Some(dec("82.35")));
        // ×1.1: 5.5 + 0.11 + 0.6875 + 0.55 + 8.25 = 15.0975
        assert_eq!(at(Speed::Standard, Geo::Us), Some(dec("15.0975")));
        // ×6.6: 33 + 0.66 + 4.125 + 3.3 + 49.5 = 90.585
        assert_eq!(at(Speed::Fast, Geo::Us), Some(dec("90.585")));
        // `global` and `not_available` are the standard rates.
        assert_eq!(at(Speed::Standard, Geo::Global), Some(dec("13.725")));
        assert_eq!(at(Speed::Standard, Geo::NotAvailable), Some(dec("13.725")));
        for m in anthropic_models() {
            // 1,000 searches × $10 / 1,000 = $10.
            assert_eq!(web_search_cost(&m.price, 1_000), Some(dec("10")), "{}", m.id);
            let fast_and_us = m.price.fast_multiplier.is_some() || m.price.us_multiplier.is_some();
            assert_eq!(fast_and_us, m.id == "claude-opus-4-6", "{}", m.id);
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
        // A card's token rates come from its `source` (a rate from elsewhere says so in a comment);
        // the multipliers and web search from FAST_MODE, US_ONLY and WEB_SEARCH.
        for (id, source) in sources() {
            assert!(source == LITELLM || source == LITELLM_1110, "{id}: {source}");
        }
    }
}
