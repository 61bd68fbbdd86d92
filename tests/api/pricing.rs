//! Price books over HTTP: seeding (as the integrations set-up does), the merged pricing view
//! (catalog prices and the organization's overrides, each with its source and version), overrides
//! opened, changed, ended (the catalog applies again) and reset, subscriptions list/add/update/
//! delete/reset, effective dating (`as_of`, history kept), org isolation and input checks; and
//! one flow on the BigQuery backend. The catalog itself: catalog.rs.

use chrono::{Duration, Utc};
use convergence_tests::{Key, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const OPENAI: &str = "/api/v1/integrations/acme/openai";
const ANTHROPIC: &str = "/api/v1/integrations/acme/anthropic";

/// How many models the shipped catalog prices today, and how many versions it has in all.
fn catalog_size(app: &TestApp, provider: &str) -> (u64, u64) {
    let seed = &app.state.configs.price_books[provider];
    (seed.pricing.len() as u64, seed.catalog.len() as u64)
}

async fn app_with_org(app: TestApp) -> (TestApp, String) {
    app.bootstrap().await;
    let key = app.onboard("acme").await;
    (app, key)
}

async fn seeded(provider: &str) -> (TestApp, String) {
    let (app, key) = app_with_org(TestApp::spawn().await).await;
    common::pricebook::seed(&app.state, "acme", provider, "test").await.expect("seed");
    (app, key)
}

fn day(offset: i64) -> String {
    (Utc::now().date_naive() + Duration::days(offset)).format("%Y-%m-%d").to_string()
}

/// The one entry of a list reply with this key.
fn find<'a>(reply: &'a Value, list: &str, key_col: &str, key: &str) -> Option<&'a Value> {
    reply[list].as_array().unwrap().iter().find(|r| r[key_col] == key)
}

async fn delete(app: &TestApp, path: &str, key: Key<'_>) -> convergence_tests::Reply {
    app.request(Method::DELETE, path, key, None).await
}

/// Every row of one of acme's book tables.
async fn book_rows(app: &TestApp, table: &str) -> Vec<common::warehouse::Row> {
    let t = app.state.warehouse.table_ref(&app.state.org_dataset("acme"), table).unwrap();
    let sql = format!("SELECT * FROM {t} ORDER BY model_id, version");
    app.warehouse().query(&sql, &common::warehouse::Params::new()).await.unwrap()
}

async fn audit_actions(app: &TestApp) -> Vec<String> {
    let t = app.state.central_table("org_audit_logs").unwrap();
    let rows = app
        .warehouse()
        .query(
            &format!("SELECT action FROM {t} WHERE org_slug = @o ORDER BY created_at"),
            &common::warehouse::Params::new().bind("o", "acme"),
        )
        .await
        .unwrap();
    rows.iter().map(|r| r["action"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn seeding_creates_the_books_once_and_lists_the_catalog_prices() {
    let (app, key) = app_with_org(TestApp::spawn().await).await;
    let (models, versions) = catalog_size(&app, "openai");
    // Before set-up: a 404 that says what to do.
    let r = app.get(&format!("{OPENAI}/pricing"), Key::Api(&key)).await;
    let msg = r.assert_error(404, "price_book_not_found");
    assert!(msg.contains("/setup") && msg.contains("/pricing/reset"), "{msg}");

    // Set-up creates the (empty) overrides book and the plans; no prices are copied.
    let first = common::pricebook::seed(&app.state, "acme", "openai", "test").await.unwrap();
    assert_eq!(first.tables_created, vec!["openai_model_pricing", "openai_subscription_plans"]);
    assert_eq!(first.pricing_rows, 0);
    assert_eq!(first.subscription_rows, 9);
    assert!(book_rows(&app, "openai_model_pricing").await.is_empty());
    let again = common::pricebook::seed(&app.state, "acme", "openai", "test").await.unwrap();
    assert!(again.tables_created.is_empty() && again.pricing_rows == 0 && again.subscription_rows == 0);

    let r = app.get(&format!("{OPENAI}/pricing"), Key::Api(&key)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["count"], models);
    assert_eq!(r.body["as_of"], day(0));
    assert!(r.body["pricing"].as_array().unwrap().iter().all(|p| p["source"] == "catalog"), "{}", r.body);
    let gpt4o = find(&r.body, "pricing", "model_id", "gpt-4o").unwrap();
    assert_eq!(gpt4o["input_per_1m"], "2.50");
    assert_eq!(gpt4o["cached_input_per_1m"], "1.25");
    assert_eq!(gpt4o["output_per_1m"], "10.00");
    assert_eq!(gpt4o["batch_input_per_1m"], "1.25");
    assert_eq!(gpt4o["currency"], "USD");
    assert_eq!(gpt4o["version"], 1);
    assert_eq!(gpt4o["version_id"], "openai/gpt-4o/v1");
    assert_eq!(gpt4o["catalog_source"], "seed");
    assert_eq!(gpt4o["effective_from"], "1970-01-01");
    assert_eq!(gpt4o["effective_to"], Value::Null);
    assert!(gpt4o.get("superseded_at").is_none() && gpt4o.get("org_slug").is_none(), "{gpt4o}");
    assert_eq!(find(&r.body, "pricing", "model_id", "gpt-4o-mini").unwrap()["cached_input_per_1m"], "0.075");
    // o3 today is its second version (after the 2025-06-10 cut).
    let o3 = find(&r.body, "pricing", "model_id", "o3").unwrap();
    assert_eq!((o3["version"].clone(), o3["input_per_1m"].clone()), (json!(2), json!("2.00")));

    let r = app.get(&format!("{OPENAI}/pricing?model=gpt-4.1-nano"), Key::Api(&key)).await;
    assert_eq!(r.body["count"], 1, "{}", r.body);
    assert_eq!(r.body["pricing"][0]["cached_input_per_1m"], "0.025");
    let r = app.get(&format!("{OPENAI}/pricing?history=true"), Key::Api(&key)).await;
    assert_eq!(r.body["count"], versions, "{}", r.body);

    let r = app.get(&format!("{OPENAI}/subscriptions"), Key::Root).await;
    assert_eq!(r.body["count"], 9, "{}", r.body);
    let tier5 = find(&r.body, "subscriptions", "plan_name", "tier_5").unwrap();
    assert_eq!(tier5["monthly_usage_limit"], "200000.00");
    assert_eq!(tier5["qualification"], "$1,000 paid + 30 days since first successful payment");
    assert_eq!(tier5["source"], "default");
    let business = find(&r.body, "subscriptions", "plan_name", "chatgpt_business_annual").unwrap();
    assert_eq!(business["seat_price_monthly"], "20.00");
    assert_eq!(business["min_seats"], 2);

    // Anthropic: every cache token type and the long-context rates.
    common::pricebook::seed(&app.state, "acme", "anthropic", "test").await.unwrap();
    let r = app.get(&format!("{ANTHROPIC}/pricing?model=claude-sonnet-4-5-20250929"), Key::Api(&key)).await;
    let sonnet = &r.body["pricing"][0];
    assert_eq!(sonnet["source"], "catalog");
    assert_eq!(sonnet["cached_input_per_1m"], "0.30");
    assert_eq!(sonnet["cache_write_5m_per_1m"], "3.75");
    assert_eq!(sonnet["cache_write_1h_per_1m"], "6.00");
    assert_eq!(sonnet["batch_output_per_1m"], "7.50");
    assert_eq!(sonnet["long_context_threshold_tokens"], 200000);
    assert_eq!(sonnet["long_context_output_per_1m"], "22.50");
    assert_eq!(sonnet["deprecation_date"], "2026-11-30");
    let r = app.get(&format!("{ANTHROPIC}/pricing"), Key::Api(&key)).await;
    assert_eq!(r.body["count"], catalog_size(&app, "anthropic").0, "{}", r.body);
    let r = app.get(&format!("{ANTHROPIC}/subscriptions"), Key::Api(&key)).await;
    assert_eq!(r.body["count"], 1, "{}", r.body);
}

#[tokio::test]
async fn overrides_open_change_and_end_and_the_catalog_applies_again() {
    let (app, key) = seeded("openai").await;
    let (models, versions) = catalog_size(&app, "openai");
    let k = Key::Api(&key);
    // Add a price for a model the catalog lacks: amounts as JSON numbers or strings, exact.
    let body = json!({"model_id": "ft:gpt-4o-mini:acme::X1", "input_per_1m": 0.3, "output_per_1m": "1.20", "cached_input_per_1m": 0.15});
    let r = app.post(&format!("{OPENAI}/pricing"), k, body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["input_per_1m"], "0.30");
    assert_eq!(r.body["cached_input_per_1m"], "0.15");
    assert_eq!(r.body["currency"], "USD");
    assert_eq!(r.body["source"], "override");
    assert_eq!(r.body["version"], 1);
    assert_eq!(r.body["effective_from"], day(0));
    // Named by the key's id (api_key_id), as audit rows name it.
    assert!(uuid::Uuid::parse_str(r.body["created_by"].as_str().unwrap()).is_ok(), "{}", r.body);
    let msg = app.post(&format!("{OPENAI}/pricing"), k, body).await.assert_error(409, "conflict").to_string();
    assert!(msg.contains("ft:gpt-4o-mini:acme::X1") && msg.contains("override"), "{msg}");

    // The first change of a catalog price opens an override from today; the catalog version
    // is what it replaces, and yesterday still reads the catalog.
    let r = app.put(&format!("{OPENAI}/pricing/gpt-4o"), k, json!({"input_per_1m": "3.00"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["previous"]["source"], "catalog");
    assert_eq!(r.body["previous"]["version_id"], "openai/gpt-4o/v1");
    assert_eq!(r.body["previous"]["effective_to"], Value::Null, "the catalog is not changed");
    assert_eq!(r.body["current"]["source"], "override");
    assert_eq!(r.body["current"]["version"], 1);
    assert_eq!(r.body["current"]["effective_from"], day(0));
    assert_eq!(r.body["current"]["input_per_1m"], "3.00");
    assert_eq!(r.body["current"]["output_per_1m"], "10.00", "unchanged fields carry over from the catalog");
    let now = app.get(&format!("{OPENAI}/pricing?model=gpt-4o"), k).await;
    assert_eq!(now.body["pricing"][0]["input_per_1m"], "3.00", "{}", now.body);
    assert_eq!(now.body["pricing"][0]["source"], "override");
    let before = app.get(&format!("{OPENAI}/pricing?model=gpt-4o&as_of={}", day(-1)), k).await;
    assert_eq!(before.body["count"], 1, "{}", before.body);
    assert_eq!(before.body["pricing"][0]["input_per_1m"], "2.50");
    assert_eq!(before.body["pricing"][0]["source"], "catalog");
    let history = app.get(&format!("{OPENAI}/pricing?model=gpt-4o&history=true"), k).await;
    assert_eq!(history.body["count"], 2, "{}", history.body);
    assert_eq!(history.body["history"], true);
    let sources: Vec<&Value> = history.body["pricing"].as_array().unwrap().iter().map(|r| &r["source"]).collect();
    assert_eq!(sources, vec!["catalog", "override"]);
    // The whole list: one row per model, the overridden one from the book.
    let all = app.get(&format!("{OPENAI}/pricing"), k).await;
    assert_eq!(all.body["count"], models + 1, "the catalog's models and the added one: {}", all.body);

    // A second change is the override's next version; clearing an optional price with null,
    // a required one cannot be cleared.
    let r = app.put(&format!("{OPENAI}/pricing/gpt-4o"), k, json!({"batch_input_per_1m": null})).await;
    assert_eq!(r.body["current"]["batch_input_per_1m"], Value::Null, "{}", r.body);
    assert_eq!(r.body["previous"]["source"], "override");
    assert_eq!(r.body["current"]["version"], 2);
    let msg = app.put(&format!("{OPENAI}/pricing/gpt-4o"), k, json!({"output_per_1m": null})).await;
    assert!(msg.assert_error(400, "invalid_request").contains("output_per_1m is required"));

    // Delete ends the override: from today the catalog prices gpt-4o again.
    let r = delete(&app, &format!("{OPENAI}/pricing/gpt-4o"), k).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["deleted"]["effective_to"], day(0));
    assert_eq!(r.body["deleted"]["source"], "override");
    let now = app.get(&format!("{OPENAI}/pricing?model=gpt-4o"), k).await;
    assert_eq!(now.body["count"], 1, "{}", now.body);
    assert_eq!(now.body["pricing"][0]["source"], "catalog");
    assert_eq!(now.body["pricing"][0]["input_per_1m"], "2.50");
    // Nothing left to end; a catalog price cannot be deleted; an unknown model cannot be changed.
    let msg = delete(&app, &format!("{OPENAI}/pricing/gpt-4o"), k).await.assert_error(404, "not_found").to_string();
    assert!(msg.contains("no override") && msg.contains("catalog"), "{msg}");
    delete(&app, &format!("{OPENAI}/pricing/gpt-4.1"), k).await.assert_error(404, "not_found");
    let msg = app.put(&format!("{OPENAI}/pricing/no-such-model"), k, json!({"input_per_1m": 1})).await;
    assert!(msg.assert_error(404, "not_found").contains("POST"));

    // The added model: ended, gone from today's list, in history; added again, its history goes on.
    let r = delete(&app, &format!("{OPENAI}/pricing/ft:gpt-4o-mini:acme::X1"), k).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app.get(&format!("{OPENAI}/pricing"), k).await;
    assert_eq!(r.body["count"], models);
    assert!(find(&r.body, "pricing", "model_id", "ft:gpt-4o-mini:acme::X1").is_none());
    let r = app.get(&format!("{OPENAI}/pricing?model=ft:gpt-4o-mini:acme::X1&history=true"), k).await;
    assert_eq!(r.body["count"], 1);
    let r = app
        .post(
            &format!("{OPENAI}/pricing"),
            k,
            json!({"model_id": "ft:gpt-4o-mini:acme::X1", "input_per_1m": 1, "output_per_1m": 2}),
        )
        .await;
    assert_eq!(r.body["version"], 2, "{}", r.body);
    // History: every catalog version and every override version.
    let r = app.get(&format!("{OPENAI}/pricing?history=true"), k).await;
    assert_eq!(r.body["count"], versions + 2 + 2, "{}", r.body);

    let actions = audit_actions(&app).await;
    for action in ["pricing.add", "pricing.update", "pricing.delete"] {
        assert!(actions.iter().any(|a| a == action), "{action} audited: {actions:?}");
    }
}

#[tokio::test]
async fn as_of_reads_the_price_in_force_that_day() {
    let (app, key) = seeded("openai").await;
    let k = Key::Api(&key);
    // The catalog's own history: o3 before and after the 2025-06-10 cut.
    for (as_of, input, version) in [("2025-06-09", "10.00", 1), ("2025-06-10", "2.00", 2)] {
        let r = app.get(&format!("{OPENAI}/pricing?model=o3&as_of={as_of}"), k).await;
        assert_eq!(r.body["count"], 1, "{as_of}: {}", r.body);
        assert_eq!(r.body["pricing"][0]["input_per_1m"], input, "{as_of}");
        assert_eq!(r.body["pricing"][0]["version"], version, "{as_of}");
        assert_eq!(r.body["pricing"][0]["source"], "catalog", "{as_of}");
    }
    // Overrides from past dates: the first starts from the catalog's price of its day.
    let path = format!("{OPENAI}/pricing/o3");
    let r = app.put(&path, k, json!({"input_per_1m": "2.10", "effective_from": "2025-01-01"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["previous"]["version"], 1, "the catalog version in force on 2025-01-01");
    assert_eq!(r.body["current"]["output_per_1m"], "40.00", "{}", r.body);
    let r = app.put(&path, k, json!({"input_per_1m": "1.90", "effective_from": "2025-06-01"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for (as_of, price, source) in [
        ("2024-12-31", "10.00", "catalog"),
        ("2025-01-01", "2.10", "override"),
        ("2025-05-31", "2.10", "override"),
        ("2025-06-01", "1.90", "override"),
        ("2025-06-10", "1.90", "override"),
    ] {
        let r = app.get(&format!("{OPENAI}/pricing?model=o3&as_of={as_of}"), k).await;
        assert_eq!(r.body["count"], 1, "{as_of}: {}", r.body);
        assert_eq!(r.body["pricing"][0]["input_per_1m"], price, "{as_of}");
        assert_eq!(r.body["pricing"][0]["source"], source, "{as_of}");
    }
    // Before the current version's start: refused, naming the field.
    let msg = app.put(&path, k, json!({"input_per_1m": "1", "effective_from": "2025-05-01"})).await;
    assert!(msg.assert_error(400, "invalid_request").contains("effective_from must be on or after 2025-06-01"));
    // A model that did not exist yet on a day is absent that day.
    let r = app
        .post(&format!("{OPENAI}/pricing"), k, json!({"model_id": "new-model", "input_per_1m": 1, "output_per_1m": 2}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = app.get(&format!("{OPENAI}/pricing?model=new-model&as_of={}", day(-1)), k).await;
    assert_eq!(r.body["count"], 0, "{}", r.body);
}

#[tokio::test]
async fn reset_ends_every_override_and_keeps_history() {
    let (app, key) = seeded("openai").await;
    let (models, _) = catalog_size(&app, "openai");
    let k = Key::Api(&key);
    app.put(&format!("{OPENAI}/pricing/gpt-4o"), k, json!({"input_per_1m": "9.99"})).await;
    app.post(
        &format!("{OPENAI}/pricing"),
        k,
        json!({"model_id": "custom-model", "input_per_1m": 1, "output_per_1m": 2}),
    )
    .await;
    let r = app.post(&format!("{OPENAI}/pricing/reset"), k, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["reset"]["versions_closed"], 2);
    assert_eq!(r.body["reset"]["versions_opened"], 0, "prices come from the catalog again");
    assert_eq!(r.body["reset"]["effective_from"], day(0));
    let now = app.get(&format!("{OPENAI}/pricing"), k).await;
    assert_eq!(now.body["count"], models);
    assert!(now.body["pricing"].as_array().unwrap().iter().all(|p| p["source"] == "catalog"), "{}", now.body);
    let gpt4o = find(&now.body, "pricing", "model_id", "gpt-4o").unwrap();
    assert_eq!(gpt4o["input_per_1m"], "2.50");
    assert!(find(&now.body, "pricing", "model_id", "custom-model").is_none());
    let history = app.get(&format!("{OPENAI}/pricing?model=gpt-4o&history=true"), k).await;
    let versions: Vec<(&Value, &Value)> =
        history.body["pricing"].as_array().unwrap().iter().map(|r| (&r["source"], &r["input_per_1m"])).collect();
    assert_eq!(versions, vec![(&json!("catalog"), &json!("2.50")), (&json!("override"), &json!("9.99"))]);
    // Nothing to end now.
    let r = app.post(&format!("{OPENAI}/pricing/reset"), k, json!({})).await;
    assert_eq!(r.body["reset"]["versions_closed"], 0, "{}", r.body);
    // A reset into the past before a current override's start is refused.
    app.put(&format!("{OPENAI}/pricing/gpt-4o"), k, json!({"input_per_1m": "9.98", "effective_from": day(1)})).await;
    let r = app.post(&format!("{OPENAI}/pricing/reset"), k, json!({"effective_from": "2020-01-01"})).await;
    assert!(r.assert_error(400, "invalid_request").contains("effective_from"));
    assert!(audit_actions(&app).await.iter().any(|a| a == "pricing.reset"));

    // Reset on an org whose books do not exist yet creates them (the plans seeded).
    let other = app.onboard("globex").await;
    let r =
        app.request(Method::POST, "/api/v1/integrations/globex/anthropic/pricing/reset", Key::Api(&other), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["reset"]["seeded"]["pricing_rows"], 0, "{}", r.body);
    assert_eq!(r.body["reset"]["seeded"]["subscription_rows"], 1, "{}", r.body);
    let r = app.get("/api/v1/integrations/globex/anthropic/subscriptions", Key::Api(&other)).await;
    assert_eq!(r.body["count"], 1, "{}", r.body);
    let r = app.get("/api/v1/integrations/globex/anthropic/pricing", Key::Api(&other)).await;
    assert_eq!(r.body["count"], catalog_size(&app, "anthropic").0, "{}", r.body);
}

#[tokio::test]
async fn subscriptions_crud_by_plan_name() {
    let (app, key) = seeded("anthropic").await;
    let k = Key::Api(&key);
    let plans = format!("{ANTHROPIC}/subscriptions");
    let body = json!({"plan_name": "claude_team", "display_name": "Claude Team", "plan_type": "seat",
        "seat_price_monthly": 25, "billing_cycle": "monthly", "min_seats": 5});
    let r = app.post(&plans, k, body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["seat_price_monthly"], "25.00");
    app.post(&plans, k, body).await.assert_error(409, "conflict");
    let r = app.put(&format!("{plans}/claude_team"), k, json!({"seat_price_monthly": "30.5"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["current"]["seat_price_monthly"], "30.50");
    assert_eq!(r.body["current"]["min_seats"], 5);
    let yesterday = app.get(&format!("{plans}?plan=claude_team&as_of={}", day(-1)), k).await;
    assert_eq!(yesterday.body["count"], 0, "added today: {}", yesterday.body);
    let r = delete(&app, &format!("{plans}/claude_team"), k).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    delete(&app, &format!("{plans}/claude_team"), k).await.assert_error(404, "not_found");
    let r = app.post(&format!("{plans}/reset"), k, json!({})).await;
    assert_eq!(r.body["reset"]["versions_opened"], 1, "{}", r.body);
    let r = app.get(&format!("{plans}?history=true"), k).await;
    assert_eq!(r.body["count"], 4, "seed, custom v1, v2 and the reset: {}", r.body);
    let actions = audit_actions(&app).await;
    for action in ["subscriptions.add", "subscriptions.update", "subscriptions.delete", "subscriptions.reset"] {
        assert!(actions.iter().any(|a| a == action), "{action} audited: {actions:?}");
    }
}

#[tokio::test]
async fn bad_input_is_400_naming_the_field() {
    let (app, key) = seeded("openai").await;
    let k = Key::Api(&key);
    let pricing = format!("{OPENAI}/pricing");
    let add = |body: Value| app.post(&pricing, k, body);
    let cases = [
        (json!({"model_id": "m", "input_per_1m": -1, "output_per_1m": 1}), "input_per_1m must not be negative"),
        (json!({"model_id": "m", "input_per_1m": "1", "output_per_1m": "ten"}), "output_per_1m must be a decimal"),
        (
            json!({"model_id": "m", "input_per_1m": 1, "output_per_1m": 1, "currency": "USX"}),
            "currency \"USX\" is unknown",
        ),
        (
            json!({"model_id": "bad model", "input_per_1m": 1, "output_per_1m": 1}),
            "model_id \"bad model\" is malformed",
        ),
        (
            json!({"model_id": "m", "input_per_1m": true, "output_per_1m": 1}),
            "input_per_1m must be a string or a number",
        ),
        (json!({"model_id": "m", "input_per_1m": 1}), "output_per_1m is required"),
        (
            json!({"model_id": "m", "input_per_1m": 1, "output_per_1m": 1, "colour": "red"}),
            "colour is not a pricing field",
        ),
        (
            json!({"model_id": "m", "input_per_1m": 1, "output_per_1m": 1, "effective_from": "2026-02-30"}),
            "effective_from must be a date",
        ),
        (
            json!({"model_id": "m", "input_per_1m": 1, "output_per_1m": 1, "long_context_input_per_1m": 2}),
            "long_context_threshold_tokens is required",
        ),
    ];
    for (body, expected) in cases {
        let r = add(body.clone()).await;
        let msg = r.assert_error(400, "invalid_request");
        assert!(msg.contains(expected), "{body}: {msg}");
    }
    let r = app.get(&format!("{OPENAI}/pricing?as_of=2026-1-1"), k).await;
    assert!(r.assert_error(400, "invalid_request").contains("as_of"));
    let r = app.put(&format!("{OPENAI}/pricing/gpt%204o"), k, json!({"input_per_1m": 1})).await;
    assert!(r.assert_error(400, "invalid_request").contains("model_id"));
    let r = app.put(&format!("{OPENAI}/pricing/gpt-4o"), k, json!({"model_id": "gpt-5"})).await;
    assert!(r.assert_error(400, "invalid_request").contains("model_id cannot be changed"));
    let r = app.put(&format!("{OPENAI}/pricing/gpt-4o"), k, json!({})).await;
    assert!(r.assert_error(400, "invalid_request").contains("nothing to change"));
    let r = app.post(&format!("{OPENAI}/subscriptions"), k, json!({"plan_name": "x1", "plan_type": "gold"})).await;
    assert!(r.assert_error(400, "invalid_request").contains("plan_type must be one of"));
    // Unknown and non-LLM providers: 404 naming the providers that have price books.
    for provider in ["azure", "gcp"] {
        let r = app.get(&format!("/api/v1/integrations/acme/{provider}/pricing"), k).await;
        let msg = r.assert_error(404, "not_found");
        assert!(msg.contains("anthropic, openai"), "{msg}");
    }
    // Nothing above changed the book: the history is the catalog's.
    assert_eq!(
        app.get(&format!("{OPENAI}/pricing?history=true"), k).await.body["count"],
        catalog_size(&app, "openai").1
    );
}

#[tokio::test]
async fn another_orgs_key_is_refused() {
    let (app, _) = seeded("openai").await;
    let other = app.onboard("globex").await;
    let k = Key::Api(&other);
    app.get(&format!("{OPENAI}/pricing"), k).await.assert_error(403, "forbidden");
    app.get(&format!("{OPENAI}/subscriptions"), k).await.assert_error(403, "forbidden");
    app.post(&format!("{OPENAI}/pricing"), k, json!({"model_id": "m", "input_per_1m": 1, "output_per_1m": 1}))
        .await
        .assert_error(403, "forbidden");
    app.put(&format!("{OPENAI}/pricing/gpt-4o"), k, json!({"input_per_1m": 0})).await.assert_error(403, "forbidden");
    delete(&app, &format!("{OPENAI}/subscriptions/tier_1"), k).await.assert_error(403, "forbidden");
    app.post(&format!("{OPENAI}/pricing/reset"), k, json!({})).await.assert_error(403, "forbidden");
    app.get(&format!("{OPENAI}/pricing"), Key::None).await.assert_error(401, "unauthorized");
    // Root reaches any org; an org that does not exist is a 404.
    assert_eq!(app.get(&format!("{OPENAI}/pricing"), Key::Root).await.status, StatusCode::OK);
    app.get("/api/v1/integrations/nobody/openai/pricing", Key::Root).await.assert_error(404, "not_found");
    let versions = catalog_size(&app, "openai").1;
    assert_eq!(app.get(&format!("{OPENAI}/pricing?history=true"), Key::Root).await.body["count"], versions);
}

#[tokio::test(flavor = "multi_thread")]
async fn price_book_flow_on_bigquery() {
    let (app, key) = app_with_org(TestApp::spawn_bigquery(&[]).await).await;
    let (models, _) = catalog_size(&app, "openai");
    let k = Key::Api(&key);
    let report = common::pricebook::seed(&app.state, "acme", "openai", "test").await.unwrap();
    assert_eq!((report.pricing_rows, report.subscription_rows), (0, 9));
    assert_eq!(common::pricebook::seed(&app.state, "acme", "openai", "test").await.unwrap().subscription_rows, 0);
    let r = app.get(&format!("{OPENAI}/pricing?model=gpt-4o-mini"), k).await;
    assert_eq!(r.body["pricing"][0]["cached_input_per_1m"], "0.075", "{}", r.body);
    assert_eq!(r.body["pricing"][0]["source"], "catalog", "{}", r.body);
    // The merged list, with the catalog's history of o3.
    assert_eq!(app.get(&format!("{OPENAI}/pricing"), k).await.body["count"], models);
    let r = app.get(&format!("{OPENAI}/pricing?model=o3&as_of=2025-06-09"), k).await;
    assert_eq!(r.body["pricing"][0]["input_per_1m"], "10.00", "{}", r.body);
    // An override and its end.
    let r = app.put(&format!("{OPENAI}/pricing/gpt-4o-mini"), k, json!({"output_per_1m": 0.7})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["current"]["output_per_1m"], "0.70");
    assert_eq!(r.body["current"]["source"], "override");
    let old = app.get(&format!("{OPENAI}/pricing?model=gpt-4o-mini&as_of={}", day(-1)), k).await;
    assert_eq!(old.body["pricing"][0]["output_per_1m"], "0.60", "{}", old.body);
    let r = app
        .post(
            &format!("{OPENAI}/pricing"),
            k,
            json!({"model_id": "gpt-x", "input_per_1m": "0.000000001", "output_per_1m": 1}),
        )
        .await;
    assert_eq!(r.body["input_per_1m"], "0.000000001", "{}", r.body);
    app.post(&format!("{OPENAI}/pricing"), k, json!({"model_id": "gpt-x", "input_per_1m": 1, "output_per_1m": 1}))
        .await
        .assert_error(409, "conflict");
    assert_eq!(delete(&app, &format!("{OPENAI}/pricing/gpt-x"), k).await.status, StatusCode::OK);
    let r = app
        .post(
            &format!("{OPENAI}/subscriptions"),
            k,
            json!({"plan_name": "enterprise_deal", "plan_type": "contract", "seat_price_monthly": "45"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // Reset ends the one override left (gpt-4o-mini).
    let r = app.post(&format!("{OPENAI}/pricing/reset"), k, json!({})).await;
    assert_eq!(r.body["reset"]["versions_closed"], 1, "{}", r.body);
    let r = app.get(&format!("{OPENAI}/pricing?model=gpt-4o-mini&history=true"), k).await;
    let outputs: Vec<(&Value, &Value)> =
        r.body["pricing"].as_array().unwrap().iter().map(|r| (&r["source"], &r["output_per_1m"])).collect();
    assert_eq!(outputs, vec![(&json!("catalog"), &json!("0.60")), (&json!("override"), &json!("0.70"))], "{}", r.body);
    let r = app.get(&format!("{OPENAI}/pricing?model=gpt-4o-mini"), k).await;
    assert_eq!(r.body["pricing"][0]["source"], "catalog", "{}", r.body);
    assert_eq!(app.get(&format!("{OPENAI}/pricing"), k).await.body["count"], models);
}
