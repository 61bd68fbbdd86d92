//! What a price-book row holds, column by column, and how one value is checked: the same rules
//! for the seed CSVs (checked at start-up) and for API input (checked per request), so a price
//! the API refuses can never ship as a default either.

use std::sync::LazyLock;

use chrono::NaiveDate;

use regex::Regex;
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::schema::{FieldType, Mode, TableSchema};

/// The two books each LLM provider has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookKind {
    /// Per-model token prices, keyed by `model_id`.
    Pricing,
    /// Plans and usage tiers, keyed by `plan_name`.
    Subscriptions,
}

impl BookKind {
    /// The table in the organization's dataset, e.g. `openai_model_pricing`.
    pub fn table(self, provider: &str) -> String {
        match self {
            BookKind::Pricing => format!("{provider}_model_pricing"),
            BookKind::Subscriptions => format!("{provider}_subscription_plans"),
        }
    }

    /// The seed CSV under `configs/{provider}/seed/data/`.
    pub fn csv_file(self) -> &'static str {
        match self {
            BookKind::Pricing => "default_pricing.csv",
            BookKind::Subscriptions => "default_subscriptions.csv",
        }
    }

    /// The column that names an entry (one current version per value).
    pub fn key_column(self) -> &'static str {
        match self {
            BookKind::Pricing => "model_id",
            BookKind::Subscriptions => "plan_name",
        }
    }

    /// `pricing` / `subscriptions`: the URL segment and the list's JSON key.
    pub fn noun(self) -> &'static str {
        match self {
            BookKind::Pricing => "pricing",
            BookKind::Subscriptions => "subscriptions",
        }
    }

    /// `model` / `plan`, for messages.
    pub fn entry(self) -> &'static str {
        match self {
            BookKind::Pricing => "model",
            BookKind::Subscriptions => "plan",
        }
    }

    /// The value columns (key first), in CSV order.
    pub fn columns(self) -> &'static [Column] {
        match self {
            BookKind::Pricing => PRICING_COLUMNS,
            BookKind::Subscriptions => SUBSCRIPTION_COLUMNS,
        }
    }

    pub fn column(self, name: &str) -> Option<&'static Column> {
        self.columns().iter().find(|c| c.name == name)
    }
}

/// How a column's value is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The entry key: a model id or a plan name.
    Key,
    /// A non-negative decimal amount (NUMERIC: at most 9 decimal places).
    Money,
    /// An ISO 4217 code from [`CURRENCIES`].
    Currency,
    /// A positive whole number.
    Count,
    /// A positive decimal factor applied to rates (NUMERIC: at most 9 decimal places).
    Factor,
    /// `YYYY-MM-DD`.
    Date,
    /// One of a fixed list.
    OneOf(&'static [&'static str]),
    /// Free text, at most 500 characters, no control characters.
    Text,
}

impl Kind {
    /// Whether a value of this kind bears on what usage costs (amounts, factors, thresholds).
    pub fn is_price(self) -> bool {
        matches!(self, Kind::Money | Kind::Factor | Kind::Count)
    }
}

#[derive(Debug)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
}

const fn col(name: &'static str, kind: Kind, required: bool) -> Column {
    Column { name, kind, required }
}

pub const PLAN_TYPES: &[&str] = &["api_usage_tier", "seat", "pay_as_you_go", "contract"];
pub const BILLING_CYCLES: &[&str] = &["monthly", "annual"];

static PRICING_COLUMNS: &[Column] = &[
    col("model_id", Kind::Key, true),
    col("currency", Kind::Currency, true),
    col("input_per_1m", Kind::Money, true),
    col("cached_input_per_1m", Kind::Money, false),
    col("cache_write_5m_per_1m", Kind::Money, false),
    col("cache_write_1h_per_1m", Kind::Money, false),
    col("output_per_1m", Kind::Money, true),
    col("batch_input_per_1m", Kind::Money, false),
    col("batch_output_per_1m", Kind::Money, false),
    col("long_context_threshold_tokens", Kind::Count, false),
    col("long_context_input_per_1m", Kind::Money, false),
    col("long_context_cached_input_per_1m", Kind::Money, false),
    col("long_context_cache_write_5m_per_1m", Kind::Money, false),
    col("long_context_cache_write_1h_per_1m", Kind::Money, false),
    col("long_context_output_per_1m", Kind::Money, false),
    // Batch combined with cache reads/writes and with long context (issue 14 §3).
    col("batch_cached_input_per_1m", Kind::Money, false),
    col("batch_cache_write_5m_per_1m", Kind::Money, false),
    col("batch_cache_write_1h_per_1m", Kind::Money, false),
    col("batch_long_context_input_per_1m", Kind::Money, false),
    col("batch_long_context_cached_input_per_1m", Kind::Money, false),
    col("batch_long_context_cache_write_5m_per_1m", Kind::Money, false),
    col("batch_long_context_cache_write_1h_per_1m", Kind::Money, false),
    col("batch_long_context_output_per_1m", Kind::Money, false),
    // OpenAI's priority and flex service tiers.
    col("priority_input_per_1m", Kind::Money, false),
    col("priority_cached_input_per_1m", Kind::Money, false),
    col("priority_output_per_1m", Kind::Money, false),
    col("flex_input_per_1m", Kind::Money, false),
    col("flex_cached_input_per_1m", Kind::Money, false),
    col("flex_output_per_1m", Kind::Money, false),
    // OpenAI's audio and image tokens (standard tier).
    col("audio_input_per_1m", Kind::Money, false),
    col("audio_cached_input_per_1m", Kind::Money, false),
    col("audio_output_per_1m", Kind::Money, false),
    col("image_input_per_1m", Kind::Money, false),
    col("image_cached_input_per_1m", Kind::Money, false),
    col("image_output_per_1m", Kind::Money, false),
    // Per request, not per token: USD per 1,000 web-search requests (Anthropic).
    col("web_search_per_1k_requests", Kind::Money, false),
    // Anthropic: factors on every token rate of the row for speed `fast` / inference_geo `us`.
    col("fast_mode_multiplier", Kind::Factor, false),
    col("us_inference_multiplier", Kind::Factor, false),
    col("deprecation_date", Kind::Date, false),
    col("notes", Kind::Text, false),
];

static SUBSCRIPTION_COLUMNS: &[Column] = &[
    col("plan_name", Kind::Key, true),
    col("display_name", Kind::Text, false),
    col("plan_type", Kind::OneOf(PLAN_TYPES), true),
    col("currency", Kind::Currency, true),
    col("seat_price_monthly", Kind::Money, false),
    col("billing_cycle", Kind::OneOf(BILLING_CYCLES), false),
    col("min_seats", Kind::Count, false),
    // The organization's own seat count, effective-dated like every value of the book: what the
    // monthly subscriptions run bills (`openai.subscriptions`); empty in the defaults.
    col("seats", Kind::Count, false),
    col("monthly_usage_limit", Kind::Money, false),
    col("qualification", Kind::Text, false),
    col("notes", Kind::Text, false),
];

/// Versioning columns every book table has besides its value columns (written by the code,
/// never by a caller).
pub const VERSION_COLUMNS: &[(&str, FieldType, Mode)] = &[
    ("version_id", FieldType::String, Mode::Required),
    ("org_slug", FieldType::String, Mode::Required),
    ("provider", FieldType::String, Mode::Required),
    ("version", FieldType::Int64, Mode::Required),
    ("effective_from", FieldType::Date, Mode::Required),
    ("effective_to", FieldType::Date, Mode::Nullable),
    ("source", FieldType::String, Mode::Required),
    ("created_at", FieldType::Timestamp, Mode::Required),
    ("created_by", FieldType::String, Mode::Required),
    ("closed_at", FieldType::Timestamp, Mode::Nullable),
    ("closed_by", FieldType::String, Mode::Nullable),
];

/// Currencies a price may be in. A code outside this list is far more likely a typo than a
/// currency someone bills LLM usage in.
pub const CURRENCIES: &[&str] = &[
    "USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "CNY", "HKD",
    "SGD", "KRW", "INR", "IDR", "THB", "MYR", "PHP", "TWD", "BRL", "MXN", "ARS", "CLP", "COP", "ZAR", "AED", "SAR",
    "ILS", "TRY",
];

/// Largest amount accepted: far above any real price, far below NUMERIC's limit.
const MAX_MONEY: i64 = 1_000_000_000_000;

/// Largest rate factor accepted (fast mode is 6×; a factor of thousands is a typo).
const MAX_FACTOR: i64 = 1_000;

static MODEL_ID_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$").expect("model id pattern"));
static PLAN_NAME_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9_.-]{0,63}$").expect("plan name pattern"));

/// Checks an entry key (a model id or plan name), as it appears in a path or a body.
pub fn check_key(kind: BookKind, key: &str) -> Result<(), String> {
    let ok = match kind {
        BookKind::Pricing => MODEL_ID_RE.is_match(key),
        BookKind::Subscriptions => PLAN_NAME_RE.is_match(key),
    };
    if ok {
        Ok(())
    } else {
        Err(match kind {
            BookKind::Pricing => format!(
                "model_id {key:?} is malformed: use the provider's model id (letters, digits, '.', '_', ':', '-'; \
                 at most 128 characters; e.g. gpt-4o-mini)"
            ),
            BookKind::Subscriptions => format!(
                "plan_name {key:?} is malformed: use lowercase letters, digits, '_', '.', '-' (at most 64; e.g. tier_1)"
            ),
        })
    }
}

/// One input value before it is checked: text from a CSV cell or a JSON string, or the literal
/// text of a JSON number (never an f64, so `0.1` stays exactly `0.1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Null,
    Text(String),
    Number(String),
}

/// Parses a decimal exactly from its text: plain (`2.50`) or with an exponent (`2.5e-1`).
pub fn parse_decimal(text: &str) -> Option<Decimal> {
    let t = text.trim();
    if t.is_empty() || t.starts_with('+') {
        return None;
    }
    if t.contains(['e', 'E']) {
        Decimal::from_scientific(t).ok()
    } else {
        Decimal::from_str_exact(t).ok()
    }
}

/// Checks one value against its column. `Ok(Value::Null)` for an absent optional value; the
/// error names the column and says what a valid value looks like.
pub fn check_value(kind: BookKind, column: &Column, input: &Input) -> Result<Value, String> {
    let name = column.name;
    let text = match input {
        Input::Null => None,
        Input::Text(t) if t.trim().is_empty() => None,
        Input::Text(t) => Some(t.trim().to_string()),
        Input::Number(n) => Some(n.clone()),
    };
    let Some(text) = text else {
        return if column.required { Err(format!("{name} is required")) } else { Ok(Value::Null) };
    };
    let is_number = matches!(input, Input::Number(_));
    let want_text = |what: &str| -> Result<(), String> {
        if is_number {
            Err(format!("{name} must be a string ({what})"))
        } else {
            Ok(())
        }
    };
    match column.kind {
        Kind::Key => {
            want_text("a name")?;
            check_key(kind, &text)?;
            Ok(Value::String(text))
        }
        Kind::Money => {
            let d = parse_decimal(&text)
                .ok_or_else(|| format!("{name} must be a decimal number such as \"2.50\" (got {text:?})"))?;
            if d.is_sign_negative() && !d.is_zero() {
                return Err(format!("{name} must not be negative (got {text})"));
            }
            if d.normalize().scale() > 9 {
                return Err(format!("{name} has more than 9 decimal places (got {text})"));
            }
            if d > Decimal::from(MAX_MONEY) {
                return Err(format!("{name} is implausibly large (got {text})"));
            }
            Ok(Value::String(canonical_decimal(d)))
        }
        Kind::Factor => {
            let d = parse_decimal(&text)
                .ok_or_else(|| format!("{name} must be a decimal factor such as \"1.10\" (got {text:?})"))?;
            if d <= Decimal::ZERO {
                return Err(format!("{name} must be above 0 (got {text})"));
            }
            if d.normalize().scale() > 9 {
                return Err(format!("{name} has more than 9 decimal places (got {text})"));
            }
            if d > Decimal::from(MAX_FACTOR) {
                return Err(format!("{name} is implausibly large (got {text})"));
            }
            Ok(Value::String(canonical_decimal(d)))
        }
        Kind::Count => {
            let n: i64 = text
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{name} must be a positive whole number (got {text:?})"))?;
            Ok(Value::from(n))
        }
        Kind::Currency => {
            want_text("an ISO 4217 code")?;
            if CURRENCIES.contains(&text.as_str()) {
                Ok(Value::String(text))
            } else {
                Err(format!("currency {text:?} is unknown: use an ISO 4217 code such as USD or EUR"))
            }
        }
        Kind::Date => {
            want_text("YYYY-MM-DD")?;
            parse_date(&text)
                .map(|d| Value::String(d.format("%Y-%m-%d").to_string()))
                .ok_or_else(|| format!("{name} must be a date YYYY-MM-DD (got {text:?})"))
        }
        Kind::OneOf(options) => {
            want_text("one of the listed values")?;
            if options.contains(&text.as_str()) {
                Ok(Value::String(text))
            } else {
                Err(format!("{name} must be one of {} (got {text:?})", options.join(", ")))
            }
        }
        Kind::Text => {
            want_text("text")?;
            if text.chars().count() > 500 || text.chars().any(char::is_control) {
                Err(format!("{name} must be at most 500 characters without control characters"))
            } else {
                Ok(Value::String(text))
            }
        }
    }
}

/// A `YYYY-MM-DD` date between 1970 and 9999 (the one date rule of every API and file).
pub use crate::domain::parse_date;

/// The canonical text of an amount: exact, trailing zeros dropped, at least two decimals
/// (`2.5` → `"2.50"`, `0.075` → `"0.075"`, `0` → `"0.00"`).
pub fn canonical_decimal(d: Decimal) -> String {
    let mut n = d.normalize();
    if n.is_zero() {
        n = Decimal::ZERO;
    }
    if n.scale() < 2 {
        n.rescale(2);
    }
    n.to_string()
}

/// A checked entry: value column → canonical JSON value (Money as decimal strings).
pub type Entry = Map<String, Value>;

/// Checks a whole entry given as (column, input) pairs: unknown columns, missing required
/// columns and bad values are all reported, each naming its column.
pub fn check_entry<'a>(
    kind: BookKind,
    values: impl IntoIterator<Item = (&'a str, Input)>,
) -> Result<Entry, Vec<String>> {
    let mut entry = Entry::new();
    let mut problems = Vec::new();
    for (name, input) in values {
        match kind.column(name) {
            Some(column) => match check_value(kind, column, &input) {
                Ok(v) => {
                    entry.insert(name.to_string(), v);
                }
                Err(e) => problems.push(e),
            },
            None => problems.push(format!(
                "{name} is not a {} field; use {}",
                kind.noun(),
                kind.columns().iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
            )),
        }
    }
    for column in kind.columns() {
        if column.required && !entry.contains_key(column.name) && !problems.iter().any(|p| p.starts_with(column.name)) {
            problems.push(format!("{} is required", column.name));
        }
    }
    cross_checks(kind, &entry, &mut problems);
    if problems.is_empty() {
        Ok(entry)
    } else {
        Err(problems)
    }
}

/// Rules between columns.
pub fn cross_checks(kind: BookKind, entry: &Entry, problems: &mut Vec<String>) {
    if kind == BookKind::Pricing {
        let has = |c: &str| entry.get(c).is_some_and(|v| !v.is_null());
        let any_long =
            kind.columns().iter().any(|c| c.name.contains("long_context_") && c.kind == Kind::Money && has(c.name));
        if any_long && !has("long_context_threshold_tokens") {
            problems.push(
                "long_context_threshold_tokens is required when a long_context_* or batch_long_context_* price is set"
                    .into(),
            );
        }
    }
}

/// Whether a table schema has every column the book writes, with the right types.
pub fn schema_problems(kind: BookKind, schema: &TableSchema) -> Vec<String> {
    table_problems(VERSION_COLUMNS, kind, schema)
}

/// Versioning columns of the central price catalog (`price_catalog`) besides the pricing
/// columns: one row per version of one provider's model. A version is never changed in place
/// except to mark it superseded (a later load of the catalog corrected it); readers see only
/// versions with no `superseded_at`.
pub const CATALOG_VERSION_COLUMNS: &[(&str, FieldType, Mode)] = &[
    ("version_id", FieldType::String, Mode::Required),
    ("provider", FieldType::String, Mode::Required),
    ("version", FieldType::Int64, Mode::Required),
    ("effective_from", FieldType::Date, Mode::Required),
    ("effective_to", FieldType::Date, Mode::Nullable),
    ("source", FieldType::String, Mode::Required),
    ("created_at", FieldType::Timestamp, Mode::Required),
    ("created_by", FieldType::String, Mode::Required),
    ("superseded_at", FieldType::Timestamp, Mode::Nullable),
    ("superseded_by", FieldType::String, Mode::Nullable),
];

/// Whether the catalog table's schema has every column the catalog writes, with the right types.
pub fn catalog_schema_problems(schema: &TableSchema) -> Vec<String> {
    table_problems(CATALOG_VERSION_COLUMNS, BookKind::Pricing, schema)
}

fn table_problems(version_columns: &[(&str, FieldType, Mode)], kind: BookKind, schema: &TableSchema) -> Vec<String> {
    let mut problems = Vec::new();
    let mut expect = |name: &str, t: FieldType, required: bool| match schema.field(name) {
        None => problems.push(format!("column {name} is missing")),
        Some(f) if f.field_type != t => problems.push(format!("column {name} must be {t:?}")),
        Some(f) if required != (f.mode == Mode::Required) => {
            problems.push(format!("column {name} must be {}", if required { "REQUIRED" } else { "NULLABLE" }))
        }
        Some(_) => {}
    };
    for (name, t, mode) in version_columns {
        expect(name, *t, *mode == Mode::Required);
    }
    for c in kind.columns() {
        let t = match c.kind {
            Kind::Money | Kind::Factor => FieldType::Numeric,
            Kind::Count => FieldType::Int64,
            Kind::Date => FieldType::Date,
            _ => FieldType::String,
        };
        expect(c.name, t, c.required);
    }
    for f in &schema.fields {
        if kind.column(&f.name).is_none() && !version_columns.iter().any(|(n, _, _)| *n == f.name) {
            problems.push(format!("column {} is not one the price book writes", f.name));
        }
    }
    problems
}

/// The line a record starts on. The `csv` crate's own line count stops at the end of the
/// previous record (blank lines and a CRLF's second byte are not counted), so the line is counted
/// here from the byte offset it reports, past the line breaks that precede the record.
fn line_at(text: &str, byte: u64) -> usize {
    let bytes = text.as_bytes();
    let mut i = usize::try_from(byte).unwrap_or(usize::MAX).min(bytes.len());
    while i < bytes.len() && matches!(bytes[i], b'\r' | b'\n') {
        i += 1;
    }
    1 + bytes[..i].iter().filter(|b| **b == b'\n').count()
}

/// A data record of a CSV file: the line it starts on and its cells.
type CsvRecord = (usize, Vec<String>);

/// Reads CSV text with the `csv` crate (RFC 4180: `"` quotes, `""` inside, CRLF or LF): the
/// header, then (line number, cells) per non-blank record. A malformed file is one problem naming
/// its line.
fn read_csv(text: &str) -> Result<(Vec<String>, Vec<CsvRecord>), Vec<String>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut records = Vec::new();
    for result in reader.records() {
        let record = result.map_err(|e| {
            vec![match e.position() {
                Some(p) => format!("line {}: {e}", p.line()),
                None => e.to_string(),
            }]
        })?;
        let line = record.position().map_or(0, |p| line_at(text, p.byte()));
        let cells: Vec<String> = record.iter().map(str::to_string).collect();
        if cells.len() == 1 && cells[0].trim().is_empty() {
            continue;
        }
        records.push((line, cells));
    }
    let mut records = records.into_iter();
    let Some((_, header)) = records.next() else {
        return Err(vec!["the file is empty: it needs a header line".into()]);
    };
    Ok((header.iter().map(|h| h.trim().to_string()).collect(), records.collect()))
}

/// One checked data row of a price file: its line, the entry, and the cells of the extra columns
/// (in the order asked for).
type CheckedRow = (usize, Entry, Vec<String>);

/// Parses and checks a price file whose header holds the book's columns plus `extra` (any order,
/// all present). Every problem carries its line: Err for a file that cannot be read row by row,
/// else the valid rows and the problems of the others.
fn parse_price_file(kind: BookKind, text: &str, extra: &[&str]) -> Result<(Vec<CheckedRow>, Vec<String>), Vec<String>> {
    let (header, rows) = read_csv(text)?;
    let mut problems = Vec::new();
    for h in &header {
        if kind.column(h).is_none() && !extra.contains(&h.as_str()) {
            problems.push(format!("line 1: column {h:?} is not a {} column", kind.noun()));
        }
    }
    for name in kind.columns().iter().map(|c| c.name).chain(extra.iter().copied()) {
        if !header.iter().any(|h| h == name) {
            problems.push(format!("line 1: column {name} is missing"));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut out = Vec::new();
    for (line, cells) in rows {
        if cells.len() != header.len() {
            problems.push(format!("line {line}: {} values for {} columns", cells.len(), header.len()));
            continue;
        }
        let values = header
            .iter()
            .zip(&cells)
            .filter(|(h, _)| !extra.contains(&h.as_str()))
            .map(|(h, v)| (h.as_str(), Input::Text(v.clone())));
        let extras: Vec<String> = extra
            .iter()
            .map(|name| header.iter().position(|h| h == name).map(|i| cells[i].trim().to_string()).unwrap_or_default())
            .collect();
        match check_entry(kind, values) {
            Ok(entry) => out.push((line, entry, extras)),
            Err(errors) => problems.extend(errors.into_iter().map(|e| format!("line {line}: {e}"))),
        }
    }
    Ok((out, problems))
}

/// Parses and checks a seed CSV: header = the book's columns (any order, all present), every
/// row valid, no key twice. Errors carry the line number.
pub fn parse_seed_csv(kind: BookKind, text: &str) -> Result<Vec<Entry>, Vec<String>> {
    let (rows, mut problems) = parse_price_file(kind, text, &[])?;
    let mut seen = std::collections::HashMap::new();
    for (line, entry, _) in &rows {
        let key = entry.get(kind.key_column()).and_then(Value::as_str).unwrap_or_default().to_string();
        if let Some(first) = seen.insert(key.clone(), *line) {
            problems.push(format!("line {line}: duplicate {} {key} (first on line {first})", kind.entry()));
        }
    }
    if problems.is_empty() {
        Ok(rows.into_iter().map(|(_, entry, _)| entry).collect())
    } else {
        Err(problems)
    }
}

/// The date columns a catalog file and table add to the pricing columns: the version is in force
/// on day D when `effective_from <= D` and (`effective_to` is empty or `D < effective_to`).
pub const CATALOG_DATE_COLUMNS: [&str; 2] = ["effective_from", "effective_to"];

/// One version of one model's prices in a catalog file (`configs/{provider}/seed/data/default_pricing.csv`).
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogSeedRow {
    pub line: usize,
    /// The pricing columns, checked.
    pub entry: Entry,
    pub effective_from: NaiveDate,
    /// Exclusive; None while the version is current.
    pub effective_to: Option<NaiveDate>,
}

impl CatalogSeedRow {
    pub fn model_id(&self) -> &str {
        self.entry.get("model_id").and_then(Value::as_str).unwrap_or_default()
    }
}

/// Parses and checks a catalog file: the pricing columns plus `effective_from` (required) and
/// `effective_to` (empty while current, after `effective_from`), a model's versions never
/// overlapping. A model may have several rows (its price history). Errors carry the line number.
pub fn parse_catalog_csv(text: &str) -> Result<Vec<CatalogSeedRow>, Vec<String>> {
    let (rows, mut problems) = parse_price_file(BookKind::Pricing, text, &CATALOG_DATE_COLUMNS)?;
    let mut out = Vec::new();
    for (line, entry, dates) in rows {
        let from = match parse_date(&dates[0]) {
            Some(d) => d,
            None => {
                problems.push(format!("line {line}: effective_from must be a date YYYY-MM-DD (got {:?})", dates[0]));
                continue;
            }
        };
        let to = match dates[1].as_str() {
            "" => None,
            text => match parse_date(text) {
                Some(d) if d > from => Some(d),
                Some(_) => {
                    problems.push(format!("line {line}: effective_to must be after effective_from"));
                    continue;
                }
                None => {
                    problems
                        .push(format!("line {line}: effective_to must be a date YYYY-MM-DD or empty (got {text:?})"));
                    continue;
                }
            },
        };
        out.push(CatalogSeedRow { line, entry, effective_from: from, effective_to: to });
    }
    let mut by_model: std::collections::BTreeMap<&str, Vec<&CatalogSeedRow>> = std::collections::BTreeMap::new();
    for row in &out {
        by_model.entry(row.model_id()).or_default().push(row);
    }
    for (model, mut versions) in by_model {
        versions.sort_by_key(|r| r.effective_from);
        for pair in versions.windows(2) {
            if pair[0].effective_to.is_none_or(|to| to > pair[1].effective_from) {
                problems.push(format!(
                    "line {}: this version of {model} overlaps the one on line {} (each version must end, \
                     with effective_to, on or before the next one's effective_from)",
                    pair[1].line, pair[0].line
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// The first of the pricing columns the billed dimensions of issue 14 added (batch with cache or
/// long context, priority, flex, audio, image, web search, multipliers): every column from it to
/// `deprecation_date` is one of them. A book copied before they existed holds none of them.
const FIRST_DIMENSION_COLUMN: &str = "batch_cached_input_per_1m";

/// Whether `name` is one of the billed-dimension columns (see [`FIRST_DIMENSION_COLUMN`]).
pub fn is_dimension_column(name: &str) -> bool {
    let columns = BookKind::Pricing.columns();
    let first = columns.iter().position(|c| c.name == FIRST_DIMENSION_COLUMN);
    let last = columns.iter().position(|c| c.name == "deprecation_date");
    let at = columns.iter().position(|c| c.name == name);
    matches!((first, at, last), (Some(f), Some(a), Some(l)) if f <= a && a < l)
}

/// Whether a row copied into an organization's book before the billed-dimension columns existed
/// charges what `catalog` charges: [`same_prices`] over the columns it could hold, when it holds
/// none of the later ones (the catalog's rates for them are new, not a difference), else over all.
pub fn same_prices_as_copied(copied: &Map<String, Value>, catalog: &Map<String, Value>) -> bool {
    let set = |row: &Map<String, Value>, c: &str| row.get(c).is_some_and(|v| !v.is_null());
    if BookKind::Pricing.columns().iter().any(|c| is_dimension_column(c.name) && set(copied, c.name)) {
        return same_prices(copied, catalog);
    }
    let mut older = catalog.clone();
    older.retain(|k, _| !is_dimension_column(k));
    same_prices(copied, &older)
}

/// Whether two price rows charge the same: every money, count and currency column equal (notes
/// and deprecation dates say nothing about what usage costs).
pub fn same_prices(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    BookKind::Pricing.columns().iter().filter(|c| c.kind.is_price() || c.kind == Kind::Currency).all(|c| {
        let decimal = matches!(c.kind, Kind::Money | Kind::Factor);
        let value = |row: &Map<String, Value>| -> Option<String> {
            match row.get(c.name) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if decimal => parse_decimal(s).map(canonical_decimal),
                Some(Value::Number(n)) if decimal => parse_decimal(&n.to_string()).map(canonical_decimal),
                Some(Value::String(s)) => Some(s.trim().to_string()),
                Some(other) => Some(other.to_string()),
            }
        };
        value(a) == value(b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pricing columns the test files below were written with; [`widen`] adds the others.
    const PRICING_HEADER: &str = "model_id,currency,input_per_1m,cached_input_per_1m,cache_write_5m_per_1m,cache_write_1h_per_1m,output_per_1m,batch_input_per_1m,batch_output_per_1m,long_context_threshold_tokens,long_context_input_per_1m,long_context_cached_input_per_1m,long_context_cache_write_5m_per_1m,long_context_cache_write_1h_per_1m,long_context_output_per_1m,deprecation_date,notes";

    /// The columns PRICING_HEADER lacks (the billed dimensions of issue 14), in book order.
    fn later_columns() -> Vec<&'static str> {
        BookKind::Pricing
            .columns()
            .iter()
            .map(|c| c.name)
            .filter(|n| !PRICING_HEADER.split(',').any(|h| h == *n))
            .collect()
    }

    /// A test file with the later columns appended, empty on every row (CRLF and blank lines kept).
    fn widen(text: &str) -> String {
        let later = later_columns();
        let mut out = String::new();
        for (i, line) in text.split_inclusive('\n').enumerate() {
            let (body, end) = match line.strip_suffix("\r\n").or_else(|| line.strip_suffix('\n')) {
                Some(body) => (body, &line[body.len()..]),
                None => (line, ""),
            };
            out.push_str(body);
            if i == 0 {
                out.push(',');
                out.push_str(&later.join(","));
            } else if !body.trim().is_empty() {
                out.push_str(&",".repeat(later.len()));
            }
            out.push_str(end);
        }
        out
    }

    fn seed(text: &str) -> Result<Vec<Entry>, Vec<String>> {
        parse_seed_csv(BookKind::Pricing, &widen(text))
    }

    fn catalog(text: &str) -> Result<Vec<CatalogSeedRow>, Vec<String>> {
        parse_catalog_csv(&widen(text))
    }

    #[test]
    fn csv_quotes_and_lines() {
        // Quoted commas and quotes, CRLF, a blank line: line numbers still name the file's lines.
        let text = format!(
            "{PRICING_HEADER}\r\nm1,USD,1,,,,2,,,,,,,,,,\"a, \"\"quoted\"\" note\"\r\n\nm2,USD,x,,,,2,,,,,,,,,,\n"
        );
        let errs = seed(&text).unwrap_err();
        assert_eq!(
            errs,
            vec!["line 4: input_per_1m must be a decimal number such as \"2.50\" (got \"x\")".to_string()]
        );
        let ok = seed(&format!("{PRICING_HEADER}\nm1,USD,1,,,,2,,,,,,,,,,\"a, \"\"q\"\"\"\n")).unwrap();
        assert_eq!(ok[0]["notes"], "a, \"q\"");
        let short = seed(&format!("{PRICING_HEADER}\nm1,USD,1\n")).unwrap_err();
        let widths = (3 + later_columns().len(), 17 + later_columns().len());
        assert_eq!(short, vec![format!("line 2: {} values for {} columns", widths.0, widths.1)]);
    }

    #[test]
    fn catalog_rows_carry_dates_and_may_not_overlap() {
        let header = format!("{PRICING_HEADER},effective_from,effective_to");
        let text = format!(
            "{header}\no3,USD,10,2.5,,,40,,,,,,,,,,launch,1970-01-01,2025-06-10\n\
             o3,USD,2,0.5,,,8,,,,,,,,,,cut,2025-06-10,\n"
        );
        let rows = catalog(&text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].effective_to, parse_date("2025-06-10"));
        assert_eq!(rows[1].effective_to, None);
        assert_eq!(rows[1].model_id(), "o3");
        let overlapping = format!(
            "{header}\no3,USD,10,,,,40,,,,,,,,,,,1970-01-01,\n\
             o3,USD,2,,,,8,,,,,,,,,,,2025-06-10,\n\
             m,USD,2,,,,8,,,,,,,,,,,2025-06-10,2025-06-10\n\
             n,USD,2,,,,8,,,,,,,,,,,,\n"
        );
        let errs = catalog(&overlapping).unwrap_err().join("\n");
        assert!(errs.contains("line 3: this version of o3 overlaps the one on line 2"), "{errs}");
        assert!(errs.contains("line 4: effective_to must be after effective_from"), "{errs}");
        assert!(errs.contains("line 5: effective_from must be a date"), "{errs}");
        // The pricing-only header is not a catalog file.
        let errs = catalog(&format!("{PRICING_HEADER}\n")).unwrap_err().join("\n");
        assert!(errs.contains("column effective_from is missing"), "{errs}");
    }

    #[test]
    fn a_copied_row_is_compared_on_the_columns_it_could_hold() {
        let row = |v: serde_json::Value| -> Map<String, Value> { serde_json::from_value(v).unwrap() };
        let copied = row(serde_json::json!({"model_id": "gpt-5", "currency": "USD", "input_per_1m": "1.25",
            "output_per_1m": "10.00"}));
        let catalog = row(serde_json::json!({"model_id": "gpt-5", "currency": "USD", "input_per_1m": "1.25",
            "output_per_1m": "10.00", "flex_input_per_1m": "0.625", "us_inference_multiplier": "1.10"}));
        assert!(!same_prices(&copied, &catalog));
        assert!(same_prices_as_copied(&copied, &catalog), "the catalog's new dimensions are not a difference");
        let mut edited = copied.clone();
        edited.insert("flex_input_per_1m".into(), Value::String("0.50".into()));
        assert!(!same_prices_as_copied(&edited, &catalog), "a row that has them is compared on all");
        assert!(is_dimension_column("batch_cached_input_per_1m") && is_dimension_column("us_inference_multiplier"));
        assert!(!is_dimension_column("batch_input_per_1m") && !is_dimension_column("deprecation_date"));
    }

    #[test]
    fn same_prices_ignores_notes_and_decimal_form() {
        let row = |input: &str, notes: &str| -> Map<String, Value> {
            serde_json::from_value(serde_json::json!({"model_id": "m", "currency": "USD", "input_per_1m": input,
                "output_per_1m": "2.00", "notes": notes, "batch_input_per_1m": null}))
            .unwrap()
        };
        assert!(same_prices(&row("1.5", "a"), &row("1.50", "b")));
        assert!(!same_prices(&row("1.5", "a"), &row("1.25", "a")));
    }

    #[test]
    fn money_is_exact_and_checked() {
        let c = BookKind::Pricing.column("input_per_1m").unwrap();
        let check = |i: Input| check_value(BookKind::Pricing, c, &i);
        assert_eq!(check(Input::Text("2.5".into())), Ok(Value::String("2.50".into())));
        assert_eq!(check(Input::Number("0.1".into())), Ok(Value::String("0.10".into())));
        assert_eq!(check(Input::Number("0.075".into())), Ok(Value::String("0.075".into())));
        assert_eq!(check(Input::Number("1.25e-1".into())), Ok(Value::String("0.125".into())));
        assert!(check(Input::Text("-1".into())).unwrap_err().contains("negative"));
        assert!(check(Input::Text("abc".into())).unwrap_err().contains("input_per_1m"));
        assert!(check(Input::Text("0.0000000001".into())).unwrap_err().contains("9 decimal"));
        assert!(check(Input::Null).unwrap_err().contains("required"));
        // Multipliers are factors: above 0, optional, at most 9 decimals, canonical like money.
        let f = BookKind::Pricing.column("fast_mode_multiplier").unwrap();
        let factor = |i: Input| check_value(BookKind::Pricing, f, &i);
        assert_eq!(factor(Input::Number("6".into())), Ok(Value::String("6.00".into())));
        assert_eq!(factor(Input::Text("1.1".into())), Ok(Value::String("1.10".into())));
        assert_eq!(factor(Input::Null), Ok(Value::Null));
        assert!(factor(Input::Text("0".into())).unwrap_err().contains("above 0"));
        assert!(factor(Input::Text("-2".into())).unwrap_err().contains("above 0"));
        assert!(factor(Input::Text("5000".into())).unwrap_err().contains("implausibly"));
    }

    #[test]
    fn keys_currency_and_dates() {
        assert!(check_key(BookKind::Pricing, "ft:gpt-4o-mini-2024-07-18:acme::A1b2").is_ok());
        assert!(check_key(BookKind::Pricing, "gpt 4o").is_err());
        assert!(check_key(BookKind::Pricing, "../etc").is_err());
        assert!(check_key(BookKind::Subscriptions, "Tier 1").is_err());
        let cur = BookKind::Pricing.column("currency").unwrap();
        assert!(check_value(BookKind::Pricing, cur, &Input::Text("XXX".into())).is_err());
        assert!(parse_date("2026-02-30").is_none());
        assert!(parse_date("2026-2-3").is_none());
        assert!(parse_date("2026-02-03").is_some());
        for signed in ["-999-01-01", "+2026-2-03", "2026-02-3 "] {
            assert!(parse_date(signed).is_none(), "{signed}");
        }
    }

    #[test]
    fn seed_csv_errors_name_lines() {
        let text = format!(
            "{PRICING_HEADER}\n\
            m1,USD,1,,,,2,,,,,,,,,,\n\
            m1,USD,1,,,,2,,,,,,,,,,\n\
            m2,ZZZ,-1,,,,x,,,,,,,,,,\n"
        );
        let errs = seed(&text).unwrap_err().join("\n");
        assert!(errs.contains("line 3: duplicate model m1 (first on line 2)"), "{errs}");
        assert!(errs.contains("line 4: currency \"ZZZ\""), "{errs}");
        assert!(errs.contains("line 4: input_per_1m must not be negative"), "{errs}");
        assert!(errs.contains("line 4: output_per_1m must be a decimal"), "{errs}");
    }
}
