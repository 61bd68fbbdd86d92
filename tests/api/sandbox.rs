//! The provider sandbox of `convergence-local` (`SANDBOX_PROVIDERS=true`): the OpenAI and
//! Anthropic admin endpoints in their real shapes, paged like the real APIs, deterministic per key
//! and day, with every billed dimension of issue 14 (tiers, modalities, cache writes, fast mode,
//! US-only inference, web search), costs equal to the default catalog applied to the same usage,
//! fault injection, key handling, and credential set-up validated against it end to end.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use convergence_tests::{Key, TestApp};
use reqwest::StatusCode;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};

/// The app with the sandbox as its providers (the harness aims unset provider bases at it).
pub async fn spawn() -> TestApp {
    spawn_with(&[]).await
}

pub async fn spawn_with(extra: &[(&str, &str)]) -> TestApp {
    TestApp::spawn_with(extra).await
}

const OPENAI_KEY: &str = "sk-admin-sandbox-acme";
const ANTHROPIC_KEY: &str = "sk-ant-admin01-sandbox-acme";
/// 2025-03-01T00:00:00Z: a fixed window in the past, so the data never changes.
const MARCH_1: i64 = 1_740_787_200;
const DAY: i64 = 86_400;

struct Raw {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
    body: Value,
}

async fn openai(app: &TestApp, path_and_query: &str, key: &str) -> Raw {
    let req = app.client.get(format!("{}/sandbox/openai/v1{path_and_query}", app.base)).bearer_auth(key);
    send(req).await
}

/// The fast-mode beta, which `group_by[]=speed` needs.
const FAST_MODE_BETA: &str = "fast-mode-2026-02-01";

/// An Anthropic call with the fast-mode beta among others (as a client that groups by speed sends).
async fn anthropic(app: &TestApp, path_and_query: &str, key: &str) -> Raw {
    let req = app
        .client
        .get(format!("{}/sandbox/anthropic{path_and_query}", app.base))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", format!("files-api-2025-04-14, {FAST_MODE_BETA}"));
    send(req).await
}

async fn send(req: reqwest::RequestBuilder) -> Raw {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Raw { status, headers, text, body }
}

/// Follows `next_page` to the end; returns every bucket and the number of pages.
async fn all_pages(app: &TestApp, anthropic_api: bool, path: &str, query: &str, key: &str) -> (Vec<Value>, usize) {
    let mut buckets = Vec::new();
    let mut page: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &page {
            Some(p) => format!("{path}?{query}&page={p}"),
            None => format!("{path}?{query}"),
        };
        let r = if anthropic_api { anthropic(app, &q, key).await } else { openai(app, &q, key).await };
        assert_eq!(r.status, 200, "{q}: {}", r.text);
        pages += 1;
        assert!(pages < 100, "paging never ends");
        if !anthropic_api {
            assert_eq!(r.body["object"], "page");
        }
        buckets.extend(r.body["data"].as_array().unwrap().iter().cloned());
        assert_eq!(r.body["has_more"], r.body["next_page"].is_string(), "{}", r.text);
        match r.body["next_page"].as_str() {
            Some(next) => page = Some(next.to_string()),
            None => break,
        }
    }
    (buckets, pages)
}

fn sum(buckets: &[Value], field: &str) -> u64 {
    buckets
        .iter()
        .flat_map(|b| b["results"].as_array().unwrap().iter())
        .map(|r| r.pointer(field).and_then(Value::as_u64).unwrap_or_else(|| panic!("{field} in {r}")))
        .sum()
}

#[tokio::test]
async fn openai_usage_has_the_real_shape_and_pages_to_the_end() {
    let app = spawn().await;
    let window = format!("start_time={MARCH_1}&end_time={}&bucket_width=1d", MARCH_1 + 10 * DAY);
    let all_groups = "group_by=model&group_by=project_id&group_by=api_key_id&group_by=batch&group_by=service_tier";
    let (small, pages) = all_pages(
        &app,
        false,
        "/organization/usage/completions",
        &format!("{window}&{all_groups}&limit=3"),
        OPENAI_KEY,
    )
    .await;
    assert_eq!(pages, 4, "10 days, 3 buckets a page");
    assert_eq!(small.len(), 10);
    for (i, b) in small.iter().enumerate() {
        assert_eq!(b["object"], "bucket");
        assert_eq!(b["start_time"], MARCH_1 + i as i64 * DAY);
        assert_eq!(b["end_time"], MARCH_1 + (i as i64 + 1) * DAY);
        let results = b["results"].as_array().unwrap();
        assert_eq!(results.len(), 40, "SANDBOX_ROWS_PER_DAY default: one result per finest-grain row");
        for r in results {
            assert_eq!(r["object"], "organization.usage.completions.result");
            let n = |f: &str| r[f].as_u64().unwrap_or_else(|| panic!("{f} in {r}"));
            let (input, cached, write) = (n("input_tokens"), n("input_cached_tokens"), n("input_cache_write_tokens"));
            assert!(cached + write <= input, "cached tokens and cache writes are part of input: {r}");
            assert_eq!(n("input_uncached_tokens"), input - cached - write);
            // Per modality: each counts its cached tokens, and the modalities add up.
            assert_eq!(n("input_text_tokens") + n("input_audio_tokens") + n("input_image_tokens"), input, "{r}");
            assert_eq!(
                n("input_cached_text_tokens") + n("input_cached_audio_tokens") + n("input_cached_image_tokens"),
                cached,
                "{r}"
            );
            assert_eq!(
                n("output_text_tokens") + n("output_audio_tokens") + n("output_image_tokens"),
                n("output_tokens")
            );
            assert!(n("output_tokens") > 0 && n("num_model_requests") > 0);
            assert!(r["project_id"].as_str().unwrap().starts_with("proj_"));
            assert!(r["api_key_id"].as_str().unwrap().starts_with("key_"));
            assert!(r["model"].is_string() && r["batch"].is_boolean());
            assert!(["default", "flex", "priority"].contains(&r["service_tier"].as_str().unwrap()), "{r}");
            assert!(r["user_id"].is_null());
            if r["batch"] == true {
                assert_eq!(cached + write, 0, "batch rows have no cache reads or writes: {r}");
                assert_eq!(r["service_tier"], "default");
            }
        }
    }
    let models: std::collections::BTreeSet<&str> =
        small.iter().flat_map(|b| b["results"].as_array().unwrap()).map(|r| r["model"].as_str().unwrap()).collect();
    assert!(models.contains("gpt-4o-mini-2024-07-18") && models.contains("gpt-4o-2024-05-13"), "{models:?}");
    let all: Vec<&Value> = small.iter().flat_map(|b| b["results"].as_array().unwrap()).collect();
    let any = |f: &dyn Fn(&Value) -> bool| all.iter().any(|r| f(r));
    let n = |r: &Value, f: &str| r[f].as_u64().unwrap();
    assert!(any(&|r| r["batch"] == true) && any(&|r| n(r, "input_cached_tokens") > 0));
    assert!(any(&|r| r["service_tier"] == "flex") && any(&|r| r["service_tier"] == "priority"));
    assert!(any(&|r| r["model"] == "gpt-5.6" && n(r, "input_cache_write_tokens") > 0));
    assert!(any(&|r| r["model"] == "gpt-realtime-2025-08-28"
        && n(r, "input_cached_audio_tokens") > 0
        && n(r, "input_audio_tokens") > n(r, "input_cached_audio_tokens")
        && n(r, "output_audio_tokens") > 0
        && n(r, "input_cached_image_tokens") > 0));
    assert!(any(&|r| r["model"] == "gpt-image-1" && n(r, "output_image_tokens") == n(r, "output_tokens")));
    assert!(all.iter().all(|r| ["gpt-realtime-2025-08-28", "gpt-image-1"].contains(&r["model"].as_str().unwrap())
        || n(r, "input_audio_tokens") + n(r, "input_image_tokens") + n(r, "output_image_tokens") == 0));

    // Totals do not depend on the page size or the grouping.
    let (big, pages) = all_pages(
        &app,
        false,
        "/organization/usage/completions",
        &format!("{window}&{all_groups}&limit=31"),
        OPENAI_KEY,
    )
    .await;
    assert_eq!(pages, 1);
    let first = openai(&app, &format!("/organization/usage/completions?{window}"), OPENAI_KEY).await;
    assert_eq!(first.body["data"].as_array().unwrap().len(), 7, "default limit: 7 buckets");
    assert_eq!(first.body["has_more"], true);
    let (ungrouped, pages) = all_pages(&app, false, "/organization/usage/completions", &window, OPENAI_KEY).await;
    assert_eq!((ungrouped.len(), pages), (10, 2));
    for b in &ungrouped {
        let results = b["results"].as_array().unwrap();
        assert_eq!(results.len(), 1);
        assert!(results[0]["model"].is_null() && results[0]["project_id"].is_null() && results[0]["batch"].is_null());
    }
    for field in [
        "/input_tokens",
        "/input_cached_tokens",
        "/input_cache_write_tokens",
        "/input_audio_tokens",
        "/output_image_tokens",
        "/output_tokens",
        "/num_model_requests",
    ] {
        assert_eq!(sum(&small, field), sum(&big, field), "{field}");
        assert_eq!(sum(&small, field), sum(&ungrouped, field), "{field}");
    }

    // Embeddings: their own shape and group keys.
    let (emb, _) = all_pages(
        &app,
        false,
        "/organization/usage/embeddings",
        &format!("{window}&group_by=model&group_by=project_id&limit=5"),
        OPENAI_KEY,
    )
    .await;
    assert_eq!(emb.len(), 10);
    let r = &emb[0]["results"][0];
    assert_eq!(r["object"], "organization.usage.embeddings.result");
    assert!(r["model"].as_str().unwrap().starts_with("text-embedding-3-"), "{r}");
    assert!(r["input_tokens"].as_u64().unwrap() > 0 && r.get("output_tokens").is_none());
    let bad = openai(&app, &format!("/organization/usage/embeddings?{window}&group_by=batch"), OPENAI_KEY).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["error"]["type"], "invalid_request_error");
    assert_eq!(bad.body["error"]["param"], "group_by");

    // Bad parameters are the provider's 400s.
    for q in [
        format!("end_time={}", MARCH_1),
        format!("start_time={MARCH_1}&limit=32"),
        format!("start_time={MARCH_1}&bucket_width=1h"),
        format!("start_time={MARCH_1}&end_time={MARCH_1}"),
        format!("start_time={MARCH_1}&page=page_nonsense"),
    ] {
        let r = openai(&app, &format!("/organization/usage/completions?{q}"), OPENAI_KEY).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
        assert!(r.body["error"]["message"].is_string());
    }
    // Days after today have no usage yet.
    let now = chrono::Utc::now().timestamp();
    let future = openai(
        &app,
        &format!("/organization/usage/completions?start_time={}&end_time={}", now + 2 * DAY, now + 4 * DAY),
        OPENAI_KEY,
    )
    .await;
    assert!(future.body["data"].as_array().unwrap().iter().all(|b| b["results"].as_array().unwrap().is_empty()));
}

#[tokio::test]
async fn anthropic_usage_has_the_real_shape_and_pages_to_the_end() {
    let app = spawn().await;
    let window = "starting_at=2025-03-01T00:00:00Z&ending_at=2025-03-11T00:00:00Z&bucket_width=1d";
    let groups = "group_by[]=model&group_by[]=workspace_id&group_by[]=api_key_id&group_by[]=service_tier&group_by[]=context_window";
    let path = "/v1/organizations/usage_report/messages";
    let (small, pages) = all_pages(&app, true, path, &format!("{window}&{groups}&limit=4"), ANTHROPIC_KEY).await;
    assert_eq!((small.len(), pages), (10, 3));
    assert_eq!(small[0]["starting_at"], "2025-03-01T00:00:00Z");
    assert_eq!(small[0]["ending_at"], "2025-03-02T00:00:00Z");
    assert_eq!(small[9]["starting_at"], "2025-03-10T00:00:00Z");
    let all: Vec<&Value> = small.iter().flat_map(|b| b["results"].as_array().unwrap()).collect();
    for r in &all {
        for f in ["/uncached_input_tokens", "/cache_read_input_tokens", "/output_tokens"] {
            assert!(r.pointer(f).unwrap().is_u64(), "{f}: {r}");
        }
        assert!(r["cache_creation"]["ephemeral_5m_input_tokens"].is_u64());
        assert!(r["cache_creation"]["ephemeral_1h_input_tokens"].is_u64());
        assert!(r["server_tool_use"]["web_search_requests"].is_u64());
        assert!(r["api_key_id"].as_str().unwrap().starts_with("apikey_01"));
        assert!(r["workspace_id"].is_null() || r["workspace_id"].as_str().unwrap().starts_with("wrkspc_01"));
        assert!(["standard", "batch"].contains(&r["service_tier"].as_str().unwrap()));
        assert!(["0-200k", "200k-1M"].contains(&r["context_window"].as_str().unwrap()));
        assert!(r["model"].as_str().unwrap().starts_with("claude-"));
    }
    assert!(all.iter().any(|r| r["workspace_id"].is_null()), "the default workspace is null");
    assert!(all.iter().any(|r| r["service_tier"] == "batch"));
    assert!(all.iter().any(|r| r["context_window"] == "200k-1M"));
    assert!(all.iter().any(|r| r["cache_creation"]["ephemeral_1h_input_tokens"].as_u64() > Some(0)));
    assert!(all.iter().any(|r| r["server_tool_use"]["web_search_requests"].as_u64() > Some(0)));
    for f in ["speed", "inference_geo", "account_id", "service_account_id"] {
        assert!(all.iter().all(|r| r[f].is_null()), "{f} is null unless grouped by");
    }

    let (one_page, pages) = all_pages(&app, true, path, &format!("{window}&limit=31"), ANTHROPIC_KEY).await;
    assert_eq!(pages, 1);
    for f in [
        "/uncached_input_tokens",
        "/cache_read_input_tokens",
        "/cache_creation/ephemeral_5m_input_tokens",
        "/cache_creation/ephemeral_1h_input_tokens",
        "/output_tokens",
        "/server_tool_use/web_search_requests",
    ] {
        assert_eq!(sum(&small, f), sum(&one_page, f), "{f}");
    }
    assert!(one_page[0]["results"][0]["model"].is_null());

    let bad = anthropic(&app, &format!("{path}?starting_at=yesterday"), ANTHROPIC_KEY).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["type"], "error");
    assert_eq!(bad.body["error"]["type"], "invalid_request_error");
    let missing = anthropic(&app, path, ANTHROPIC_KEY).await;
    assert_eq!(missing.status, 400, "{}", missing.text);
}

#[tokio::test]
async fn data_is_deterministic_per_key_and_day() {
    let app = spawn().await;
    let q = format!(
        "/organization/usage/completions?start_time={MARCH_1}&end_time={}&group_by=model&group_by=api_key_id",
        MARCH_1 + 3 * DAY
    );
    let a = openai(&app, &q, OPENAI_KEY).await;
    let b = openai(&app, &q, OPENAI_KEY).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text, b.text, "the same request gives byte-identical bodies");
    // Another process (a restart) gives the same bytes too.
    let other_app = spawn().await;
    assert_eq!(openai(&other_app, &q, OPENAI_KEY).await.text, a.text);
    let other_org = openai(&app, &q, "sk-admin-sandbox-globex").await;
    assert_ne!(other_org.text, a.text);
    let days = a.body["data"].as_array().unwrap();
    assert_ne!(days[0]["results"], days[1]["results"], "another day, other numbers");

    let c = format!("/organization/costs?start_time={MARCH_1}&end_time={}&group_by=line_item", MARCH_1 + 3 * DAY);
    assert_eq!(openai(&app, &c, OPENAI_KEY).await.text, openai(&app, &c, OPENAI_KEY).await.text);
    let r = "/v1/organizations/cost_report?starting_at=2025-03-01T00:00:00Z&ending_at=2025-03-04T00:00:00Z&group_by[]=description";
    assert_eq!(anthropic(&app, r, ANTHROPIC_KEY).await.text, anthropic(&app, r, ANTHROPIC_KEY).await.text);
    assert_ne!(
        anthropic(&app, r, ANTHROPIC_KEY).await.text,
        anthropic(&app, r, "sk-ant-admin01-sandbox-globex").await.text
    );
}

/// An exact decimal (`"12.5"`, `"1.5e-7"`) in units of 10^-`scale`.
fn scaled(text: &str, scale: u32) -> i128 {
    let (mantissa, exp) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap()),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: i128 = format!("{int}{frac}").parse().unwrap();
    let shift = scale as i32 + exp - frac.len() as i32;
    assert!(shift >= 0, "{text} has more than {scale} decimals");
    digits * 10i128.pow(shift as u32)
}

/// One version of a model in the default catalog: its days and its prices by column.
struct Version {
    from: NaiveDate,
    /// Exclusive; None while current.
    to: Option<NaiveDate>,
    prices: HashMap<String, Decimal>,
}

/// The default catalog of a provider (`configs/{provider}/seed/data/default_pricing.csv`), read
/// with the csv crate on its own (not Convergence's loader): model → versions.
struct Catalog(BTreeMap<String, Vec<Version>>);

impl Catalog {
    fn load(provider: &str) -> Catalog {
        let path = format!("{}/../configs/{provider}/seed/data/default_pricing.csv", env!("CARGO_MANIFEST_DIR"));
        let mut reader = csv::Reader::from_path(path).unwrap();
        let headers = reader.headers().unwrap().clone();
        let mut out: BTreeMap<String, Vec<Version>> = BTreeMap::new();
        for row in reader.records() {
            let row = row.unwrap();
            let field = |name: &str| headers.iter().position(|h| h == name).map(|i| &row[i]).unwrap_or("");
            let date = |text: &str| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok();
            let prices = headers
                .iter()
                .zip(row.iter())
                .filter(|(h, v)| {
                    (h.ends_with("_per_1m") || h.ends_with("_multiplier") || h.ends_with("_per_1k_requests"))
                        && !v.is_empty()
                })
                .map(|(h, v)| (h.to_string(), v.parse::<Decimal>().unwrap_or_else(|e| panic!("{h} {v:?}: {e}"))))
                .collect();
            let version =
                Version { from: date(field("effective_from")).unwrap(), to: date(field("effective_to")), prices };
            out.entry(field("model_id").to_string()).or_default().push(version);
        }
        Catalog(out)
    }

    /// The prices in force on `day` for `model`: the exact id, else the longest catalog id the
    /// model extends by a `-` suffix (a dated snapshot).
    fn price(&self, model: &str, day: NaiveDate) -> &HashMap<String, Decimal> {
        let versions = self
            .0
            .get(model)
            .or_else(|| {
                self.0
                    .iter()
                    .filter(|(id, _)| model.starts_with(&format!("{id}-")))
                    .max_by_key(|(id, _)| id.len())
                    .map(|(_, v)| v)
            })
            .unwrap_or_else(|| panic!("{model} is not in the default catalog"));
        &versions
            .iter()
            .find(|v| v.from <= day && v.to.is_none_or(|to| day < to))
            .unwrap_or_else(|| panic!("{model} has no catalog price on {day}"))
            .prices
    }
}

fn rate(p: &HashMap<String, Decimal>, column: &str) -> Decimal {
    *p.get(column).unwrap_or_else(|| panic!("no {column} in {p:?}"))
}

/// `tokens × rate × multiplier / 1M`, rounded once half away from zero to 9 decimals.
fn line_cost(tokens: u64, rate: Decimal, multiplier: Decimal) -> Decimal {
    (Decimal::from(tokens) * rate * multiplier / Decimal::from(1_000_000))
        .round_dp_with_strategy(9, RoundingStrategy::MidpointAwayFromZero)
}

fn decimal(v: &Value) -> Decimal {
    match v {
        Value::String(s) => s.parse().unwrap(),
        other => other.to_string().parse().unwrap(),
    }
}

fn day_of(bucket: &Value) -> NaiveDate {
    match bucket["start_time"].as_i64() {
        Some(t) => chrono::DateTime::from_timestamp(t, 0).unwrap().date_naive(),
        None => NaiveDate::parse_from_str(&bucket["starting_at"].as_str().unwrap()[..10], "%Y-%m-%d").unwrap(),
    }
}

/// The expected OpenAI bill of a day, line item by line item, from the finest-grain usage and the
/// catalog (issue 14's token types and canonical line items).
fn openai_expected_lines(catalog: &Catalog, usage: &Value, embeddings: &Value) -> BTreeMap<String, Decimal> {
    let day = day_of(usage);
    let mut lines: BTreeMap<String, Decimal> = BTreeMap::new();
    for r in usage["results"].as_array().unwrap() {
        let model = r["model"].as_str().unwrap();
        let p = catalog.price(model, day);
        let n = |f: &str| r[f].as_u64().unwrap();
        let (tier_word, prefix) = match (r["batch"].as_bool().unwrap(), r["service_tier"].as_str().unwrap()) {
            (true, _) => ("batch ", "batch_"),
            (false, "default") => ("", ""),
            (false, "flex") => ("flex ", "flex_"),
            (false, "priority") => ("priority ", "priority_"),
            other => panic!("unexpected tier {other:?}"),
        };
        let (audio_cached, image_cached) = (n("input_cached_audio_tokens"), n("input_cached_image_tokens"));
        let audio = n("input_audio_tokens") - audio_cached;
        let image = n("input_image_tokens") - image_cached;
        let write = n("input_cache_write_tokens");
        let (audio_out, image_out) = (n("output_audio_tokens"), n("output_image_tokens"));
        let text_cached = n("input_cached_tokens") - audio_cached - image_cached;
        let text = n("input_tokens") - n("input_cached_tokens") - write - audio - image;
        let text_out = n("output_tokens") - audio_out - image_out;
        // Audio and image rates are standard-tier only.
        let kinds = [
            ("input", text, format!("{prefix}input_per_1m")),
            ("cached input", text_cached, format!("{prefix}cached_input_per_1m")),
            ("cache write", write, format!("{prefix}cache_write_5m_per_1m")),
            ("output", text_out, format!("{prefix}output_per_1m")),
            ("audio input", audio, "audio_input_per_1m".into()),
            ("cached audio input", audio_cached, "audio_cached_input_per_1m".into()),
            ("audio output", audio_out, "audio_output_per_1m".into()),
            ("image input", image, "image_input_per_1m".into()),
            ("cached image input", image_cached, "image_cached_input_per_1m".into()),
            ("image output", image_out, "image_output_per_1m".into()),
        ];
        for (kind, tokens, column) in kinds {
            if tokens > 0 {
                let cost = line_cost(tokens, rate(p, &column), Decimal::ONE);
                *lines.entry(format!("{model}, {tier_word}{kind}")).or_default() += cost;
            }
        }
    }
    for r in embeddings["results"].as_array().unwrap() {
        let model = r["model"].as_str().unwrap();
        let cost = line_cost(
            r["input_tokens"].as_u64().unwrap(),
            rate(catalog.price(model, day), "input_per_1m"),
            Decimal::ONE,
        );
        *lines.entry(format!("{model}, input")).or_default() += cost;
    }
    lines
}

/// Usage at its finest grain (one result per sandbox row), so each line is rounded where the
/// sandbox rounds it.
const OPENAI_FINEST: &str =
    "group_by=model&group_by=batch&group_by=service_tier&group_by=project_id&group_by=api_key_id";

#[tokio::test]
async fn openai_costs_equal_the_default_catalog_applied_to_usage() {
    let app = spawn().await;
    let catalog = Catalog::load("openai");
    let window = format!("start_time={MARCH_1}&end_time={}", MARCH_1 + 9 * DAY);
    let (usage, _) = all_pages(
        &app,
        false,
        "/organization/usage/completions",
        &format!("{window}&{OPENAI_FINEST}&limit=4"),
        OPENAI_KEY,
    )
    .await;
    let (embeddings, _) = all_pages(
        &app,
        false,
        "/organization/usage/embeddings",
        &format!("{window}&group_by=model&group_by=project_id&group_by=api_key_id"),
        OPENAI_KEY,
    )
    .await;
    let (costs, _) = all_pages(&app, false, "/organization/costs", &format!("{window}&limit=2"), OPENAI_KEY).await;
    let (by_line, _) =
        all_pages(&app, false, "/organization/costs", &format!("{window}&group_by=line_item&limit=9"), OPENAI_KEY)
            .await;
    let (by_project, _) = all_pages(
        &app,
        false,
        "/organization/costs",
        &format!("{window}&group_by=line_item&group_by=project_id&limit=9"),
        OPENAI_KEY,
    )
    .await;
    assert_eq!((usage.len(), embeddings.len(), costs.len(), by_line.len()), (9, 9, 9, 9));
    let mut kinds = std::collections::BTreeSet::new();
    for day in 0..9 {
        let expected = openai_expected_lines(&catalog, &usage[day], &embeddings[day]);
        let total: Decimal = expected.values().sum();
        let results = costs[day]["results"].as_array().unwrap();
        assert_eq!(results.len(), 1);
        let r = &results[0];
        assert_eq!(r["object"], "organization.costs.result");
        assert_eq!(r["amount"]["currency"], "usd");
        assert!(r["line_item"].is_null() && r["project_id"].is_null());
        assert_eq!(decimal(&r["amount"]["value"]), total, "day {day}: reported vs computed");
        assert!(total > Decimal::ZERO);

        let billed: BTreeMap<String, Decimal> = by_line[day]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                assert_eq!(l["quantity_unit"], "tokens");
                assert!(l["quantity"].as_u64().unwrap() > 0);
                (l["line_item"].as_str().unwrap().to_string(), decimal(&l["amount"]["value"]))
            })
            .collect();
        assert_eq!(billed, expected, "day {day}: line by line");
        kinds.extend(billed.keys().map(|k| k.split_once(", ").unwrap().1.to_string()));
        let lines = by_project[day]["results"].as_array().unwrap();
        assert_eq!(lines.iter().map(|l| decimal(&l["amount"]["value"])).sum::<Decimal>(), total);
        assert!(lines.iter().all(|l| l["project_id"].as_str().unwrap().starts_with("proj_")));
    }
    for kind in [
        "input",
        "cached input",
        "output",
        "cache write",
        "batch input",
        "flex cached input",
        "priority output",
        "audio input",
        "cached audio input",
        "audio output",
        "image input",
        "cached image input",
        "image output",
    ] {
        assert!(kinds.contains(kind), "the bill has {kind:?} lines: {kinds:?}");
    }
    // The body carries the exact decimal, not a float approximation of it.
    let raw = openai(&app, &format!("/organization/costs?{window}"), OPENAI_KEY).await;
    assert!(raw.text.contains("\"amount\":{\"value\":"), "{}", raw.text);
}

/// A cost-report line's identity: model, cost type, token type, tier, context, speed, geo.
type AnthropicLine = [Option<String>; 7];

fn anthropic_line(l: &Value) -> AnthropicLine {
    ["model", "cost_type", "token_type", "service_tier", "context_window", "speed", "inference_geo"]
        .map(|f| l[f].as_str().map(str::to_string))
}

/// The expected Anthropic cost report of a day, line by line, from finest-grain usage and the
/// catalog: token rates by tier and context, × the fast-mode and US-only multipliers; web search
/// per request, without them.
fn anthropic_expected_lines(catalog: &Catalog, usage: &Value) -> BTreeMap<AnthropicLine, Decimal> {
    let day = day_of(usage);
    let mut lines: BTreeMap<AnthropicLine, Decimal> = BTreeMap::new();
    for r in usage["results"].as_array().unwrap() {
        let model = r["model"].as_str().unwrap();
        let p = catalog.price(model, day);
        let n = |f: &str| r.pointer(f).unwrap().as_u64().unwrap();
        let text = |f: &str| r[f].as_str().unwrap().to_string();
        let prefix = match (r["service_tier"].as_str().unwrap(), r["context_window"].as_str().unwrap()) {
            ("standard", "0-200k") => "",
            ("standard", "200k-1M") => "long_context_",
            ("batch", "0-200k") => "batch_",
            ("batch", "200k-1M") => "batch_long_context_",
            other => panic!("unexpected {other:?}"),
        };
        let fast = match r["speed"].as_str().unwrap() {
            "standard" => Decimal::ONE,
            "fast" => rate(p, "fast_mode_multiplier"),
            other => panic!("speed {other}"),
        };
        let geo = match r["inference_geo"].as_str().unwrap() {
            "global" | "not_available" => Decimal::ONE,
            "us" => rate(p, "us_inference_multiplier"),
            other => panic!("inference_geo {other}"),
        };
        let tokens = [
            ("/uncached_input_tokens", "uncached_input_tokens", "input_per_1m"),
            ("/cache_read_input_tokens", "cache_read_input_tokens", "cached_input_per_1m"),
            (
                "/cache_creation/ephemeral_5m_input_tokens",
                "cache_creation.ephemeral_5m_input_tokens",
                "cache_write_5m_per_1m",
            ),
            (
                "/cache_creation/ephemeral_1h_input_tokens",
                "cache_creation.ephemeral_1h_input_tokens",
                "cache_write_1h_per_1m",
            ),
            ("/output_tokens", "output_tokens", "output_per_1m"),
        ];
        for (field, token_type, column) in tokens {
            let count = n(field);
            if count > 0 {
                let key = [
                    Some(model.to_string()),
                    Some("tokens".into()),
                    Some(token_type.into()),
                    Some(text("service_tier")),
                    Some(text("context_window")),
                    Some(text("speed")),
                    Some(text("inference_geo")),
                ];
                *lines.entry(key).or_default() += line_cost(count, rate(p, &format!("{prefix}{column}")), fast * geo);
            }
        }
        let searches = n("/server_tool_use/web_search_requests");
        if searches > 0 {
            let key = [Some(model.to_string()), Some("web_search".into()), None, None, None, None, None];
            let cost = line_cost(searches * 1000, rate(p, "web_search_per_1k_requests"), Decimal::ONE);
            *lines.entry(key).or_default() += cost;
        }
    }
    lines
}

#[tokio::test]
async fn anthropic_cost_report_equals_the_default_catalog_applied_to_usage() {
    let app = spawn().await;
    let catalog = Catalog::load("anthropic");
    let window = "starting_at=2025-03-01T00:00:00Z&ending_at=2025-03-08T00:00:00Z";
    let finest = "group_by[]=model&group_by[]=workspace_id&group_by[]=api_key_id&group_by[]=service_tier&group_by[]=context_window&group_by[]=speed&group_by[]=inference_geo";
    let (usage, _) = all_pages(
        &app,
        true,
        "/v1/organizations/usage_report/messages",
        &format!("{window}&{finest}&limit=3"),
        ANTHROPIC_KEY,
    )
    .await;
    let (report, _) =
        all_pages(&app, true, "/v1/organizations/cost_report", &format!("{window}&limit=2"), ANTHROPIC_KEY).await;
    let (described, _) = all_pages(
        &app,
        true,
        "/v1/organizations/cost_report",
        &format!("{window}&group_by[]=description"),
        ANTHROPIC_KEY,
    )
    .await;
    let (by_workspace, _) = all_pages(
        &app,
        true,
        "/v1/organizations/cost_report",
        &format!("{window}&group_by[]=workspace_id&group_by[]=description"),
        ANTHROPIC_KEY,
    )
    .await;
    assert_eq!((usage.len(), report.len(), described.len(), by_workspace.len()), (7, 7, 7, 7));
    for day in 0..7 {
        let expected = anthropic_expected_lines(&catalog, &usage[day]);
        let total: Decimal = expected.values().sum();
        let results = report[day]["results"].as_array().unwrap();
        assert_eq!(results.len(), 1);
        let r = &results[0];
        assert_eq!(r["currency"], "USD");
        assert!(r["description"].is_null() && r["model"].is_null() && r["workspace_id"].is_null());
        let cents = r["amount"].as_str().expect("amount is a decimal string");
        assert_eq!(cents.parse::<Decimal>().unwrap() / Decimal::ONE_HUNDRED, total, "day {day}: {cents} cents");

        let lines = described[day]["results"].as_array().unwrap();
        let billed: BTreeMap<AnthropicLine, Decimal> = lines
            .iter()
            .map(|l| {
                (anthropic_line(l), l["amount"].as_str().unwrap().parse::<Decimal>().unwrap() / Decimal::ONE_HUNDRED)
            })
            .collect();
        assert_eq!(billed.len(), lines.len(), "one line per description");
        assert_eq!(billed, expected, "day {day}: line by line");
        for l in lines {
            let description = l["description"].as_str().unwrap();
            assert!(description.contains(" Usage - "), "{l}");
            assert_eq!(description.contains("Fast Mode"), l["speed"] == "fast", "{l}");
            assert_eq!(description.contains("US Only"), l["inference_geo"] == "us", "{l}");
            assert_eq!(l["cost_type"] == "web_search", description.ends_with("Web Search"), "{l}");
        }
        let grouped = by_workspace[day]["results"].as_array().unwrap();
        let sum: Decimal = grouped.iter().map(|l| l["amount"].as_str().unwrap().parse::<Decimal>().unwrap()).sum();
        assert_eq!(sum / Decimal::ONE_HUNDRED, total);
        assert!(
            grouped.iter().any(|l| l["workspace_id"].is_null())
                && grouped.iter().any(|l| l["workspace_id"].is_string())
        );
    }
    let all: Vec<&Value> = described.iter().flat_map(|b| b["results"].as_array().unwrap()).collect();
    assert!(all.iter().any(|l| l["speed"] == "fast" && l["inference_geo"] == "us"));
    assert!(all.iter().any(|l| l["speed"] == "fast" && l["inference_geo"] == "global"));
    assert!(all.iter().any(|l| l["service_tier"] == "batch" && l["inference_geo"] == "us"));
    assert!(all.iter().any(|l| l["cost_type"] == "web_search" && l["token_type"].is_null()));
    assert!(all.iter().any(|l| l["context_window"] == "200k-1M"));
}

#[tokio::test]
async fn anthropic_usage_groups_by_speed_inference_geo_and_account_behind_the_beta() {
    let app = spawn().await;
    let path = "/v1/organizations/usage_report/messages";
    let window = "starting_at=2025-03-01T00:00:00Z&ending_at=2025-03-04T00:00:00Z";
    // Without the fast-mode beta, grouping by speed is refused like the API refuses it.
    let q = format!("{path}?{window}&group_by[]=model&group_by[]=speed");
    for beta in [None, Some("files-api-2025-04-14")] {
        let mut req = app
            .client
            .get(format!("{}/sandbox/anthropic{q}", app.base))
            .header("x-api-key", ANTHROPIC_KEY)
            .header("anthropic-version", "2023-06-01");
        if let Some(beta) = beta {
            req = req.header("anthropic-beta", beta);
        }
        let r = send(req).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.body["type"], "error");
        assert_eq!(r.body["error"]["type"], "invalid_request_error");
        assert!(r.body["error"]["message"].as_str().unwrap().contains(FAST_MODE_BETA), "{}", r.text);
    }
    // With it: the 2026 fields, each set only when grouped by.
    let groups = "group_by[]=model&group_by[]=speed&group_by[]=inference_geo&group_by[]=account_id&group_by[]=service_account_id";
    let (buckets, _) = all_pages(&app, true, path, &format!("{window}&{groups}"), ANTHROPIC_KEY).await;
    let all: Vec<&Value> = buckets.iter().flat_map(|b| b["results"].as_array().unwrap()).collect();
    for r in &all {
        let model = r["model"].as_str().unwrap();
        let opus = model == "claude-opus-4-6";
        assert!(["standard", "fast"].contains(&r["speed"].as_str().unwrap()), "{r}");
        assert!(r["speed"] == "standard" || opus, "fast mode on Opus 4.6 only: {r}");
        let geo = r["inference_geo"].as_str().unwrap();
        assert_eq!(["global", "us"].contains(&geo), opus, "older models: not_available: {r}");
        assert!(r["api_key_id"].is_null() && r["workspace_id"].is_null() && r["service_tier"].is_null());
        let (user, service) = (r["account_id"].as_str(), r["service_account_id"].as_str());
        assert!(user.is_some() != service.is_some(), "a user or a service account: {r}");
        assert!(user.is_none_or(|u| u.starts_with("user_01")) && service.is_none_or(|s| s.starts_with("svcacct_01")));
    }
    assert!(all.iter().any(|r| r["speed"] == "fast" && r["inference_geo"] == "us"));
    assert!(all.iter().any(|r| r["speed"] == "fast" && r["inference_geo"] == "global"));
    assert!(all.iter().any(|r| r["speed"] == "standard" && r["inference_geo"] == "us"));
    assert!(all.iter().any(|r| r["service_account_id"].is_string()));
    // The same usage, however it is grouped.
    let (plain, _) = all_pages(&app, true, path, window, ANTHROPIC_KEY).await;
    for f in ["/uncached_input_tokens", "/output_tokens", "/server_tool_use/web_search_requests"] {
        assert_eq!(sum(&buckets, f), sum(&plain, f), "{f}");
    }
}

#[tokio::test]
async fn faults_are_injected_for_a_fixed_number_of_calls() {
    let app = spawn().await;
    let q = format!("/organization/usage/completions?start_time={MARCH_1}&end_time={}", MARCH_1 + DAY);
    let key = "sk-admin-sandbox-flaky-fail429x2";
    for _ in 0..2 {
        let r = openai(&app, &q, key).await;
        assert_eq!(r.status, 429, "{}", r.text);
        assert_eq!(r.headers["retry-after"], "1");
        assert_eq!(r.body["error"]["code"], "rate_limit_exceeded");
    }
    assert_eq!(openai(&app, &q, key).await.status, 200, "the third call goes through");
    // Counted per endpoint: the costs endpoint fails twice on its own.
    let c = format!("/organization/costs?start_time={MARCH_1}&end_time={}", MARCH_1 + DAY);
    assert_eq!(openai(&app, &c, key).await.status, 429);

    let always = openai(&app, &q, "sk-admin-sandbox-down-fail500").await;
    assert_eq!(always.status, 500);
    assert_eq!(always.body["error"]["type"], "server_error");
    assert_eq!(openai(&app, &q, "sk-admin-sandbox-down-fail500").await.status, 500);

    // A header fails just that call.
    let r = send(
        app.client
            .get(format!("{}/sandbox/openai/v1{q}", app.base))
            .bearer_auth(OPENAI_KEY)
            .header("x-sandbox-fail", "503"),
    )
    .await;
    assert_eq!(r.status, 503);
    assert_eq!(openai(&app, &q, OPENAI_KEY).await.status, 200);

    let a = "/v1/organizations/usage_report/messages?starting_at=2025-03-01T00:00:00Z&ending_at=2025-03-02T00:00:00Z";
    let r = anthropic(&app, a, "sk-ant-admin01-sandbox-flaky-fail529x1").await;
    assert_eq!(r.status, 529);
    assert_eq!(r.body["error"]["type"], "overloaded_error");
    assert_eq!(anthropic(&app, a, "sk-ant-admin01-sandbox-flaky-fail529x1").await.status, 200);
    let r = anthropic(&app, a, "sk-ant-admin01-sandbox-x-fail429").await;
    assert_eq!((r.status, r.body["error"]["type"].as_str()), (429, Some("rate_limit_error")));
    assert_eq!(r.headers["retry-after"], "1");
}

#[tokio::test]
async fn keys_are_told_apart_like_the_providers_do() {
    let app = spawn().await;
    let projects = openai(&app, "/organization/projects?limit=1", OPENAI_KEY).await;
    assert_eq!(projects.status, 200);
    assert_eq!(projects.body["object"], "list");
    assert_eq!(projects.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(projects.body["data"][0]["object"], "organization.project");
    assert_eq!(projects.body["has_more"], true);

    let project_key = "sk-proj-abcdefghijklmnopqrstuvwxyz";
    let refused = openai(&app, "/organization/projects?limit=1", project_key).await;
    assert_eq!(refused.status, 401);
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("insufficient permissions"));
    assert!(refused.body["error"]["code"].is_null());
    let usage = openai(&app, &format!("/organization/usage/completions?start_time={MARCH_1}"), project_key).await;
    assert_eq!(usage.status, 401);
    let models = openai(&app, "/models", project_key).await;
    assert_eq!(models.status, 200);
    assert_eq!(models.body["data"][0]["object"], "model");

    for bad in ["sk-admin-realkey-0123456789abcdef", "nonsense"] {
        let r = openai(&app, "/organization/projects", bad).await;
        assert_eq!(r.status, 401);
        assert_eq!(r.body["error"]["code"], "invalid_api_key");
        assert!(!r.text.contains(bad), "the key is masked: {}", r.text);
    }
    let none = send(app.client.get(format!("{}/sandbox/openai/v1/models", app.base))).await;
    assert_eq!(none.status, 401);

    let me = anthropic(&app, "/v1/organizations/me", ANTHROPIC_KEY).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["type"], "organization");
    assert_eq!(me.body["id"].as_str().unwrap().len(), 36);
    let workspace_key = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz";
    let r = anthropic(&app, "/v1/organizations/me", workspace_key).await;
    assert_eq!((r.status, r.body["error"]["type"].as_str()), (401, Some("authentication_error")));
    assert_eq!(anthropic(&app, "/v1/models?limit=1", workspace_key).await.status, 200);
    let listed = anthropic(&app, "/v1/models?limit=2", ANTHROPIC_KEY).await;
    assert_eq!(listed.body["data"][0]["type"], "model");
    assert_eq!(listed.body["has_more"], true);
    let r = anthropic(&app, "/v1/organizations/me", "sk-ant-admin01-real").await;
    assert_eq!(r.status, 401);
    let no_version = send(
        app.client
            .get(format!("{}/sandbox/anthropic/v1/organizations/me", app.base))
            .header("x-api-key", ANTHROPIC_KEY),
    )
    .await;
    assert_eq!(no_version.status, 400);
    assert_eq!(no_version.body["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn volume_follows_the_rows_knob() {
    let app = spawn_with(&[("SANDBOX_ROWS_PER_DAY", "300")]).await;
    let q = format!(
        "/organization/usage/completions?start_time={MARCH_1}&end_time={}&group_by=model&group_by=project_id&group_by=api_key_id&group_by=batch&group_by=service_tier",
        MARCH_1 + 2 * DAY
    );
    let r = openai(&app, &q, OPENAI_KEY).await;
    assert!(r.body["data"].as_array().unwrap().iter().all(|b| b["results"].as_array().unwrap().len() == 300));
    let r = openai(&app, &q, "sk-admin-sandbox-bench-rows5000").await;
    assert!(r.body["data"].as_array().unwrap().iter().all(|b| b["results"].as_array().unwrap().len() == 5000));
    let a = anthropic(
        &app,
        "/v1/organizations/usage_report/messages?starting_at=2025-03-01T00:00:00Z&ending_at=2025-03-02T00:00:00Z&group_by[]=model&group_by[]=api_key_id",
        "sk-ant-admin01-sandbox-bench-rows2000",
    )
    .await;
    assert_eq!(a.body["data"][0]["results"].as_array().unwrap().len(), 2000);
}

#[tokio::test]
async fn setup_validates_sandbox_keys_end_to_end() {
    let app = spawn().await;
    app.bootstrap().await;
    let org_key = app.onboard("sandbox_co").await;
    for (provider, key) in [("openai", OPENAI_KEY), ("anthropic", ANTHROPIC_KEY)] {
        let r = app
            .post(
                &format!("/api/v1/integrations/sandbox_co/{provider}/setup"),
                Key::Api(&org_key),
                json!({"credential": key, "credential_name": "sandbox admin key"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{provider}: {}", r.body);
        assert_eq!(r.body["status"], "VALID");
        let v = app
            .post(&format!("/api/v1/integrations/sandbox_co/{provider}/validate"), Key::Api(&org_key), json!({}))
            .await;
        assert_eq!(v.body["valid"], true, "{}", v.body);
    }
    // A project key is refused with the validation's own explanation.
    let r = app
        .post(
            "/api/v1/integrations/sandbox_co/openai/setup",
            Key::Api(&org_key),
            json!({"credential": "sk-proj-abcdefghijklmnopqrstuvwxyz"}),
        )
        .await;
    assert_ne!(r.status, StatusCode::CREATED);
    assert!(r.body.to_string().contains("not an admin key"), "{}", r.body);
    // A throttled sandbox is a throttled provider.
    let r = app
        .post(
            "/api/v1/integrations/sandbox_co/anthropic/setup",
            Key::Api(&org_key),
            json!({"credential": "sk-ant-admin01-sandbox-busy-fail429"}),
        )
        .await;
    assert_ne!(r.status, StatusCode::CREATED);
    assert!(r.body.to_string().contains("429"), "{}", r.body);
}

#[tokio::test]
async fn the_sandbox_is_only_there_when_asked_for() {
    let app = spawn_with(&[("SANDBOX_PROVIDERS", "false")]).await;
    let r = openai(&app, "/organization/projects", OPENAI_KEY).await;
    assert_eq!(r.status, 404);
    assert_eq!(app.state.settings.openai_api_base, "https://api.openai.com/v1");
    let on = spawn().await;
    assert!(on.state.settings.openai_api_base.ends_with("/sandbox/openai/v1"));
    assert!(!on.state.settings.openai_api_base.contains(":0/"), "the bound port, not PORT=0");
    // Unknown sandbox routes answer in the provider's shape.
    let r = openai(&on, "/organization/nothing", OPENAI_KEY).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn openai_bill_carries_a_planted_error_and_unpriced_charges_in_every_grouping() {
    let app = spawn().await;
    // Each day's largest line item billed 3 % high, and two charges the price book cannot price.
    let key = "sk-admin-sandbox-acme-overbill3-unpriced";
    let window = format!("start_time={MARCH_1}&end_time={}&bucket_width=1d", MARCH_1 + 2 * DAY);
    let (totals, _) = all_pages(&app, false, "/organization/costs", &window, key).await;
    let grouped = format!("{window}&group_by=line_item&group_by=project_id");
    let (lines, _) = all_pages(&app, false, "/organization/costs", &grouped, key).await;
    assert_eq!((totals.len(), lines.len()), (2, 2));
    for day in 0..2 {
        let total = scaled(&totals[day]["results"][0]["amount"]["value"].to_string(), 9);
        let results = lines[day]["results"].as_array().unwrap();
        let sum: i128 = results.iter().map(|l| scaled(&l["amount"]["value"].to_string(), 9)).sum();
        assert_eq!(sum, total, "day {day}: the planted error is in every grouping");
        let line = |name: &str| results.iter().find(|l| l["line_item"] == name).unwrap_or_else(|| panic!("{name}"));
        let images = line("Image models");
        assert_eq!((images["quantity"].as_u64(), images["quantity_unit"].as_str()), (Some(3), Some("images")));
        assert_eq!(scaled(&images["amount"]["value"].to_string(), 9), 120_000_000);
        assert_eq!(scaled(&line("gpt-4o-mini, web search tool calls")["amount"]["value"].to_string(), 9), 250_000_000);
    }
}
