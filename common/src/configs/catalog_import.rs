//! The pure core of the catalog import (`POST /api/v1/pricing/catalog/import`): reads a body in
//! LiteLLM's `model_prices_and_context_window.json` format or in our catalog CSV format, maps it to
//! catalog rows (prices per 1M tokens by column name), and compares those rows with the catalog in
//! force: models added, prices changed, unchanged, fields it could not map, and changes that look
//! wrong, which are refused unless forced. No warehouse here: the route reads the catalog in force
//! into [`CurrentCatalogPrice`]s, calls [`plan_import`], and writes [`ImportPlan::writes`].
//!
//! Numbers never pass through `f64`: LiteLLM's JSON numbers are read as raw text
//! ([`serde_json::value::RawValue`]) and parsed into [`Decimal`], so `2.5e-06` × 1,000,000 is
//! exactly `2.5`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use chrono::NaiveDate;
use regex::Regex;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::price_records::{canonical_decimal, check_key, check_value, parse_date, parse_decimal, BookKind, Input};

/// The providers whose entries the import keeps, by LiteLLM's `litellm_provider` value.
/// `text-completion-openai` is OpenAI's completions endpoint (e.g. `gpt-3.5-turbo-instruct`).
const LITELLM_PROVIDERS: &[(&str, &str)] =
    &[("openai", "openai"), ("text-completion-openai", "openai"), ("anthropic", "anthropic")];

/// LiteLLM `mode`s priced per token, as our usage pipelines report them. Image generation,
/// transcription (per second), speech, moderation and video entries are skipped (reported).
const TOKEN_PRICED_MODES: &[&str] = &["chat", "completion", "responses", "realtime", "embedding"];

/// Numeric columns of the catalog (everything but the key, currency, dates, notes).
fn catalog_numeric_columns() -> impl Iterator<Item = &'static str> {
    BookKind::Pricing.columns().iter().filter(|c| c.kind.is_price()).map(|c| c.name)
}

/// LiteLLM per-token fields with a column of their own (USD per token → per 1M tokens).
const PER_TOKEN_FIELDS: &[(&str, &str)] = &[
    ("input_cost_per_token", "input_per_1m"),
    ("output_cost_per_token", "output_per_1m"),
    ("cache_read_input_token_cost", "cached_input_per_1m"),
    ("cache_creation_input_token_cost", "cache_write_5m_per_1m"),
    ("cache_creation_input_token_cost_above_1hr", "cache_write_1h_per_1m"),
    ("input_cost_per_token_batches", "batch_input_per_1m"),
    ("output_cost_per_token_batches", "batch_output_per_1m"),
    ("cache_read_input_token_cost_batches", "batch_cached_input_per_1m"),
    ("cache_creation_input_token_cost_batches", "batch_cache_write_5m_per_1m"),
    ("input_cost_per_token_priority", "priority_input_per_1m"),
    ("cache_read_input_token_cost_priority", "priority_cached_input_per_1m"),
    ("output_cost_per_token_priority", "priority_output_per_1m"),
    ("input_cost_per_token_flex", "flex_input_per_1m"),
    ("cache_read_input_token_cost_flex", "flex_cached_input_per_1m"),
    ("output_cost_per_token_flex", "flex_output_per_1m"),
    ("input_cost_per_audio_token", "audio_input_per_1m"),
    ("cache_read_input_audio_token_cost", "audio_cached_input_per_1m"),
    ("output_cost_per_audio_token", "audio_output_per_1m"),
    ("input_cost_per_image_token", "image_input_per_1m"),
    ("cache_read_input_image_token_cost", "image_cached_input_per_1m"),
    ("output_cost_per_image_token", "image_output_per_1m"),
];

/// Above-threshold tiers: `{base}_above_{N}k_tokens[_batches]` → (column, batch column).
const LONG_CONTEXT_FIELDS: &[(&str, &str, Option<&str>)] = &[
    ("input_cost_per_token", "long_context_input_per_1m", Some("batch_long_context_input_per_1m")),
    ("cache_read_input_token_cost", "long_context_cached_input_per_1m", Some("batch_long_context_cached_input_per_1m")),
    (
        "cache_creation_input_token_cost",
        "long_context_cache_write_5m_per_1m",
        Some("batch_long_context_cache_write_5m_per_1m"),
    ),
    (
        "cache_creation_input_token_cost_above_1hr",
        "long_context_cache_write_1h_per_1m",
        Some("batch_long_context_cache_write_1h_per_1m"),
    ),
    ("output_cost_per_token", "long_context_output_per_1m", Some("batch_long_context_output_per_1m")),
];

/// `provider_specific_entry` keys (Anthropic): multiples of the standard rates.
const PROVIDER_SPECIFIC_FIELDS: &[(&str, &str)] =
    &[("fast", "fast_mode_multiplier"), ("us", "us_inference_multiplier")];

const THRESHOLD_COLUMN: &str = "long_context_threshold_tokens";

/// The LiteLLM per-token price fields the import maps to a column of their own (for the API
/// contract's description of the body; the `*_above_{N}k_tokens` tiers are mapped by pattern).
pub fn litellm_price_fields() -> impl Iterator<Item = &'static str> {
    PER_TOKEN_FIELDS.iter().map(|(field, _)| *field)
}

static LONG_CONTEXT_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(.+)_above_([0-9]+)k_tokens(_batches)?$").expect("long-context field pattern"));

/// A field that bears on price: LiteLLM names every price `*cost*` and every surcharge
/// `*multiplier*`; `provider_specific_entry` holds Anthropic's multipliers. Other fields
/// (`max_tokens`, `supports_*`, `source`, …) describe the model and are not prices.
fn is_price_field(field: &str) -> bool {
    field.contains("cost")
        || field.contains("multiplier")
        || field.contains("price")
        || field == "provider_specific_entry"
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImportError {
    #[error("the body is not a LiteLLM price file: {0}")]
    Json(String),
    #[error("the CSV has {} problem(s): {}", .0.len(), .0.join("; "))]
    Csv(Vec<String>),
    #[error("the body is empty")]
    Empty,
}

/// Which format a body was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportFormat {
    Litellm,
    Csv,
}

/// One LiteLLM entry, as far as the import reads it by name. Every other field is kept raw in
/// [`LiteLlmFields`] and mapped by name, so a field LiteLLM adds is seen and reported, never
/// dropped by a struct that does not know it.
#[derive(Debug, Deserialize)]
pub struct LiteLlmEntryHead {
    /// `openai`, `anthropic`, `azure`, … (absent: not one of ours).
    #[serde(default)]
    pub litellm_provider: Option<String>,
    /// `chat`, `completion`, `embedding`, `image_generation`, … (absent: `chat`).
    #[serde(default)]
    pub mode: Option<String>,
}

/// An entry's fields with each value's JSON text as written (numbers never become `f64`).
pub type LiteLlmFields = BTreeMap<String, Box<RawValue>>;

/// The file: model key → entry (the `sample_spec` entry documents the format and is not ours).
pub type LiteLlmFile = BTreeMap<String, Box<RawValue>>;

/// A catalog row read from an import body: the prices of one model, per column name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogRow {
    pub provider: String,
    pub model_id: String,
    pub currency: String,
    /// Numeric columns, per 1M tokens unless the name says otherwise;
    /// `long_context_threshold_tokens` as a whole number.
    pub values: BTreeMap<String, Decimal>,
    pub deprecation_date: Option<NaiveDate>,
    pub notes: Option<String>,
    /// From the CSV; LiteLLM rows take the import's `effective_from`.
    pub effective_from: Option<NaiveDate>,
    pub effective_to: Option<NaiveDate>,
}

/// A price field present in the body that no column holds (yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UnmappedField {
    pub provider: String,
    pub model_id: String,
    pub field: String,
    /// The value as written in the body.
    pub value: String,
    pub reason: String,
}

/// An entry of one of our providers the import did not turn into a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SkippedEntry {
    /// The key as written in the body (LiteLLM key or CSV `model_id`).
    pub key: String,
    pub reason: String,
}

/// A body read and mapped, before it is compared with the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParsedImport {
    pub format: ImportFormat,
    pub rows: Vec<CatalogRow>,
    pub unmapped: Vec<UnmappedField>,
    pub skipped: Vec<SkippedEntry>,
    /// LiteLLM entries of other providers (azure, bedrock, vertex_ai, …), ignored.
    pub other_provider_entries: usize,
}

/// Reads an import body: LiteLLM JSON when it starts with `{`, else the catalog CSV.
/// `provider` names the provider of CSV rows when the CSV has no `provider` column.
pub fn parse_import(body: &str, provider: Option<&str>) -> Result<ParsedImport, ImportError> {
    let text = body.trim_start_matches('\u{feff}').trim();
    if text.is_empty() {
        return Err(ImportError::Empty);
    }
    if text.starts_with('{') {
        parse_litellm(text)
    } else {
        parse_catalog_csv(text, provider)
    }
}

// ---------------------------------------------------------------------------------------------
// LiteLLM

/// Maps LiteLLM's `model_prices_and_context_window.json` to catalog rows: entries of OpenAI and
/// Anthropic only, priced per token; model keys lose a provider prefix (`anthropic/claude-x` →
/// `claude-x`). When two keys map to one model id, the key that is the id itself wins and the
/// other is skipped (reported); between two prefixed keys the first in key order wins.
pub fn parse_litellm(text: &str) -> Result<ParsedImport, ImportError> {
    let file: LiteLlmFile = serde_json::from_str(text).map_err(|e| ImportError::Json(e.to_string()))?;
    let mut out = ParsedImport {
        format: ImportFormat::Litellm,
        rows: Vec::new(),
        unmapped: Vec::new(),
        skipped: Vec::new(),
        other_provider_entries: 0,
    };
    // model (provider, id) → (key it came from, index in out.rows)
    let mut seen: BTreeMap<(String, String), (String, usize)> = BTreeMap::new();
    for (key, raw) in &file {
        // An entry that is not an object, or whose provider or mode is not a string, cannot be
        // one of ours.
        let Ok(head) = serde_json::from_str::<LiteLlmEntryHead>(raw.get()) else {
            out.other_provider_entries += 1;
            continue;
        };
        let litellm_provider = head.litellm_provider.as_deref().unwrap_or_default();
        let Some(provider) = LITELLM_PROVIDERS.iter().find(|(p, _)| *p == litellm_provider).map(|(_, ours)| *ours)
        else {
            out.other_provider_entries += 1;
            continue;
        };
        let mode = head.mode.as_deref().unwrap_or("chat");
        if !TOKEN_PRICED_MODES.contains(&mode) {
            out.skipped
                .push(SkippedEntry { key: key.clone(), reason: format!("mode {mode:?} is not priced per token") });
            continue;
        }
        let model_id = key.strip_prefix(&format!("{provider}/")).unwrap_or(key).to_string();
        if let Err(problem) = check_key(BookKind::Pricing, &model_id) {
            out.skipped.push(SkippedEntry { key: key.clone(), reason: problem });
            continue;
        }
        let fields: LiteLlmFields =
            serde_json::from_str(raw.get()).map_err(|e| ImportError::Json(format!("entry {key:?}: {e}")))?;
        let (row, unmapped) = map_litellm_entry(provider, &model_id, &fields);
        let Some(row) = row else {
            // Its price fields are still worth reading: they say why it could not be mapped.
            out.unmapped.extend(unmapped);
            out.skipped.push(SkippedEntry {
                key: key.clone(),
                reason: "no input_cost_per_token and output_cost_per_token".into(),
            });
            continue;
        };
        let id = (provider.to_string(), model_id.clone());
        match seen.get(&id) {
            Some((other_key, index)) => {
                // The unprefixed key is LiteLLM's canonical entry for the model.
                let (kept, dropped) = if *key == model_id && *other_key != model_id {
                    out.rows[*index] = row;
                    out.unmapped.retain(|u| !(u.provider == provider && u.model_id == model_id));
                    out.unmapped.extend(unmapped);
                    let dropped = other_key.clone();
                    seen.insert(id, (key.clone(), *index));
                    (key.clone(), dropped)
                } else {
                    (other_key.clone(), key.clone())
                };
                out.skipped.push(SkippedEntry {
                    key: dropped,
                    reason: format!("duplicate of {kept:?} (both map to model {model_id:?}; {kept:?} is used)"),
                });
            }
            None => {
                seen.insert(id, (key.clone(), out.rows.len()));
                out.rows.push(row);
                out.unmapped.extend(unmapped);
            }
        }
    }
    Ok(out)
}

/// USD per token → USD per 1M tokens, exactly.
fn per_million(d: Decimal) -> Decimal {
    (d * Decimal::from(1_000_000)).normalize()
}

/// Maps one entry's fields; `None` when it lacks the two required prices.
fn map_litellm_entry(
    provider: &str,
    model_id: &str,
    fields: &LiteLlmFields,
) -> (Option<CatalogRow>, Vec<UnmappedField>) {
    let mut values: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut unmapped = Vec::new();
    let mut threshold: Option<u64> = None;
    let mut miss = |field: &str, raw: &RawValue, reason: &str| {
        unmapped.push(UnmappedField {
            provider: provider.into(),
            model_id: model_id.into(),
            field: field.into(),
            value: raw.get().to_string(),
            reason: reason.into(),
        });
    };
    let mut deprecation_date = None;
    for (field, raw) in fields {
        if field == "deprecation_date" {
            deprecation_date = serde_json::from_str::<String>(raw.get()).ok().as_deref().and_then(parse_date);
            continue;
        }
        if !is_price_field(field) {
            continue;
        }
        if field == "search_context_cost_per_query" {
            map_search_context(field, raw, &mut values, &mut miss);
            continue;
        }
        if field == "provider_specific_entry" {
            map_provider_specific(raw, &mut values, &mut miss);
            continue;
        }
        let column = if let Some((_, column)) = PER_TOKEN_FIELDS.iter().find(|(f, _)| f == field) {
            Some(*column)
        } else if let Some(caps) = LONG_CONTEXT_RE.captures(field) {
            let base = &caps[1];
            let tier: u64 = caps[2].parse().unwrap_or(0) * 1000;
            let batch = caps.get(3).is_some();
            match LONG_CONTEXT_FIELDS.iter().find(|(b, _, _)| *b == base) {
                Some((_, _, None)) if batch => {
                    miss(field, raw, "no column for batch with this long-context price");
                    continue;
                }
                Some((_, plain, batch_column)) => {
                    if threshold.is_some_and(|t| t != tier) {
                        miss(field, raw, "a second long-context threshold (the catalog holds one per model)");
                        continue;
                    }
                    threshold = Some(tier);
                    Some(if batch { batch_column.unwrap_or(plain) } else { *plain })
                }
                None => None,
            }
        } else {
            None
        };
        let Some(column) = column else {
            miss(field, raw, "no column for this price");
            continue;
        };
        match number(raw) {
            Some(d) => {
                values.insert(column.to_string(), per_million(d));
            }
            None => miss(field, raw, "not a number"),
        }
    }
    if let Some(t) = threshold {
        values.insert(THRESHOLD_COLUMN.into(), Decimal::from(t));
    }
    // A value our own checks would refuse (more than 9 decimals, negative) is reported, not kept.
    values.retain(|column, value| match check_number(column, *value) {
        Ok(()) => true,
        Err(problem) => {
            unmapped.push(UnmappedField {
                provider: provider.into(),
                model_id: model_id.into(),
                field: column.clone(),
                value: value.to_string(),
                reason: problem,
            });
            false
        }
    });
    if !values.contains_key("input_per_1m") || !values.contains_key("output_per_1m") {
        return (None, unmapped);
    }
    let row = CatalogRow {
        provider: provider.into(),
        model_id: model_id.into(),
        currency: "USD".into(),
        values,
        deprecation_date,
        notes: None,
        effective_from: None,
        effective_to: None,
    };
    (Some(row), unmapped)
}

/// A JSON number's exact value (`None` for strings, objects, null).
fn number(raw: &RawValue) -> Option<Decimal> {
    let text = raw.get().trim();
    if text.starts_with(['"', '{', '[', 'n', 't', 'f']) {
        return None;
    }
    parse_decimal(text)
}

/// `search_context_cost_per_query` is USD per query by context size; Anthropic's web search is
/// one price, OpenAI's default context size is `medium`: that price becomes
/// `web_search_per_1k_requests`, a different low/high price is reported.
fn map_search_context(
    field: &str,
    raw: &RawValue,
    values: &mut BTreeMap<String, Decimal>,
    miss: &mut impl FnMut(&str, &RawValue, &str),
) {
    let Ok(sizes) = serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(raw.get()) else {
        miss(field, raw, "not an object of per-query prices");
        return;
    };
    let medium = sizes.get("search_context_size_medium").and_then(|r| number(r));
    let Some(medium) = medium else {
        miss(field, raw, "no search_context_size_medium price");
        return;
    };
    values.insert("web_search_per_1k_requests".into(), (medium * Decimal::from(1000)).normalize());
    for (size, price) in &sizes {
        if size != "search_context_size_medium" && number(price) != Some(medium) {
            miss(&format!("{field}.{size}"), price, "only the medium context size has a column");
        }
    }
}

/// `provider_specific_entry`: Anthropic's `fast` (fast mode) and `us` (US-only inference)
/// multipliers.
fn map_provider_specific(
    raw: &RawValue,
    values: &mut BTreeMap<String, Decimal>,
    miss: &mut impl FnMut(&str, &RawValue, &str),
) {
    let Ok(entries) = serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(raw.get()) else {
        miss("provider_specific_entry", raw, "not an object");
        return;
    };
    for (key, value) in &entries {
        let field = format!("provider_specific_entry.{key}");
        match PROVIDER_SPECIFIC_FIELDS.iter().find(|(k, _)| k == key) {
            Some((_, column)) => match number(value) {
                Some(d) => {
                    values.insert((*column).into(), d.normalize());
                }
                None => miss(&field, value, "not a number"),
            },
            None => miss(&field, value, "no column for this multiplier"),
        }
    }
}

/// The same value rules as the price book's own columns (price_records).
fn check_number(column: &str, value: Decimal) -> Result<(), String> {
    let col = BookKind::Pricing.column(column).ok_or_else(|| format!("{column} is not a pricing column"))?;
    check_value(BookKind::Pricing, col, &Input::Number(value.to_string())).map(|_| ())
}

// ---------------------------------------------------------------------------------------------
// CSV

/// Providers a catalog row may belong to.
const PROVIDERS: &[&str] = &["openai", "anthropic"];

const DATE_COLUMNS: &[&str] = &["effective_from", "effective_to"];

/// Reads the catalog CSV: columns of `default_pricing.csv` (any order; optional ones may be
/// left out), `effective_from`/`effective_to` and a `provider` column (else every row is
/// `provider`'s). Every problem is reported at once, each with its line.
pub fn parse_catalog_csv(text: &str, provider: Option<&str>) -> Result<ParsedImport, ImportError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| ImportError::Csv(vec![format!("header: {e}")]))?.clone();
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for name in &headers {
        let known = BookKind::Pricing.column(name).is_some() || DATE_COLUMNS.contains(&name) || name == "provider";
        if !known {
            problems.push(format!("header: unknown column {name:?}"));
        }
        if !names.insert(name.to_string()) {
            problems.push(format!("header: column {name:?} appears twice"));
        }
    }
    let has_provider_column = names.contains("provider");
    if let Some(p) = provider.filter(|p| !PROVIDERS.contains(p)) {
        problems.push(format!("provider {p:?} is not one of {}", PROVIDERS.join(", ")));
    }
    if !has_provider_column && provider.is_none() {
        problems.push("the CSV has no provider column: name the provider of its rows".into());
    }
    if !problems.is_empty() {
        return Err(ImportError::Csv(problems));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(match e.position() {
                    Some(at) => format!("line {}: {e}", at.line()),
                    None => e.to_string(),
                });
                continue;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or_default();
        let cells: BTreeMap<&str, &str> = headers.iter().zip(record.iter()).collect();
        match csv_row(&cells, provider) {
            Ok(row) => rows.push(row),
            Err(row_problems) => problems.extend(row_problems.into_iter().map(|p| format!("line {line}: {p}"))),
        }
    }
    if !problems.is_empty() {
        return Err(ImportError::Csv(problems));
    }
    Ok(ParsedImport {
        format: ImportFormat::Csv,
        rows,
        unmapped: Vec::new(),
        skipped: Vec::new(),
        other_provider_entries: 0,
    })
}

fn csv_row(cells: &BTreeMap<&str, &str>, default_provider: Option<&str>) -> Result<CatalogRow, Vec<String>> {
    let mut problems = Vec::new();
    let cell = |name: &str| cells.get(name).copied().filter(|v| !v.is_empty());
    let provider = cell("provider").or(default_provider).unwrap_or_default().to_string();
    if !PROVIDERS.contains(&provider.as_str()) {
        problems.push(format!("provider {provider:?} is not one of {}", PROVIDERS.join(", ")));
    }
    let mut checked = |name: &str| -> Option<serde_json::Value> {
        let column = BookKind::Pricing.column(name)?;
        let input = cell(name).map_or(Input::Null, |v| Input::Text(v.to_string()));
        match check_value(BookKind::Pricing, column, &input) {
            Ok(serde_json::Value::Null) => None,
            Ok(v) => Some(v),
            Err(p) => {
                problems.push(p);
                None
            }
        }
    };
    let model_id = checked("model_id").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let currency = checked("currency").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let notes = checked("notes").and_then(|v| v.as_str().map(str::to_string));
    let deprecation_date = checked("deprecation_date").and_then(|v| v.as_str().and_then(parse_date));
    let mut values = BTreeMap::new();
    for name in catalog_numeric_columns() {
        if checked(name).is_some() {
            if let Some(d) = cell(name).and_then(parse_decimal) {
                values.insert(name.to_string(), d.normalize());
            }
        }
    }
    let mut date = |name: &str| -> Option<NaiveDate> {
        let text = cell(name)?;
        let parsed = parse_date(text);
        if parsed.is_none() {
            problems.push(format!("{name} must be a date YYYY-MM-DD (got {text:?})"));
        }
        parsed
    };
    let effective_from = date("effective_from");
    let effective_to = date("effective_to");
    if let (Some(from), Some(to)) = (effective_from, effective_to) {
        if to <= from {
            problems.push("effective_to must be after effective_from".into());
        }
    }
    if problems.is_empty() {
        Ok(CatalogRow { provider, model_id, currency, values, deprecation_date, notes, effective_from, effective_to })
    } else {
        Err(problems)
    }
}

/// Writes `provider`'s rows in the catalog CSV format: the `default_pricing.csv` columns, then
/// `effective_from`, `effective_to`.
pub fn write_catalog_csv(provider: &str, rows: &[CatalogRow]) -> String {
    let rows: Vec<&CatalogRow> = rows.iter().filter(|r| r.provider == provider).collect();
    let base: Vec<&str> = BookKind::Pricing.columns().iter().map(|c| c.name).collect();
    let header: Vec<&str> = base.iter().chain(DATE_COLUMNS).copied().collect();
    let mut writer = csv::Writer::from_writer(Vec::new());
    let date = |d: Option<NaiveDate>| d.map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default();
    // Writing to a Vec cannot fail; a failure here would be a bug in csv, so it is not hidden.
    writer.write_record(&header).expect("csv header into memory");
    for row in rows {
        let record: Vec<String> = header
            .iter()
            .map(|name| match *name {
                "model_id" => row.model_id.clone(),
                "currency" => row.currency.clone(),
                "notes" => row.notes.clone().unwrap_or_default(),
                "deprecation_date" => date(row.deprecation_date),
                "effective_from" => date(row.effective_from),
                "effective_to" => date(row.effective_to),
                THRESHOLD_COLUMN => row.values.get(*name).map(|d| d.normalize().to_string()).unwrap_or_default(),
                column => row.values.get(column).map(|d| canonical_decimal(*d)).unwrap_or_default(),
            })
            .collect();
        writer.write_record(&record).expect("csv row into memory");
    }
    String::from_utf8(writer.into_inner().expect("csv flush into memory")).expect("csv writes UTF-8")
}

// ---------------------------------------------------------------------------------------------
// Diff

/// A catalog price in force, as the route reads it from the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentCatalogPrice {
    pub provider: String,
    pub model_id: String,
    /// Numeric columns by name (as in [`CatalogRow::values`]).
    pub values: BTreeMap<String, Decimal>,
    pub effective_from: NaiveDate,
}

/// The route's query parameters that bear on the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOptions {
    /// From when the imported prices apply (CSV rows with their own `effective_from` keep it).
    pub effective_from: NaiveDate,
    /// Apply even when suspicious changes were found.
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ModelRef {
    pub provider: String,
    pub model_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AddedModel {
    pub provider: String,
    pub model_id: String,
    /// Prices by catalog column.
    #[schema(value_type = BTreeMap<String, crate::domain::DecimalText>)]
    pub values: BTreeMap<String, Decimal>,
}

/// One column's old and new price (`None`: no price).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PriceChange {
    pub column: String,
    #[schema(value_type = Option<crate::domain::DecimalText>)]
    pub old: Option<Decimal>,
    #[schema(value_type = Option<crate::domain::DecimalText>)]
    pub new: Option<Decimal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ChangedModel {
    pub provider: String,
    pub model_id: String,
    /// When the version being replaced took effect.
    pub current_effective_from: NaiveDate,
    pub changes: Vec<PriceChange>,
}

/// Why a change looks wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SuspicionRule {
    /// A price moved by more than 10× either way.
    #[serde(rename = "moved_over_10x")]
    MovedOver10x,
    /// A price became zero.
    BecameZero,
    /// Input priced at zero (output may be: embeddings have none).
    ZeroPrice,
    /// A cache write cheaper than the input it caches.
    CacheWriteBelowInput,
    /// A cache read dearer than uncached input.
    CachedInputAboveInput,
    /// A 1 h cache write cheaper than a 5 min one.
    #[serde(rename = "cache_write_1h_below_5m")]
    CacheWrite1hBelow5m,
    /// A batch price above the standard one.
    BatchAboveStandard,
    /// A flex price above the standard one.
    FlexAboveStandard,
    /// A priority price below the standard one.
    PriorityBelowStandard,
    /// A long-context price below the standard one.
    LongContextBelowStandard,
    /// A surcharge multiplier below 1.
    MultiplierBelowOne,
    /// The new version would take effect on or before the one it replaces (rewrites history).
    NotAfterCurrentVersion,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SuspiciousChange {
    pub provider: String,
    pub model_id: String,
    pub rule: SuspicionRule,
    pub columns: Vec<String>,
    pub detail: String,
}

/// What an import would do, as the route answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub format: ImportFormat,
    pub effective_from: NaiveDate,
    pub added: Vec<AddedModel>,
    pub changed: Vec<ChangedModel>,
    pub unchanged: Vec<ModelRef>,
    pub unmapped: Vec<UnmappedField>,
    pub skipped: Vec<SkippedEntry>,
    pub other_provider_entries: usize,
    pub suspicious: Vec<SuspiciousChange>,
    pub forced: bool,
    /// Suspicious changes were found and `force` was not given: nothing may be written.
    pub refused: bool,
}

/// The report and the versions to write when it is not refused (added and changed models, each
/// with its `effective_from` set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportPlan {
    pub report: ImportReport,
    pub writes: Vec<CatalogRow>,
}

impl ImportPlan {
    /// Whether the route may write [`ImportPlan::writes`] (it must still not when `dry_run`).
    pub fn can_apply(&self) -> bool {
        !self.report.refused
    }
}

/// `lower` must not exceed `higher` in one row.
const ORDER_RULES: &[(&str, &str, SuspicionRule)] = &[
    ("cached_input_per_1m", "input_per_1m", SuspicionRule::CachedInputAboveInput),
    ("long_context_cached_input_per_1m", "long_context_input_per_1m", SuspicionRule::CachedInputAboveInput),
    ("batch_cached_input_per_1m", "batch_input_per_1m", SuspicionRule::CachedInputAboveInput),
    ("priority_cached_input_per_1m", "priority_input_per_1m", SuspicionRule::CachedInputAboveInput),
    ("flex_cached_input_per_1m", "flex_input_per_1m", SuspicionRule::CachedInputAboveInput),
    ("audio_cached_input_per_1m", "audio_input_per_1m", SuspicionRule::CachedInputAboveInput),
    ("image_cached_input_per_1m", "image_input_per_1m", SuspicionRule::CachedInputAboveInput),
    ("input_per_1m", "cache_write_5m_per_1m", SuspicionRule::CacheWriteBelowInput),
    ("input_per_1m", "cache_write_1h_per_1m", SuspicionRule::CacheWriteBelowInput),
    ("long_context_input_per_1m", "long_context_cache_write_5m_per_1m", SuspicionRule::CacheWriteBelowInput),
    ("long_context_input_per_1m", "long_context_cache_write_1h_per_1m", SuspicionRule::CacheWriteBelowInput),
    ("batch_input_per_1m", "batch_cache_write_5m_per_1m", SuspicionRule::CacheWriteBelowInput),
    ("cache_write_5m_per_1m", "cache_write_1h_per_1m", SuspicionRule::CacheWrite1hBelow5m),
    ("batch_input_per_1m", "input_per_1m", SuspicionRule::BatchAboveStandard),
    ("batch_output_per_1m", "output_per_1m", SuspicionRule::BatchAboveStandard),
    ("flex_input_per_1m", "input_per_1m", SuspicionRule::FlexAboveStandard),
    ("flex_output_per_1m", "output_per_1m", SuspicionRule::FlexAboveStandard),
    ("input_per_1m", "priority_input_per_1m", SuspicionRule::PriorityBelowStandard),
    ("output_per_1m", "priority_output_per_1m", SuspicionRule::PriorityBelowStandard),
    ("input_per_1m", "long_context_input_per_1m", SuspicionRule::LongContextBelowStandard),
    ("output_per_1m", "long_context_output_per_1m", SuspicionRule::LongContextBelowStandard),
];

const MULTIPLIER_COLUMNS: &[&str] = &["fast_mode_multiplier", "us_inference_multiplier"];

/// Compares the imported rows with the catalog in force and decides what may be written.
/// Models in the catalog but not in the import are left alone (an import may be partial). For a
/// model the CSV gives several versions of, the latest is compared and written; the others are
/// reported as skipped.
pub fn plan_import(parsed: &ParsedImport, current: &[CurrentCatalogPrice], options: ImportOptions) -> ImportPlan {
    let current: BTreeMap<(&str, &str), &CurrentCatalogPrice> =
        current.iter().map(|c| ((c.provider.as_str(), c.model_id.as_str()), c)).collect();
    let mut skipped = parsed.skipped.clone();
    let mut latest: BTreeMap<(String, String), CatalogRow> = BTreeMap::new();
    for row in &parsed.rows {
        let mut row = row.clone();
        row.effective_from = Some(row.effective_from.unwrap_or(options.effective_from));
        let key = (row.provider.clone(), row.model_id.clone());
        match latest.get(&key) {
            Some(kept) if kept.effective_from >= row.effective_from => {
                skipped.push(earlier_version(&row));
            }
            Some(kept) => {
                skipped.push(earlier_version(kept));
                latest.insert(key, row);
            }
            None => {
                latest.insert(key, row);
            }
        }
    }
    let mut report = ImportReport {
        format: parsed.format,
        effective_from: options.effective_from,
        added: Vec::new(),
        changed: Vec::new(),
        unchanged: Vec::new(),
        unmapped: parsed.unmapped.clone(),
        skipped,
        other_provider_entries: parsed.other_provider_entries,
        suspicious: Vec::new(),
        forced: options.force,
        refused: false,
    };
    let mut writes = Vec::new();
    for row in latest.into_values() {
        let key = (row.provider.as_str(), row.model_id.as_str());
        match current.get(&key) {
            None => {
                row_checks(&row, &mut report.suspicious);
                report.added.push(AddedModel {
                    provider: row.provider.clone(),
                    model_id: row.model_id.clone(),
                    values: row.values.clone(),
                });
                writes.push(row);
            }
            Some(now) => {
                let changes = price_changes(&now.values, &row.values);
                if changes.is_empty() {
                    report.unchanged.push(ModelRef { provider: row.provider.clone(), model_id: row.model_id.clone() });
                    continue;
                }
                row_checks(&row, &mut report.suspicious);
                change_checks(&row, &changes, &mut report.suspicious);
                let from = row.effective_from.unwrap_or(options.effective_from);
                if from <= now.effective_from {
                    report.suspicious.push(SuspiciousChange {
                        provider: row.provider.clone(),
                        model_id: row.model_id.clone(),
                        rule: SuspicionRule::NotAfterCurrentVersion,
                        columns: Vec::new(),
                        detail: format!(
                            "the new version would start {from}, the current one started {}",
                            now.effective_from
                        ),
                    });
                }
                report.changed.push(ChangedModel {
                    provider: row.provider.clone(),
                    model_id: row.model_id.clone(),
                    current_effective_from: now.effective_from,
                    changes,
                });
                writes.push(row);
            }
        }
    }
    report.refused = !report.suspicious.is_empty() && !options.force;
    ImportPlan { report, writes }
}

fn earlier_version(row: &CatalogRow) -> SkippedEntry {
    SkippedEntry {
        key: row.model_id.clone(),
        reason: format!(
            "version from {} is not the latest in the file (an import writes a model's latest version)",
            row.effective_from.map(|d| d.to_string()).unwrap_or_default()
        ),
    }
}

fn price_changes(old: &BTreeMap<String, Decimal>, new: &BTreeMap<String, Decimal>) -> Vec<PriceChange> {
    let columns: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    columns
        .into_iter()
        .filter_map(|column| {
            let (o, n) = (old.get(column).copied(), new.get(column).copied());
            (o != n).then(|| PriceChange { column: column.clone(), old: o, new: n })
        })
        .collect()
}

fn suspicious(row: &CatalogRow, rule: SuspicionRule, columns: &[&str], detail: String) -> SuspiciousChange {
    SuspiciousChange {
        provider: row.provider.clone(),
        model_id: row.model_id.clone(),
        rule,
        columns: columns.iter().map(|c| (*c).to_string()).collect(),
        detail,
    }
}

/// Rules one row must meet on its own.
fn row_checks(row: &CatalogRow, out: &mut Vec<SuspiciousChange>) {
    let v = &row.values;
    if v.get("input_per_1m").is_some_and(Decimal::is_zero) {
        out.push(suspicious(row, SuspicionRule::ZeroPrice, &["input_per_1m"], "input_per_1m is 0".into()));
    }
    for (lower, higher, rule) in ORDER_RULES {
        if let (Some(l), Some(h)) = (v.get(*lower), v.get(*higher)) {
            if l > h {
                out.push(suspicious(row, *rule, &[lower, higher], format!("{lower} {l} > {higher} {h}")));
            }
        }
    }
    for column in MULTIPLIER_COLUMNS {
        if let Some(m) = v.get(*column).filter(|m| **m < Decimal::ONE) {
            out.push(suspicious(row, SuspicionRule::MultiplierBelowOne, &[column], format!("{column} is {m}")));
        }
    }
}

/// Rules on a change from the current version.
fn change_checks(row: &CatalogRow, changes: &[PriceChange], out: &mut Vec<SuspiciousChange>) {
    let ten = Decimal::from(10);
    for change in changes {
        let (Some(old), Some(new)) = (change.old, change.new) else { continue };
        let column = change.column.as_str();
        if column == THRESHOLD_COLUMN {
            continue;
        }
        if new.is_zero() && !old.is_zero() {
            out.push(suspicious(row, SuspicionRule::BecameZero, &[column], format!("{column} {old} → 0")));
        } else if !old.is_zero() && (new > old * ten || new * ten < old) {
            out.push(suspicious(
                row,
                SuspicionRule::MovedOver10x,
                &[column],
                format!("{column} {old} → {new} (more than 10×)"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../../tests/fixtures/litellm/model_prices_excerpt.json");

    fn d(text: &str) -> Decimal {
        parse_decimal(text).expect("decimal")
    }

    fn day(text: &str) -> NaiveDate {
        parse_date(text).expect("date")
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, Decimal> {
        pairs.iter().map(|(c, v)| ((*c).to_string(), d(v))).collect()
    }

    fn row<'a>(parsed: &'a ParsedImport, model: &str) -> &'a CatalogRow {
        parsed.rows.iter().find(|r| r.model_id == model).unwrap_or_else(|| panic!("no row for {model}"))
    }

    #[test]
    fn litellm_fixture_maps_to_exact_rows() {
        let parsed = parse_import(FIXTURE, None).expect("fixture parses");
        assert_eq!(parsed.format, ImportFormat::Litellm);
        let ids: Vec<(&str, &str)> = parsed.rows.iter().map(|r| (r.provider.as_str(), r.model_id.as_str())).collect();
        assert_eq!(
            ids,
            [
                ("anthropic", "claude-haiku-5-5"),
                ("anthropic", "claude-opus-4-8"),
                ("anthropic", "claude-sonnet-4-5"),
                ("openai", "gpt-3.5-turbo-instruct"),
                ("openai", "gpt-4o"),
                ("openai", "gpt-5"),
                ("openai", "gpt-5.4"),
                ("openai", "gpt-realtime-mini"),
            ]
        );
        // azure/gpt-4o and vertex_ai/claude-sonnet-4-5
        assert_eq!(parsed.other_provider_entries, 2);
        assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);

        // LiteLLM per token × 1,000,000, by hand: 2.5e-06 → 2.5, 2.125e-06 → 2.125, 1.7e-05 → 17.
        assert_eq!(
            row(&parsed, "gpt-4o").values,
            values(&[
                ("input_per_1m", "2.5"),
                ("cached_input_per_1m", "1.25"),
                ("output_per_1m", "10"),
                ("batch_input_per_1m", "1.25"),
                ("batch_output_per_1m", "5"),
                ("priority_input_per_1m", "4.25"),
                ("priority_cached_input_per_1m", "2.125"),
                ("priority_output_per_1m", "17"),
            ])
        );
        assert_eq!(row(&parsed, "gpt-4o").deprecation_date, Some(day("2027-01-14")));
        assert_eq!(row(&parsed, "gpt-4o").currency, "USD");
        assert_eq!(
            row(&parsed, "gpt-5").values,
            values(&[
                ("input_per_1m", "1.25"),
                ("cached_input_per_1m", "0.125"),
                ("output_per_1m", "10"),
                ("batch_input_per_1m", "0.625"),
                ("batch_cached_input_per_1m", "0.0625"),
                ("batch_output_per_1m", "5"),
                ("flex_input_per_1m", "0.625"),
                ("flex_cached_input_per_1m", "0.0625"),
                ("flex_output_per_1m", "5"),
                ("priority_input_per_1m", "2.5"),
                ("priority_cached_input_per_1m", "0.25"),
                ("priority_output_per_1m", "20"),
                ("web_search_per_1k_requests", "10"),
            ])
        );
        assert_eq!(
            row(&parsed, "gpt-5.4").values,
            values(&[
                ("input_per_1m", "2.5"),
                ("cached_input_per_1m", "0.25"),
                ("output_per_1m", "15"),
                ("long_context_threshold_tokens", "272000"),
                ("long_context_input_per_1m", "5"),
                ("long_context_cached_input_per_1m", "0.5"),
                ("long_context_output_per_1m", "22.5"),
                ("batch_input_per_1m", "1.25"),
                ("batch_cached_input_per_1m", "0.13"),
                ("batch_output_per_1m", "7.5"),
                ("batch_long_context_input_per_1m", "2.5"),
                ("batch_long_context_cached_input_per_1m", "0.25"),
                ("batch_long_context_output_per_1m", "11.25"),
                ("flex_input_per_1m", "1.25"),
                ("flex_cached_input_per_1m", "0.13"),
                ("flex_output_per_1m", "7.5"),
                ("priority_input_per_1m", "5"),
                ("priority_cached_input_per_1m", "0.5"),
                ("priority_output_per_1m", "30"),
            ])
        );
        assert_eq!(
            row(&parsed, "gpt-realtime-mini").values,
            values(&[
                ("input_per_1m", "0.6"),
                ("cached_input_per_1m", "0.06"),
                ("output_per_1m", "2.4"),
                ("audio_input_per_1m", "10"),
                ("audio_cached_input_per_1m", "0.3"),
                ("audio_output_per_1m", "20"),
                ("image_input_per_1m", "0.8"),
                ("image_cached_input_per_1m", "0.08"),
            ])
        );
        assert_eq!(
            row(&parsed, "gpt-3.5-turbo-instruct").values,
            values(&[("input_per_1m", "1.5"), ("output_per_1m", "2")])
        );
        assert_eq!(
            row(&parsed, "claude-sonnet-4-5").values,
            values(&[
                ("input_per_1m", "3"),
                ("cached_input_per_1m", "0.3"),
                ("cache_write_5m_per_1m", "3.75"),
                ("cache_write_1h_per_1m", "6"),
                ("output_per_1m", "15"),
                ("batch_input_per_1m", "1.5"),
                ("batch_cached_input_per_1m", "0.15"),
                ("batch_cache_write_5m_per_1m", "1.875"),
                ("batch_output_per_1m", "7.5"),
                ("web_search_per_1k_requests", "10"),
            ])
        );
        assert_eq!(
            row(&parsed, "claude-opus-4-8").values,
            values(&[
                ("input_per_1m", "5"),
                ("cached_input_per_1m", "0.5"),
                ("cache_write_5m_per_1m", "6.25"),
                ("cache_write_1h_per_1m", "10"),
                ("output_per_1m", "25"),
                ("batch_input_per_1m", "2.5"),
                ("batch_cached_input_per_1m", "0.25"),
                ("batch_cache_write_5m_per_1m", "3.125"),
                ("batch_output_per_1m", "12.5"),
                ("web_search_per_1k_requests", "10"),
                ("fast_mode_multiplier", "2"),
                ("us_inference_multiplier", "1.1"),
            ])
        );
        assert_eq!(
            row(&parsed, "claude-haiku-5-5").values,
            values(&[
                ("input_per_1m", "0.1"),
                ("cached_input_per_1m", "0.01"),
                ("cache_write_5m_per_1m", "0.125"),
                ("cache_write_1h_per_1m", "0.2"),
                ("output_per_1m", "0.5"),
                ("long_context_threshold_tokens", "100000"),
                ("long_context_input_per_1m", "0.5"),
                ("long_context_cached_input_per_1m", "0.05"),
                ("long_context_cache_write_5m_per_1m", "0.625"),
                ("long_context_cache_write_1h_per_1m", "1"),
                ("long_context_output_per_1m", "2.5"),
                ("batch_input_per_1m", "0.05"),
                ("batch_cached_input_per_1m", "0.005"),
                ("batch_cache_write_5m_per_1m", "0.0625"),
                ("batch_output_per_1m", "0.25"),
                ("batch_long_context_input_per_1m", "0.25"),
                ("batch_long_context_cached_input_per_1m", "0.025"),
                ("batch_long_context_cache_write_5m_per_1m", "0.3125"),
                ("batch_long_context_output_per_1m", "1.25"),
                ("web_search_per_1k_requests", "10"),
                ("us_inference_multiplier", "1.1"),
            ])
        );
        // Every column the import fills is a catalog column.
        for r in &parsed.rows {
            for column in r.values.keys() {
                assert!(BookKind::Pricing.column(column).is_some(), "{column}");
            }
        }
    }

    #[test]
    fn litellm_price_fields_without_a_column_are_reported() {
        let parsed = parse_litellm(FIXTURE).expect("fixture parses");
        let unmapped: Vec<(&str, &str, &str)> =
            parsed.unmapped.iter().map(|u| (u.model_id.as_str(), u.field.as_str(), u.value.as_str())).collect();
        assert_eq!(
            unmapped,
            [
                ("gpt-4o", "fedramp_uplift_multiplier", "1.1"),
                ("gpt-5", "fedramp_uplift_multiplier", "1.1"),
                ("gpt-5.4", "cache_read_input_token_cost_above_272k_tokens_flex", "2.5e-07"),
                ("gpt-5.4", "fedramp_uplift_multiplier", "1.1"),
                ("gpt-5.4", "input_cost_per_token_above_272k_tokens_flex", "2.5e-06"),
                ("gpt-5.4", "output_cost_per_token_above_272k_tokens_flex", "1.125e-05"),
                ("gpt-5.4", "regional_processing_uplift_multiplier_eu", "1.1"),
                ("gpt-5.4", "regional_processing_uplift_multiplier_us", "1.1"),
                // OpenAI bills cached audio, not audio cache writes: no column.
                ("gpt-realtime-mini", "cache_creation_input_audio_token_cost", "3e-07"),
            ]
        );
    }

    #[test]
    fn litellm_prefixed_duplicates_other_modes_and_bad_values() {
        let body = r#"{
            "anthropic/claude-x-1": {"litellm_provider": "anthropic", "mode": "chat",
                "input_cost_per_token": 1e-06, "output_cost_per_token": 5e-06},
            "claude-x-1": {"litellm_provider": "anthropic", "mode": "chat",
                "input_cost_per_token": 2e-06, "output_cost_per_token": 4e-06},
            "anthropic/claude-y-1": {"litellm_provider": "anthropic",
                "input_cost_per_token": 0.000003, "output_cost_per_token": "free",
                "output_cost_per_image": 0.04},
            "dall-e-9": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.04},
            "gpt-tiny": {"litellm_provider": "openai", "mode": "chat",
                "input_cost_per_token": 1e-16, "output_cost_per_token": 1e-06},
            "sample_spec": {"litellm_provider": "one of the providers", "input_cost_per_token": 0.0}
        }"#;
        let parsed = parse_import(body, None).expect("parses");
        // The unprefixed key wins over its prefixed twin.
        assert_eq!(parsed.rows.len(), 1);
        assert_eq!(parsed.rows[0].model_id, "claude-x-1");
        assert_eq!(parsed.rows[0].values, values(&[("input_per_1m", "2"), ("output_per_1m", "4")]));
        let skipped: Vec<&str> = parsed.skipped.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(skipped, ["anthropic/claude-y-1", "anthropic/claude-x-1", "dall-e-9", "gpt-tiny"]);
        assert!(parsed.skipped[0].reason.contains("no input_cost_per_token"));
        assert!(parsed.skipped[1].reason.contains("duplicate"));
        assert!(parsed.skipped[2].reason.contains("image_generation"));
        let unmapped: Vec<(&str, &str)> =
            parsed.unmapped.iter().map(|u| (u.field.as_str(), u.reason.as_str())).collect();
        assert_eq!(
            unmapped,
            [
                ("output_cost_per_image", "no column for this price"),
                ("output_cost_per_token", "not a number"),
                ("input_per_1m", "input_per_1m has more than 9 decimal places (got 0.0000000001)"),
            ]
        );
        assert_eq!(parsed.other_provider_entries, 1);
        assert!(matches!(parse_import("{ not json", None), Err(ImportError::Json(_))));
        assert_eq!(parse_import("  ", None), Err(ImportError::Empty));
    }

    fn current(model: &str, pairs: &[(&str, &str)], from: &str) -> CurrentCatalogPrice {
        CurrentCatalogPrice {
            provider: if model.starts_with("claude") { "anthropic" } else { "openai" }.into(),
            model_id: model.into(),
            values: values(pairs),
            effective_from: day(from),
        }
    }

    /// The catalog in force: gpt-4o as LiteLLM has it, gpt-5 at an older input price, and
    /// claude-sonnet-4-5 with a cache-read price 10× off in the other direction.
    fn hand_made_catalog(parsed: &ParsedImport) -> Vec<CurrentCatalogPrice> {
        let mut gpt5 = row(parsed, "gpt-5").values.clone();
        gpt5.insert("input_per_1m".into(), d("2.00"));
        let mut sonnet = row(parsed, "claude-sonnet-4-5").values.clone();
        sonnet.insert("cached_input_per_1m".into(), d("3.50"));
        vec![
            CurrentCatalogPrice {
                provider: "openai".into(),
                model_id: "gpt-4o".into(),
                values: row(parsed, "gpt-4o").values.clone(),
                effective_from: day("2024-05-13"),
            },
            CurrentCatalogPrice {
                provider: "openai".into(),
                model_id: "gpt-5".into(),
                values: gpt5,
                effective_from: day("2025-08-07"),
            },
            CurrentCatalogPrice {
                provider: "anthropic".into(),
                model_id: "claude-sonnet-4-5".into(),
                values: sonnet,
                effective_from: day("2025-09-29"),
            },
        ]
    }

    #[test]
    fn diff_against_the_catalog_reports_added_changed_unchanged_and_refuses_10x() {
        let parsed = parse_litellm(FIXTURE).expect("fixture parses");
        let catalog = hand_made_catalog(&parsed);
        let options = ImportOptions { effective_from: day("2026-12-01"), force: false };
        let plan = plan_import(&parsed, &catalog, options);
        let report = &plan.report;
        let added: Vec<&str> = report.added.iter().map(|a| a.model_id.as_str()).collect();
        assert_eq!(
            added,
            ["claude-haiku-5-5", "claude-opus-4-8", "gpt-3.5-turbo-instruct", "gpt-5.4", "gpt-realtime-mini"]
        );
        assert_eq!(report.unchanged, [ModelRef { provider: "openai".into(), model_id: "gpt-4o".into() }]);
        assert_eq!(
            report.changed,
            [
                ChangedModel {
                    provider: "anthropic".into(),
                    model_id: "claude-sonnet-4-5".into(),
                    current_effective_from: day("2025-09-29"),
                    changes: vec![PriceChange {
                        column: "cached_input_per_1m".into(),
                        old: Some(d("3.50")),
                        new: Some(d("0.3")),
                    }],
                },
                ChangedModel {
                    provider: "openai".into(),
                    model_id: "gpt-5".into(),
                    current_effective_from: day("2025-08-07"),
                    changes: vec![PriceChange {
                        column: "input_per_1m".into(),
                        old: Some(d("2.00")),
                        new: Some(d("1.25")),
                    }],
                },
            ]
        );
        // 3.50 → 0.30 is 11.7× down; 2.00 → 1.25 is an ordinary cut.
        assert_eq!(report.suspicious.len(), 1, "{:?}", report.suspicious);
        assert_eq!(report.suspicious[0].model_id, "claude-sonnet-4-5");
        assert_eq!(report.suspicious[0].rule, SuspicionRule::MovedOver10x);
        assert!(report.refused);
        assert!(!plan.can_apply());
        assert_eq!(report.unmapped.len(), 9);
        assert_eq!(report.other_provider_entries, 2);

        let forced = plan_import(&parsed, &catalog, ImportOptions { force: true, ..options });
        assert!(forced.can_apply());
        assert!(forced.report.forced);
        assert_eq!(forced.report.suspicious, report.suspicious);
        let writes: Vec<(&str, Option<NaiveDate>)> =
            forced.writes.iter().map(|w| (w.model_id.as_str(), w.effective_from)).collect();
        let from = Some(day("2026-12-01"));
        assert_eq!(
            writes,
            [
                ("claude-haiku-5-5", from),
                ("claude-opus-4-8", from),
                ("claude-sonnet-4-5", from),
                ("gpt-3.5-turbo-instruct", from),
                ("gpt-5", from),
                ("gpt-5.4", from),
                ("gpt-realtime-mini", from),
            ]
        );
        // The report is what the route returns.
        let json = serde_json::to_value(&forced.report).expect("serializes");
        assert_eq!(json["changed"][1]["changes"][0]["old"], "2.00");
        assert_eq!(json["changed"][1]["changes"][0]["new"], "1.25");
        assert_eq!(json["suspicious"][0]["rule"], "moved_over_10x");
        assert_eq!(json["format"], "litellm");
    }

    #[test]
    fn rows_that_look_wrong_are_suspicious() {
        let mut parsed = parse_import(
            "model_id,currency,input_per_1m,cached_input_per_1m,cache_write_5m_per_1m,cache_write_1h_per_1m,output_per_1m,\
             batch_input_per_1m,us_inference_multiplier\n\
             claude-odd,USD,3.00,4.00,2.00,1.00,0,3.50,0.9\n",
            Some("anthropic"),
        )
        .expect("parses");
        let plan = plan_import(&parsed, &[], ImportOptions { effective_from: day("2026-01-01"), force: false });
        let rules: Vec<SuspicionRule> = plan.report.suspicious.iter().map(|s| s.rule).collect();
        assert_eq!(
            rules,
            [
                SuspicionRule::CachedInputAboveInput,
                SuspicionRule::CacheWriteBelowInput,
                SuspicionRule::CacheWriteBelowInput,
                SuspicionRule::CacheWrite1hBelow5m,
                SuspicionRule::BatchAboveStandard,
                SuspicionRule::MultiplierBelowOne,
            ]
        );
        assert!(plan.report.refused);

        // A change dated on or before the version it replaces, and prices that became zero.
        parsed.rows[0].values = values(&[("input_per_1m", "0"), ("output_per_1m", "0")]);
        let now = current("claude-odd", &[("input_per_1m", "3"), ("output_per_1m", "15")], "2026-02-01");
        let plan = plan_import(&parsed, &[now], ImportOptions { effective_from: day("2026-02-01"), force: false });
        let rules: Vec<SuspicionRule> = plan.report.suspicious.iter().map(|s| s.rule).collect();
        assert_eq!(
            rules,
            [
                SuspicionRule::ZeroPrice,
                SuspicionRule::BecameZero,
                SuspicionRule::BecameZero,
                SuspicionRule::NotAfterCurrentVersion
            ]
        );
    }

    const SEED_HEADER: &str = "model_id,currency,input_per_1m,cached_input_per_1m,cache_write_5m_per_1m,\
        cache_write_1h_per_1m,output_per_1m,batch_input_per_1m,batch_output_per_1m,long_context_threshold_tokens,\
        long_context_input_per_1m,long_context_cached_input_per_1m,long_context_cache_write_5m_per_1m,\
        long_context_cache_write_1h_per_1m,long_context_output_per_1m,deprecation_date,notes,effective_from,effective_to";

    #[test]
    fn csv_reads_the_seed_format_and_round_trips() {
        let text = format!(
            "{SEED_HEADER}\n\
             o3,USD,10.00,2.50,,,40.00,5.00,20.00,,,,,,,,\"OpenAI pricing, before the cut\",2025-04-16,2025-06-10\n\
             o3,USD,2.00,0.50,,,8.00,1.00,4.00,,,,,,,,OpenAI pricing 2025-06-10,2025-06-10,\n\
             gpt-4.1,USD,2.00,0.50,,,8.00,1.00,4.00,200000,4.00,1.00,,,16.00,2026-04-14,,2025-04-14,\n"
        );
        let parsed = parse_import(&text, Some("openai")).expect("seed format parses");
        assert_eq!(parsed.format, ImportFormat::Csv);
        assert_eq!(parsed.rows.len(), 3);
        let old_o3 = &parsed.rows[0];
        assert_eq!(old_o3.notes.as_deref(), Some("OpenAI pricing, before the cut"));
        assert_eq!(old_o3.effective_to, Some(day("2025-06-10")));
        assert_eq!(old_o3.values["input_per_1m"], d("10"));
        assert_eq!(parsed.rows[2].values["long_context_threshold_tokens"], d("200000"));
        assert_eq!(parsed.rows[2].deprecation_date, Some(day("2026-04-14")));

        let written = write_catalog_csv("openai", &parsed.rows);
        // Every catalog column, then the dates.
        let columns: Vec<&str> = BookKind::Pricing.columns().iter().map(|c| c.name).collect();
        assert!(written.starts_with(&format!("{},effective_from,effective_to\n", columns.join(","))), "{written}");
        let again = parse_import(&written, Some("openai")).expect("written CSV parses");
        assert_eq!(again.rows, parsed.rows);

        // The billed dimensions' columns and a provider column survive the trip too.
        let text = "provider,model_id,currency,input_per_1m,output_per_1m,priority_input_per_1m,fast_mode_multiplier\n\
                    anthropic,claude-opus-4-8,USD,5,25,,2\n";
        let parsed = parse_import(text, None).expect("parses");
        assert_eq!(parsed.rows[0].values["fast_mode_multiplier"], d("2"));
        let again = parse_import(&write_catalog_csv("anthropic", &parsed.rows), Some("anthropic")).expect("parses");
        assert_eq!(again.rows, parsed.rows);

        // The CSV's latest version of a model is compared and written; the earlier one is skipped.
        let text = format!(
            "{SEED_HEADER}\n\
             o3,USD,10.00,2.50,,,40.00,,,,,,,,,,,2025-04-16,2025-06-10\n\
             o3,USD,2.00,0.50,,,8.00,,,,,,,,,,,2025-06-10,\n"
        );
        let parsed = parse_import(&text, Some("openai")).expect("parses");
        let plan = plan_import(&parsed, &[], ImportOptions { effective_from: day("2026-01-01"), force: false });
        assert_eq!(plan.writes.len(), 1);
        assert_eq!(plan.writes[0].effective_from, Some(day("2025-06-10")));
        assert_eq!(plan.report.skipped.len(), 1);
    }

    /// The import's CSV format is the seed format: every shipped seed reads and round-trips.
    #[test]
    fn shipped_seed_csvs_are_import_csvs() {
        let seeds = [
            ("openai", include_str!("../../../configs/openai/seed/data/default_pricing.csv")),
            ("anthropic", include_str!("../../../configs/anthropic/seed/data/default_pricing.csv")),
        ];
        for (provider, text) in seeds {
            let parsed = parse_import(text, Some(provider)).unwrap_or_else(|e| panic!("{provider}: {e}"));
            assert!(parsed.rows.len() > 1, "{provider}");
            let again = parse_import(&write_catalog_csv(provider, &parsed.rows), Some(provider)).expect("round trip");
            assert_eq!(again.rows, parsed.rows, "{provider}");
        }
    }

    #[test]
    fn csv_problems_are_all_reported_with_their_line() {
        let text = "model_id,currency,input_per_1m,output_per_1m,mystery\nx,USD,1,2,3\n";
        assert_eq!(
            parse_import(text, Some("openai")),
            Err(ImportError::Csv(vec!["header: unknown column \"mystery\"".into()]))
        );
        assert!(matches!(
            parse_import("model_id,currency,input_per_1m,output_per_1m\n", None),
            Err(ImportError::Csv(_))
        ));
        let text = "model_id,currency,input_per_1m,output_per_1m,effective_from,effective_to\n\
                    gpt-x,USD,-1,2,2026-01-01,2025-01-01\n\
                    bad id!,EURO,1,,2026-13-01,\n\
                    gpt-y,USD,1\n";
        let Err(ImportError::Csv(problems)) = parse_import(text, Some("openai")) else { panic!("must fail") };
        assert_eq!(problems.len(), 7, "{problems:?}");
        assert!(problems[0].starts_with("line 2: input_per_1m must not be negative"), "{problems:?}");
        assert_eq!(problems[1], "line 2: effective_to must be after effective_from");
        assert!(problems[2].starts_with("line 3: model_id \"bad id!\" is malformed"), "{problems:?}");
        assert!(problems[3].starts_with("line 3: currency \"EURO\" is unknown"), "{problems:?}");
        assert_eq!(problems[4], "line 3: output_per_1m is required");
        assert!(problems[5].starts_with("line 3: effective_from must be a date"), "{problems:?}");
        assert!(problems[6].starts_with("line 4: "), "{problems:?}");
    }
}
