//! Repricing after a past-dated change (issue 14 §5, §9): an organization's OpenAI usage is
//! priced; a past-dated override and a past-dated catalog version (the catalog import) make some
//! of its cost rows stale, which `GET .../pricing/repricing` counts on the affected days only;
//! the cost-only `reprice` pipeline prices the window again from the raw rows already stored,
//! with no provider call (every call to OpenAI goes through a fake that forwards it to the sandbox and counts it), after which
//! the count is back to zero. On DuckDB and the BigQuery emulator. The same for Anthropic (on
//! DuckDB), and what the route refuses.

use std::time::Duration;

use common::warehouse::{Params, Row};
use convergence_tests::fakes::hostile::HostileProvider;
use convergence_tests::{Key, Reply, TestApp, ROOT_KEY};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};

const ORG: &str = "acme";
const DAYS: [&str; 4] = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"];
const CSV_HEADER: &str = "model_id,currency,input_per_1m,cached_input_per_1m,cache_write_5m_per_1m,cache_write_1h_per_1m,output_per_1m,batch_input_per_1m,batch_output_per_1m,long_context_threshold_tokens,long_context_input_per_1m,long_context_cached_input_per_1m,long_context_cache_write_5m_per_1m,long_context_cache_write_1h_per_1m,long_context_output_per_1m,deprecation_date,notes";

fn dec(v: &Value) -> Decimal {
    v.as_str().map_or_else(|| v.to_string(), str::to_string).parse().unwrap_or_else(|_| panic!("not a decimal: {v}"))
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// Bootstraps, onboards `acme` ACTIVE and sets up `provider` with `credential`, validated
/// through the counting fake (aimed at the app's own sandbox); returns the organization's key.
async fn connect(app: &TestApp, tap: &HostileProvider, provider: &str, credential: &str) -> String {
    tap.aim(&app.base);
    app.bootstrap().await;
    let key = app.onboard_active(ORG, "PROFESSIONAL").await;
    let r = app
        .post(
            &format!("/api/v1/integrations/{ORG}/{provider}/setup"),
            Key::Api(&key),
            json!({"credential": credential}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(!tap.all_calls().is_empty(), "the credential was validated through the fake");
    key
}

/// The app with OpenAI reached through a counting fake (forwarding to its own sandbox), `acme` ACTIVE with
/// the OpenAI integration set up, and four days of raw usage already stored.
async fn setup(spawn: impl std::future::Future<Output = TestApp>, tap: &HostileProvider) -> (TestApp, String) {
    let app = spawn.await;
    let key = connect(&app, tap, "openai", "sk-admin-sandbox-acme").await;

    // Each day: gpt-4o-mini-2024-07-18 (input 1,000,000 of which 200,000 cached, output 100,000)
    // and gpt-4.1 (input 1,000,000, output 100,000).
    let dataset = app.state.org_dataset(ORG);
    let raw = app.state.configs.table_schema("openai", "openai_usage_daily_raw").unwrap().clone();
    app.state.warehouse.create_table(&dataset, &raw).await.unwrap();
    let mut rows: Vec<Row> = Vec::new();
    for day in DAYS {
        for (model, cached) in [("gpt-4o-mini-2024-07-18", 200_000), ("gpt-4.1-2025-04-14", 0)] {
            rows.push(
                serde_json::from_value(json!({
                    "usage_date": day, "org_slug": ORG, "usage_type": "completions", "model": model,
                    "project_id": "proj_1", "api_key_id": "key_1", "batch": false, "service_tier": "default",
                    "input_tokens": 1_000_000, "input_cached_tokens": cached, "input_uncached_tokens": 1_000_000 - cached,
                    "output_tokens": 100_000, "num_model_requests": 10,
                }))
                .unwrap(),
            );
        }
    }
    app.state.warehouse.insert_rows(&dataset, &raw, &rows).await.unwrap();
    (app, key)
}

/// Runs `openai/reprice` over the four days and waits for it; returns the finished run.
async fn reprice(app: &TestApp, key: &str) -> Value {
    let body = json!({"start_date": DAYS[0], "end_date": DAYS[3]});
    let r = app.post(&format!("/api/v1/pipelines/run/{ORG}/openai/reprice"), Key::Api(key), body).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["pipeline_id"], format!("{ORG}-openai-reprice"));
    let run_id = r.body["run_id"].as_str().unwrap().to_string();
    for _ in 0..600 {
        let r = app.get(&format!("/api/v1/pipelines/runs/{ORG}/{run_id}"), Key::Api(key)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        if matches!(r.body["status"].as_str(), Some("SUCCESS" | "FAILED")) {
            assert_eq!(r.body["status"], "SUCCESS", "{}", r.body);
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {run_id} did not finish");
}

/// Total cost per day, as stored.
async fn daily_costs(app: &TestApp) -> Vec<(String, Decimal)> {
    let t = app.state.warehouse.table_ref(&app.state.org_dataset(ORG), "openai_cost_daily").unwrap();
    let sql = format!(
        "SELECT usage_date, SUM(total_cost) AS total FROM {t} WHERE org_slug = @org GROUP BY usage_date ORDER BY usage_date"
    );
    let rows = app.state.warehouse.query(&sql, &Params::new().bind("org", ORG)).await.unwrap();
    rows.iter().map(|r| (r["usage_date"].as_str().unwrap().to_string(), dec(&r["total"]))).collect()
}

async fn repricing(app: &TestApp, key: &str) -> Value {
    let path =
        format!("/api/v1/integrations/{ORG}/openai/pricing/repricing?start_date={}&end_date={}", DAYS[0], DAYS[3]);
    let r = app.get(&path, Key::Api(key)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

/// (usage_date, stale rows, relabelled rows) of every day the report lists.
fn per_day(report: &Value) -> Vec<(String, u64, u64)> {
    report["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["usage_date"].as_str().unwrap().to_string(),
                d["stale_rows"].as_u64().unwrap(),
                d["relabelled_rows"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn import_csv(app: &TestApp, query: &str, csv: &str) -> Reply {
    let r = app
        .client
        .post(format!("{}/api/v1/pricing/catalog/import?{query}", app.base))
        .header("X-CA-Root-Key", ROOT_KEY)
        .header("Content-Type", "text/plain")
        .body(csv.to_string())
        .send()
        .await
        .unwrap();
    TestApp::reply(r).await
}

async fn repricing_after_a_past_dated_change(
    spawn: impl FnOnce(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = TestApp>>>,
) {
    let tap = HostileProvider::start().await;
    let (app, key) = setup(spawn(format!("{}/sandbox/openai/v1", tap.url())), &tap).await;

    // Priced with the catalog (gpt-4o-mini 0.15 / 0.075 / 0.60, gpt-4.1 2.00 / 0.50 / 8.00):
    //   gpt-4o-mini: 800,000 × 0.15 + 200,000 × 0.075 + 100,000 × 0.60 = 0.12 + 0.015 + 0.06 = 0.195
    //   gpt-4.1:   1,000,000 × 2.00                    + 100,000 × 8.00 = 2    + 0.8         = 2.8
    //   a day: 2.995
    reprice(&app, &key).await;
    let want = |totals: [&str; 4]| -> Vec<(String, Decimal)> {
        DAYS.iter().zip(totals).map(|(day, t)| (day.to_string(), d(t))).collect()
    };
    assert_eq!(daily_costs(&app).await, want(["2.995", "2.995", "2.995", "2.995"]));
    let report = repricing(&app, &key).await;
    assert_eq!((report["rows"].as_u64(), report["stale_rows"].as_u64()), (Some(8), Some(0)), "{report}");
    assert_eq!(report["reprice"], Value::Null);

    // A past-dated override: gpt-4o-mini's input at 0.30 from 2026-11-03. Its rows of the 3rd
    // and 4th are stale; the 1st and 2nd still read the catalog version they were priced with.
    let r = app
        .put(
            &format!("/api/v1/integrations/{ORG}/openai/pricing/gpt-4o-mini"),
            Key::Api(&key),
            json!({"input_per_1m": "0.30", "effective_from": DAYS[2]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let override_id = r.body["current"]["version_id"].as_str().unwrap().to_string();
    let report = repricing(&app, &key).await;
    assert_eq!(per_day(&report), vec![(DAYS[2].into(), 1, 0), (DAYS[3].into(), 1, 0)], "{report}");
    let change = &report["days"][0]["changes"][0];
    assert_eq!(change["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(change["priced_with"], "openai/gpt-4o-mini/v1");
    assert_eq!(
        (change["in_force"].as_str(), change["in_force_source"].as_str()),
        (Some(override_id.as_str()), Some("override"))
    );
    assert_eq!(report["reprice"]["start_date"], DAYS[2]);
    assert_eq!(report["reprice"]["end_date"], DAYS[3]);

    // A past-dated catalog version (the import, root key): gpt-4.1's input 2.00 → 2.50 from
    // 2026-11-04. The version in force since 1970 is rewritten to end there (same prices, new
    // id): gpt-4.1's rows of the 1st to 3rd are relabelled only, the 4th's are stale.
    let csv = format!("{CSV_HEADER}\ngpt-4.1,USD,2.50,0.50,,,8.00,1.00,4.00,,,,,,,,price change (test)\n");
    let r = import_csv(&app, &format!("provider=openai&effective_from={}", DAYS[3]), &csv).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["written"][0]["models_changed"], json!(["gpt-4.1"]), "{}", r.body);
    let report = repricing(&app, &key).await;
    assert_eq!(
        per_day(&report),
        vec![(DAYS[0].into(), 0, 1), (DAYS[1].into(), 0, 1), (DAYS[2].into(), 1, 1), (DAYS[3].into(), 2, 0)],
        "{report}"
    );
    assert_eq!((report["stale_rows"].as_u64(), report["relabelled_rows"].as_u64()), (Some(3), Some(3)));
    let day4 = report["days"][3]["changes"].as_array().unwrap();
    let gpt41 = day4.iter().find(|c| c["model"] == "gpt-4.1-2025-04-14").unwrap();
    assert_eq!(
        (gpt41["priced_with"].as_str(), gpt41["in_force_source"].as_str()),
        (Some("openai/gpt-4.1/v1"), Some("catalog"))
    );
    assert_eq!(gpt41["in_force_model"], "gpt-4.1");
    assert_eq!(gpt41["prices_changed"], true);
    assert_eq!(report["reprice"]["end_date"], DAYS[3]);

    // The reprice: no provider call, the costs of the new prices, nothing stale any more.
    //   the 3rd: gpt-4o-mini 800,000 × 0.30 + 0.015 + 0.06 = 0.24 + 0.075 = 0.315; + 2.8 = 3.115
    //   the 4th: 0.315 + gpt-4.1 1,000,000 × 2.50 + 100,000 × 8.00 = 2.5 + 0.8 = 3.3; = 3.615
    let calls_before = tap.all_calls();
    let run = reprice(&app, &key).await;
    assert_eq!(tap.all_calls(), calls_before, "the reprice called the provider");
    assert_eq!(daily_costs(&app).await, want(["2.995", "2.995", "3.115", "3.615"]));
    let report = repricing(&app, &key).await;
    assert_eq!((report["stale_rows"].as_u64(), report["relabelled_rows"].as_u64()), (Some(0), Some(0)), "{report}");
    assert_eq!(report["rows"], 8);
    // The run is recorded like every run, with the cost step's metrics: 12.72 = 2.995 × 2 + 3.115 + 3.615.
    assert_eq!(run["pipeline_id"], format!("{ORG}-openai-reprice"));
    let steps =
        app.get(&format!("/api/v1/pipelines/runs/{ORG}/{}", run["run_id"].as_str().unwrap()), Key::Api(&key)).await;
    let cost_step = steps.body["steps"].as_array().unwrap().iter().find(|s| s["step_id"] == "transform_cost").cloned();
    let metrics = &cost_step.unwrap_or_else(|| panic!("{}", steps.body))["metrics"];
    assert_eq!(dec(&metrics["total_cost"]), d("12.72"), "{metrics}");
}

#[tokio::test]
async fn repricing_after_a_past_dated_change_duckdb() {
    repricing_after_a_past_dated_change(|base| {
        Box::pin(async move { TestApp::spawn_with(&[("OPENAI_API_BASE", &base)]).await })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn repricing_after_a_past_dated_change_bigquery() {
    repricing_after_a_past_dated_change(|base| {
        Box::pin(async move { TestApp::spawn_bigquery(&[("OPENAI_API_BASE", &base)]).await })
    })
    .await;
}

/// Anthropic: a past-dated override makes one day stale; the reprice prices it again from the
/// raw rows with no call to Anthropic. claude-haiku-4-5-20251001 (1.00 / 0.10 / 1.25 / 2.00 /
/// 5.00), each day uncached 1,000,000, cache reads 500,000, 5 min writes 100,000, 1 h writes
/// 50,000, output 200,000:
///   1 + 0.05 + 0.125 + 0.1 + 1   = 2.275 a day at the catalog price;
///   output at 6.00 (the override): 1 + 0.05 + 0.125 + 0.1 + 1.2 = 2.475.
#[tokio::test]
async fn an_anthropic_reprice_makes_no_provider_call() {
    let tap = HostileProvider::start().await;
    let app = TestApp::spawn_with(&[("ANTHROPIC_API_BASE", &format!("{}/sandbox/anthropic", tap.url()))]).await;
    let key = connect(&app, &tap, "anthropic", "sk-ant-admin01-sandbox-acme").await;
    let dataset = app.state.org_dataset(ORG);
    let raw = app.state.configs.table_schema("anthropic", "anthropic_usage_daily_raw").unwrap().clone();
    app.state.warehouse.create_table(&dataset, &raw).await.unwrap();
    let rows: Vec<Row> = DAYS[..2]
        .iter()
        .map(|day| {
            serde_json::from_value(json!({
                "usage_date": day, "org_slug": ORG, "model": "claude-haiku-4-5-20251001", "workspace_id": "wrk_1",
                "api_key_id": "key_1", "service_tier": "standard", "context_window": "0-200k",
                "uncached_input_tokens": 1_000_000, "cache_read_input_tokens": 500_000,
                "cache_write_5m_input_tokens": 100_000, "cache_write_1h_input_tokens": 50_000, "output_tokens": 200_000,
                "web_search_requests": 0,
            }))
            .unwrap()
        })
        .collect();
    app.state.warehouse.insert_rows(&dataset, &raw, &rows).await.unwrap();
    let calls_before = tap.all_calls();

    let run = |key: String| {
        let app = &app;
        async move {
            let body = json!({"start_date": DAYS[0], "end_date": DAYS[1]});
            let r = app.post(&format!("/api/v1/pipelines/run/{ORG}/anthropic/reprice"), Key::Api(&key), body).await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
            let run_id = r.body["run_id"].as_str().unwrap().to_string();
            for _ in 0..600 {
                let r = app.get(&format!("/api/v1/pipelines/runs/{ORG}/{run_id}"), Key::Api(&key)).await;
                if matches!(r.body["status"].as_str(), Some("SUCCESS" | "FAILED")) {
                    assert_eq!(r.body["status"], "SUCCESS", "{}", r.body);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("run {run_id} did not finish");
        }
    };
    let totals = || async {
        let t = app.state.warehouse.table_ref(&dataset, "anthropic_cost_daily").unwrap();
        let sql = format!("SELECT usage_date, total_cost FROM {t} ORDER BY usage_date");
        let rows = app.state.warehouse.query(&sql, &Params::new()).await.unwrap();
        rows.iter().map(|r| dec(&r["total_cost"])).collect::<Vec<_>>()
    };
    let report = |key: String| {
        let app = &app;
        async move {
            let path = format!(
                "/api/v1/integrations/{ORG}/anthropic/pricing/repricing?start_date={}&end_date={}",
                DAYS[0], DAYS[1]
            );
            let r = app.get(&path, Key::Api(&key)).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            r.body
        }
    };

    run(key.clone()).await;
    assert_eq!(totals().await, vec![d("2.275"), d("2.275")]);
    let r = app
        .put(
            &format!("/api/v1/integrations/{ORG}/anthropic/pricing/claude-haiku-4-5-20251001"),
            Key::Api(&key),
            json!({"output_per_1m": "6.00", "effective_from": DAYS[1]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let stale = report(key.clone()).await;
    assert_eq!(per_day(&stale), vec![(DAYS[1].into(), 1, 0)], "{stale}");
    assert_eq!(stale["cost_table"], "anthropic_cost_daily");
    run(key.clone()).await;
    assert_eq!(totals().await, vec![d("2.275"), d("2.475")]);
    assert_eq!(report(key.clone()).await["stale_rows"], 0);
    assert_eq!(tap.all_calls(), calls_before, "a reprice called Anthropic");
}

#[tokio::test]
async fn the_repricing_route_checks_who_asks_and_what() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    let key = app.onboard_active(ORG, "STARTER").await;
    let other = app.onboard("globex").await;
    let path = |provider: &str, query: &str| format!("/api/v1/integrations/{ORG}/{provider}/pricing/repricing{query}");
    // Another organization's key: 403 before anything is read.
    app.get(&path("openai", ""), Key::Api(&other)).await.assert_error(403, "forbidden");
    // No price book yet (the integration was never set up): 404 saying how to make one.
    app.get(&path("openai", ""), Key::Api(&key)).await.assert_error(404, "price_book_not_found");
    // A provider without prices, bad dates, a window too long.
    app.get(&path("gcp", ""), Key::Api(&key)).await.assert_error(404, "not_found");
    let r = app.post(&format!("/api/v1/integrations/{ORG}/openai/pricing/reset"), Key::Api(&key), json!({})).await;
    assert!(r.status.is_success(), "{}", r.body);
    let bad = app.get(&path("openai", "?start_date=2026-02-30"), Key::Api(&key)).await;
    assert!(bad.assert_error(400, "invalid_request").contains("start_date"));
    let reversed = app.get(&path("openai", "?start_date=2026-11-02&end_date=2026-11-01"), Key::Api(&key)).await;
    assert!(reversed.assert_error(400, "invalid_request").contains("must not be before"));
    let long = app.get(&path("openai", "?start_date=2025-01-01&end_date=2026-11-01"), Key::Api(&key)).await;
    assert!(long.assert_error(400, "invalid_request").contains("366"));
    // A book and no cost rows yet: nothing stale, the default window (the last 31 days).
    let r = app.get(&path("openai", ""), Key::Api(&key)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!((r.body["rows"].as_u64(), r.body["stale_rows"].as_u64()), (Some(0), Some(0)), "{}", r.body);
    assert_eq!(r.body["end_date"], common::pricebook::today().to_string());
}

/// The tick never submits a reprice (`schedule: manual`), and holds back the daily usage run of
/// an organization while its reprice of an overlapping window is running (`exclusive_with`).
#[tokio::test]
async fn the_tick_leaves_reprices_alone_and_waits_for_a_running_one() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    let key = app.onboard_active(ORG, "SCALE").await;
    let r = app
        .post(
            &format!("/api/v1/integrations/{ORG}/openai/setup"),
            Key::Api(&key),
            json!({"credential": "sk-admin-sandbox-acme"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // A reprice of the last two days, claimed a minute ago and still running.
    let today = chrono::Utc::now().date_naive();
    let at = chrono::Utc::now() - chrono::Duration::minutes(1);
    let run = common::pipeline::runlog::NewRun {
        org_slug: ORG,
        pipeline_id: "acme-openai-reprice",
        provider: "openai",
        domain: "reprice",
        pipeline: None,
        file: "openai/reprice.yml",
        trigger: common::pipeline::runlog::Trigger::Adhoc,
        window: common::pipeline::runlog::Window {
            start: today - chrono::Duration::days(2),
            end: today - chrono::Duration::days(1),
        },
        attempt: 1,
    }
    .pending(at, chrono::Duration::hours(1));
    let claimed =
        convergence_tests::claimed(&run, at + chrono::Duration::milliseconds(1), chrono::Duration::hours(1), "seeded");
    app.state.pipelines.run_log().append_events(&[run.clone(), claimed]).await.unwrap();

    let r = app.post("/api/v1/scheduler/tick", Key::Root, json!({"as_of": today.to_string()})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let acme = r.body["organizations"][ORG].as_object().unwrap_or_else(|| panic!("{}", r.body));
    assert_eq!(acme["acme-openai-usage-cost"]["status"], "active", "{}", r.body);
    assert_eq!(acme["acme-openai-subscriptions"]["status"], "submitted", "{}", r.body);
    assert!(!acme.contains_key("acme-openai-reprice"), "the tick never runs a reprice: {}", r.body);
}
