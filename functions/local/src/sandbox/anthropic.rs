//! The Anthropic half of the sandbox, under `/sandbox/anthropic` (real base: `https://api.anthropic.com`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, NaiveDate, Utc};
use common::warehouse::numeric_text;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{json, Value};

use super::data::{day_rows, Flavor, Org, Spec, UsageRow};
use super::prices::{line_costs, web_search_cost, Context, Dims, Geo, Speed, Tier, TokenType, Tokens};
use super::{
    bad_request, daily_only, group_by, json, limit, midnight, paginate, today, with_retry_after, Caller, KeyKind,
    KeyOpts, OrgView, Problem, Query, Sandbox,
};

pub const ADMIN_PREFIX: &str = "sk-ant-admin01-sandbox-";
const WORKSPACE_KEY_PREFIX: &str = "sk-ant-api";

pub fn routes(sandbox: Arc<Sandbox>) -> Router {
    Router::new()
        .route("/v1/organizations/me", get(me))
        .route("/v1/models", get(models))
        .route("/v1/organizations/usage_report/messages", get(usage))
        .route("/v1/organizations/cost_report", get(cost_report))
        .fallback(|_uri: Uri| async move { error(404, "not_found_error", "Not found") })
        .with_state(sandbox)
}

pub fn classify(key: &str) -> KeyKind {
    if let Some(rest) = key.strip_prefix(ADMIN_PREFIX) {
        KeyKind::Admin(KeyOpts::parse(rest))
    } else if key.starts_with(WORKSPACE_KEY_PREFIX) && key.len() > 16 {
        KeyKind::Project
    } else {
        KeyKind::Invalid
    }
}

/// `{"type": "error", "error": {"type", "message"}}`.
fn error(status: u16, kind: &str, message: &str) -> Response {
    with_retry_after(status, json(status, &json!({"type": "error", "error": {"type": kind, "message": message}})))
}

fn problem(p: Problem) -> Response {
    let message = match p.param {
        Some(param) => format!("{param}: {}", p.message),
        None => p.message,
    };
    error(p.status, "invalid_request_error", &message)
}

fn fault(status: u16) -> Response {
    match status {
        429 => {
            error(429, "rate_limit_error", "Number of requests has exceeded your rate limit. Please try again later.")
        }
        529 => error(529, "overloaded_error", "Overloaded"),
        s => error(s, "api_error", "Internal server error"),
    }
}

#[allow(clippy::result_large_err)]
fn authorize(sb: &Sandbox, headers: &HeaderMap, path: &str, admin: bool) -> Result<Caller, Response> {
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or_default();
    if key.is_empty() {
        return Err(error(401, "authentication_error", "x-api-key header is required"));
    }
    if headers.get("anthropic-version").is_none() {
        return Err(error(400, "invalid_request_error", "anthropic-version: header is required"));
    }
    let opts = match classify(key) {
        KeyKind::Admin(opts) => opts,
        KeyKind::Project if !admin => KeyOpts::default(),
        KeyKind::Project | KeyKind::Invalid => return Err(error(401, "authentication_error", "invalid x-api-key")),
    };
    if let Some(status) = sb.injected_fault(key, &opts, path, headers) {
        return Err(fault(status));
    }
    Ok(Caller { key: key.to_string(), opts })
}

impl<'a> OrgView<'a> {
    /// Workspace 0 is the default workspace, reported as null.
    fn workspace_id(&self, j: usize) -> Option<String> {
        (j > 0).then(|| format!("wrkspc_01{}", self.org.tag("workspace", j, 22)))
    }

    fn anthropic_key_id(&self, k: usize) -> String {
        format!("apikey_01{}", self.org.tag("api_key", k, 22))
    }

    /// Who calls through API key `k`: every fourth key belongs to a service account, the others
    /// to one of three user accounts. (The usage report's `account_id` / `service_account_id`
    /// have no published example; the sandbox reports one or the other per row.)
    fn caller_of(&self, k: usize) -> Account {
        if k % 4 == 3 {
            Account::Service(k / 4)
        } else {
            Account::User(k % 3)
        }
    }

    fn account_id(&self, user: usize) -> String {
        format!("user_01{}", self.org.tag("account", user, 22))
    }

    fn service_account_id(&self, service: usize) -> String {
        format!("svcacct_01{}", self.org.tag("service_account", service, 22))
    }

    fn spec(&self) -> Spec<'a> {
        Spec {
            stream: "messages",
            models: &self.sb.anthropic,
            rows: self.rows,
            layout: self.layout,
            flavor: Flavor::Anthropic,
        }
    }
}

async fn me(State(sb): State<Arc<Sandbox>>, headers: HeaderMap) -> Response {
    let caller = match authorize(&sb, &headers, "/v1/organizations/me", true) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let t = Org::from_key(&caller.key).tag("organization", 0, 32);
    let id = format!("{}-{}-{}-{}-{}", &t[..8], &t[8..12], &t[12..16], &t[16..20], &t[20..32]);
    json(200, &json!({"id": id, "type": "organization", "name": format!("Sandbox organization {}", &t[..6])}))
}

async fn models(State(sb): State<Arc<Sandbox>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    if let Err(r) = authorize(&sb, &headers, "/v1/models", false) {
        return r;
    }
    let query = Query::parse(q.as_deref());
    let limit = match limit(&query, 20, 1000) {
        Ok(l) => l,
        Err(p) => return problem(p),
    };
    let all: Vec<Value> = sb
        .anthropic
        .iter()
        .map(|m| json!({"type": "model", "id": m.id, "display_name": m.display_name, "created_at": "2025-01-01T00:00:00Z"}))
        .collect();
    let from = match query.one("after_id") {
        Some(after) => all.iter().position(|m| m["id"] == after).map(|i| i + 1).unwrap_or(all.len()),
        None => 0,
    };
    let data: Vec<Value> = all.iter().skip(from).take(limit).cloned().collect();
    json(
        200,
        &json!({
            "has_more": from + data.len() < all.len(),
            "first_id": data.first().map(|m| m["id"].clone()),
            "last_id": data.last().map(|m| m["id"].clone()),
            "data": data,
        }),
    )
}

fn rfc3339(d: NaiveDate) -> String {
    midnight(d).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn parse_time(query: &Query, name: &str) -> Result<Option<DateTime<Utc>>, Problem> {
    match query.one(name) {
        None => Ok(None),
        Some(raw) => DateTime::parse_from_rfc3339(raw)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| bad_request(name, format!("{raw:?} is not an RFC 3339 timestamp"))),
    }
}

struct ReportRequest {
    caller: Caller,
    days: Vec<NaiveDate>,
    next_page: Option<String>,
}

#[allow(clippy::result_large_err)]
fn report_request(
    sb: &Sandbox,
    headers: &HeaderMap,
    path: &str,
    query: &Query,
    allowed: &[&str],
) -> Result<ReportRequest, Response> {
    let caller = authorize(sb, headers, path, true)?;
    let checked = (|| {
        daily_only(query)?;
        group_by(query, allowed)?;
        let start =
            parse_time(query, "starting_at")?.ok_or_else(|| bad_request("starting_at", "Field required"))?.date_naive();
        let end = match parse_time(query, "ending_at")? {
            Some(t) => super::end_day_of(t),
            None => today().succ_opt().unwrap_or(start),
        };
        let limit = limit(query, 7, 31)?;
        paginate(start, end, query.one("page"), limit)
    })();
    let page = checked.map_err(problem)?;
    Ok(ReportRequest { caller, days: page.days, next_page: page.next_page })
}

#[derive(Serialize)]
struct Envelope<R> {
    data: Vec<Bucket<R>>,
    has_more: bool,
    next_page: Option<String>,
}

#[derive(Serialize)]
struct Bucket<R> {
    starting_at: String,
    ending_at: String,
    results: Vec<R>,
}

fn bucket<R>(day: NaiveDate, results: Vec<R>) -> Bucket<R> {
    Bucket { starting_at: rfc3339(day), ending_at: rfc3339(day.succ_opt().unwrap_or(day)), results }
}

#[derive(Serialize)]
struct CacheCreation {
    ephemeral_1h_input_tokens: u64,
    ephemeral_5m_input_tokens: u64,
}

#[derive(Serialize)]
struct ServerToolUse {
    web_search_requests: u64,
}

/// The account behind an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Account {
    User(usize),
    Service(usize),
}

#[derive(Serialize)]
struct UsageResult {
    uncached_input_tokens: u64,
    cache_creation: CacheCreation,
    cache_read_input_tokens: u64,
    output_tokens: u64,
    server_tool_use: ServerToolUse,
    api_key_id: Option<String>,
    workspace_id: Option<String>,
    model: Option<&'static str>,
    service_tier: Option<&'static str>,
    context_window: Option<&'static str>,
    inference_geo: Option<&'static str>,
    account_id: Option<String>,
    service_account_id: Option<String>,
    speed: Option<&'static str>,
}

pub fn service_tier(t: Tier) -> &'static str {
    match t {
        Tier::Standard => "standard",
        Tier::Batch => "batch",
        // Not generated for Anthropic; the names Anthropic's enum uses.
        Tier::Flex => "flex",
        Tier::Priority => "priority",
    }
}

pub fn speed(s: Speed) -> &'static str {
    match s {
        Speed::Standard => "standard",
        Speed::Fast => "fast",
    }
}

pub fn inference_geo(g: Geo) -> &'static str {
    match g {
        Geo::Global => "global",
        Geo::Us => "us",
        Geo::NotAvailable => "not_available",
    }
}

pub fn context_window(c: Context) -> &'static str {
    match c {
        Context::Short => "0-200k",
        Context::Long => "200k-1M",
    }
}

const USAGE_GROUPS: [&str; 9] = [
    "api_key_id",
    "workspace_id",
    "model",
    "service_tier",
    "context_window",
    "inference_geo",
    "account_id",
    "service_account_id",
    "speed",
];

/// The group keys of a usage result (each None unless grouped by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct UsageKey {
    api_key: Option<usize>,
    workspace: Option<usize>,
    model: Option<&'static str>,
    tier: Option<Tier>,
    context: Option<Context>,
    geo: Option<Geo>,
    /// The user account (None: a service account's usage), when grouped by `account_id`.
    account: Option<Option<usize>>,
    /// The service account (None: a user's usage), when grouped by `service_account_id`.
    service_account: Option<Option<usize>>,
    speed: Option<Speed>,
}

/// Sums rows by the requested group keys: tokens and web search requests.
fn aggregate(rows: &[UsageRow], view: &OrgView<'_>, groups: &[&str]) -> BTreeMap<UsageKey, (Tokens, u64)> {
    let by = |k: &str| groups.contains(&k);
    let mut out: BTreeMap<UsageKey, (Tokens, u64)> = BTreeMap::new();
    for r in rows {
        let key = UsageKey {
            api_key: by("api_key_id").then_some(r.api_key),
            workspace: by("workspace_id").then_some(r.project),
            model: by("model").then_some(view.sb.anthropic[r.model].id),
            tier: by("service_tier").then_some(r.dims.tier),
            context: by("context_window").then_some(r.dims.context),
            geo: by("inference_geo").then_some(r.dims.geo),
            account: by("account_id").then(|| match view.caller_of(r.api_key) {
                Account::User(u) => Some(u),
                Account::Service(_) => None,
            }),
            service_account: by("service_account_id").then(|| match view.caller_of(r.api_key) {
                Account::Service(s) => Some(s),
                Account::User(_) => None,
            }),
            speed: by("speed").then_some(r.dims.speed),
        };
        let entry = out.entry(key).or_default();
        entry.0.add(&r.tokens);
        entry.1 += r.web_search_requests;
    }
    out
}

/// The beta that unlocks `group_by[]=speed`, like the API's gate.
pub const FAST_MODE_BETA: &str = "fast-mode-2026-02-01";

/// Whether the request's `anthropic-beta` list (comma-separated, possibly repeated) names `beta`.
fn has_beta(headers: &HeaderMap, beta: &str) -> bool {
    headers
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|b| b.trim() == beta)
}

async fn usage(State(sb): State<Arc<Sandbox>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let query = Query::parse(q.as_deref());
    let req = match report_request(&sb, &headers, "/v1/organizations/usage_report/messages", &query, &USAGE_GROUPS) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let groups = query.all("group_by");
    if groups.contains(&"speed") && !has_beta(&headers, FAST_MODE_BETA) {
        return error(
            400,
            "invalid_request_error",
            &format!("group_by: 'speed' requires the beta header `anthropic-beta: {FAST_MODE_BETA}`"),
        );
    }
    let view = OrgView::new(&sb, &req.caller, sb.anthropic.len());
    let spec = view.spec();
    let today = today();
    let data = req
        .days
        .iter()
        .map(|day| {
            let rows = day_rows(&view.org, &spec, *day, today);
            let results = aggregate(&rows, &view, &groups)
                .into_iter()
                .map(|(k, (t, web_search_requests))| UsageResult {
                    uncached_input_tokens: t.uncached_input,
                    cache_creation: CacheCreation {
                        ephemeral_1h_input_tokens: t.cache_write_1h,
                        ephemeral_5m_input_tokens: t.cache_write_5m,
                    },
                    cache_read_input_tokens: t.cached_input,
                    output_tokens: t.output,
                    server_tool_use: ServerToolUse { web_search_requests },
                    api_key_id: k.api_key.map(|k| view.anthropic_key_id(k)),
                    workspace_id: k.workspace.and_then(|j| view.workspace_id(j)),
                    model: k.model,
                    service_tier: k.tier.map(service_tier),
                    context_window: k.context.map(context_window),
                    inference_geo: k.geo.map(inference_geo),
                    account_id: k.account.flatten().map(|u| view.account_id(u)),
                    service_account_id: k.service_account.flatten().map(|s| view.service_account_id(s)),
                    speed: k.speed.map(speed),
                })
                .collect();
            bucket(*day, results)
        })
        .collect();
    json(200, &Envelope { data, has_more: req.next_page.is_some(), next_page: req.next_page })
}

#[derive(Serialize)]
struct CostResult {
    currency: &'static str,
    /// Cents, as a decimal string.
    amount: String,
    workspace_id: Option<String>,
    description: Option<String>,
    cost_type: Option<&'static str>,
    context_window: Option<&'static str>,
    model: Option<&'static str>,
    service_tier: Option<&'static str>,
    token_type: Option<&'static str>,
    inference_geo: Option<&'static str>,
    speed: Option<&'static str>,
}

/// What a cost-report line charges for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Charge {
    Tokens(TokenType),
    /// `server_tool_use.web_search_requests`, per request.
    WebSearch,
}

/// The cost report's `token_type` (None for the OpenAI-only modalities, never generated here).
pub fn token_type(t: TokenType) -> Option<&'static str> {
    match t {
        TokenType::UncachedInput => Some("uncached_input_tokens"),
        TokenType::CachedInput => Some("cache_read_input_tokens"),
        TokenType::CacheWrite5m => Some("cache_creation.ephemeral_5m_input_tokens"),
        TokenType::CacheWrite1h => Some("cache_creation.ephemeral_1h_input_tokens"),
        TokenType::Output => Some("output_tokens"),
        TokenType::AudioInput
        | TokenType::AudioCachedInput
        | TokenType::AudioOutput
        | TokenType::ImageInput
        | TokenType::ImageCachedInput
        | TokenType::ImageOutput => None,
    }
}

/// e.g. `"Claude Sonnet 4.5 Usage - Input Tokens"`, `"… - Output Tokens (Batch)"`,
/// `"Claude Opus 4.6 Usage - Input Tokens (Fast Mode, US Only)"`, `"… - Web Search"`.
pub fn description(display_name: &str, dims: Dims, charge: Charge) -> String {
    let what = match charge {
        Charge::WebSearch => return format!("{display_name} Usage - Web Search"),
        Charge::Tokens(TokenType::UncachedInput) => "Input Tokens",
        Charge::Tokens(TokenType::CachedInput) => "Prompt Caching Read Tokens",
        Charge::Tokens(TokenType::CacheWrite5m) => "Prompt Caching Write Tokens (5m)",
        Charge::Tokens(TokenType::CacheWrite1h) => "Prompt Caching Write Tokens (1h)",
        Charge::Tokens(TokenType::Output) => "Output Tokens",
        // The OpenAI-only modalities, never generated for Anthropic.
        Charge::Tokens(_) => "Tokens",
    };
    let mut qualifiers = Vec::new();
    match (dims.tier, dims.context) {
        (Tier::Batch, _) => qualifiers.push("Batch"),
        (_, Context::Long) => qualifiers.push("Long Context"),
        _ => {}
    }
    if dims.speed == Speed::Fast {
        qualifiers.push("Fast Mode");
    }
    if dims.geo == Geo::Us {
        qualifiers.push("US Only");
    }
    if qualifiers.is_empty() {
        format!("{display_name} Usage - {what}")
    } else {
        format!("{display_name} Usage - {what} ({})", qualifiers.join(", "))
    }
}

async fn cost_report(State(sb): State<Arc<Sandbox>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let query = Query::parse(q.as_deref());
    let req = match report_request(
        &sb,
        &headers,
        "/v1/organizations/cost_report",
        &query,
        &["workspace_id", "description"],
    ) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let groups = query.all("group_by");
    let (by_workspace, by_description) = (groups.contains(&"workspace_id"), groups.contains(&"description"));
    let view = OrgView::new(&sb, &req.caller, sb.anthropic.len());
    let spec = view.spec();
    let today = today();
    let data = req
        .days
        .iter()
        .map(|day| {
            type Line = (usize, Dims, Charge);
            let mut sums: BTreeMap<(Option<usize>, Option<Line>), Decimal> = BTreeMap::new();
            for r in day_rows(&view.org, &spec, *day, today) {
                let price = &sb.anthropic[r.model].price;
                let Some(lines) = line_costs(price, r.dims, &r.tokens) else { continue };
                let Some(search) = web_search_cost(price, r.web_search_requests) else { continue };
                let charges = lines.into_iter().map(|(t, _, cost)| (Charge::Tokens(t), cost));
                let searches = (r.web_search_requests > 0).then_some((Charge::WebSearch, search));
                for (charge, cost) in charges.chain(searches) {
                    // Web search costs the same whatever the row's tier, speed or geo: one line a model.
                    let dims = if charge == Charge::WebSearch { Dims::STANDARD } else { r.dims };
                    let key = (by_workspace.then_some(r.project), by_description.then_some((r.model, dims, charge)));
                    *sums.entry(key).or_default() += cost;
                }
            }
            let results = sums
                .into_iter()
                .map(|((workspace, line), dollars)| {
                    let model = line.map(|(m, ..)| &sb.anthropic[m]);
                    let dims = line.map(|(_, d, _)| d);
                    let charge = line.map(|(.., c)| c);
                    // A field of token lines; null on web search lines (one line a model).
                    let token_field = |f: fn(Dims) -> &'static str| match charge {
                        Some(Charge::Tokens(_)) => dims.map(f),
                        _ => None,
                    };
                    CostResult {
                        currency: "USD",
                        amount: numeric_text(dollars * Decimal::ONE_HUNDRED),
                        workspace_id: workspace.and_then(|j| view.workspace_id(j)),
                        description: line.map(|(m, d, c)| description(sb.anthropic[m].display_name, d, c)),
                        cost_type: charge.map(|c| match c {
                            Charge::Tokens(_) => "tokens",
                            Charge::WebSearch => "web_search",
                        }),
                        context_window: token_field(|d| context_window(d.context)),
                        model: model.map(|m| m.id),
                        service_tier: token_field(|d| service_tier(d.tier)),
                        token_type: charge.and_then(|c| match c {
                            Charge::Tokens(t) => token_type(t),
                            Charge::WebSearch => None,
                        }),
                        inference_geo: token_field(|d| inference_geo(d.geo)),
                        speed: token_field(|d| speed(d.speed)),
                    }
                })
                .collect();
            bucket(*day, results)
        })
        .collect();
    json(200, &Envelope { data, has_more: req.next_page.is_some(), next_page: req.next_page })
}
