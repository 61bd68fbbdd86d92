//! The provider sandbox (`SANDBOX_PROVIDERS=true`, the default of `convergence-local` outside
//! production; production refuses it): the OpenAI and Anthropic admin endpoints that credential
//! validation and the usage/cost pipelines call, answering offline with deterministic synthetic
//! data in the providers' real response shapes (`shared/reference/provider-apis.md` §1–§3).
//!
//! - OpenAI under `/sandbox/openai/v1`: `GET /organization/projects`, `GET /models`,
//!   `GET /organization/usage/completions`, `GET /organization/usage/embeddings`,
//!   `GET /organization/costs`.
//! - Anthropic under `/sandbox/anthropic`: `GET /v1/organizations/me`, `GET /v1/models`,
//!   `GET /v1/organizations/usage_report/messages`, `GET /v1/organizations/cost_report`.
//!
//! Keys: `sk-admin-sandbox-…` (OpenAI) and `sk-ant-admin01-sandbox-…` (Anthropic) are admin keys;
//! the key *is* the organization (its data derives from SHA-256 of the key and the day). Project
//! keys (`sk-proj-…`, `sk-ant-api…`) are refused on the admin endpoints with the provider's error
//! and accepted on the models list; anything else is an invalid key (401).
//!
//! Knobs, as `-`-separated words after the sandbox prefix of the key:
//! - `rows<N>`: finest-grain usage rows per day (default `SANDBOX_ROWS_PER_DAY`, 40);
//! - `fail<STATUS>`: every call answers STATUS (429 with `Retry-After: 1`, 500, 502, 503, 529);
//! - `fail<STATUS>x<N>`: the first N calls to each endpoint answer STATUS, later ones succeed.
//!
//! e.g. `sk-admin-sandbox-acme-rows20000`, `sk-ant-admin01-sandbox-acme-fail429x2`. A request can
//! also carry `x-sandbox-fail: 429` (or 500, …) to fail that one call.
//!
//! Only `bucket_width=1d`; bucket starts are snapped to UTC midnight; `end_time`/`ending_at`
//! default to the end of today; days after today come back with no results. Costs are the
//! sandbox's own rate card ([`rates`], not the catalog Convergence prices with) applied to the
//! same usage ([`prices`]), each line rounded once to nanodollars.
//!
//! The usage carries every billed dimension of issue 14 ([`data`] decides which row has which):
//! OpenAI `service_tier` flex and priority, batch, audio and image tokens, cache writes, a dated
//! snapshot with its own price; Anthropic batch, long context, fast mode (`speed`, grouped by only
//! with `anthropic-beta: fast-mode-2026-02-01`), US-only inference (`inference_geo`), web search,
//! and the `account_id` / `service_account_id` group-bys.

pub mod anthropic;
pub mod data;
pub mod openai;
pub mod prices;
pub mod rates;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};

use common::settings::MAX_SANDBOX_ROWS_PER_DAY;
use common::AppState;

use data::Model;

/// Everything the handlers share.
pub struct Sandbox {
    pub openai_chat: Vec<Model>,
    pub openai_embeddings: Vec<Model>,
    pub anthropic: Vec<Model>,
    pub default_rows: usize,
    /// (key digest, path) → calls seen, for `fail<STATUS>x<N>` keys.
    calls: Mutex<HashMap<(String, String), u32>>,
}

impl Sandbox {
    /// The models of the sandbox's own rate card ([`rates`]).
    pub fn new(state: &AppState) -> Sandbox {
        let openai = rates::openai_models();
        Sandbox {
            openai_chat: openai.iter().filter(|m| !m.embedding).cloned().collect(),
            openai_embeddings: openai.into_iter().filter(|m| m.embedding).collect(),
            anthropic: rates::anthropic_models(),
            default_rows: state.settings.sandbox_rows_per_day as usize,
            calls: Mutex::new(HashMap::new()),
        }
    }

    /// The status to fail this call with, if any (header first, then the key's `fail` knob).
    fn injected_fault(&self, key: &str, opts: &KeyOpts, path: &str, headers: &HeaderMap) -> Option<u16> {
        if let Some(status) = headers
            .get("x-sandbox-fail")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u16>().ok())
            .filter(|s| FAULTS.contains(s))
        {
            return Some(status);
        }
        let (status, times) = opts.fail?;
        let Some(times) = times else { return Some(status) };
        let digest = hex::encode(&data::Org::from_key(key).seed[..16]);
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let seen = calls.entry((digest, path.to_string())).or_insert(0);
        *seen = seen.saturating_add(1);
        (*seen <= times).then_some(status)
    }
}

/// Statuses `fail<STATUS>` and `x-sandbox-fail` may ask for.
pub const FAULTS: [u16; 5] = [429, 500, 502, 503, 529];

/// Knobs carried in a sandbox key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyOpts {
    pub rows: Option<usize>,
    /// Status, and how many calls per endpoint fail (None: all).
    pub fail: Option<(u16, Option<u32>)>,
    /// `overbill{N}` (OpenAI costs): each day's largest line item billed N % too high (1–50), an
    /// error a line-item reconciliation must find.
    pub overbill_pct: Option<u32>,
    /// `unpriced` (OpenAI costs): each day with usage also bills line items the price book does
    /// not price (image generation, web search calls).
    pub unpriced_lines: bool,
}

impl KeyOpts {
    /// Reads the `-`-separated words after the sandbox prefix; unknown words are just part of the
    /// organization's name.
    pub fn parse(rest: &str) -> KeyOpts {
        let mut opts = KeyOpts::default();
        for word in rest.split('-') {
            if let Some(n) = word.strip_prefix("rows").and_then(|n| n.parse::<usize>().ok()) {
                opts.rows = Some(n.clamp(1, MAX_SANDBOX_ROWS_PER_DAY as usize));
            } else if let Some(n) = word.strip_prefix("overbill").and_then(|n| n.parse::<u32>().ok()) {
                opts.overbill_pct = Some(n.clamp(1, 50));
            } else if word == "unpriced" {
                opts.unpriced_lines = true;
            } else if let Some(spec) = word.strip_prefix("fail") {
                let (status, times) = match spec.split_once('x') {
                    Some((s, n)) => (s.parse::<u16>().ok(), n.parse::<u32>().ok().map(Some)),
                    None => (spec.parse::<u16>().ok(), Some(None)),
                };
                if let (Some(status), Some(times)) = (status, times) {
                    if FAULTS.contains(&status) {
                        opts.fail = Some((status, times));
                    }
                }
            }
        }
        opts
    }
}

/// What a key is to the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    Admin(KeyOpts),
    /// A project/workspace key: refused on admin endpoints, accepted on the models list.
    Project,
    Invalid,
}

/// The sandbox's routes, to be merged into `convergence-local`'s router when
/// `settings.sandbox_providers` is on.
pub fn router(state: &AppState) -> Router {
    let sandbox = Arc::new(Sandbox::new(state));
    Router::new()
        .nest("/sandbox/openai/v1", openai::routes(sandbox.clone()))
        .nest("/sandbox/anthropic", anthropic::routes(sandbox))
}

/// The request's query as (name, value) pairs, repeated keys kept.
#[derive(Debug, Default)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        Query(form_urlencoded::parse(raw.unwrap_or("").as_bytes()).into_owned().collect())
    }

    /// The last value of `name` (or `name[]`).
    pub fn one(&self, name: &str) -> Option<&str> {
        self.all(name).pop()
    }

    /// Every value of `name`, given as `name=a&name=b` or `name[]=a&name[]=b`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        let bracket = format!("{name}[]");
        self.0.iter().filter(|(k, _)| *k == name || *k == bracket).map(|(_, v)| v.as_str()).collect()
    }
}

/// A request problem: status, message, and the offending parameter.
#[derive(Debug)]
pub struct Problem {
    pub status: u16,
    pub message: String,
    pub param: Option<String>,
}

pub fn bad_request(param: &str, message: impl Into<String>) -> Problem {
    Problem { status: 400, message: message.into(), param: Some(param.to_string()) }
}

/// One page of daily buckets: the days it covers and the cursor of the next page.
#[derive(Debug)]
pub struct Page {
    pub days: Vec<NaiveDate>,
    pub next_page: Option<String>,
}

/// Today, UTC.
pub fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// The cursor for a page starting on `day`: `page_` + base64 of its RFC 3339 start (the shape
/// Anthropic uses; opaque to callers).
pub fn cursor(day: NaiveDate) -> String {
    let text = format!("{}T00:00:00Z", day.format("%Y-%m-%d"));
    format!("page_{}", base64::engine::general_purpose::STANDARD.encode(text))
}

fn decode_cursor(page: &str) -> Option<NaiveDate> {
    let raw = base64::engine::general_purpose::STANDARD.decode(page.strip_prefix("page_")?).ok()?;
    let text = String::from_utf8(raw).ok()?;
    NaiveDate::parse_from_str(text.strip_suffix("T00:00:00Z")?, "%Y-%m-%d").ok()
}

/// Pages the days `[start, end)`: `limit` buckets from the cursor (or `start`).
pub fn paginate(start: NaiveDate, end: NaiveDate, page: Option<&str>, limit: usize) -> Result<Page, Problem> {
    if end <= start {
        return Err(bad_request("end_time", "the end of the window must be after its start"));
    }
    let first = match page {
        None => start,
        Some(p) => match decode_cursor(p) {
            Some(d) if d >= start && d < end => d,
            _ => return Err(bad_request("page", format!("invalid page cursor {p:?} for this window"))),
        },
    };
    let mut days = Vec::with_capacity(limit);
    let mut day = first;
    while day < end && days.len() < limit {
        days.push(day);
        day = day.succ_opt().unwrap_or(day);
        if days.last() == Some(&day) {
            break;
        }
    }
    let next_page = (day < end).then(|| cursor(day));
    Ok(Page { days, next_page })
}

/// `limit`: default and maximum buckets per page.
pub fn limit(query: &Query, default: usize, max: usize) -> Result<usize, Problem> {
    match query.one("limit") {
        None => Ok(default),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(bad_request("limit", format!("limit must be an integer between 1 and {max}, got {raw:?}"))),
        },
    }
}

/// Only daily buckets.
pub fn daily_only(query: &Query) -> Result<(), Problem> {
    match query.one("bucket_width") {
        None | Some("1d") => Ok(()),
        Some(other) => {
            Err(bad_request("bucket_width", format!("the provider sandbox serves bucket_width=1d only, got {other:?}")))
        }
    }
}

/// The `group_by` values, each checked against what the endpoint allows.
pub fn group_by<'q>(query: &'q Query, allowed: &[&str]) -> Result<Vec<&'q str>, Problem> {
    let values = query.all("group_by");
    for v in &values {
        if !allowed.contains(v) {
            return Err(bad_request(
                "group_by",
                format!("invalid group_by value {v:?}; allowed: {}", allowed.join(", ")),
            ));
        }
    }
    Ok(values)
}

/// `YYYY-MM-DD` of a unix time (floor).
pub fn day_of_unix(secs: i64) -> Option<NaiveDate> {
    DateTime::from_timestamp(secs, 0).map(|t| t.date_naive())
}

/// The day after the last day touched by an exclusive end.
pub fn end_day_of(t: DateTime<Utc>) -> NaiveDate {
    let d = t.date_naive();
    if t == midnight(d) {
        d
    } else {
        d.succ_opt().unwrap_or(d)
    }
}

pub fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// A JSON response with exactly these bytes.
pub fn json_bytes(status: u16, body: Vec<u8>) -> Response {
    let mut r = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
    r.headers_mut().insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn json<T: serde::Serialize>(status: u16, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => json_bytes(status, bytes),
        Err(e) => json_bytes(500, format!("{{\"error\":\"{e}\"}}").into_bytes()),
    }
}

/// Adds `Retry-After: 1` to a 429.
pub fn with_retry_after(status: u16, mut r: Response) -> Response {
    if status == 429 {
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// `sk-admin-sandbox-ab…yz` style masking for error messages.
pub fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

/// An authenticated sandbox caller: its key (which names the organization) and the options the
/// key carries.
struct Caller {
    key: String,
    opts: KeyOpts,
}

/// The organization behind a key: its identity and layout over `models` models. Each provider
/// module adds the dimension names it reports.
struct OrgView<'a> {
    org: data::Org,
    rows: usize,
    layout: data::Layout,
    sb: &'a Sandbox,
}

impl<'a> OrgView<'a> {
    fn new(sb: &'a Sandbox, caller: &Caller, models: usize) -> OrgView<'a> {
        let rows = caller.opts.rows.unwrap_or(sb.default_rows);
        OrgView { org: data::Org::from_key(&caller.key), rows, layout: data::Layout::new(rows, models), sb }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_knobs() {
        assert_eq!(KeyOpts::parse("acme"), KeyOpts::default());
        assert_eq!(KeyOpts::parse("acme-rows500").rows, Some(500));
        assert_eq!(KeyOpts::parse("acme-fail429x2").fail, Some((429, Some(2))));
        assert_eq!(KeyOpts::parse("fail500-acme").fail, Some((500, None)));
        assert_eq!(KeyOpts::parse("acme-fail404").fail, None);
        assert_eq!(KeyOpts::parse("rows999999999").rows, Some(MAX_SANDBOX_ROWS_PER_DAY as usize));
    }

    #[test]
    fn paging_covers_the_window_once() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let (start, end) = (d("2026-01-01"), d("2026-01-11"));
        let mut seen = Vec::new();
        let mut page = None;
        loop {
            let p = paginate(start, end, page.as_deref(), 3).unwrap();
            seen.extend(p.days);
            match p.next_page {
                Some(next) => page = Some(next),
                None => break,
            }
        }
        assert_eq!(seen.len(), 10);
        assert_eq!(seen[9], d("2026-01-10"));
        assert!(paginate(start, end, Some("page_bogus"), 3).is_err());
        assert_eq!(cursor(d("2025-05-14")), "page_MjAyNS0wNS0xNFQwMDowMDowMFo=");
    }
}
