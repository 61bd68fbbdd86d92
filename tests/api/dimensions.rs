//! Every billed dimension through the cost steps and a real warehouse (issue 14 §3): raw usage
//! rows with fast mode, US-only inference, web searches, batch with cache, OpenAI audio, vision
//! and flex rows, priced by `anthropic.cost` / `openai.cost` into their cost tables, on DuckDB and
//! the BigQuery emulator. The tables start as they were made before the dimensions existed: the
//! steps give them the new NULLABLE columns, and rows pulled before read them as NULL.
//! Every expected number is derived by hand in a comment (the same goldens as `common::cost`).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use common::pipeline::{Processor, StepContext, StepOutcome};
use common::processors::anthropic::cost::AnthropicCost;
use common::processors::openai::cost::OpenAiCost;
use common::warehouse::{Params, Row, TableSchema};
use convergence_tests::{Key, TestApp};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};

const ORG: &str = "acme";
const DAY: &str = "2026-11-01";

/// The columns issue 14 added to the usage and cost tables.
const NEW_COLUMNS: &[&str] = &[
    "speed",
    "inference_geo",
    "web_search_cost",
    "rate_multiplier",
    "matched_model",
    "matched_exact",
    "input_cached_audio_tokens",
    "input_image_tokens",
    "input_cached_image_tokens",
    "output_image_tokens",
    "cache_write_tokens",
    "audio_input_tokens",
    "audio_cached_input_tokens",
    "audio_output_tokens",
    "image_input_tokens",
    "image_cached_input_tokens",
    "image_output_tokens",
    "cache_write_cost",
    "audio_input_cost",
    "audio_cached_input_cost",
    "audio_output_cost",
    "image_input_cost",
    "image_cached_input_cost",
    "image_output_cost",
];

fn dec(v: &Value) -> Decimal {
    v.as_str().map_or_else(|| v.to_string(), str::to_string).parse().unwrap()
}

/// `acme` onboarded with both LLM integrations set up (sandbox keys), so both price books exist.
async fn with_llm_providers(app: &TestApp) {
    app.bootstrap().await;
    let key = app.onboard(ORG).await;
    for (provider, credential) in [("openai", "sk-admin-sandbox-acme"), ("anthropic", "sk-ant-admin01-sandbox-acme")] {
        let r = app
            .post(
                &format!("/api/v1/integrations/{ORG}/{provider}/setup"),
                Key::Api(&key),
                json!({"credential": credential}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
}

/// The shipped schema of a table as it was before issue 14 (its new columns left out).
fn old_schema(app: &TestApp, provider: &str, table: &str) -> TableSchema {
    let mut schema = app.state.configs.table_schema(provider, table).unwrap().clone();
    schema.fields.retain(|f| !NEW_COLUMNS.contains(&f.name.as_str()));
    schema
}

fn rows(values: Vec<Value>) -> Vec<Row> {
    values.into_iter().map(|v| serde_json::from_value(v).unwrap()).collect()
}

/// Runs a cost step over `DAY` without reconciliation (the goldens are the comparison here).
async fn run_cost<P: Processor>(app: &TestApp) -> StepOutcome {
    let dataset = app.state.org_dataset(ORG);
    let variables = BTreeMap::from([("org_slug".to_string(), ORG.to_string())]);
    let day: NaiveDate = DAY.parse().unwrap();
    let ctx = StepContext {
        warehouse: app.state.warehouse.as_ref(),
        configs: &app.state.configs,
        settings: &app.state.settings,
        org_slug: ORG,
        dataset: &dataset,
        run_id: "run-dimensions",
        pipeline_id: "acme-usage-cost",
        step_id: "transform_cost",
        start_date: day,
        end_date: day,
        variables: &variables,
        credential: None,
    };
    let config = serde_json::from_value(json!({"reconcile": false})).unwrap();
    P::run(&config, &ctx).await.unwrap()
}

/// The cost table's rows by a key column.
async fn cost_rows(app: &TestApp, table: &str) -> Vec<Row> {
    let t = app.state.warehouse.table_ref(&app.state.org_dataset(ORG), table).unwrap();
    app.state.warehouse.query(&format!("SELECT * FROM {t} ORDER BY model"), &Params::new()).await.unwrap()
}

fn find<'a>(rows: &'a [Row], model: &str, extra: Option<(&str, &str)>) -> &'a Row {
    rows.iter()
        .find(|r| r["model"] == model && extra.is_none_or(|(k, v)| r[k] == v))
        .unwrap_or_else(|| panic!("{model} {extra:?} in {rows:?}"))
}

fn total(outcome: &StepOutcome) -> Decimal {
    dec(&outcome.metrics["total_cost"])
}

async fn anthropic_dimensions(app: TestApp) {
    with_llm_providers(&app).await;
    let dataset = app.state.org_dataset(ORG);
    let w = app.state.warehouse.as_ref();
    let raw = old_schema(&app, "anthropic", "anthropic_usage_daily_raw");
    w.create_table(&dataset, &raw).await.unwrap();
    w.create_table(&dataset, &old_schema(&app, "anthropic", "anthropic_cost_daily")).await.unwrap();
    let usage = |model: &str, tier: &str, t: [u64; 5], searches: u64| {
        json!({"usage_date": DAY, "org_slug": ORG, "model": model, "api_key_id": "apikey_1", "service_tier": tier,
               "context_window": "0-200k", "uncached_input_tokens": t[0], "cache_read_input_tokens": t[1],
               "cache_write_5m_input_tokens": t[2], "cache_write_1h_input_tokens": t[3], "output_tokens": t[4],
               "web_search_requests": searches})
    };
    // provider-apis.md §3a's official example (uncached, read, 5m, 1h, output) with its 10 searches.
    let example = [1_500, 200, 500, 1_000, 500];
    w.insert_rows(&dataset, &raw, &rows(vec![usage("claude-sonnet-4-20250514", "standard", example, 10)]))
        .await
        .unwrap();

    // 1. Usage pulled before speed and inference_geo were grouped by: read as NULL (standard, global).
    //   sonnet-4: 1,500×3 + 200×0.30 + 500×3.75 + 1,000×6 + 500×15 = 19,935 per 1M → 0.019935,
    //   + 10 searches × 10.00 / 1000 = 0.1 → 0.119935
    let outcome = run_cost::<AnthropicCost>(&app).await;
    assert_eq!(total(&outcome), "0.119935".parse::<Decimal>().unwrap(), "{}", outcome.metrics);
    let columns = w.table_columns(&dataset, "anthropic_usage_daily_raw").await.unwrap();
    assert!(columns.contains(&"speed".to_string()) && columns.contains(&"inference_geo".to_string()), "{columns:?}");
    let costs = cost_rows(&app, "anthropic_cost_daily").await;
    let s4 = find(&costs, "claude-sonnet-4-20250514", None);
    assert_eq!((dec(&s4["web_search_cost"]), dec(&s4["rate_multiplier"])), ("0.1".parse().unwrap(), Decimal::ONE));
    assert_eq!(
        (s4["matched_model"].as_str(), s4["matched_exact"].as_bool()),
        (Some("claude-sonnet-4-20250514"), Some(true))
    );
    assert!(s4["speed"].is_null());

    // 2. The dimensions as the report gives them now.
    let full = app.state.configs.table_schema("anthropic", "anthropic_usage_daily_raw").unwrap().clone();
    let with = |mut v: Value, speed: &str, geo: &str| {
        v["speed"] = json!(speed);
        v["inference_geo"] = json!(geo);
        v
    };
    let more = rows(vec![
        with(usage("claude-opus-4-6", "standard", [10_000, 20_000, 4_000, 0, 2_000], 0), "fast", "us"),
        with(usage("claude-sonnet-4-5-20250929", "batch", example, 0), "standard", "global"),
        with(usage("claude-opus-4-5-20251101", "standard", [10, 0, 0, 0, 10], 0), "fast", "global"),
    ]);
    w.insert_rows(&dataset, &full, &more).await.unwrap();
    let outcome = run_cost::<AnthropicCost>(&app).await;
    let costs = cost_rows(&app, "anthropic_cost_daily").await;
    // opus-4-6 fast + US (× 6 × 1.1 = × 6.6 on 5.00 / 0.50 / 6.25 / 25.00):
    //   (10,000×5 + 20,000×0.5 + 4,000×6.25 + 2,000×25) per 1M × 6.6 = (0.05 + 0.01 + 0.025 + 0.05) × 6.6 = 0.891
    let fast = find(&costs, "claude-opus-4-6", None);
    assert_eq!(
        (dec(&fast["total_cost"]), dec(&fast["rate_multiplier"])),
        ("0.891".parse().unwrap(), "6.6".parse().unwrap())
    );
    assert_eq!((fast["speed"].as_str(), fast["inference_geo"].as_str()), (Some("fast"), Some("us")));
    // sonnet-4-5 batch with cache (1.50 / 0.15 / 1.875 / 3.00 / 7.50):
    //   1,500×1.5 + 200×0.15 + 500×1.875 + 1,000×3 + 500×7.5 = 9,967.5 per 1M → 0.0099675
    let batch = find(&costs, "claude-sonnet-4-5-20250929", None);
    assert_eq!(
        (dec(&batch["total_cost"]), batch["pricing_basis"].as_str()),
        ("0.0099675".parse().unwrap(), Some("batch"))
    );
    // opus-4-5 has no fast-mode multiplier: unpriced, named, never at × 1.
    let unpriced = find(&costs, "claude-opus-4-5-20251101", None);
    assert_eq!((unpriced["cost_status"].as_str(), unpriced["total_cost"].is_null()), (Some("RATE_MISSING"), true));
    assert!(outcome.warnings.iter().any(|w| w.contains("fast_mode_multiplier")), "{:?}", outcome.warnings);
    // Window: 0.119935 + 0.891 + 0.0099675 = 1.0209025
    assert_eq!(total(&outcome), "1.0209025".parse::<Decimal>().unwrap(), "{}", outcome.metrics);
}

async fn openai_dimensions(app: TestApp) {
    with_llm_providers(&app).await;
    let dataset = app.state.org_dataset(ORG);
    let w = app.state.warehouse.as_ref();
    let raw = old_schema(&app, "openai", "openai_usage_daily_raw");
    w.create_table(&dataset, &raw).await.unwrap();
    w.create_table(&dataset, &old_schema(&app, "openai", "openai_cost_daily")).await.unwrap();
    let usage = |model: &str, tier: &str, fields: Value| {
        let mut v = json!({"usage_date": DAY, "org_slug": ORG, "usage_type": "completions", "model": model,
                           "project_id": "proj_1", "batch": false, "service_tier": tier, "num_model_requests": 1,
                           "input_uncached_tokens": 0});
        v.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        v
    };
    // 1. Rows pulled before the image and cached-audio fields: text (provider-apis.md §1 example)
    //    and an audio row with the fields a Jan-2025 capture had.
    let old = rows(vec![
        usage(
            "gpt-4o-mini-2024-07-18",
            "default",
            json!({"input_tokens": 182_340, "input_cached_tokens": 64_000, "output_tokens": 20_311}),
        ),
        usage(
            "gpt-4o-audio-preview-2025-06-03",
            "default",
            json!({"input_tokens": 20_000, "input_cached_tokens": 0, "input_audio_tokens": 10_000,
                   "output_tokens": 6_000, "output_audio_tokens": 5_000}),
        ),
    ]);
    w.insert_rows(&dataset, &raw, &old).await.unwrap();
    //   gpt-4o-mini: 118,340×0.15 + 64,000×0.075 + 20,311×0.60 = 0.017751 + 0.0048 + 0.0121866 = 0.0347376
    //   gpt-4o-audio-preview-2025-06-03 (its own row: text 2.50 / 10.00, audio 40 / 80):
    //     10,000×2.5 + 10,000×40 + 1,000×10 + 5,000×80 = 0.025 + 0.4 + 0.01 + 0.4 = 0.835
    let outcome = run_cost::<OpenAiCost>(&app).await;
    assert_eq!(total(&outcome), "0.8697376".parse::<Decimal>().unwrap(), "{}", outcome.metrics);
    let costs = cost_rows(&app, "openai_cost_daily").await;
    let audio = find(&costs, "gpt-4o-audio-preview-2025-06-03", None);
    assert_eq!(
        (dec(&audio["audio_input_cost"]), dec(&audio["audio_output_cost"])),
        ("0.4".parse().unwrap(), "0.4".parse().unwrap())
    );
    assert_eq!(audio["matched_exact"].as_bool(), Some(true));
    let mini = find(&costs, "gpt-4o-mini-2024-07-18", None);
    assert_eq!((mini["matched_model"].as_str(), mini["matched_exact"].as_bool()), (Some("gpt-4o-mini"), Some(false)));

    // 2. Every field as the Usage API reports it now.
    let full = app.state.configs.table_schema("openai", "openai_usage_daily_raw").unwrap().clone();
    let more = rows(vec![
        usage(
            "gpt-realtime-2025-08-28",
            "default",
            json!({"input_tokens": 600_000, "input_cached_tokens": 150_000, "input_cache_write_tokens": 0,
                   "input_audio_tokens": 300_000, "input_cached_audio_tokens": 100_000, "output_tokens": 250_000,
                   "output_audio_tokens": 200_000, "input_image_tokens": 0, "input_cached_image_tokens": 0,
                   "output_image_tokens": 0}),
        ),
        usage(
            "gpt-4o-2024-08-06",
            "default",
            json!({"input_tokens": 100_000, "input_cached_tokens": 20_000, "input_image_tokens": 30_000,
                   "input_cached_image_tokens": 10_000, "output_tokens": 5_000}),
        ),
        usage(
            "gpt-5",
            "flex",
            json!({"input_tokens": 1_000_000, "input_cached_tokens": 200_000, "output_tokens": 100_000}),
        ),
    ]);
    w.insert_rows(&dataset, &full, &more).await.unwrap();
    let outcome = run_cost::<OpenAiCost>(&app).await;
    let costs = cost_rows(&app, "openai_cost_daily").await;
    // gpt-realtime: 250,000×4 + 50,000×0.4 + 50,000×16 + 200,000×32 + 100,000×0.4 + 200,000×64
    //   = 1 + 0.02 + 0.8 + 6.4 + 0.04 + 12.8 = 21.06
    let rt = find(&costs, "gpt-realtime-2025-08-28", None);
    assert_eq!(
        (dec(&rt["total_cost"]), rt["audio_cached_input_tokens"].as_i64()),
        ("21.06".parse().unwrap(), Some(100_000))
    );
    // gpt-4o vision at the text rates: 60,000×2.5 + 10,000×1.25 + 20,000×2.5 + 10,000×1.25 + 5,000×10 = 0.275
    let vision = find(&costs, "gpt-4o-2024-08-06", None);
    assert_eq!(
        (dec(&vision["total_cost"]), dec(&vision["image_input_cost"])),
        ("0.275".parse().unwrap(), "0.05".parse().unwrap())
    );
    // gpt-5 flex: 800,000×0.625 + 200,000×0.0625 + 100,000×5 = 0.5 + 0.0125 + 0.5 = 1.0125
    let flex = find(&costs, "gpt-5", Some(("service_tier", "flex")));
    assert_eq!((dec(&flex["total_cost"]), flex["pricing_basis"].as_str()), ("1.0125".parse().unwrap(), Some("flex")));
    // Window: 0.0347376 + 0.835 + 21.06 + 0.275 + 1.0125 = 23.2172376
    assert_eq!(total(&outcome), "23.2172376".parse::<Decimal>().unwrap(), "{}", outcome.metrics);
}

#[tokio::test]
async fn anthropic_dimensions_on_duckdb() {
    anthropic_dimensions(TestApp::spawn().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_dimensions_on_bigquery() {
    anthropic_dimensions(TestApp::spawn_bigquery(&[]).await).await;
}

#[tokio::test]
async fn openai_dimensions_on_duckdb() {
    openai_dimensions(TestApp::spawn().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_dimensions_on_bigquery() {
    openai_dimensions(TestApp::spawn_bigquery(&[]).await).await;
}
