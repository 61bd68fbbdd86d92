//! The system-wide price catalog: loaded at bootstrap (once; a changed file writes new versions,
//! never duplicates), read through `GET /api/v1/pricing/catalog/{provider}`, written from a date
//! (what the catalog import calls), priced per day by the cost steps (a backfill across o3's
//! 2025-06-10 price cut), and the migration of organization books made before it. On DuckDB and
//! the BigQuery emulator.

use std::collections::BTreeMap;

use chrono::{NaiveDate, Utc};
use common::pipeline::{Processor, StepContext};
use common::pricebook::{Catalog, CatalogRead};
use common::processors::openai::cost::OpenAiCost;
use common::warehouse::{format_timestamp, Params, Row};
use convergence_tests::{Key, TestApp};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};

const ORG: &str = "acme";
const OPENAI_KEY: &str = "sk-admin-sandbox-acme";

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn dec(v: &Value) -> Decimal {
    v.as_str().map_or_else(|| v.to_string(), str::to_string).parse().unwrap()
}

/// How many models the shipped openai catalog prices today, and how many versions it has.
fn openai_catalog(app: &TestApp) -> (u64, u64) {
    let seed = &app.state.configs.price_books["openai"];
    (seed.pricing.len() as u64, seed.catalog.len() as u64)
}

/// Bootstrapped, `acme` onboarded and its OpenAI integration set up with a sandbox key.
async fn with_openai(app: TestApp) -> (TestApp, String) {
    app.bootstrap().await;
    let key = app.onboard(ORG).await;
    let r = app
        .post(&format!("/api/v1/integrations/{ORG}/openai/setup"), Key::Api(&key), json!({"credential": OPENAI_KEY}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    (app, key)
}

/// A pricing-book row as the set-up wrote it before the catalog existed.
fn legacy_row(model: &str, version: i64, source: &str, from: &str, to: Option<&str>, prices: Value) -> Row {
    let mut row: Row = serde_json::from_value(json!({
        "version_id": format!("legacy-{model}-{version}"), "org_slug": ORG, "provider": "openai",
        "model_id": model, "version": version, "effective_from": from, "effective_to": to,
        "source": source, "created_at": format_timestamp(&Utc::now()), "created_by": "test",
        "currency": "USD",
    }))
    .unwrap();
    row.extend(prices.as_object().unwrap().clone());
    row
}

async fn insert_book_rows(app: &TestApp, rows: &[Row]) {
    let schema = app.state.configs.price_books["openai"].schema(common::pricebook::BookKind::Pricing).clone();
    app.state.warehouse.insert_rows(&app.state.org_dataset(ORG), &schema, rows).await.unwrap();
}

async fn book_rows(app: &TestApp) -> Vec<Row> {
    let t = app.state.warehouse.table_ref(&app.state.org_dataset(ORG), "openai_model_pricing").unwrap();
    let sql = format!("SELECT * FROM {t} ORDER BY model_id, version");
    app.state.warehouse.query(&sql, &Params::new()).await.unwrap()
}

async fn bootstrap_loads_the_catalog_once(app: TestApp) {
    let (models, versions) = openai_catalog(&app);
    let first = app.bootstrap().await;
    let openai = first.body["catalog"].as_array().unwrap().iter().find(|r| r["provider"] == "openai").unwrap();
    assert_eq!(openai["versions_written"], versions, "{}", first.body);
    assert_eq!(openai["models_added"].as_array().unwrap().len() as u64, models);
    let second = app.bootstrap().await;
    for report in second.body["catalog"].as_array().unwrap() {
        assert_eq!(report["versions_written"], 0, "{report}");
        assert_eq!(report["versions_superseded"], 0, "{report}");
    }
    assert_eq!(app.count("price_catalog", None).await as u64, versions + openai_anthropic_extra(&app));

    // The read route: today's prices, a past day, the history; any valid key.
    let key = app.onboard(ORG).await;
    let r = app.get("/api/v1/pricing/catalog/openai", Key::Api(&key)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["count"], models);
    let o3 = r.body["catalog"].as_array().unwrap().iter().find(|p| p["model_id"] == "o3").unwrap();
    assert_eq!((o3["version"].clone(), o3["input_per_1m"].clone()), (json!(2), json!("2.00")), "{o3}");
    assert_eq!(o3["version_id"], "openai/o3/v2");
    assert_eq!(o3["source"], "catalog");
    let r = app.get("/api/v1/pricing/catalog/openai?model=o3&as_of=2025-06-09", Key::Root).await;
    assert_eq!(r.body["count"], 1, "{}", r.body);
    assert_eq!(r.body["catalog"][0]["input_per_1m"], "10.00");
    assert_eq!(r.body["catalog"][0]["cached_input_per_1m"], "2.50");
    assert_eq!(r.body["catalog"][0]["output_per_1m"], "40.00");
    assert_eq!(r.body["catalog"][0]["effective_to"], "2025-06-10");
    let r = app.get("/api/v1/pricing/catalog/openai?model=o3&history=true", Key::Root).await;
    assert_eq!(r.body["count"], 2, "{}", r.body);
    assert_eq!(app.get("/api/v1/pricing/catalog/openai?history=true", Key::Root).await.body["count"], versions);
    app.get("/api/v1/pricing/catalog/openai", Key::None).await.assert_error(401, "unauthorized");
    let msg = app.get("/api/v1/pricing/catalog/gcp", Key::Root).await.assert_error(404, "not_found").to_string();
    assert!(msg.contains("anthropic, openai"), "{msg}");
    let r = app.get("/api/v1/pricing/catalog/openai?as_of=2025-6-9", Key::Root).await;
    assert!(r.assert_error(400, "invalid_request").contains("as_of"));
}

/// The anthropic catalog's versions (the table holds both providers).
fn openai_anthropic_extra(app: &TestApp) -> u64 {
    app.state.configs.price_books["anthropic"].catalog.len() as u64
}

#[tokio::test]
async fn bootstrap_loads_the_catalog_once_duckdb() {
    bootstrap_loads_the_catalog_once(TestApp::spawn().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_loads_the_catalog_once_bigquery() {
    bootstrap_loads_the_catalog_once(TestApp::spawn_bigquery(&[]).await).await;
}

/// A copy of `configs/` whose openai catalog file has gpt-4o cut to 2.00 / 1.00 / 8.00 from
/// 2026-01-01 (the old version now ends then).
fn changed_configs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    convergence_tests::copy_dir(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs")), dir.path());
    let csv = dir.path().join("openai/seed/data/default_pricing.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    // The shipped gpt-4o line (its other columns as they are), ended, and a cut version after it.
    let old = text.lines().find(|l| l.starts_with("gpt-4o,USD,2.50,1.25,,,10.00,1.25,5.00,")).unwrap();
    let open = old.strip_suffix(",1970-01-01,").expect("gpt-4o in force since 1970, current");
    let cut = open.replacen("gpt-4o,USD,2.50,1.25,,,10.00,1.25,5.00,", "gpt-4o,USD,2.00,1.00,,,8.00,1.00,4.00,", 1);
    let new = format!("{open},1970-01-01,2026-01-01\n{cut},2026-01-01,");
    std::fs::write(&csv, text.replacen(old, &new, 1)).unwrap();
    dir
}

/// What a re-bootstrap after the change must leave: gpt-4o's history in two live versions
/// (numbers 2 and 3: version 1 is superseded, kept), every other model as it was.
async fn assert_gpt4o_rewritten(app: &TestApp, report: &Value) {
    let (models, _) = openai_catalog(app);
    assert_eq!(report["models_changed"], json!(["gpt-4o"]), "{report}");
    assert_eq!(report["versions_superseded"], 1, "{report}");
    assert_eq!(report["versions_written"], 2, "{report}");
    assert_eq!(report["models_unchanged"], models - 1, "{report}");
    let r = app.get("/api/v1/pricing/catalog/openai?model=gpt-4o&history=true", Key::Root).await;
    let versions: Vec<(Value, Value, Value, Value)> = r.body["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (v["version"].clone(), v["effective_from"].clone(), v["effective_to"].clone(), v["input_per_1m"].clone())
        })
        .collect();
    assert_eq!(
        versions,
        vec![
            (json!(2), json!("1970-01-01"), json!("2026-01-01"), json!("2.50")),
            (json!(3), json!("2026-01-01"), Value::Null, json!("2.00")),
        ],
        "{}",
        r.body
    );
    let t = app.state.central_table("price_catalog").unwrap();
    let all = app
        .state
        .warehouse
        .query(
            &format!("SELECT version, superseded_at FROM {t} WHERE model_id = @m ORDER BY version"),
            &Params::new().bind("m", "gpt-4o"),
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(!all[0]["superseded_at"].is_null() && all[1]["superseded_at"].is_null(), "{all:?}");
}

#[tokio::test]
async fn a_changed_catalog_file_writes_new_versions_not_duplicates() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    // What bootstrap runs for each provider, with the changed file (a second app cannot open
    // this process's DuckDB file; the BigQuery test below goes through the route).
    let dir = changed_configs();
    let configs = common::configs::Configs::load(dir.path(), &common::processors::REGISTRY).unwrap();
    let catalog = Catalog::new(app.state.warehouse.as_ref(), &configs);
    let report = catalog.load_seed("openai", "bootstrap").await.unwrap();
    assert_gpt4o_rewritten(&app, &serde_json::to_value(&report).unwrap()).await;
    let again = catalog.load_seed("openai", "bootstrap").await.unwrap();
    assert_eq!((again.versions_written, again.versions_superseded), (0, 0), "{again:?}");

    // New versions from a date (what the catalog import writes): gpt-4.1's input from
    // 2026-06-01; an unchanged entry writes nothing.
    let current =
        |model: &str| configs.price_books["openai"].pricing.iter().find(|e| e["model_id"] == model).unwrap().clone();
    let mut gpt41 = current("gpt-4.1");
    gpt41.insert("input_per_1m".into(), json!("1.80"));
    let report = catalog
        .write_versions("openai", &[gpt41, current("gpt-4o-mini")], day("2026-06-01"), "import", "test")
        .await
        .unwrap();
    assert_eq!(report.models_changed, vec!["gpt-4.1".to_string()], "{report:?}");
    assert_eq!(report.models_unchanged, 1, "{report:?}");
    let history: Vec<Value> = catalog
        .read("openai", CatalogRead::History(Some("gpt-4.1")))
        .await
        .unwrap()
        .iter()
        .map(common::pricebook::catalog_view)
        .collect();
    let spans: Vec<(Value, Value, Value)> = history
        .iter()
        .map(|v| (v["effective_from"].clone(), v["effective_to"].clone(), v["input_per_1m"].clone()))
        .collect();
    assert_eq!(
        spans,
        vec![
            (json!("1970-01-01"), json!("2026-06-01"), json!("2.00")),
            (json!("2026-06-01"), Value::Null, json!("1.80")),
        ]
    );
    // A re-bootstrap with that file (which does not list the import) brings gpt-4.1 back in line.
    let report = catalog.load_seed("openai", "bootstrap").await.unwrap();
    assert_eq!(report.models_changed, vec!["gpt-4.1".to_string()], "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebootstrap_with_a_changed_catalog_file_on_bigquery() {
    let project = convergence_tests::unique_project();
    let app = TestApp::spawn_bigquery(&[("GCP_PROJECT_ID", &project)]).await;
    app.bootstrap().await;
    // The same project, served by an app whose configs have the changed file.
    let dir = changed_configs();
    let changed =
        TestApp::spawn_bigquery(&[("GCP_PROJECT_ID", &project), ("CONFIGS_DIR", dir.path().to_str().unwrap())]).await;
    let r = changed.bootstrap().await;
    let openai = r.body["catalog"].as_array().unwrap().iter().find(|r| r["provider"] == "openai").unwrap().clone();
    assert_gpt4o_rewritten(&changed, &openai).await;
    let r = changed.bootstrap().await;
    for report in r.body["catalog"].as_array().unwrap() {
        assert_eq!(
            (report["versions_written"].clone(), report["versions_superseded"].clone()),
            (json!(0), json!(0)),
            "{report}"
        );
    }
}

/// A backfill of o3 usage from 2025-06-08 to 2025-06-12, each day 1,000,000 input tokens of
/// which 200,000 cached and 100,000 output, in an organization whose book was set up before the
/// catalog (o3 copied at today's price, in force since 1970: the bug this fixes).
///   before 2025-06-10 (10.00 / 2.50 / 40.00): 800,000 × 10 + 200,000 × 2.5 + 100,000 × 40 = 8 + 0.5 + 4 = 12.5 a day
///   from 2025-06-10    (2.00 / 0.50 / 8.00):  800,000 × 2  + 200,000 × 0.5 + 100,000 × 8  = 1.6 + 0.1 + 0.8 = 2.5 a day
///   window: 2 × 12.5 + 3 × 2.5 = 32.5 (the copied book would have said 5 × 2.5 = 12.5)
async fn a_backfill_across_the_o3_price_cut(app: TestApp) {
    let (app, _) = with_openai(app).await;
    insert_book_rows(
        &app,
        &[legacy_row("o3", 1, "default", "1970-01-01", None, json!({"input_per_1m": "2.00", "cached_input_per_1m": "0.50", "output_per_1m": "8.00", "batch_input_per_1m": "1.00", "batch_output_per_1m": "4.00"}))],
    )
    .await;
    let dataset = app.state.org_dataset(ORG);
    let raw = app.state.configs.table_schema("openai", "openai_usage_daily_raw").unwrap().clone();
    app.state.warehouse.create_table(&dataset, &raw).await.unwrap();
    let rows: Vec<Row> = ["2025-06-08", "2025-06-09", "2025-06-10", "2025-06-11", "2025-06-12"]
        .iter()
        .map(|d| {
            serde_json::from_value(json!({
                "usage_date": d, "org_slug": ORG, "usage_type": "completions", "model": "o3-2025-04-16",
                "project_id": "proj_1", "batch": false, "input_tokens": 1_000_000, "input_cached_tokens": 200_000,
                "input_uncached_tokens": 800_000, "output_tokens": 100_000, "num_model_requests": 10,
            }))
            .unwrap()
        })
        .collect();
    app.state.warehouse.insert_rows(&dataset, &raw, &rows).await.unwrap();

    let secret = secrecy::SecretString::from(OPENAI_KEY.to_string());
    let variables = BTreeMap::from([("org_slug".to_string(), ORG.to_string())]);
    let ctx = StepContext {
        warehouse: app.state.warehouse.as_ref(),
        configs: &app.state.configs,
        settings: &app.state.settings,
        org_slug: ORG,
        dataset: &dataset,
        run_id: "run-backfill",
        pipeline_id: "acme-openai-usage-cost",
        step_id: "transform_cost",
        start_date: day("2025-06-08"),
        end_date: day("2025-06-12"),
        variables: &variables,
        credential: Some(&secret),
    };
    let config = serde_json::from_value(json!({})).unwrap();
    let outcome = <OpenAiCost as Processor>::run(&config, &ctx).await.unwrap();
    assert_eq!(dec(&outcome.metrics["total_cost"]), "32.5".parse::<Decimal>().unwrap(), "{}", outcome.metrics);

    let t = app.state.warehouse.table_ref(&dataset, "openai_cost_daily").unwrap();
    let costs = app
        .state
        .warehouse
        .query(
            &format!("SELECT usage_date, total_cost, price_version_id, price_model_id FROM {t} ORDER BY usage_date"),
            &Params::new(),
        )
        .await
        .unwrap();
    let got: Vec<(String, Decimal, String)> = costs
        .iter()
        .map(|r| {
            (
                r["usage_date"].as_str().unwrap().to_string(),
                dec(&r["total_cost"]),
                r["price_version_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, Decimal, String)> = [
        ("2025-06-08", "12.5", "openai/o3/v1"),
        ("2025-06-09", "12.5", "openai/o3/v1"),
        ("2025-06-10", "2.5", "openai/o3/v2"),
        ("2025-06-11", "2.5", "openai/o3/v2"),
        ("2025-06-12", "2.5", "openai/o3/v2"),
    ]
    .iter()
    .map(|(d, c, v)| (d.to_string(), c.parse().unwrap(), v.to_string()))
    .collect();
    assert_eq!(got, want);
    // The copied row became a catalog price: ended at its own start, kept as history.
    let book = book_rows(&app).await;
    assert_eq!(book.len(), 1, "{book:?}");
    assert_eq!(book[0]["effective_to"], book[0]["effective_from"], "{book:?}");
}

#[tokio::test]
async fn a_backfill_across_the_o3_price_cut_is_priced_per_day_duckdb() {
    a_backfill_across_the_o3_price_cut(TestApp::spawn().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backfill_across_the_o3_price_cut_is_priced_per_day_bigquery() {
    a_backfill_across_the_o3_price_cut(TestApp::spawn_bigquery(&[]).await).await;
}

/// A book made before the catalog: gpt-4o copied unchanged (equal to the catalog), gpt-4o-mini
/// copied and then edited from 2026-01-01 (input 0.20). Reading it migrates it: gpt-4o becomes a
/// catalog price, gpt-4o-mini's edit stays an override and its copied version a catalog price.
async fn a_book_made_before_the_catalog_migrates(app: TestApp) {
    let (app, key) = with_openai(app).await;
    let mini = json!({"input_per_1m": "0.15", "cached_input_per_1m": "0.075", "output_per_1m": "0.60", "batch_input_per_1m": "0.075", "batch_output_per_1m": "0.30"});
    let mut edited = mini.clone();
    edited["input_per_1m"] = json!("0.20");
    insert_book_rows(
        &app,
        &[
            legacy_row("gpt-4o", 1, "default", "1970-01-01", None, json!({"input_per_1m": "2.50", "cached_input_per_1m": "1.25", "output_per_1m": "10.00", "batch_input_per_1m": "1.25", "batch_output_per_1m": "5.00", "notes": "an older note"})),
            legacy_row("gpt-4o-mini", 1, "default", "1970-01-01", Some("2026-01-01"), mini),
            legacy_row("gpt-4o-mini", 2, "custom", "2026-01-01", None, edited),
        ],
    )
    .await;
    let k = Key::Api(&key);
    let pricing = format!("/api/v1/integrations/{ORG}/openai/pricing");
    let r = app.get(&format!("{pricing}?as_of=2026-02-01"), k).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let row =
        |model: &str| r.body["pricing"].as_array().unwrap().iter().find(|p| p["model_id"] == model).unwrap().clone();
    assert_eq!(
        (row("gpt-4o")["source"].clone(), row("gpt-4o")["version_id"].clone()),
        (json!("catalog"), json!("openai/gpt-4o/v1"))
    );
    assert_eq!(
        (row("gpt-4o-mini")["source"].clone(), row("gpt-4o-mini")["input_per_1m"].clone()),
        (json!("override"), json!("0.20"))
    );
    assert_eq!(r.body["count"], openai_catalog(&app).0, "one price per model: {}", r.body);
    let before = app.get(&format!("{pricing}?model=gpt-4o-mini&as_of=2025-12-31"), k).await;
    assert_eq!(before.body["pricing"][0]["source"], "catalog", "{}", before.body);
    assert_eq!(before.body["pricing"][0]["input_per_1m"], "0.15");

    let book = book_rows(&app).await;
    let by_id: BTreeMap<&str, &Row> = book.iter().map(|r| (r["version_id"].as_str().unwrap(), r)).collect();
    for id in ["legacy-gpt-4o-1", "legacy-gpt-4o-mini-1"] {
        assert_eq!(by_id[id]["effective_to"], by_id[id]["effective_from"], "{id}: in force on no day");
        assert!(by_id[id]["closed_by"].as_str().unwrap().starts_with("catalog-migration"), "{id}");
    }
    assert_eq!(by_id["legacy-gpt-4o-mini-2"]["effective_to"], Value::Null);
    assert_eq!(by_id["legacy-gpt-4o-mini-2"]["source"], "custom");
    // Reading it again changes nothing; the edit can be ended like any override.
    app.get(&pricing, k).await;
    assert_eq!(book_rows(&app).await, book);
    let r = app.request(reqwest::Method::DELETE, &format!("{pricing}/gpt-4o-mini"), k, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn a_book_made_before_the_catalog_migrates_duckdb() {
    a_book_made_before_the_catalog_migrates(TestApp::spawn().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_book_made_before_the_catalog_migrates_bigquery() {
    a_book_made_before_the_catalog_migrates(TestApp::spawn_bigquery(&[]).await).await;
}
