//! `gcp.bq_etl` end to end (`POST /api/v1/pipelines/run/{org}/gcp/cost/billing`): against the
//! sandbox billing export on DuckDB (every cost type, credits, net cost, the EUR row, late rows,
//! rows that arrive after a run, rerun idempotency, whole-window atomicity, the standard and detailed
//! exports), and against an export table seeded in the BigQuery emulator, moved server-side and
//! paged in with the organization's service account.

use std::time::Duration;

use chrono::{Duration as Days, NaiveDate, Utc};
use common::warehouse::{Params, Warehouse};
use convergence_tests::{Key, TestApp};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};

const PIPELINE: &str = "gcp/cost/billing";

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// A sandbox service-account key: project `sandbox`, any key material.
fn sandbox_key() -> Value {
    json!({
        "type": "service_account",
        "project_id": "sandbox",
        "private_key_id": "sandbox0001",
        "private_key": "any key material",
        "client_email": "billing-reader@sandbox.iam.gserviceaccount.com",
    })
}

/// An onboarded, ACTIVE organization with its gcp integration on `table`; returns its key.
async fn org_with_gcp(app: &TestApp, org: &str, key_file: Value, table: &str) -> String {
    let key = app.onboard_active(org, "SCALE").await;
    let r = app
        .post(
            &format!("/api/v1/integrations/{org}/gcp/setup"),
            Key::Api(&key),
            json!({"service_account_json": key_file, "billing_export_table": table}),
        )
        .await;
    assert!(r.status.is_success(), "gcp setup: {}", r.body);
    key
}

/// Runs the pipeline over `[start, end]` and waits for the end; returns the run.
async fn run(app: &TestApp, org: &str, start: NaiveDate, end: NaiveDate) -> Value {
    let r = app
        .post(
            &format!("/api/v1/pipelines/run/{org}/{PIPELINE}"),
            Key::Root,
            json!({"start_date": start.to_string(), "end_date": end.to_string()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["pipeline_id"], format!("{org}-gcp-cost-billing"));
    let run_id = r.body["run_id"].as_str().unwrap().to_string();
    for _ in 0..1200 {
        let r = app.get(&format!("/api/v1/pipelines/runs/{org}/{run_id}"), Key::Root).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        if matches!(r.body["status"].as_str(), Some("SUCCESS" | "FAILED")) {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {run_id} did not finish");
}

fn step_metrics(run: &Value) -> &Value {
    &run["steps"][0]["metrics"]
}

fn dec(v: &Value) -> Decimal {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("{s} is not a decimal")),
        Value::Null => Decimal::ZERO,
        other => other.to_string().parse().unwrap(),
    }
}

async fn query(wh: &dyn Warehouse, sql: &str, params: &Params) -> Vec<serde_json::Map<String, Value>> {
    wh.query(sql, params).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The organization's stored rows of `[start, end]`, every column, in key order: what a rerun
/// must leave byte for byte.
async fn dump(app: &TestApp, dataset: &str, start: NaiveDate, end: NaiveDate) -> String {
    let t = app.warehouse().table_ref(dataset, "gcp_billing_daily_raw").unwrap();
    let rows = query(
        app.warehouse().as_ref(),
        &format!("SELECT * FROM {t} WHERE usage_date BETWEEN @s AND @e ORDER BY usage_date, source_key"),
        &Params::new().bind("s", start).bind("e", end),
    )
    .await;
    serde_json::to_string(&rows).unwrap()
}

async fn count_day(app: &TestApp, dataset: &str, day: NaiveDate) -> i64 {
    let t = app.warehouse().table_ref(dataset, "gcp_billing_daily_raw").unwrap();
    let rows = query(
        app.warehouse().as_ref(),
        &format!("SELECT COUNT(*) AS n FROM {t} WHERE usage_date = @d"),
        &Params::new().bind("d", day),
    )
    .await;
    rows[0]["n"].as_i64().unwrap()
}

/// The sandbox's rows of one day: `n` rows, 0–3 the tax, adjustment, rounding-error and EUR
/// rows, one in ten of the rest (i % 10 = 7) arriving a day late.
fn late_rows(n: i64) -> i64 {
    (4..n).filter(|i| i % 10 == 7).count() as i64
}

#[tokio::test]
async fn sandbox_export_loads_every_cost_type_late_rows_and_reruns_exactly() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    let table = "sandbox.billing.gcp_billing_export_v1_acme-rows300";
    org_with_gcp(&app, "gcp_acme", sandbox_key(), table).await;
    let integration = app.get("/api/v1/integrations/gcp_acme/gcp", Key::Root).await;
    assert_eq!(integration.body["status"], "VALID", "{}", integration.body);
    let wh = app.warehouse();
    let dataset = "gcp_acme_dev";
    let export = wh.table_ref("sandbox_billing", "gcp_billing_export_v1_acme_rows300").unwrap();
    let raw = wh.table_ref(dataset, "gcp_billing_daily_raw").unwrap();
    let (d1, d2) = (today() - Days::days(3), today() - Days::days(2));

    let first = run(&app, "gcp_acme", d1, d2).await;
    assert_eq!(first["status"], "SUCCESS", "{first}");
    let m = step_metrics(&first);
    assert_eq!(m["transfer"], "server_side", "{m}");
    assert_eq!(m["rows"], 600, "two days of 300 rows, late ones included: {m}");
    assert_eq!(
        m["days"],
        json!([{"usage_date": d1.to_string(), "rows": 300}, {"usage_date": d2.to_string(), "rows": 300}])
    );

    // Every cost type, per day.
    let by_type = query(
        wh.as_ref(),
        &format!("SELECT cost_type, COUNT(*) AS n FROM {raw} WHERE org_slug = 'gcp_acme' GROUP BY cost_type ORDER BY cost_type"),
        &Params::new(),
    )
    .await;
    let counts: Vec<(String, i64)> =
        by_type.iter().map(|r| (r["cost_type"].as_str().unwrap().to_string(), r["n"].as_i64().unwrap())).collect();
    assert_eq!(
        counts,
        [("adjustment".into(), 2), ("regular".into(), 594), ("rounding_error".into(), 2), ("tax".into(), 2)]
    );
    let adjustment = query(
        wh.as_ref(),
        &format!("SELECT cost, net_cost, CAST(adjustment_info AS VARCHAR) AS info FROM {raw} WHERE cost_type = 'adjustment' AND usage_date = @d"),
        &Params::new().bind("d", d1),
    )
    .await;
    assert_eq!(dec(&adjustment[0]["cost"]), Decimal::new(-5, 0));
    assert!(adjustment[0]["info"].as_str().unwrap().contains("GOODWILL"), "{adjustment:?}");

    // Money checked against the export itself, summed independently: cost, credits, net cost,
    // cost at list, per currency (the EUR row keeps its currency and rate).
    let ours = query(
        wh.as_ref(),
        &format!(
            "SELECT currency, COUNT(*) AS n, SUM(cost) AS cost, SUM(credits_total) AS credits, SUM(net_cost) AS net, \
             SUM(cost_at_list) AS list, MIN(currency_conversion_rate) AS rate FROM {raw} GROUP BY currency ORDER BY currency"
        ),
        &Params::new(),
    )
    .await;
    let theirs = query(
        wh.as_ref(),
        &format!(
            "SELECT currency, COUNT(*) AS n, SUM(CAST(cost AS DECIMAL(38,9))) AS cost, \
             SUM((SELECT COALESCE(SUM(CAST(c.amount AS DECIMAL(38,9))), 0) FROM (SELECT UNNEST(credits) AS c))) AS credits, \
             SUM(CAST(cost_at_list AS DECIMAL(38,9))) AS list FROM {export} \
             WHERE usage_start_time >= @s AND usage_start_time < @e GROUP BY currency ORDER BY currency"
        ),
        &Params::new().bind("s", sandbox_midnight(d1)).bind("e", sandbox_midnight(d2 + Days::days(1))),
    )
    .await;
    assert_eq!(ours.len(), 2, "USD and EUR: {ours:?}");
    for (o, t) in ours.iter().zip(&theirs) {
        assert_eq!(o["currency"], t["currency"]);
        assert_eq!(o["n"], t["n"]);
        assert_eq!(dec(&o["cost"]), dec(&t["cost"]), "{o:?} {t:?}");
        assert_eq!(dec(&o["credits"]), dec(&t["credits"]), "{o:?} {t:?}");
        assert!(dec(&o["credits"]) < Decimal::ZERO || o["currency"] == "EUR", "credits are negative: {o:?}");
        assert_eq!(dec(&o["net"]), dec(&o["cost"]) + dec(&o["credits"]), "net = cost + credits: {o:?}");
        assert_eq!(dec(&o["list"]), dec(&t["list"]), "{o:?} {t:?}");
    }
    assert_eq!((ours[0]["currency"].as_str(), ours[0]["n"].as_i64()), (Some("EUR"), Some(2)));
    assert_eq!(ours[0]["rate"].as_f64(), Some(0.92));
    // Credits of every kind the sandbox grants, kept whole.
    let types = query(
        wh.as_ref(),
        &format!(
            "SELECT DISTINCT c.type AS t FROM (SELECT UNNEST(CAST(credits AS STRUCT(name VARCHAR, amount DOUBLE, full_name VARCHAR, id VARCHAR, type VARCHAR)[])) AS c FROM {raw}) ORDER BY t"
        ),
        &Params::new(),
    )
    .await;
    let types: Vec<&str> = types.iter().map(|r| r["t"].as_str().unwrap()).collect();
    assert_eq!(types, ["COMMITTED_USAGE_DISCOUNT", "FREE_TIER", "PROMOTION", "SUSTAINED_USAGE_DISCOUNT"]);
    // Rows that arrived a day late are in, and known as such; keys are unique; the standard
    // export has no resource columns; project labels are kept.
    let facts = query(
        wh.as_ref(),
        &format!(
            "SELECT COUNT(*) FILTER (WHERE partition_time > usage_start_time) AS late, COUNT(DISTINCT source_key) AS keys, \
             COUNT(resource_name) AS resources, COUNT(*) FILTER (WHERE CAST(project_labels AS VARCHAR) LIKE '%\"team\"%') AS labelled \
             FROM {raw}"
        ),
        &Params::new(),
    )
    .await;
    assert_eq!(facts[0]["late"].as_i64(), Some(2 * late_rows(300)), "{facts:?}");
    assert_eq!(facts[0]["keys"].as_i64(), Some(600));
    assert_eq!(facts[0]["resources"].as_i64(), Some(0));
    assert!(facts[0]["labelled"].as_i64().unwrap() > 500, "{facts:?}");

    // A rerun leaves the table byte for byte as it was.
    let before = dump(&app, dataset, d1, d2).await;
    let again = run(&app, "gcp_acme", d1, d2).await;
    assert_eq!(again["status"], "SUCCESS", "{again}");
    assert_eq!(dump(&app, dataset, d1, d2).await, before, "a rerun changes nothing");

    // Rows that reach the export after the run (a correction exported two days later, within
    // the late-arrival window; another nine days later, outside it): the rerun takes the first.
    for (partition_days, description) in [(2, "late correction"), (9, "too late")] {
        let params = Params::new()
            .bind("start", sandbox_midnight(d2) + Days::hours(5))
            .bind("part", sandbox_midnight(d2 + Days::days(partition_days)))
            .bind("description", description);
        wh.execute(
            &format!(
                "INSERT INTO {export} (billing_account_id, service, sku, usage_start_time, usage_end_time, export_time, cost, \
                 currency, currency_conversion_rate, credits, cost_type, invoice, \"_PARTITIONTIME\") VALUES ('0000-LATE', \
                 {{'id': '6F81-5844-456A', 'description': 'Compute Engine'}}, {{'id': 'LATE-1', 'description': @description}}, \
                 @start, @start + INTERVAL 1 HOUR, @part, 1.5, 'USD', 1.0, [], 'adjustment', {{'month': '202611', 'publisher_type': 'GOOGLE'}}, @part)"
            ),
            &params,
        )
        .await
        .unwrap();
    }
    let third = run(&app, "gcp_acme", d1, d2).await;
    assert_eq!(third["status"], "SUCCESS", "{third}");
    assert_eq!(count_day(&app, dataset, d1).await, 300);
    assert_eq!(count_day(&app, dataset, d2).await, 301, "the late correction is in, the row past the window is not");
    let late = query(
        wh.as_ref(),
        &format!("SELECT sku_description FROM {raw} WHERE billing_account_id = '0000-LATE'"),
        &Params::new(),
    )
    .await;
    assert_eq!(late.len(), 1);
    assert_eq!(late[0]["sku_description"], "late correction");

    // Today: the rows exported tomorrow have not arrived yet.
    let now = run(&app, "gcp_acme", today(), today()).await;
    assert_eq!(now["status"], "SUCCESS", "{now}");
    assert_eq!(step_metrics(&now)["rows"], 300 - late_rows(300), "{now}");
}

#[tokio::test]
async fn a_day_that_cannot_be_read_leaves_the_whole_window_as_it_was() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    org_with_gcp(&app, "gcp_atomic", sandbox_key(), "sandbox.billing.gcp_billing_export_v1_atomic-rows50").await;
    let wh = app.warehouse();
    let dataset = "gcp_atomic_dev";
    let (d1, d2) = (today() - Days::days(5), today() - Days::days(4));
    assert_eq!(run(&app, "gcp_atomic", d1, d2).await["status"], "SUCCESS");
    let before = dump(&app, dataset, d1, d2).await;
    // A row NUMERIC cannot hold (38 digits, 9 after the point) in the second day.
    let export = wh.table_ref("sandbox_billing", "gcp_billing_export_v1_atomic_rows50").unwrap();
    wh.execute(
        &format!(
            "INSERT INTO {export} (usage_start_time, export_time, cost, currency, service, sku, \"_PARTITIONTIME\") \
             VALUES (@t, @t, 1e35, 'USD', {{'id': 'X', 'description': 'x'}}, {{'id': 'Y', 'description': 'y'}}, @p)"
        ),
        &Params::new().bind("t", sandbox_midnight(d2) + Days::hours(1)).bind("p", sandbox_midnight(d2)),
    )
    .await
    .unwrap();
    // Day one's export changes too: a replace of day one alone would show it.
    wh.execute(
        &format!("DELETE FROM {export} WHERE cost_type = 'tax' AND usage_start_time < @e"),
        &Params::new().bind("e", sandbox_midnight(d2)),
    )
    .await
    .unwrap();
    let failed = run(&app, "gcp_atomic", d1, d2).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert_eq!(count_day(&app, dataset, d1).await, 50, "day one, read before day two failed, is as it was");
    assert_eq!(dump(&app, dataset, d1, d2).await, before, "the window is as it was");
    let message = failed["error_message"].as_str().unwrap_or_default();
    assert_eq!(message, "step extract_billing failed: the warehouse refused a write or a query; see the service log");
}

#[tokio::test]
async fn the_detailed_export_brings_resources_and_sandbox_keys_need_the_sandbox() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    org_with_gcp(&app, "gcp_detail", sandbox_key(), "sandbox.billing.gcp_billing_export_resource_v1_detail-rows40")
        .await;
    let day = today() - Days::days(1);
    let r = run(&app, "gcp_detail", day, day).await;
    assert_eq!(r["status"], "SUCCESS", "{r}");
    let raw = app.warehouse().table_ref("gcp_detail_dev", "gcp_billing_daily_raw").unwrap();
    let rows = query(
        app.warehouse().as_ref(),
        &format!(
            "SELECT COUNT(*) AS n, COUNT(resource_name) AS named, COUNT(resource_global_name) AS global FROM {raw}"
        ),
        &Params::new(),
    )
    .await;
    assert_eq!(rows[0]["n"].as_i64(), Some(40));
    // Every row with a project names its resource (the tax and rounding rows have none).
    assert_eq!(rows[0]["named"].as_i64(), Some(38));
    assert_eq!(rows[0]["global"].as_i64(), Some(38));

    let off = TestApp::spawn_with(&[("SANDBOX_PROVIDERS", "false")]).await;
    off.bootstrap().await;
    let key = off.onboard("gcp_nosandbox").await;
    let r = off
        .post(
            "/api/v1/integrations/gcp_nosandbox/gcp/setup",
            Key::Api(&key),
            json!({"service_account_json": sandbox_key(), "billing_export_table": "sandbox.billing.gcp_billing_export_v1_x"}),
        )
        .await;
    assert!(r.assert_error(422, "credential_rejected").contains("SANDBOX_PROVIDERS"), "{}", r.body);
}

/// UTC midnight of a day.
fn sandbox_midnight(day: NaiveDate) -> chrono::DateTime<Utc> {
    common::providers::gcp_sandbox::midnight(day)
}

mod on_bigquery {
    //! The export seeded in the BigQuery emulator. The emulator rewrites `_PARTITIONTIME` to
    //! the current time (every row in today's partition), so the seeded table is partitioned
    //! by a real column, `export_partition_time`, which the step finds in its table metadata
    //! (docs/bqemulator-notes.md).

    use super::*;
    use common::warehouse::bigquery::BigQueryWarehouse;
    use common::warehouse::schema::Partitioning;
    use common::warehouse::{to_row, DatasetOptions, Field, FieldType, Mode, TableSchema};
    use convergence_tests::fakes::providers::{Behaviour, FakeProviders};

    const EXPORT_DATASET: &str = "billing_export";
    const EXPORT_TABLE: &str = "gcp_billing_export_v1_0A1B2C_3D4E5F_6A7B8C";

    fn export_schema(app: &TestApp) -> TableSchema {
        let template = &app.state.configs.gcp_bq_etl.as_ref().expect("bq_etl config").export_template;
        let mut schema = template.clone();
        schema.name = EXPORT_TABLE.into();
        schema.fields.retain(|f| f.name != "_PARTITIONTIME" && f.name != "resource");
        schema.fields.push(Field {
            name: "export_partition_time".into(),
            field_type: FieldType::Timestamp,
            mode: Mode::Nullable,
            description: "Stands for _PARTITIONTIME.".into(),
            fields: vec![],
        });
        schema.partitioning = Some(Partitioning { kind: "DAY".into(), field: "export_partition_time".into() });
        schema
    }

    fn ts(day: NaiveDate, hours: i64) -> String {
        (sandbox_midnight(day) + Days::hours(hours)).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }

    /// One export row of usage day `day`: `cost` in `currency`, exported into the partition
    /// `partition_days` after the day.
    fn export_row(
        day: NaiveDate,
        cost_type: &str,
        cost: &str,
        currency: &str,
        credits: Value,
        partition_days: i64,
    ) -> Value {
        let part = day + Days::days(partition_days);
        json!({
            "billing_account_id": "0A1B2C-3D4E5F-6A7B8C",
            "service": {"id": "6F81-5844-456A", "description": "Compute Engine"},
            "sku": {"id": "2E27-4F75-95CD", "description": format!("{cost_type} {cost} {currency} +{partition_days}")},
            "usage_start_time": ts(day, 3), "usage_end_time": ts(day, 4),
            "project": {"id": "acme-prod-281", "number": "100000007919", "name": "Acme Production",
                        "labels": [{"key": "env", "value": "prod"}], "ancestry_numbers": "/1/"},
            "labels": [{"key": "app", "value": "web"}],
            "system_labels": [],
            "location": {"location": "us-central1", "country": "US", "region": "us-central1", "zone": "us-central1-a"},
            "export_time": ts(part, 6),
            "cost": cost.parse::<f64>().unwrap(),
            "currency": currency,
            "currency_conversion_rate": if currency == "EUR" { 0.92 } else { 1.0 },
            "usage": {"amount": 3600.0, "unit": "seconds", "amount_in_pricing_units": 1.0, "pricing_unit": "hour"},
            "credits": credits,
            "invoice": {"month": day.format("%Y%m").to_string(), "publisher_type": "GOOGLE"},
            "cost_type": cost_type,
            "adjustment_info": if cost_type == "adjustment" {
                json!({"id": "adj-1", "description": "Goodwill", "mode": "MANUAL_ADJUSTMENT", "type": "GOODWILL"})
            } else { Value::Null },
            "cost_at_list": if cost_type == "regular" { json!(cost.parse::<f64>().unwrap() * 1.25) } else { Value::Null },
            "export_partition_time": ts(part, 0),
        })
    }

    fn credit(kind: &str, amount: f64) -> Value {
        json!({"name": kind, "amount": amount, "full_name": kind, "id": kind, "type": kind})
    }

    /// An app on the emulator (in a project of its own, where the export is seeded), with
    /// `acme`'s gcp integration on it through the fake token endpoint.
    /// The app on the emulator; the organization's service-account tokens come from `fake`.
    async fn app_on(project: &str, configs: &str, fake: &FakeProviders) -> TestApp {
        app_on_with(project, configs, fake, &[]).await
    }

    /// [`app_on`] with `extra` settings.
    async fn app_on_with(project: &str, configs: &str, fake: &FakeProviders, extra: &[(&str, &str)]) -> TestApp {
        let url = convergence_tests::bigquery_emulator();
        let token_url = fake.token_uri();
        let mut vars = vec![
            ("WAREHOUSE_BACKEND", "bigquery"),
            ("GCP_PROJECT_ID", project),
            ("BIGQUERY_API_BASE", url.as_str()),
            ("CONFIGS_DIR", configs),
            ("GOOGLE_TOKEN_URL", token_url.as_str()),
        ];
        vars.extend_from_slice(extra);
        let app = TestApp::spawn_with(&vars).await;
        app.bootstrap().await;
        app
    }

    async fn set_up_gcp(app: &TestApp, fake: &FakeProviders) {
        let table = format!("{}.{EXPORT_DATASET}.{EXPORT_TABLE}", export_project());
        org_with_gcp(app, "acme", fake.service_account(Behaviour::Admin), &table).await;
    }

    fn export_project() -> &'static str {
        static PROJECT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        PROJECT.get_or_init(convergence_tests::unique_project)
    }

    #[tokio::test]
    async fn the_export_moves_server_side_and_pages_in_alike() {
        let url = convergence_tests::bigquery_emulator();
        let fake = FakeProviders::start().await;
        let day = today() - Days::days(3);
        // The export, seeded in a project of its own.
        let source = BigQueryWarehouse::connect(export_project(), "US", Some(&url)).await.unwrap();
        source.create_dataset(EXPORT_DATASET, &DatasetOptions::default()).await.unwrap();
        let repo_configs = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs");
        let project = convergence_tests::unique_project();
        let app = app_on(&project, repo_configs, &fake).await;
        let schema = export_schema(&app);
        source.create_table(EXPORT_DATASET, &schema).await.unwrap();
        let rows: Vec<_> = [
            export_row(
                day,
                "regular",
                "10.5",
                "USD",
                json!([credit("SUSTAINED_USAGE_DISCOUNT", -2.1), credit("FREE_TIER", -0.5)]),
                0,
            ),
            export_row(day, "regular", "3.25", "USD", json!([]), 0),
            export_row(day, "tax", "1.2", "USD", json!([]), 0),
            export_row(day, "adjustment", "-4", "USD", json!([]), 0),
            export_row(day, "rounding_error", "0.003", "USD", json!([]), 0),
            export_row(day, "regular", "7", "EUR", json!([credit("COMMITTED_USAGE_DISCOUNT", -0.7)]), 0),
            // Arrived a day late: in the late-arrival window.
            export_row(day, "regular", "2.5", "USD", json!([credit("PROMOTION", -0.25)]), 1),
            // Eight days late: past the window (7 days).
            export_row(day, "regular", "99", "USD", json!([]), 8),
            // The day before: not this day's.
            export_row(day - Days::days(1), "regular", "50", "USD", json!([]), 0),
        ]
        .into_iter()
        .map(to_row)
        .collect();
        source.insert_rows(EXPORT_DATASET, &schema, &rows).await.unwrap();
        set_up_gcp(&app, &fake).await;

        let first = run(&app, "acme", day, day).await;
        assert_eq!(first["status"], "SUCCESS", "{first}");
        let m = step_metrics(&first);
        assert_eq!((m["transfer"].as_str(), m["rows"].as_i64()), (Some("server_side"), Some(7)), "{first}");
        let totals = &m["totals"];
        let find = |currency: &str, cost_type: &str| {
            totals
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["currency"] == currency && t["cost_type"] == cost_type)
                .cloned()
                .unwrap_or_else(|| panic!("no {currency} {cost_type} in {totals}"))
        };
        let regular = find("USD", "regular");
        assert_eq!(
            (
                regular["rows"].as_i64(),
                regular["cost"].as_str(),
                regular["credits"].as_str(),
                regular["net_cost"].as_str()
            ),
            (Some(3), Some("16.25"), Some("-2.85"), Some("13.4")),
            "{totals}"
        );
        for (cost_type, cost) in [("tax", "1.2"), ("adjustment", "-4"), ("rounding_error", "0.003")] {
            let t = find("USD", cost_type);
            assert_eq!(
                (t["rows"].as_i64(), t["cost"].as_str(), t["net_cost"].as_str()),
                (Some(1), Some(cost), Some(cost)),
                "{totals}"
            );
        }
        let eur = find("EUR", "regular");
        assert_eq!((eur["cost"].as_str(), eur["net_cost"].as_str()), (Some("7"), Some("6.3")), "{totals}");

        let dataset = "acme_dev";
        let before = dump(&app, dataset, day, day).await;
        assert_eq!(run(&app, "acme", day, day).await["status"], "SUCCESS");
        assert_eq!(dump(&app, dataset, day, day).await, before, "a rerun changes nothing");
        // A correction exported three days later is picked up by the next rerun.
        source
            .insert_rows(EXPORT_DATASET, &schema, &[to_row(export_row(day, "adjustment", "-1.5", "USD", json!([]), 3))])
            .await
            .unwrap();
        let third = run(&app, "acme", day, day).await;
        assert_eq!(step_metrics(&third)["rows"], 8, "{third}");
        let server_side = dump(&app, dataset, day, day).await;

        // The same day paged in as the organization's service account: the same rows.
        let dir = tempfile::tempdir().unwrap();
        convergence_tests::copy_dir(std::path::Path::new(repo_configs), dir.path());
        let config = dir.path().join("gcp/bq_etl/config.yml");
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(
            &config,
            text.replace("transfer: auto", "transfer: paged").replace("page_rows: 5000", "page_rows: 100"),
        )
        .unwrap();
        let paged_app = app_on(&convergence_tests::unique_project(), dir.path().to_str().unwrap(), &fake).await;
        set_up_gcp(&paged_app, &fake).await;
        let paged = run(&paged_app, "acme", day, day).await;
        assert_eq!(paged["status"], "SUCCESS", "{paged}");
        assert_eq!(
            (step_metrics(&paged)["transfer"].as_str(), step_metrics(&paged)["rows"].as_i64()),
            (Some("paged"), Some(8))
        );
        assert_eq!(dump(&paged_app, dataset, day, day).await, server_side, "paged and server-side store the same rows");
        assert!(
            fake.requests().iter().any(|r| r.contains("/google/token")),
            "the organization's service account was used"
        );
    }

    /// An error as Google's APIs send it.
    fn google_error(code: u16, reason: &str, message: &str, status: &str) -> Value {
        json!({"error": {"code": code, "message": message, "status": status,
                         "errors": [{"message": message, "domain": "global", "reason": reason}]}})
    }

    /// The organization's BigQuery misbehaving while its export is paged in over a three-day
    /// window: each answer fails the step with a message naming gcp and what was wrong, and the
    /// window stays as it was, the days read before the failure included. The app runs on DuckDB
    /// and reaches the export (seeded in the emulator) through the hostile fake, which forwards
    /// what it is not told to spoil.
    #[tokio::test]
    async fn a_hostile_bigquery_fails_the_step_and_leaves_the_whole_window() {
        use convergence_tests::fakes::hostile::{Answer, HostileProvider};
        let url = convergence_tests::bigquery_emulator();
        let fake = FakeProviders::start().await;
        let hostile = HostileProvider::start().await;
        hostile.aim(&url);
        let export_project = convergence_tests::unique_project();
        let source = BigQueryWarehouse::connect(&export_project, "US", Some(&url)).await.unwrap();
        source.create_dataset(EXPORT_DATASET, &DatasetOptions::default()).await.unwrap();
        let token_url = fake.token_uri();
        let app =
            TestApp::spawn_with(&[("BIGQUERY_API_BASE", hostile.url()), ("GOOGLE_TOKEN_URL", token_url.as_str())])
                .await;
        app.bootstrap().await;
        let schema = export_schema(&app);
        source.create_table(EXPORT_DATASET, &schema).await.unwrap();
        let (d1, d3) = (today() - Days::days(5), today() - Days::days(3));
        let days = [d1, d1 + Days::days(1), d3];
        let rows: Vec<_> =
            days.iter().map(|d| to_row(export_row(*d, "regular", "10.5", "USD", json!([]), 0))).collect();
        source.insert_rows(EXPORT_DATASET, &schema, &rows).await.unwrap();
        let table = format!("{export_project}.{EXPORT_DATASET}.{EXPORT_TABLE}");
        org_with_gcp(&app, "acme", fake.service_account(Behaviour::Admin), &table).await;
        let baseline = run(&app, "acme", d1, d3).await;
        assert_eq!(baseline["status"], "SUCCESS", "{baseline}");
        assert_eq!(
            (step_metrics(&baseline)["transfer"].as_str(), step_metrics(&baseline)["rows"].as_i64()),
            (Some("paged"), Some(3))
        );
        let before = dump(&app, "acme_dev", d1, d3).await;
        // New rows on every day: a day replaced before the failure would show them.
        let more: Vec<_> = days.iter().map(|d| to_row(export_row(*d, "tax", "1.2", "USD", json!([]), 0))).collect();
        source.insert_rows(EXPORT_DATASET, &schema, &more).await.unwrap();

        // jobs.query of the organization's project (its service account's): one per day.
        let queries = "/bigquery/v2/projects/acme-billing/queries";
        let spoiled = |answer: Answer| {
            let mut script = vec![Answer::Honest, Answer::Honest];
            script.extend(std::iter::repeat_n(answer, 20));
            script
        };
        let cases: Vec<(&str, Answer, &[&str])> = vec![
            (
                "malformed JSON with a 200",
                Answer::text(200, "{\"kind\": \"bigquery#queryResponse\", \"rows\": [tru"),
                &[
                    "Google Cloud",
                    "reading the billing export failed",
                    "jobs.query answered with a body of the wrong shape",
                ],
            ),
            (
                "a refusal",
                Answer::json(
                    403,
                    &google_error(
                        403,
                        "accessDenied",
                        "Access Denied: Project acme-billing: User does not have bigquery.jobs.create permission",
                        "PERMISSION_DENIED",
                    ),
                ),
                &["Google Cloud", "Access Denied"],
            ),
            (
                "an outage beyond the retries",
                Answer::json(
                    503,
                    &google_error(503, "backendError", "The service is currently unavailable.", "UNAVAILABLE"),
                ),
                &["Google Cloud answered 503", "unavailable"],
            ),
        ];
        for (case, answer, what) in cases {
            hostile.script(queries, spoiled(answer));
            let failed = run(&app, "acme", d1, d3).await;
            assert_eq!(failed["status"], "FAILED", "{case}: {failed}; calls: {:?}", hostile.all_calls());
            let message = failed["error_message"].as_str().unwrap_or_default().to_lowercase();
            for word in what {
                assert!(message.contains(&word.to_lowercase()), "{case}: no {word:?} in {failed}");
            }
            assert!(!failed.to_string().contains("PRIVATE KEY"), "{case}: key material in {failed}");
            assert_eq!(dump(&app, "acme_dev", d1, d3).await, before, "{case}: the window changed");
        }
        hostile.reset();
        let again = run(&app, "acme", d1, d3).await;
        assert_eq!(again["status"], "SUCCESS", "{again}");
        assert_eq!(step_metrics(&again)["rows"], 6, "{again}");
    }

    /// Configs whose billing export step pages the export in as the organization's service
    /// account (`transfer: paged`), in a temporary copy.
    fn paged_configs() -> tempfile::TempDir {
        let repo_configs = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs");
        let dir = tempfile::tempdir().unwrap();
        convergence_tests::copy_dir(std::path::Path::new(repo_configs), dir.path());
        let config = dir.path().join("gcp/bq_etl/config.yml");
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, text.replace("transfer: auto", "transfer: paged")).unwrap();
        dir
    }

    /// A page of the export larger than `BIGQUERY_MAX_RESPONSE_MB` (the organization's own data:
    /// nothing bounds a row's text) fails the step with the limit named, none of the row in the
    /// message, and nothing stored; within the cap the same day loads.
    #[tokio::test]
    async fn an_export_page_over_the_response_cap_fails_the_step_unread() {
        let url = convergence_tests::bigquery_emulator();
        let fake = FakeProviders::start().await;
        let day = today() - Days::days(3);
        let export_project = convergence_tests::unique_project();
        let source = BigQueryWarehouse::connect(&export_project, "US", Some(&url)).await.unwrap();
        source.create_dataset(EXPORT_DATASET, &DatasetOptions::default()).await.unwrap();
        let configs = paged_configs();
        let configs = configs.path().to_str().unwrap();
        let capped = [("BIGQUERY_MAX_RESPONSE_MB", "1")];
        let app = app_on_with(&convergence_tests::unique_project(), configs, &fake, &capped).await;
        let schema = export_schema(&app);
        source.create_table(EXPORT_DATASET, &schema).await.unwrap();
        let mut huge = export_row(day, "regular", "10.5", "USD", json!([]), 0);
        huge["sku"]["description"] = json!("organization-text-".repeat(100_000));
        let rows = vec![to_row(huge), to_row(export_row(day, "tax", "1.2", "USD", json!([]), 0))];
        source.insert_rows(EXPORT_DATASET, &schema, &rows).await.unwrap();
        let table = format!("{export_project}.{EXPORT_DATASET}.{EXPORT_TABLE}");
        org_with_gcp(&app, "acme", fake.service_account(Behaviour::Admin), &table).await;

        let failed = run(&app, "acme", day, day).await;
        assert_eq!(failed["status"], "FAILED", "{failed}");
        let message = failed["error_message"].as_str().unwrap();
        assert!(
            message.contains("reading the billing export failed")
                && message.contains("answered more than 1 MB (BIGQUERY_MAX_RESPONSE_MB); the answer was not read"),
            "{message}"
        );
        assert!(!failed.to_string().contains("organization-text"), "no row text in the run: {message}");
        assert_eq!(count_day(&app, "acme_dev", day).await, 0, "nothing stored");

        // The default cap (64 MB) reads the same page.
        let app = app_on_with(&convergence_tests::unique_project(), configs, &fake, &[]).await;
        org_with_gcp(&app, "acme", fake.service_account(Behaviour::Admin), &table).await;
        let loaded = run(&app, "acme", day, day).await;
        assert_eq!(loaded["status"], "SUCCESS", "{loaded}");
        assert_eq!(step_metrics(&loaded)["rows"], 2, "{loaded}");
    }
}
