//! Seats are per organization: each organization's seat counts live in its own subscription book
//! (set through the subscriptions routes, effective-dated), and `openai.subscriptions` costs each
//! plan from them, pro rata by day when the count changes mid-month. On DuckDB and on the
//! BigQuery emulator. The golden numbers are worked out by hand beside each assertion.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use common::pipeline::{Processor, StepContext, StepOutcome};
use common::processors::openai::subscriptions::{OpenAiSubscriptions, TABLE};
use common::warehouse::Params;
use convergence_tests::{Key, TestApp};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};

const PLAN: &str = "chatgpt_business_monthly";

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// A decimal or integer cell as text, whichever form the backend hands back.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Sets the plan's seats from `from` through the subscriptions route, as the organization.
async fn set_seats(app: &TestApp, org: &str, key: &str, seats: u32, from: &str) {
    let r = app
        .put(
            &format!("/api/v1/integrations/{org}/openai/subscriptions/{PLAN}"),
            Key::Api(key),
            json!({"seats": seats, "effective_from": from}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["current"]["seats"], seats, "{}", r.body);
}

async fn run(app: &TestApp, org: &str, start: &str, end: &str) -> StepOutcome {
    let dataset = app.state.org_dataset(org);
    let variables = BTreeMap::from([("org_slug".to_string(), org.to_string())]);
    let pipeline_id = format!("{org}-openai-subscriptions");
    let ctx = StepContext {
        warehouse: app.state.warehouse.as_ref(),
        configs: &app.state.configs,
        settings: &app.state.settings,
        org_slug: org,
        dataset: &dataset,
        run_id: "run-seats",
        pipeline_id: &pipeline_id,
        step_id: "transform_subscriptions",
        start_date: day(start),
        end_date: day(end),
        variables: &variables,
        credential: None,
    };
    OpenAiSubscriptions::run(&Default::default(), &ctx).await.expect("subscriptions step")
}

/// The costed rows of the plan: (month, first day of the segment, seats, cost).
async fn seat_costs(app: &TestApp, org: &str) -> Vec<(String, String, String, Decimal)> {
    let dataset = app.state.org_dataset(org);
    let sql = format!(
        "SELECT usage_date, period_start, seats, monthly_cost FROM {} WHERE org_slug = @org AND plan_name = @plan \
         ORDER BY usage_date, period_start",
        app.state.warehouse.table_ref(&dataset, TABLE).unwrap()
    );
    let rows = app.state.warehouse.query(&sql, &Params::new().bind("org", org).bind("plan", PLAN)).await.unwrap();
    rows.iter()
        .map(|r| (text(&r["usage_date"]), text(&r["period_start"]), text(&r["seats"]), dec(&text(&r["monthly_cost"]))))
        .collect()
}

async fn two_organizations_are_billed_their_own_seats(app: TestApp) {
    app.bootstrap().await;
    let (a, b, c) = ("seats_a", "seats_b", "seats_c");
    let (key_a, key_b, key_c) = (app.onboard(a).await, app.onboard(b).await, app.onboard(c).await);
    for (org, key) in [(a, &key_a), (b, &key_b), (c, &key_c)] {
        // Loads the default book (no seats anywhere) without connecting the provider.
        let r =
            app.post(&format!("/api/v1/integrations/{org}/openai/subscriptions/reset"), Key::Api(key), json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    // a: 12 seats all along. b: 5 seats, then 8 from 2025-03-11. c: one seat, below the plan's
    // minimum of 2.
    set_seats(&app, a, &key_a, 12, "1970-01-01").await;
    set_seats(&app, c, &key_c, 1, "1970-01-01").await;
    set_seats(&app, b, &key_b, 5, "1970-01-01").await;
    set_seats(&app, b, &key_b, 8, "2025-03-11").await;
    let r = app
        .get(&format!("/api/v1/integrations/{b}/openai/subscriptions?plan={PLAN}&as_of=2025-03-10"), Key::Api(&key_b))
        .await;
    assert_eq!(r.body["subscriptions"][0]["seats"], 5, "{}", r.body);
    // An organization's key cannot set another's seats.
    let r = app
        .put(&format!("/api/v1/integrations/{a}/openai/subscriptions/{PLAN}"), Key::Api(&key_b), json!({"seats": 1}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // A window inside February and March covers both months whole.
    let out_a = run(&app, a, "2025-02-10", "2025-03-20").await;
    let out_b = run(&app, b, "2025-02-10", "2025-03-20").await;
    let s = |m: &str, p: &str, n: &str, c: &str| (m.to_string(), p.to_string(), n.to_string(), dec(c));
    // a: 12 × 25 = 300 each month.
    assert_eq!(
        seat_costs(&app, a).await,
        vec![s("2025-02-01", "2025-02-01", "12", "300"), s("2025-03-01", "2025-03-01", "12", "300")]
    );
    assert_eq!(dec(&text(&out_a.metrics["total_cost"])), dec("600"));
    // b: February 5 × 25 = 125. March (31 days), pro rata by day: the 1st–10th at 5 seats,
    // 25 × 5 × 10 / 31 = 40.3225… → 40.32; the 11th–31st at 8 seats, 25 × 8 × 21 / 31 =
    // 135.4838… → 135.48; March 175.80, the window 300.80.
    assert_eq!(
        seat_costs(&app, b).await,
        vec![
            s("2025-02-01", "2025-02-01", "5", "125"),
            s("2025-03-01", "2025-03-01", "5", "40.32"),
            s("2025-03-01", "2025-03-11", "8", "135.48"),
        ]
    );
    assert_eq!(dec(&text(&out_b.metrics["total_cost"])), dec("300.80"));
    // c: billed for the minimum, 2 × 25 = 50 a month.
    run(&app, c, "2025-02-01", "2025-03-31").await;
    assert_eq!(
        seat_costs(&app, c).await,
        vec![s("2025-02-01", "2025-02-01", "1", "50"), s("2025-03-01", "2025-03-01", "1", "50")]
    );
    // Plans without seats are listed, never costed.
    let dataset = app.state.org_dataset(b);
    let t = app.state.warehouse.table_ref(&dataset, TABLE).unwrap();
    let costed = app
        .state
        .warehouse
        .query(
            &format!("SELECT COUNT(*) AS n FROM {t} WHERE monthly_cost IS NOT NULL AND plan_name <> @plan"),
            &Params::new().bind("plan", PLAN),
        )
        .await
        .unwrap();
    assert_eq!(text(&costed[0]["n"]), "0");
    // A rerun replaces the months: the same rows, no duplicates.
    let again = run(&app, b, "2025-03-01", "2025-03-31").await;
    assert_eq!(dec(&text(&again.metrics["total_cost"])), dec("175.80"));
    assert_eq!(seat_costs(&app, b).await.len(), 3);
}

#[tokio::test]
async fn seats_are_per_organization_on_duckdb() {
    two_organizations_are_billed_their_own_seats(TestApp::spawn().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn seats_are_per_organization_on_bigquery() {
    two_organizations_are_billed_their_own_seats(TestApp::spawn_bigquery(&[]).await).await;
}

#[tokio::test]
async fn a_book_made_before_seats_gains_the_column() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    let key = app.onboard("seats_old").await;
    common::pricebook::seed(&app.state, "seats_old", "openai", "test").await.unwrap();
    // The book as it was before `seats` existed.
    let dataset = app.state.org_dataset("seats_old");
    let book = app.state.warehouse.table_ref(&dataset, "openai_subscription_plans").unwrap();
    app.state.warehouse.execute(&format!("ALTER TABLE {book} DROP COLUMN seats"), &Params::new()).await.unwrap();
    assert!(!app
        .state
        .warehouse
        .table_columns(&dataset, "openai_subscription_plans")
        .await
        .unwrap()
        .contains(&"seats".to_string()));
    set_seats(&app, "seats_old", &key, 3, "2025-01-01").await;
    let out = run(&app, "seats_old", "2025-01-01", "2025-01-31").await;
    // 3 seats × 25 for all of January.
    assert_eq!(dec(&text(&out.metrics["total_cost"])), dec("75"));
}

#[tokio::test]
async fn seats_are_checked_like_every_book_value() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    let key = app.onboard("seats_bad").await;
    common::pricebook::seed(&app.state, "seats_bad", "openai", "test").await.unwrap();
    let path = format!("/api/v1/integrations/seats_bad/openai/subscriptions/{PLAN}");
    for bad in [json!(-1), json!(0), json!(2.5), json!("many")] {
        let r = app.put(&path, Key::Api(&key), json!({"seats": bad})).await;
        let msg = r.assert_error(400, "invalid_request");
        assert!(msg.contains("seats must be a positive whole number"), "{msg}");
    }
}
