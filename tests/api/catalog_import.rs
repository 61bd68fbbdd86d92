//! `POST /api/v1/pricing/catalog/import`: a real LiteLLM file excerpt (tests/fixtures/litellm/)
//! and our CSV, dry run and applied, the diff, a change that looks wrong refused and then forced,
//! and who may call it; the diff and a write on DuckDB and on the BigQuery emulator.

use common::pricebook::{Catalog, CatalogRead};
use convergence_tests::{Reply, TestApp, ROOT_KEY};
use reqwest::StatusCode;
use serde_json::Value;

const FIXTURE: &str = include_str!("../fixtures/litellm/model_prices_excerpt.json");
const CSV_HEADER: &str = "model_id,currency,input_per_1m,cached_input_per_1m,cache_write_5m_per_1m,cache_write_1h_per_1m,output_per_1m,batch_input_per_1m,batch_output_per_1m,long_context_threshold_tokens,long_context_input_per_1m,long_context_cached_input_per_1m,long_context_cache_write_5m_per_1m,long_context_cache_write_1h_per_1m,long_context_output_per_1m,deprecation_date,notes";

async fn import(app: &TestApp, query: &str, body: &str, key: &str) -> Reply {
    let header = if key == ROOT_KEY { "X-CA-Root-Key" } else { "X-API-Key" };
    let r = app
        .client
        .post(format!("{}/api/v1/pricing/catalog/import?{query}", app.base))
        .header(header, key)
        .header("Content-Type", "text/plain")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    TestApp::reply(r).await
}

/// gpt-4o's input price in the catalog on `day`.
async fn gpt_4o_input(app: &TestApp, day: &str) -> String {
    let catalog = Catalog::new(app.state.warehouse.as_ref(), &app.state.configs);
    let rows = catalog.read("openai", CatalogRead::AsOf(day.parse().unwrap(), Some("gpt-4o"))).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let v = &rows[0]["input_per_1m"];
    let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
    text.parse::<rust_decimal::Decimal>().unwrap().normalize().to_string()
}

#[tokio::test]
async fn a_litellm_file_is_diffed_and_a_csv_change_is_applied_from_its_date() {
    litellm_diffed_and_csv_applied(TestApp::spawn().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_import_on_bigquery() {
    litellm_diffed_and_csv_applied(TestApp::spawn_bigquery(&[]).await).await;
}

async fn litellm_diffed_and_csv_applied(app: TestApp) {
    app.bootstrap().await;

    // The LiteLLM excerpt, dry run: the diff, nothing written.
    let r = import(&app, "dry_run=true&effective_from=2026-12-15", FIXTURE, ROOT_KEY).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!((r.body["dry_run"].as_bool(), r.body["applied"].as_bool()), (Some(true), Some(false)));
    let report = &r.body["report"];
    assert_eq!(report["format"], "litellm");
    assert!(report["other_provider_entries"].as_u64().unwrap() >= 2, "azure and vertex_ai entries ignored: {report}");
    let listed = |k: &str| -> Vec<String> {
        report[k].as_array().unwrap().iter().map(|m| m["model_id"].as_str().unwrap().to_string()).collect()
    };
    let seen: Vec<String> = [listed("added"), listed("changed"), listed("unchanged")].concat();
    assert!(seen.contains(&"gpt-4o".to_string()) && seen.contains(&"gpt-5".to_string()), "{report}");
    assert!(!seen.iter().any(|m| m.starts_with("azure/") || m.starts_with("vertex_ai/")), "{seen:?}");
    assert!(!report["unmapped"].as_array().unwrap().is_empty(), "fields with no column are reported: {report}");
    assert!(r.body["written"].as_array().unwrap().is_empty());
    // Every dimension LiteLLM prices has a catalog column: gpt-5's batch-cached, flex and priority
    // rates equal the shipped catalog's; only its web-search price (not in our OpenAI rows) is new.
    let gpt5 = report["changed"].as_array().unwrap().iter().find(|m| m["model_id"] == "gpt-5").cloned();
    let gpt5 = gpt5.unwrap_or_else(|| panic!("gpt-5 changed: {report}"));
    let columns: Vec<&str> = gpt5["changes"].as_array().unwrap().iter().filter_map(|c| c["column"].as_str()).collect();
    assert_eq!(columns, ["web_search_per_1k_requests"], "{gpt5}");
    assert_eq!(gpt_4o_input(&app, "2026-12-20").await, "2.5", "a dry run writes nothing");

    // Our CSV: gpt-4o's input 2.50 → 2.75 from 2026-12-15.
    let csv = format!("{CSV_HEADER}\ngpt-4o,USD,2.75,1.25,,,10.00,1.25,5.00,,,,,,,,price change (test)\n");
    let r = import(&app, "provider=openai&effective_from=2026-12-15", &csv, ROOT_KEY).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let changed = &r.body["report"]["changed"];
    assert_eq!(changed.as_array().unwrap().len(), 1, "{}", r.body);
    let change = changed[0]["changes"].as_array().unwrap().iter().find(|c| c["column"] == "input_per_1m").cloned();
    let change = change.unwrap_or_else(|| panic!("input_per_1m in {changed}"));
    let num = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string).parse::<f64>().unwrap();
    assert_eq!((num(&change["old"]), num(&change["new"])), (2.5, 2.75), "{change}");
    // The version in force since 1970 now ends on 2026-12-14 (rewritten: versions are never
    // edited), and the new one starts on 2026-12-15.
    let written = &r.body["written"][0];
    assert_eq!(written["models_changed"], serde_json::json!(["gpt-4o"]), "{}", r.body);
    assert_eq!((written["versions_written"].as_u64(), written["versions_superseded"].as_u64()), (Some(2), Some(1)));
    assert_eq!(gpt_4o_input(&app, "2026-12-14").await, "2.5", "the old price until the change");
    assert_eq!(gpt_4o_input(&app, "2026-12-15").await, "2.75", "the new price from effective_from");
    // The same file again changes nothing.
    let again = import(&app, "provider=openai&effective_from=2026-12-15", &csv, ROOT_KEY).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert!(again.body["report"]["changed"].as_array().unwrap().is_empty(), "{}", again.body);
}

#[tokio::test]
async fn a_change_that_looks_wrong_is_refused_unless_forced_and_only_root_imports() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    // gpt-4o's input typed 100× too high.
    let csv = format!("{CSV_HEADER}\ngpt-4o,USD,250,1.25,,,10.00,1.25,5.00,,,,,,,,typo\n");
    let r = import(&app, "provider=openai&effective_from=2026-12-15", &csv, ROOT_KEY).await;
    let msg = r.assert_error(422, "import_refused");
    assert!(msg.contains("openai/gpt-4o") && msg.contains("force=true"), "{msg}");
    assert_eq!(gpt_4o_input(&app, "2026-12-20").await, "2.5", "nothing written");
    let forced = import(&app, "provider=openai&effective_from=2026-12-15&force=true", &csv, ROOT_KEY).await;
    assert_eq!(forced.status, StatusCode::OK, "{}", forced.body);
    assert_eq!(forced.body["report"]["forced"], true);
    assert_eq!(gpt_4o_input(&app, "2026-12-20").await, "250");

    // Bad input: clear 4xx, nothing written.
    let org_key = app.onboard("acme").await;
    import(&app, "provider=openai", &csv, &org_key).await.assert_error(403, "forbidden");
    let r = import(&app, "provider=openai&effective_from=someday", &csv, ROOT_KEY).await;
    assert!(r.assert_error(400, "invalid_request").contains("effective_from"), "{}", r.body);
    let r = import(&app, "provider=openai&dryrun=true", &csv, ROOT_KEY).await;
    assert!(r.assert_error(400, "invalid_request").contains("unknown query parameter"), "{}", r.body);
    let r = import(&app, "", "", ROOT_KEY).await;
    assert!(r.assert_error(400, "invalid_request").contains("empty"), "{}", r.body);
    let r = import(&app, "", "{\"gpt-4o\": 3}", ROOT_KEY).await;
    assert!(r.assert_error(400, "invalid_request").contains("nothing to import"), "{}", r.body);
}
