//! OpenAI's bill line by line: the Costs API grouped by `line_item` names each charge in free
//! text, `"{model}, {kind}"` (provider-apis.md §2: `"gpt-4o-mini-2024-07-18, input"`; the
//! vocabulary is not documented). The kinds we price are read as (model, tier, token type):
//! `input` (uncached input), `cached input`, `output`, `cache write` (OpenAI's
//! `input_cache_write_tokens`, one line whatever the cache's lifetime), `audio input`,
//! `cached audio input`, `audio output`, `image input`, `cached image input`, `image output`,
//! each optionally qualified by a tier word (`batch input`, `output (batch)`, `flex output`,
//! `priority cached input`…). Anything else (`Image models`, web search calls, storage,
//! fine-tuning training) is a charge we do not price: reconciled as such, never as a mismatch.
//!
//! A priced kind is keyed by its canonical text, `"{model}, {tier }{kind}"` (`"gpt-4.1, batch
//! output"`), built the same way from a usage row on our side, so both sides of a line meet on
//! one key whatever spelling the bill used.

use crate::cost::{Tier, TokenType};

/// One line of the bill, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LineItem {
    /// A kind we price: the canonical key.
    Priced(String),
    /// A charge we do not price (the billed text, trimmed).
    Unpriced(String),
}

/// The canonical key of usage of `model` at `tier`, token type `token`; None for a tier OpenAI's
/// bill does not have.
pub(crate) fn line_key(model: &str, tier: Tier, token: TokenType) -> Option<String> {
    let kind = match token {
        TokenType::UncachedInput => "input",
        TokenType::CachedInput => "cached input",
        TokenType::Output => "output",
        TokenType::CacheWrite5m | TokenType::CacheWrite1h => "cache write",
        TokenType::AudioInput => "audio input",
        TokenType::AudioCachedInput => "cached audio input",
        TokenType::AudioOutput => "audio output",
        TokenType::ImageInput => "image input",
        TokenType::ImageCachedInput => "cached image input",
        TokenType::ImageOutput => "image output",
    };
    let tier = match tier {
        Tier::Standard => "",
        Tier::Batch => "batch ",
        Tier::Flex => "flex ",
        Tier::Priority => "priority ",
        Tier::Unknown => return None,
    };
    Some(format!("{model}, {tier}{kind}"))
}

/// Reads a billed line item.
pub(crate) fn parse(text: &str) -> LineItem {
    let unpriced = || LineItem::Unpriced(text.trim().to_string());
    let Some((model, rest)) = text.split_once(',') else { return unpriced() };
    let model = model.trim();
    if model.is_empty() || model.contains(char::is_whitespace) {
        return unpriced();
    }
    let mut tier = Tier::Standard;
    let mut words = Vec::new();
    for word in rest.split(|c: char| c.is_whitespace() || matches!(c, ',' | '(' | ')')).filter(|w| !w.is_empty()) {
        let word = word.to_ascii_lowercase();
        let named = match word.as_str() {
            "batch" => Some(Tier::Batch),
            "flex" => Some(Tier::Flex),
            "priority" => Some(Tier::Priority),
            _ => None,
        };
        match named {
            // Two tier words on one line is not a line we know.
            Some(_) if tier != Tier::Standard => return unpriced(),
            Some(t) => tier = t,
            None => words.push(word),
        }
    }
    let token = match words.join(" ").as_str() {
        "input" | "uncached input" => TokenType::UncachedInput,
        "cached input" => TokenType::CachedInput,
        "output" => TokenType::Output,
        "cache write" | "cache write input" | "cached write" => TokenType::CacheWrite5m,
        "audio input" | "uncached audio input" => TokenType::AudioInput,
        "cached audio input" | "audio cached input" => TokenType::AudioCachedInput,
        "audio output" => TokenType::AudioOutput,
        "image input" | "uncached image input" => TokenType::ImageInput,
        "cached image input" | "image cached input" => TokenType::ImageCachedInput,
        "image output" => TokenType::ImageOutput,
        _ => return unpriced(),
    };
    line_key(model, tier, token).map_or_else(unpriced, LineItem::Priced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn priced(s: &str) -> String {
        match parse(s) {
            LineItem::Priced(k) => k,
            other => panic!("{s:?} read as {other:?}"),
        }
    }

    #[test]
    fn priced_kinds_meet_on_one_key() {
        assert_eq!(priced("gpt-4o-mini-2024-07-18, input"), "gpt-4o-mini-2024-07-18, input");
        assert_eq!(priced("gpt-4o-2024-08-06, Cached Input"), "gpt-4o-2024-08-06, cached input");
        assert_eq!(priced("gpt-4.1-2025-04-14, batch output"), "gpt-4.1-2025-04-14, batch output");
        assert_eq!(priced("gpt-4.1-2025-04-14, output (batch)"), "gpt-4.1-2025-04-14, batch output");
        assert_eq!(priced("gpt-4.1-2025-04-14, output, batch"), "gpt-4.1-2025-04-14, batch output");
        assert_eq!(priced("o3, flex cached input"), "o3, flex cached input");
        assert_eq!(priced("text-embedding-3-small, input"), "text-embedding-3-small, input");
        // Our side builds the same keys from usage rows.
        assert_eq!(
            line_key("gpt-4.1-2025-04-14", Tier::Batch, TokenType::Output).as_deref(),
            Some("gpt-4.1-2025-04-14, batch output")
        );
        assert_eq!(priced("gpt-5, Cache Write"), "gpt-5, cache write");
        assert_eq!(line_key("gpt-5", Tier::Standard, TokenType::CacheWrite1h).as_deref(), Some("gpt-5, cache write"));
        assert_eq!(line_key("m", Tier::Unknown, TokenType::Output), None);
        // Audio and image kinds (issue 14's canonical texts).
        assert_eq!(priced("gpt-4o-audio-preview, audio input"), "gpt-4o-audio-preview, audio input");
        assert_eq!(priced("gpt-realtime, Cached Audio Input"), "gpt-realtime, cached audio input");
        assert_eq!(priced("gpt-realtime, audio output"), "gpt-realtime, audio output");
        assert_eq!(priced("gpt-image-1, image output (batch)"), "gpt-image-1, batch image output");
        assert_eq!(priced("gpt-realtime, cached image input"), "gpt-realtime, cached image input");
        assert_eq!(
            line_key("gpt-realtime", Tier::Standard, TokenType::AudioCachedInput).as_deref(),
            Some("gpt-realtime, cached audio input")
        );
        assert_eq!(
            line_key("gpt-image-1", Tier::Priority, TokenType::ImageInput).as_deref(),
            Some("gpt-image-1, priority image input")
        );
    }

    #[test]
    fn other_charges_are_unpriced() {
        for text in [
            "Image models",
            "gpt-4o-mini, web search tool calls",
            "gpt-4o-audio-preview, audio",
            "File search storage",
            "ft:gpt-4o-mini-2024-07-18:acme::x1, training",
            "GPT 4o, input",
            "m, batch priority input",
        ] {
            assert_eq!(parse(text), LineItem::Unpriced(text.to_string()), "{text}");
        }
    }
}
