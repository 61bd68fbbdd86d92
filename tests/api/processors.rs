//! The processors run directly (`Processor::run` with a `StepContext`) against the real app and
//! its provider sandbox: rows and totals, reconciliation against the sandbox's own bill (per day,
//! project and line item: a planted 3 % error found, unpriced charges reported as such),
//! idempotent reruns, a model missing from the price book, prices changing mid-window, 429s that
//! clear, and retries that run out without leaving a partial window.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use common::pipeline::{Processor, StepContext, StepError, StepOutcome};
use common::processors::anthropic::cost::AnthropicCost;
use common::processors::anthropic::usage::AnthropicUsage;
use common::processors::openai::cost::OpenAiCost;
use common::processors::openai::usage::OpenAiUsage;
use common::warehouse::{Params, Row};
use convergence_tests::{Key, TestApp};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};

const ORG: &str = "proc_co";
const OPENAI_KEY: &str = "sk-admin-sandbox-proc";
const ANTHROPIC_KEY: &str = "sk-ant-admin01-sandbox-proc";

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// A past week, so the sandbox's data never changes.
fn window() -> (NaiveDate, NaiveDate) {
    (day("2025-03-01"), day("2025-03-07"))
}

/// The app with its sandbox, an onboarded organization, and both integrations set up with
/// sandbox keys (which seeds the default price books).
async fn setup() -> TestApp {
    setup_on(crate::sandbox::spawn().await).await
}

/// The same on the BigQuery emulator.
async fn setup_on_bigquery() -> TestApp {
    let url = convergence_tests::bigquery_emulator();
    let project = convergence_tests::unique_project();
    let app = crate::sandbox::spawn_with(&[
        ("WAREHOUSE_BACKEND", "bigquery"),
        ("GCP_PROJECT_ID", &project),
        ("BIGQUERY_API_BASE", &url),
    ])
    .await;
    setup_on(app).await
}

async fn setup_on(app: TestApp) -> TestApp {
    app.bootstrap().await;
    let org_key = app.onboard(ORG).await;
    for (provider, key) in [("openai", OPENAI_KEY), ("anthropic", ANTHROPIC_KEY)] {
        let r = app
            .post(
                &format!("/api/v1/integrations/{ORG}/{provider}/setup"),
                Key::Api(&org_key),
                json!({"credential": key}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{provider}: {}", r.body);
    }
    app
}

/// Runs one processor for the window with `credential`.
async fn run<P: Processor>(
    app: &TestApp,
    config: Value,
    credential: &str,
    (start, end): (NaiveDate, NaiveDate),
) -> Result<StepOutcome, StepError> {
    let config: P::Config = serde_json::from_value(config).expect("config");
    let dataset = app.state.org_dataset(ORG);
    let variables = BTreeMap::from([("org_slug".to_string(), ORG.to_string())]);
    let secret = secrecy::SecretString::from(credential.to_string());
    let pipeline_id = format!("{ORG}-{}-usage-cost", P::TYPE.split('.').next().unwrap());
    let ctx = StepContext {
        warehouse: app.state.warehouse.as_ref(),
        configs: &app.state.configs,
        settings: &app.state.settings,
        org_slug: ORG,
        dataset: &dataset,
        run_id: "run-test",
        pipeline_id: &pipeline_id,
        step_id: "step",
        start_date: start,
        end_date: end,
        variables: &variables,
        credential: Some(&secret),
    };
    P::run(&config, &ctx).await
}

/// Fast retries for tests (a sandbox 429 still asks for `Retry-After: 1`).
fn quick() -> Value {
    json!({"max_attempts": 4, "initial_backoff_ms": 10, "max_backoff_ms": 2000})
}

/// Every row of an organization table, in a total order: the table's content as text.
async fn dump(app: &TestApp, table: &str) -> String {
    let dataset = app.state.org_dataset(ORG);
    if !app.state.warehouse.list_tables(&dataset).await.unwrap().iter().any(|t| t == table) {
        return String::new();
    }
    let columns = app.state.warehouse.table_columns(&dataset, table).await.unwrap();
    let sql = format!(
        "SELECT * FROM {} ORDER BY {}",
        app.state.warehouse.table_ref(&dataset, table).unwrap(),
        columns.iter().map(|c| format!("{c} NULLS FIRST")).collect::<Vec<_>>().join(", ")
    );
    let rows = app.state.warehouse.query(&sql, &Params::new()).await.unwrap();
    serde_json::to_string(&rows).unwrap()
}

async fn rows(app: &TestApp, table: &str) -> Vec<Row> {
    let text = dump(app, table).await;
    if text.is_empty() {
        return Vec::new();
    }
    serde_json::from_str(&text).unwrap()
}

async fn dq_rows(app: &TestApp, table: &str) -> Vec<Row> {
    // The results in force: the latest run's for each day (the table itself is insert only).
    let t = app.state.central_table("dq_results_current").unwrap();
    let sql = format!(
        "SELECT check_name, usage_date, dimension, status, expected_value, observed_value, difference, tolerance, \
         currency, details FROM {t} WHERE org_slug = @org AND table_name = @table ORDER BY usage_date, check_name, dimension"
    );
    app.state.warehouse.query(&sql, &Params::new().bind("org", ORG).bind("table", table)).await.unwrap()
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap_or_else(|| panic!("a decimal string, got {v}")).parse().unwrap()
}

fn sum(rows: &[Row], column: &str) -> Decimal {
    rows.iter().filter(|r| !r[column].is_null()).map(|r| dec(&r[column])).sum()
}

#[tokio::test]
async fn openai_usage_and_cost_reconcile_with_the_sandbox_bill() {
    let app = setup().await;
    let usage = run::<OpenAiUsage>(&app, json!({"page_size": 3}), OPENAI_KEY, window()).await.unwrap();
    let raw = rows(&app, "openai_usage_daily_raw").await;
    assert_eq!(usage.rows_written, raw.len() as u64);
    assert_eq!(usage.metrics["pages"], 6, "7 days, 3 a page, completions and embeddings: 3 + 3 pages");
    assert!(raw.iter().any(|r| r["usage_type"] == "embeddings") && raw.iter().any(|r| r["batch"] == true));
    for r in &raw {
        let (input, cached) = (r["input_tokens"].as_u64().unwrap(), r["input_cached_tokens"].as_u64().unwrap());
        assert_eq!(r["input_uncached_tokens"].as_u64().unwrap(), input - cached);
    }
    let days: std::collections::BTreeSet<&str> = raw.iter().map(|r| r["usage_date"].as_str().unwrap()).collect();
    assert_eq!(days.len(), 7);

    let cost =
        run::<OpenAiCost>(&app, json!({"tolerance": "0.01", "retry": quick()}), OPENAI_KEY, window()).await.unwrap();
    assert!(cost.warnings.is_empty(), "{:?}", cost.warnings);
    let costs = rows(&app, "openai_cost_daily").await;
    assert_eq!(costs.len(), raw.len(), "one cost row per usage row");
    assert!(costs.iter().all(|r| r["cost_status"] == "PRICED" && r["currency"] == "USD" && r["price_version"] == 1));
    let mini = costs.iter().find(|r| r["model"] == "gpt-4o-mini-2024-07-18").unwrap();
    assert_eq!(mini["price_model_id"], "gpt-4o-mini", "dated snapshot → its own family, not gpt-4o");
    assert!(costs.iter().any(|r| r["pricing_basis"] == "batch"));
    // Row totals add up to the step's total, which equals what the sandbox billed (to the nanodollar).
    let total = sum(&costs, "total_cost");
    assert_eq!(total, dec(&cost.metrics["total_cost"]));
    assert_eq!(total, dec(&cost.metrics["reported_cost"]));
    // Every token type's line (text, cache writes, audio, image) adds up to the row's total.
    for r in &costs {
        let parts = r
            .iter()
            .filter(|(c, v)| c.ends_with("_cost") && *c != "total_cost" && !v.is_null())
            .map(|(_, v)| dec(v))
            .sum::<Decimal>();
        assert_eq!(parts, dec(&r["total_cost"]), "{r:?}");
    }
    let dq = dq_rows(&app, "openai_cost_daily").await;
    let daily: Vec<&Row> = dq.iter().filter(|r| r["check_name"] == "cost_reconciliation_daily").collect();
    assert_eq!(daily.len(), 7);
    assert!(dq.iter().any(|r| r["check_name"] == "cost_reconciliation_daily_project"));
    for r in &dq {
        assert_eq!(r["status"], "PASS", "{r:?}");
        assert_eq!(dec(&r["difference"]), Decimal::ZERO);
        assert_eq!(dec(&r["tolerance"]), "0.01".parse::<Decimal>().unwrap());
    }
    let reported: Decimal = daily.iter().map(|r| dec(&r["expected_value"])).sum();
    assert_eq!(reported, total);
    assert_eq!(cost.metrics["reconciliation"]["pass"], dq.len());
}

#[tokio::test]
async fn reruns_replace_the_window_byte_for_byte() {
    let app = setup().await;
    let tables = ["openai_usage_daily_raw", "openai_cost_daily", "anthropic_usage_daily_raw", "anthropic_cost_daily"];
    let mut first: Vec<String> = Vec::new();
    for attempt in 0..5 {
        run::<OpenAiUsage>(&app, json!({}), OPENAI_KEY, window()).await.unwrap();
        run::<OpenAiCost>(&app, json!({}), OPENAI_KEY, window()).await.unwrap();
        run::<AnthropicUsage>(&app, json!({}), ANTHROPIC_KEY, window()).await.unwrap();
        run::<AnthropicCost>(&app, json!({}), ANTHROPIC_KEY, window()).await.unwrap();
        let mut now = Vec::new();
        for t in tables {
            now.push(dump(&app, t).await);
        }
        if attempt == 0 {
            first = now;
            assert!(first.iter().all(|d| d.len() > 2));
        } else {
            assert_eq!(now, first, "rerun {attempt} changed a table");
        }
    }
    // The DQ results in force for the window are the latest run's, not piled up.
    let dq = dq_rows(&app, "openai_cost_daily").await;
    assert_eq!(dq.iter().filter(|r| r["check_name"] == "cost_reconciliation_daily").count(), 7);
    // A narrower rerun replaces only its own days.
    let before = rows(&app, "openai_usage_daily_raw").await.len();
    run::<OpenAiUsage>(&app, json!({}), OPENAI_KEY, (day("2025-03-03"), day("2025-03-03"))).await.unwrap();
    assert_eq!(rows(&app, "openai_usage_daily_raw").await.len(), before);
}

#[tokio::test]
async fn anthropic_usage_and_cost_price_every_token_type() {
    let app = setup().await;
    let usage = run::<AnthropicUsage>(&app, json!({"page_size": 2}), ANTHROPIC_KEY, window()).await.unwrap();
    assert_eq!(usage.metrics["pages"], 4);
    let raw = rows(&app, "anthropic_usage_daily_raw").await;
    assert_eq!(usage.rows_written, raw.len() as u64);
    assert!(raw.iter().any(|r| r["workspace_id"].is_null()), "the default workspace");
    assert!(raw.iter().any(|r| r["context_window"] == "200k-1M") && raw.iter().any(|r| r["service_tier"] == "batch"));
    assert!(raw.iter().any(|r| r["cache_write_1h_input_tokens"].as_u64() > Some(0)));

    let cost = run::<AnthropicCost>(&app, json!({"tolerance": "0.01"}), ANTHROPIC_KEY, window()).await.unwrap();
    assert!(cost.warnings.is_empty(), "{:?}", cost.warnings);
    let costs = rows(&app, "anthropic_cost_daily").await;
    assert_eq!(costs.len(), raw.len());
    assert!(costs.iter().any(|r| r["pricing_basis"] == "long_context"));
    assert!(costs.iter().any(|r| !r["cache_write_5m_cost"].is_null() && !r["cache_write_1h_cost"].is_null()));
    let total = sum(&costs, "total_cost");
    assert_eq!(total, dec(&cost.metrics["reported_cost"]), "cents / 100 equals the computed dollars");
    let dq = dq_rows(&app, "anthropic_cost_daily").await;
    assert_eq!(dq.iter().filter(|r| r["check_name"] == "cost_reconciliation_daily").count(), 7);
    assert!(dq.iter().any(|r| r["check_name"] == "cost_reconciliation_daily_model"
        && r["dimension"] == "model=claude-sonnet-4-5-20250929"));
    assert!(dq.iter().all(|r| r["status"] == "PASS"), "{dq:?}");
}

#[tokio::test]
async fn a_model_missing_from_the_book_is_reported_not_priced_at_zero() {
    let app = setup().await;
    run::<OpenAiUsage>(&app, json!({}), OPENAI_KEY, window()).await.unwrap();
    // gpt-4o-mini leaves the prices altogether: every catalog version (the organization has no
    // override of it).
    let t = app.state.central_table("price_catalog").unwrap();
    let n = app
        .state
        .warehouse
        .execute(&format!("DELETE FROM {t} WHERE model_id = @m"), &Params::new().bind("m", "gpt-4o-mini"))
        .await
        .unwrap();
    assert!(n > 0);
    let cost = run::<OpenAiCost>(&app, json!({}), OPENAI_KEY, window()).await.expect("the step still succeeds");
    let missing = "gpt-4o-mini-2024-07-18";
    assert!(
        cost.warnings.iter().any(|w| w.contains(missing) && w.contains("not in the openai price book")),
        "{:?}",
        cost.warnings
    );
    assert!(cost.warnings.iter().any(|w| w.starts_with("reconciliation:")), "{:?}", cost.warnings);
    assert_eq!(cost.metrics["models_missing"], json!([missing]));
    let costs = rows(&app, "openai_cost_daily").await;
    let unpriced: Vec<&Row> = costs.iter().filter(|r| r["model"] == missing).collect();
    assert!(!unpriced.is_empty());
    for r in &unpriced {
        assert_eq!(r["cost_status"], "MODEL_NOT_IN_PRICE_BOOK");
        assert!(r["total_cost"].is_null() && r["price_version_id"].is_null(), "never zero: {r:?}");
    }
    let dq = dq_rows(&app, "openai_cost_daily").await;
    let missing_rows: Vec<&Row> = dq.iter().filter(|r| r["check_name"] == "price_book_model_missing").collect();
    assert_eq!(missing_rows.len(), 7, "one per day");
    assert!(missing_rows.iter().all(|r| r["status"] == "WARN" && r["dimension"] == format!("model={missing}")));
    // What OpenAI billed for it now shows up as a difference beyond tolerance, every day.
    let daily: Vec<&Row> = dq.iter().filter(|r| r["check_name"] == "cost_reconciliation_daily").collect();
    assert!(daily.iter().all(|r| r["status"] == "WARN" && dec(&r["difference"]) < Decimal::ZERO), "{daily:?}");
}

#[tokio::test]
async fn usage_is_priced_with_the_version_in_force_on_its_day() {
    let app = setup().await;
    run::<AnthropicUsage>(&app, json!({}), ANTHROPIC_KEY, window()).await.unwrap();
    // Override Haiku 4.5's output price from 2025-03-05: the catalog prices the days before, the
    // organization's override (its version 1) the days from then.
    let book =
        common::pricebook::Book::open(&app.state, ORG, "anthropic", common::pricebook::BookKind::Pricing).unwrap();
    let changes = BTreeMap::from([("output_per_1m".to_string(), common::pricebook::Input::Text("10.00".into()))]);
    let (_, current) =
        book.update("claude-haiku-4-5-20251001", &changes, Some(day("2025-03-05")), "test").await.unwrap();
    let override_id = current["version_id"].as_str().unwrap().to_string();
    let cost = run::<AnthropicCost>(&app, json!({}), ANTHROPIC_KEY, window()).await.unwrap();
    let costs = rows(&app, "anthropic_cost_daily").await;
    let haiku: Vec<&Row> = costs.iter().filter(|r| r["model"] == "claude-haiku-4-5-20251001").collect();
    for r in &haiku {
        let d = day(r["usage_date"].as_str().unwrap());
        let expected = if d < day("2025-03-05") { "anthropic/claude-haiku-4-5-20251001/v1" } else { &override_id };
        assert_eq!(r["price_version_id"], expected, "{r:?}");
        assert_eq!(r["price_version"], 1, "{r:?}");
    }
    assert!(haiku.iter().any(|r| r["price_version_id"] == override_id.as_str()));
    assert!(haiku.iter().any(|r| r["price_version_id"] != override_id.as_str()));
    // The sandbox bills the default prices: the days after the change no longer reconcile.
    let dq = dq_rows(&app, "anthropic_cost_daily").await;
    for r in dq.iter().filter(|r| r["check_name"] == "cost_reconciliation_daily") {
        let d = day(r["usage_date"].as_str().unwrap());
        assert_eq!(r["status"], if d < day("2025-03-05") { "PASS" } else { "WARN" }, "{r:?}");
    }
    assert!(!cost.warnings.is_empty());
}

#[tokio::test]
async fn a_429_is_retried_until_it_clears() {
    let app = setup().await;
    // The first two calls to each endpoint answer 429 with Retry-After: 1.
    let flaky = "sk-admin-sandbox-proc-fail429x2";
    let started = std::time::Instant::now();
    let usage = run::<OpenAiUsage>(&app, json!({"retry": quick()}), flaky, window()).await.unwrap();
    assert!(usage.rows_written > 0);
    assert!(started.elapsed() >= std::time::Duration::from_secs(4), "Retry-After honoured: 2 × 1 s per endpoint");
    let cost = run::<OpenAiCost>(&app, json!({"retry": quick()}), flaky, window()).await.unwrap();
    assert_eq!(cost.metrics["reconciliation"]["fail"], 0);
    let a = run::<AnthropicUsage>(&app, json!({"retry": quick()}), "sk-ant-admin01-sandbox-proc-fail529x1", window())
        .await
        .unwrap();
    assert!(a.rows_written > 0, "an overloaded 529 is retried too");
}

#[tokio::test]
async fn exhausted_retries_fail_the_step_and_leave_no_partial_window() {
    let app = setup().await;
    let down = "sk-admin-sandbox-proc-fail500";
    let err = run::<OpenAiUsage>(&app, json!({"retry": quick()}), down, window()).await.unwrap_err();
    match &err {
        StepError::Provider { provider, status, message } => {
            assert_eq!((provider.as_str(), *status), ("OpenAI", 500));
            assert!(message.contains("gave up after 4 attempt"), "{message}");
        }
        other => panic!("expected a provider error, got {other:?}"),
    }
    assert!(err.to_string().starts_with("OpenAI answered 500"), "{err}");
    assert!(rows(&app, "openai_usage_daily_raw").await.is_empty(), "nothing written");

    // A window already loaded stays as it was when a rerun fails half-way: completions are
    // fetched in full, then embeddings run out of retries; the replace never happens.
    run::<OpenAiUsage>(&app, json!({}), OPENAI_KEY, window()).await.unwrap();
    let before = dump(&app, "openai_usage_daily_raw").await;
    let flaky = "sk-admin-sandbox-proc-fail500x5"; // the first 5 calls to each endpoint fail
    let five = json!({"max_attempts": 5, "initial_backoff_ms": 1, "max_backoff_ms": 10});
    // Uses up the completions endpoint's 5 failures.
    run::<OpenAiUsage>(&app, json!({"endpoints": ["completions"], "retry": five}), flaky, window()).await.unwrap_err();
    let err = run::<OpenAiUsage>(&app, json!({"retry": quick()}), flaky, window()).await.unwrap_err();
    assert!(matches!(err, StepError::Provider { status: 500, .. }), "{err:?}");
    assert_eq!(dump(&app, "openai_usage_daily_raw").await, before);

    // The cost step fails the same way when the bill cannot be read, and writes nothing.
    let err = run::<OpenAiCost>(&app, json!({"retry": quick()}), down, window()).await.unwrap_err();
    assert!(matches!(err, StepError::Provider { status: 500, .. }), "{err:?}");
    assert!(rows(&app, "openai_cost_daily").await.is_empty());
    assert!(dq_rows(&app, "openai_cost_daily").await.is_empty());

    // A 4xx is not retried.
    let err =
        run::<AnthropicUsage>(&app, json!({"retry": quick()}), "sk-ant-admin01-real-key", window()).await.unwrap_err();
    assert!(matches!(err, StepError::Provider { status: 401, .. }), "{err:?}");
}

/// The OpenAI reconciliation rows of the last cost run, by check.
async fn openai_checks(app: &TestApp, check: &str) -> Vec<Row> {
    dq_rows(app, "openai_cost_daily").await.into_iter().filter(|r| r["check_name"] == check).collect()
}

#[tokio::test]
async fn line_item_reconciliation_finds_a_planted_error() {
    planted_error_is_found(setup().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn line_item_reconciliation_on_bigquery() {
    let app = setup_on_bigquery().await;
    planted_error_is_found(app).await;
}

async fn planted_error_is_found(app: TestApp) {
    // 1 % of each billed line, at least a tenth of a cent.
    let config = json!({"tolerance": "0.001", "relative_tolerance": "0.01", "retry": quick()});

    // The sandbox bills exactly what it used: every line item of every day passes.
    run::<OpenAiUsage>(&app, json!({}), OPENAI_KEY, window()).await.unwrap();
    let clean = run::<OpenAiCost>(&app, config.clone(), OPENAI_KEY, window()).await.unwrap();
    assert!(clean.warnings.is_empty(), "{:?}", clean.warnings);
    let lines = openai_checks(&app, "cost_reconciliation_daily_line_item").await;
    let names: std::collections::BTreeSet<&str> = lines.iter().map(|r| r["dimension"].as_str().unwrap()).collect();
    for kind in [", input", ", cached input", ", output", ", batch input", ", batch output"] {
        assert!(names.iter().any(|n| n.ends_with(kind)), "a {kind:?} line item in {names:?}");
    }
    assert!(names.contains("line_item=text-embedding-3-small, input"), "{names:?}");
    for r in &lines {
        assert_eq!((r["status"].as_str(), dec(&r["difference"])), (Some("PASS"), Decimal::ZERO), "{r:?}");
        assert!(r["details"].as_str().unwrap().contains("billed_quantity"), "{r:?}");
    }
    // The line items add up to the day.
    let days = openai_checks(&app, "cost_reconciliation_daily").await;
    for d in &days {
        let day_lines = lines.iter().filter(|r| r["usage_date"] == d["usage_date"]);
        assert_eq!(day_lines.map(|r| dec(&r["expected_value"])).sum::<Decimal>(), dec(&d["expected_value"]));
    }

    // The same usage billed 3 % too high on each day's largest line item.
    let planted = "sk-admin-sandbox-proc-overbill3";
    run::<OpenAiUsage>(&app, json!({}), planted, window()).await.unwrap();
    let off = run::<OpenAiCost>(&app, config, planted, window()).await.unwrap();
    let lines = openai_checks(&app, "cost_reconciliation_daily_line_item").await;
    let flagged: Vec<&Row> = lines.iter().filter(|r| r["status"] != "PASS").collect();
    assert_eq!(flagged.len(), 7, "one line item a day: {flagged:#?}");
    for r in &flagged {
        let (computed, billed) = (dec(&r["observed_value"]), dec(&r["expected_value"]));
        assert_eq!(r["status"], "WARN");
        // Billed = computed × 1.03, exactly; the difference is 3 % of what was used.
        assert_eq!(billed, computed * "1.03".parse::<Decimal>().unwrap(), "{r:?}");
        assert_eq!(dec(&r["difference"]), -(computed * "0.03".parse::<Decimal>().unwrap()));
        // The day's largest line: the others of the day are smaller and passed.
        let day_lines = lines.iter().filter(|o| o["usage_date"] == r["usage_date"]);
        assert!(day_lines.filter(|o| o["dimension"] != r["dimension"]).all(|o| dec(&o["observed_value"]) <= computed));
        // Enough to find it in the bill: the line item, how OpenAI wrote it, tokens on both sides.
        let details: Value = serde_json::from_str(r["details"].as_str().unwrap()).unwrap();
        let line = r["dimension"].as_str().unwrap().strip_prefix("line_item=").unwrap();
        assert_eq!(details["line_item"], line);
        assert_eq!(details["billed_as"][0], line);
        assert_eq!(dec(&details["billed_quantity"]), Decimal::from(details["computed_tokens"].as_u64().unwrap()));
    }
    assert!(lines.iter().filter(|r| r["status"] == "PASS").all(|r| dec(&r["difference"]) == Decimal::ZERO));
    assert!(
        off.warnings.iter().any(|w| w.contains("reconciliation:") && w.contains("line_item=")),
        "{:?}",
        off.warnings
    );
}

/// The sandbox bills from its own rate card (functions/local/src/sandbox/rates.rs), not from the
/// prices Convergence seeds: a wrong rate in the seed CSV is on one side of the reconciliation
/// only, so the line items it prices are flagged and the others pass.
#[tokio::test]
async fn a_wrong_rate_in_the_seeded_prices_is_found_by_reconciliation() {
    let configs = tempfile::tempdir().unwrap();
    convergence_tests::copy_dir(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs")),
        configs.path(),
    );
    let csv = configs.path().join("openai/seed/data/default_pricing.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    // gpt-4o-mini's output typed as 0.66 per 1M instead of 0.60.
    let wrong = text.replacen("gpt-4o-mini,USD,0.15,0.075,,,0.60,", "gpt-4o-mini,USD,0.15,0.075,,,0.66,", 1);
    assert_ne!(wrong, text, "the seed row to corrupt");
    std::fs::write(&csv, wrong).unwrap();
    let app = setup_on(crate::sandbox::spawn_with(&[("CONFIGS_DIR", configs.path().to_str().unwrap())]).await).await;

    let config = json!({"tolerance": "0.001", "relative_tolerance": "0.01", "retry": quick()});
    run::<OpenAiUsage>(&app, json!({}), OPENAI_KEY, window()).await.unwrap();
    let cost = run::<OpenAiCost>(&app, config, OPENAI_KEY, window()).await.unwrap();
    assert!(cost.warnings.iter().any(|w| w.starts_with("reconciliation:")), "{:?}", cost.warnings);
    let lines = openai_checks(&app, "cost_reconciliation_daily_line_item").await;
    let wrong_line = "line_item=gpt-4o-mini-2024-07-18, output";
    let flagged: Vec<&Row> = lines.iter().filter(|r| r["status"] != "PASS").collect();
    assert!(!flagged.is_empty());
    for r in &flagged {
        assert_eq!(r["dimension"], wrong_line, "only the line the wrong rate prices: {r:?}");
        // Computed at 0.66, billed at 0.60: 10 % over.
        let (computed, billed) = (dec(&r["observed_value"]), dec(&r["expected_value"]));
        assert_eq!(computed, billed * "1.1".parse::<Decimal>().unwrap(), "{r:?}");
    }
    let days: std::collections::BTreeSet<&str> = flagged.iter().map(|r| r["usage_date"].as_str().unwrap()).collect();
    assert_eq!(days.len(), 7, "every day gpt-4o-mini had output: {flagged:#?}");
}

#[tokio::test]
async fn billed_line_items_we_do_not_price_are_reported_as_unpriced() {
    unpriced_line_items_are_reported(setup().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn billed_line_items_we_do_not_price_on_bigquery() {
    unpriced_line_items_are_reported(setup_on_bigquery().await).await;
}

async fn unpriced_line_items_are_reported(app: TestApp) {
    // Each day also bills 3 images ($0.12) and 10 web search calls ($0.25).
    let key = "sk-admin-sandbox-proc-unpriced";
    run::<OpenAiUsage>(&app, json!({}), key, window()).await.unwrap();
    let out =
        run::<OpenAiCost>(&app, json!({"relative_tolerance": "0.01", "retry": quick()}), key, window()).await.unwrap();
    let unpriced = openai_checks(&app, "billed_line_item_unpriced").await;
    assert_eq!(unpriced.len(), 14, "two a day for 7 days: {unpriced:#?}");
    for r in &unpriced {
        assert_eq!(r["status"], "UNPRICED");
        assert!(r["observed_value"].is_null() && r["difference"].is_null(), "nothing computed: {r:?}");
        let (line, billed) = (r["dimension"].as_str().unwrap(), dec(&r["expected_value"]));
        match line {
            "line_item=Image models" => assert_eq!(billed, "0.12".parse::<Decimal>().unwrap()),
            "line_item=gpt-4o-mini, web search tool calls" => assert_eq!(billed, "0.25".parse::<Decimal>().unwrap()),
            other => panic!("unexpected line item {other}"),
        }
    }
    // Not a mismatch: the day, project and line-item checks compare what we price, and pass.
    let dq = dq_rows(&app, "openai_cost_daily").await;
    let checks: Vec<&Row> =
        dq.iter().filter(|r| r["check_name"].as_str().unwrap().starts_with("cost_reconciliation")).collect();
    assert!(!checks.is_empty() && checks.iter().all(|r| r["status"] == "PASS"), "{checks:#?}");
    assert_eq!(out.metrics["reconciliation"]["warn"], 0);
    assert_eq!(out.metrics["reconciliation"]["unpriced"], 14);
    // 7 × (0.12 + 0.25) = 2.59, named in the step's warnings.
    assert_eq!(dec(&out.metrics["billed_unpriced_cost"]), "2.59".parse::<Decimal>().unwrap());
    assert!(out.warnings.iter().any(|w| w.contains("2.59 USD") && w.contains("Image models")), "{:?}", out.warnings);
}
