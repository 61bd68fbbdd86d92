//! The OpenAI half of the sandbox, under `/sandbox/openai/v1` (real base: `https://api.openai.com/v1`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use common::warehouse::numeric_text;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::data::{day_rows, Flavor, Spec, UsageRow};
use super::prices::{line_costs, nanodollars, Tier, TokenType, Tokens};
use super::{
    bad_request, daily_only, day_of_unix, group_by, json, limit, midnight, paginate, today, with_retry_after, Caller,
    KeyKind, KeyOpts, OrgView, Problem, Query, Sandbox,
};

pub const ADMIN_PREFIX: &str = "sk-admin-sandbox-";
const PROJECT_PREFIXES: [&str; 2] = ["sk-proj-", "sk-svcacct-"];

pub fn routes(sandbox: Arc<Sandbox>) -> Router {
    Router::new()
        .route("/organization/projects", get(projects))
        .route("/models", get(models))
        .route("/organization/usage/completions", get(completions))
        .route("/organization/usage/embeddings", get(embeddings))
        .route("/organization/costs", get(costs))
        .fallback(|uri: Uri| async move {
            error(404, &format!("Invalid URL (GET {})", uri.path()), "invalid_request_error", None, None)
        })
        .with_state(sandbox)
}

pub fn classify(key: &str) -> KeyKind {
    if let Some(rest) = key.strip_prefix(ADMIN_PREFIX) {
        KeyKind::Admin(KeyOpts::parse(rest))
    } else if PROJECT_PREFIXES.iter().any(|p| key.starts_with(p)) && key.len() > 12 {
        KeyKind::Project
    } else {
        KeyKind::Invalid
    }
}

/// `{"error": {"message", "type", "param", "code"}}`.
fn error(status: u16, message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Response {
    with_retry_after(
        status,
        json(status, &json!({"error": {"message": message, "type": kind, "param": param, "code": code}})),
    )
}

fn problem(p: Problem) -> Response {
    error(p.status, &p.message, "invalid_request_error", p.param.as_deref(), None)
}

fn fault(status: u16) -> Response {
    match status {
        429 => error(
            429,
            "Rate limit reached for requests. Limit: 60 / min. Please try again in 1s.",
            "requests",
            None,
            Some("rate_limit_exceeded"),
        ),
        s => error(
            s,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        ),
    }
}

/// Checks the bearer key (admin endpoints refuse project keys) and the injected faults.
#[allow(clippy::result_large_err)]
fn authorize(sb: &Sandbox, headers: &HeaderMap, path: &str, scope: &str) -> Result<Caller, Response> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    if bearer.is_empty() {
        return Err(error(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            None,
        ));
    }
    let opts = match classify(bearer) {
        KeyKind::Admin(opts) => opts,
        KeyKind::Project if scope.is_empty() => KeyOpts::default(),
        KeyKind::Project => {
            return Err(error(
                401,
                &format!(
                    "You have insufficient permissions for this operation. Missing scopes: {scope}. Check that you have the correct role in your organization (Reader, Writer, Owner) and project (Member, Owner), and if you're using a restricted API key, that it has the necessary scopes."
                ),
                "invalid_request_error",
                None,
                None,
            ))
        }
        KeyKind::Invalid => {
            return Err(error(
                401,
                &format!(
                    "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                    super::mask(bearer)
                ),
                "invalid_request_error",
                None,
                Some("invalid_api_key"),
            ))
        }
    };
    if let Some(status) = sb.injected_fault(bearer, &opts, path, headers) {
        return Err(fault(status));
    }
    Ok(Caller { key: bearer.to_string(), opts })
}

impl<'a> OrgView<'a> {
    fn project_id(&self, j: usize) -> String {
        format!("proj_{}", self.org.tag("project", j, 24))
    }

    fn openai_key_id(&self, k: usize) -> String {
        format!("key_{}", self.org.tag("api_key", k, 16))
    }

    fn chat_spec(&self) -> Spec<'a> {
        Spec {
            stream: "completions",
            models: &self.sb.openai_chat,
            rows: self.rows,
            layout: self.layout,
            flavor: Flavor::OpenAi,
        }
    }

    fn embedding_spec(&self) -> Spec<'a> {
        Spec {
            stream: "embeddings",
            models: &self.sb.openai_embeddings,
            rows: (self.rows / 8).max(1),
            layout: self.layout,
            flavor: Flavor::OpenAi,
        }
    }
}

async fn projects(State(sb): State<Arc<Sandbox>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let caller = match authorize(&sb, &headers, "/organization/projects", "api.management.read") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let query = Query::parse(q.as_deref());
    let view = OrgView::new(&sb, &caller, sb.openai_chat.len());
    let limit = match limit(&query, 20, 100) {
        Ok(l) => l,
        Err(p) => return problem(p),
    };
    let all: Vec<Value> = (0..view.layout.projects)
        .map(|j| {
            json!({
                "id": view.project_id(j),
                "object": "organization.project",
                "name": if j == 0 { "Default project".to_string() } else { format!("Sandbox project {j}") },
                "created_at": 1_711_471_533 + j as i64 * 86_400,
                "archived_at": null,
                "status": "active",
            })
        })
        .collect();
    let from = match query.one("after") {
        Some(after) => all.iter().position(|p| p["id"] == after).map(|i| i + 1).unwrap_or(all.len()),
        None => 0,
    };
    let data: Vec<Value> = all.iter().skip(from).take(limit).cloned().collect();
    json(
        200,
        &json!({
            "object": "list",
            "first_id": data.first().map(|p| p["id"].clone()),
            "last_id": data.last().map(|p| p["id"].clone()),
            "has_more": from + data.len() < all.len(),
            "data": data,
        }),
    )
}

async fn models(State(sb): State<Arc<Sandbox>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&sb, &headers, "/models", "") {
        return r;
    }
    let data: Vec<Value> = sb
        .openai_chat
        .iter()
        .chain(&sb.openai_embeddings)
        .map(|m| json!({"id": m.id, "object": "model", "created": 1_715_367_049, "owned_by": "system"}))
        .collect();
    json(200, &json!({"object": "list", "data": data}))
}

/// `start_time` / `end_time` (unix seconds) → the days `[start, end)`.
fn window(query: &Query) -> Result<(chrono::NaiveDate, chrono::NaiveDate), Problem> {
    let start = query
        .one("start_time")
        .ok_or_else(|| bad_request("start_time", "Missing required parameter: 'start_time'."))?;
    let start = start.parse::<i64>().ok().filter(|s| *s >= 0).and_then(day_of_unix).ok_or_else(|| {
        bad_request("start_time", format!("Invalid 'start_time': {start:?} is not a unix time in seconds."))
    })?;
    let end = match query.one("end_time") {
        None => today().succ_opt().unwrap_or(start),
        Some(raw) => {
            let secs = raw.parse::<i64>().ok().filter(|s| *s >= 0).ok_or_else(|| {
                bad_request("end_time", format!("Invalid 'end_time': {raw:?} is not a unix time in seconds."))
            })?;
            let t = chrono::DateTime::from_timestamp(secs, 0)
                .ok_or_else(|| bad_request("end_time", "Invalid 'end_time'."))?;
            super::end_day_of(t)
        }
    };
    Ok((start, end))
}

#[derive(Serialize)]
struct Envelope<B> {
    object: &'static str,
    data: Vec<B>,
    has_more: bool,
    next_page: Option<String>,
}

#[derive(Serialize)]
struct Bucket<R> {
    object: &'static str,
    start_time: i64,
    end_time: i64,
    results: Vec<R>,
}

fn bucket<R>(day: chrono::NaiveDate, results: Vec<R>) -> Bucket<R> {
    let start = midnight(day).timestamp();
    Bucket { object: "bucket", start_time: start, end_time: start + 86_400, results }
}

#[derive(Serialize)]
struct CompletionsResult {
    object: &'static str,
    input_tokens: u64,
    input_cached_tokens: u64,
    input_cache_write_tokens: u64,
    input_uncached_tokens: u64,
    output_tokens: u64,
    input_text_tokens: u64,
    output_text_tokens: u64,
    input_cached_text_tokens: u64,
    input_audio_tokens: u64,
    input_cached_audio_tokens: u64,
    output_audio_tokens: u64,
    input_image_tokens: u64,
    input_cached_image_tokens: u64,
    output_image_tokens: u64,
    num_model_requests: u64,
    project_id: Option<String>,
    user_id: Option<String>,
    api_key_id: Option<String>,
    model: Option<&'static str>,
    batch: Option<bool>,
    service_tier: Option<&'static str>,
}

#[derive(Serialize)]
struct EmbeddingsResult {
    object: &'static str,
    input_tokens: u64,
    num_model_requests: u64,
    project_id: Option<String>,
    user_id: Option<String>,
    api_key_id: Option<String>,
    model: Option<&'static str>,
}

type GroupKey = (Option<&'static str>, Option<usize>, Option<usize>, Option<bool>, Option<&'static str>);

/// Sums rows by the requested group keys (the others null), in a fixed order.
fn aggregate(rows: &[UsageRow], models: &[super::data::Model], groups: &[&str]) -> BTreeMap<GroupKey, (Tokens, u64)> {
    let by = |k: &str| groups.contains(&k);
    let mut out: BTreeMap<GroupKey, (Tokens, u64)> = BTreeMap::new();
    for r in rows {
        let key = (
            by("model").then_some(models[r.model].id),
            by("project_id").then_some(r.project),
            by("api_key_id").then_some(r.api_key),
            by("batch").then_some(r.dims.tier == Tier::Batch),
            by("service_tier").then_some(service_tier(r.dims.tier)),
        );
        let entry = out.entry(key).or_default();
        entry.0.add(&r.tokens);
        entry.1 += r.requests;
    }
    out
}

const COMPLETIONS_GROUPS: [&str; 6] = ["project_id", "user_id", "api_key_id", "model", "batch", "service_tier"];
const EMBEDDINGS_GROUPS: [&str; 4] = ["project_id", "user_id", "api_key_id", "model"];

struct UsageRequest {
    caller: Caller,
    days: Vec<chrono::NaiveDate>,
    next_page: Option<String>,
}

#[allow(clippy::result_large_err)]
fn usage_request(
    sb: &Sandbox,
    headers: &HeaderMap,
    path: &str,
    query: &Query,
    max_limit: usize,
    allowed: &[&str],
) -> Result<UsageRequest, Response> {
    let caller = authorize(sb, headers, path, "api.usage.read")?;
    let checked = (|| {
        daily_only(query)?;
        group_by(query, allowed)?;
        let (start, end) = window(query)?;
        let limit = limit(query, 7, max_limit)?;
        paginate(start, end, query.one("page"), limit)
    })();
    let page = checked.map_err(problem)?;
    Ok(UsageRequest { caller, days: page.days, next_page: page.next_page })
}

async fn completions(State(sb): State<Arc<Sandbox>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let query = Query::parse(q.as_deref());
    let req = match usage_request(&sb, &headers, "/organization/usage/completions", &query, 31, &COMPLETIONS_GROUPS) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let groups = query.all("group_by");
    let view = OrgView::new(&sb, &req.caller, sb.openai_chat.len());
    let spec = view.chat_spec();
    let today = today();
    let data = req
        .days
        .iter()
        .map(|day| {
            let rows = day_rows(&view.org, &spec, *day, today);
            let results = aggregate(&rows, spec.models, &groups)
                .into_iter()
                .map(|((model, project, key, batch, tier), (t, requests))| {
                    let cache_write = t.cache_write_5m + t.cache_write_1h;
                    CompletionsResult {
                        object: "organization.usage.completions.result",
                        input_tokens: t.input(),
                        input_cached_tokens: t.cached(),
                        input_cache_write_tokens: cache_write,
                        input_uncached_tokens: t.input() - t.cached() - cache_write,
                        output_tokens: t.all_output(),
                        // Each modality's input counts its cached tokens too (text: and cache writes).
                        input_text_tokens: t.uncached_input + t.cached_input + cache_write,
                        output_text_tokens: t.output,
                        input_cached_text_tokens: t.cached_input,
                        input_audio_tokens: t.audio_input + t.audio_cached_input,
                        input_cached_audio_tokens: t.audio_cached_input,
                        output_audio_tokens: t.audio_output,
                        input_image_tokens: t.image_input + t.image_cached_input,
                        input_cached_image_tokens: t.image_cached_input,
                        output_image_tokens: t.image_output,
                        num_model_requests: requests,
                        project_id: project.map(|j| view.project_id(j)),
                        user_id: None,
                        api_key_id: key.map(|k| view.openai_key_id(k)),
                        model,
                        batch,
                        service_tier: tier,
                    }
                })
                .collect();
            bucket(*day, results)
        })
        .collect();
    json(200, &Envelope { object: "page", data, has_more: req.next_page.is_some(), next_page: req.next_page })
}

async fn embeddings(State(sb): State<Arc<Sandbox>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let query = Query::parse(q.as_deref());
    let req = match usage_request(&sb, &headers, "/organization/usage/embeddings", &query, 31, &EMBEDDINGS_GROUPS) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let groups = query.all("group_by");
    let view = OrgView::new(&sb, &req.caller, sb.openai_chat.len());
    let spec = view.embedding_spec();
    let today = today();
    let data = req
        .days
        .iter()
        .map(|day| {
            let rows = day_rows(&view.org, &spec, *day, today);
            let results = aggregate(&rows, spec.models, &groups)
                .into_iter()
                .map(|((model, project, key, _, _), (t, requests))| EmbeddingsResult {
                    object: "organization.usage.embeddings.result",
                    input_tokens: t.input(),
                    num_model_requests: requests,
                    project_id: project.map(|j| view.project_id(j)),
                    user_id: None,
                    api_key_id: key.map(|k| view.openai_key_id(k)),
                    model,
                })
                .collect();
            bucket(*day, results)
        })
        .collect();
    json(200, &Envelope { object: "page", data, has_more: req.next_page.is_some(), next_page: req.next_page })
}

#[derive(Serialize)]
struct Amount {
    /// Dollars, written with the exact decimal digits.
    value: Box<RawValue>,
    currency: &'static str,
}

#[derive(Serialize)]
struct CostsResult {
    object: &'static str,
    amount: Amount,
    line_item: Option<String>,
    project_id: Option<String>,
    api_key_id: Option<String>,
    quantity: Option<u64>,
    quantity_unit: Option<&'static str>,
}

/// The usage report's `service_tier` of a tier (batch usage is `default` with `batch = true`).
pub fn service_tier(t: Tier) -> &'static str {
    match t {
        Tier::Standard | Tier::Batch => "default",
        Tier::Flex => "flex",
        Tier::Priority => "priority",
    }
}

/// The line item of a token type, `"{model}, {tier }{kind}"` (issue 14's canonical text): e.g.
/// `"gpt-4.1-2025-04-14, input"`, `"o4-mini-2025-04-16, flex cached input"`,
/// `"gpt-realtime-2025-08-28, cached audio input"`, `"gpt-5.6, batch output"`.
pub fn line_item(model: &str, tier: Tier, t: TokenType) -> String {
    let kind = match t {
        TokenType::UncachedInput => "input",
        TokenType::CachedInput => "cached input",
        TokenType::CacheWrite5m | TokenType::CacheWrite1h => "cache write",
        TokenType::Output => "output",
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
    };
    format!("{model}, {tier}{kind}")
}

async fn costs(State(sb): State<Arc<Sandbox>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let query = Query::parse(q.as_deref());
    let req = match usage_request(
        &sb,
        &headers,
        "/organization/costs",
        &query,
        180,
        &["project_id", "line_item", "api_key_id"],
    ) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let groups = query.all("group_by");
    let by = |k: &str| groups.contains(&k);
    let opts = req.caller.opts.clone();
    let view = OrgView::new(&sb, &req.caller, sb.openai_chat.len());
    let today = today();
    let specs = [view.chat_spec(), view.embedding_spec()];
    let data = req
        .days
        .iter()
        .map(|day| {
            let mut lines = bill_lines(&specs, &view, *day, today);
            if let Some(pct) = opts.overbill_pct {
                overbill(&mut lines, pct);
            }
            if opts.unpriced_lines && !lines.is_empty() {
                lines.extend(unpriced_lines());
            }
            type Key = (Option<usize>, Option<String>, Option<usize>);
            let mut sums: BTreeMap<Key, (Decimal, u64, &'static str)> = BTreeMap::new();
            for l in lines {
                let key = (
                    by("project_id").then_some(l.project),
                    by("line_item").then_some(l.line_item),
                    by("api_key_id").then_some(l.api_key),
                );
                let e = sums.entry(key).or_insert((Decimal::ZERO, 0, l.unit));
                e.0 += l.cost;
                e.1 += l.quantity;
            }
            let results = sums
                .into_iter()
                .map(|((project, line, key), (amount, quantity, unit))| CostsResult {
                    object: "organization.costs.result",
                    amount: Amount {
                        // A decimal's text never has an exponent or a sign here: a valid JSON number.
                        value: RawValue::from_string(numeric_text(amount)).expect("a decimal is a JSON number"),
                        currency: "usd",
                    },
                    quantity: line.as_ref().map(|_| quantity),
                    quantity_unit: line.as_ref().map(|_| unit),
                    line_item: line,
                    project_id: project.map(|j| view.project_id(j)),
                    api_key_id: key.map(|k| view.openai_key_id(k)),
                })
                .collect();
            bucket(*day, results)
        })
        .collect();
    json(200, &Envelope { object: "page", data, has_more: req.next_page.is_some(), next_page: req.next_page })
}

/// One charge of a day's bill, before grouping.
struct BillLine {
    project: usize,
    api_key: usize,
    line_item: String,
    cost: Decimal,
    quantity: u64,
    unit: &'static str,
}

/// A day's token charges, one per usage row and token type.
fn bill_lines(specs: &[Spec], view: &OrgView, day: chrono::NaiveDate, today: chrono::NaiveDate) -> Vec<BillLine> {
    let mut out = Vec::new();
    for spec in specs {
        for r in day_rows(&view.org, spec, day, today) {
            let model = &spec.models[r.model];
            let Some(lines) = line_costs(&model.price, r.dims, &r.tokens) else { continue };
            for (t, n, cost) in lines {
                out.push(BillLine {
                    project: r.project,
                    api_key: r.api_key,
                    line_item: line_item(model.id, r.dims.tier, t),
                    cost,
                    quantity: n,
                    unit: "tokens",
                });
            }
        }
    }
    out
}

/// Bills the day's largest line item (ties: the first by name) `pct` % too high, in every
/// project's share of it, so any grouping of the bill carries the same error.
fn overbill(lines: &mut [BillLine], pct: u32) {
    let mut totals: BTreeMap<&str, Decimal> = BTreeMap::new();
    for l in lines.iter() {
        *totals.entry(l.line_item.as_str()).or_default() += l.cost;
    }
    let Some(largest) = totals.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))).map(|(k, _)| k.to_string()) else {
        return;
    };
    let factor = Decimal::from(100 + pct) / Decimal::from(100);
    for l in lines.iter_mut().filter(|l| l.line_item == largest) {
        l.cost = nanodollars(l.cost * factor);
    }
}

/// Charges that are not token usage: three generated images ($0.04 each) and ten web search
/// calls ($25 / 1,000), billed to the first project.
fn unpriced_lines() -> [BillLine; 2] {
    [
        BillLine {
            project: 0,
            api_key: 0,
            line_item: "Image models".into(),
            cost: Decimal::new(12, 2),
            quantity: 3,
            unit: "images",
        },
        BillLine {
            project: 0,
            api_key: 0,
            line_item: "gpt-4o-mini, web search tool calls".into(),
            cost: Decimal::new(25, 2),
            quantity: 10,
            unit: "calls",
        },
    ]
}
