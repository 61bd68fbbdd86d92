//! Issue 11's sections: the scheduler tick over many organizations, and the statements one run
//! issues. Both run in this process on DuckDB, with the warehouse wrapped in the statement
//! counter (`CountingWarehouse`), so what is counted is every call that reached the warehouse.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Months, NaiveDate, Utc};
use common::pipeline::runlog::{NewRun, RunEvent, RunLog, RunRow, RunStatus, Trigger, Window};
use common::pipeline::schedule::{due_window, PipelineHistory};
use common::pipeline::{Pipeline, Pipelines, Schedule};
use common::queue::local::LocalRunQueue;
use common::settings::{BackendDefaults, Settings};
use common::warehouse::counting::{CountingWarehouse, Statement, StatementKind, StatementLog, Summary};
use common::warehouse::{
    format_timestamp, to_row, DatasetOptions, Field, Params, RecordBatches, Row, Staging, TableSchema, Warehouse,
    WarehouseResult,
};
use common::AppState;
use serde_json::{json, Value};

use crate::{status_kib, ROOT_KEY};

/// The tick's targets (issue 11).
const TICK_SECONDS_TARGET: f64 = 5.0;
const TICK_STATEMENTS_TARGET: usize = 50;

/// The providers every seeded organization has an integration with.
const PROVIDERS: [&str; 3] = ["openai", "anthropic", "gcp"];

/// `convergence-local`'s app built in this process: the state (its warehouse counted into `log`),
/// the warehouse under the counter (the benchmark's own reads and seeding go there, uncounted),
/// and the router served on a loopback port.
struct InProcess {
    state: AppState,
    raw: Arc<dyn Warehouse>,
    log: StatementLog,
    base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl InProcess {
    /// Starts as `tests/lib.rs` `TestApp::spawn_with` does (bind, point the provider sandbox at the
    /// bound port, build, serve), with the counting warehouse and no scheduler of its own.
    /// With `timings`, the calls reaching DuckDB are also timed into it (see [`Timed`]).
    async fn start(extra: &[(&str, &str)], timings: Option<Arc<Mutex<Vec<Timing>>>>) -> InProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut vars: HashMap<String, String> = HashMap::from([
            ("CA_ROOT_API_KEY".into(), ROOT_KEY.into()),
            ("DATA_DIR".into(), dir.path().display().to_string()),
            ("PORT".into(), "0".into()),
            ("CONFIGS_DIR".into(), concat!(env!("CARGO_MANIFEST_DIR"), "/../configs").into()),
            ("RATE_LIMIT_ENABLED".into(), "false".into()),
            ("QUEUE_BACKEND".into(), "local".into()),
            ("SCHEDULER_INTERVAL".into(), "0".into()),
        ]);
        for (k, v) in extra {
            vars.insert((*k).into(), (*v).into());
        }
        let mut settings = Settings::from_vars(&vars, BackendDefaults::Embedded).expect("settings");
        let listener = common::http::server::bind(0).await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        settings.point_providers_at_sandbox(port);
        let log = StatementLog::new();
        let mut raw = None;
        let state = AppState::build_with_warehouse(settings, |inner| {
            raw = Some(inner.clone());
            let inner: Arc<dyn Warehouse> = match timings {
                Some(timings) => Arc::new(Timed { inner, log: timings }),
                None => inner,
            };
            Arc::new(CountingWarehouse::with_log(inner, log.clone()))
        })
        .await
        .expect("state");
        let raw = raw.expect("the wrapper saw the warehouse");
        let app = local::router(state.clone());
        tokio::spawn(async move {
            let _ = common::http::serve(listener, app).await;
        });
        InProcess {
            state,
            raw,
            log,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    /// A root-key request that must succeed; returns its JSON body.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.client.request(method, format!("{}{path}", self.base)).header("X-CA-Root-Key", ROOT_KEY);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status}: {body}");
        body
    }

    async fn bootstrap(&self) {
        self.call(reqwest::Method::POST, "/api/v1/admin/bootstrap", Some(json!({}))).await;
    }

    /// Inserts rows into a central table, uncounted.
    async fn insert(&self, table: &str, rows: &[Row]) {
        let configs = &self.state.configs;
        self.raw
            .insert_rows(configs.central_dataset(), configs.central_table(table), rows)
            .await
            .unwrap_or_else(|e| panic!("seeding {table}: {e}"));
    }
}

/// Resets the process's peak RSS (`VmHWM`) to its current RSS (Linux ≥ 4.0: `5` into
/// `clear_refs`), so the peak read afterwards is the measured code's. False when refused.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn own_kib(field: &str) -> u64 {
    status_kib(std::process::id(), field)
}

fn mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

/// Statement counts by kind, in the log's order of kinds.
fn by_kind(statements: &[Statement]) -> String {
    let mut counts: std::collections::BTreeMap<StatementKind, usize> = std::collections::BTreeMap::new();
    for s in statements {
        *counts.entry(s.kind).or_default() += 1;
    }
    counts.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}

/// A Markdown table of a summary: one row per (kind, table), mutating kinds marked.
fn print_summary(summary: &Summary) {
    println!("| kind | table | statements | mutates rows |");
    println!("|---|---|---|---|");
    for ((kind, table), n) in &summary.0 {
        let table = if table.is_empty() { "-" } else { table.as_str() };
        println!("| {kind} | {table} | {n} | {} |", if kind.mutates_rows() { "yes" } else { "" });
    }
}

// ---------------------------------------------------------------------------------------------
// Where a tick's time goes

/// One call that reached the warehouse under [`Timed`]: the method, the table it wrote (or the
/// first table a query names), rows written, and how long the backend took.
#[derive(Debug, Clone)]
struct Timing {
    method: &'static str,
    target: String,
    rows: usize,
    elapsed: Duration,
}

/// A warehouse that times the calls reaching `inner`, for the tick's breakdown. It sits under
/// the counter (counter → timed → DuckDB), so it times what the counter counts.
struct Timed {
    inner: Arc<dyn Warehouse>,
    log: Arc<Mutex<Vec<Timing>>>,
}

impl Timed {
    fn record(&self, method: &'static str, target: String, rows: usize, started: Instant) {
        let timing = Timing { method, target, rows, elapsed: started.elapsed() };
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push(timing);
    }
}

/// The first `dataset.table` after a FROM in `sql`: a label, not a parser.
fn first_table(sql: &str) -> String {
    sql.split("FROM ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|t| t.replace(['"', '`', '(', ')'], ""))
        .find(|t| t.contains('.'))
        .unwrap_or_else(|| "-".to_string())
}

#[async_trait::async_trait]
impl Warehouse for Timed {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    fn table_ref(&self, dataset: &str, table: &str) -> WarehouseResult<String> {
        self.inner.table_ref(dataset, table)
    }
    async fn ping(&self) -> WarehouseResult<()> {
        self.inner.ping().await
    }
    async fn dataset_exists(&self, dataset: &str) -> WarehouseResult<bool> {
        self.inner.dataset_exists(dataset).await
    }
    async fn create_dataset(&self, dataset: &str, options: &DatasetOptions) -> WarehouseResult<bool> {
        self.inner.create_dataset(dataset, options).await
    }
    async fn drop_dataset(&self, dataset: &str) -> WarehouseResult<()> {
        self.inner.drop_dataset(dataset).await
    }
    async fn list_tables(&self, dataset: &str) -> WarehouseResult<Vec<String>> {
        self.inner.list_tables(dataset).await
    }
    async fn list_all_tables(&self, dataset: &str) -> WarehouseResult<Vec<String>> {
        self.inner.list_all_tables(dataset).await
    }
    async fn create_table(&self, dataset: &str, schema: &TableSchema) -> WarehouseResult<bool> {
        self.inner.create_table(dataset, schema).await
    }
    async fn drop_table(&self, dataset: &str, table: &str) -> WarehouseResult<()> {
        self.inner.drop_table(dataset, table).await
    }
    async fn table_columns(&self, dataset: &str, table: &str) -> WarehouseResult<Vec<String>> {
        self.inner.table_columns(dataset, table).await
    }
    async fn add_column(&self, dataset: &str, table: &str, field: &Field) -> WarehouseResult<()> {
        self.inner.add_column(dataset, table, field).await
    }
    async fn drop_column(&self, dataset: &str, table: &str, column: &str) -> WarehouseResult<()> {
        self.inner.drop_column(dataset, table, column).await
    }
    async fn create_view(&self, dataset: &str, view: &str, select_sql: &str) -> WarehouseResult<()> {
        self.inner.create_view(dataset, view, select_sql).await
    }
    async fn query(&self, sql: &str, params: &Params) -> WarehouseResult<Vec<Row>> {
        let started = Instant::now();
        let out = self.inner.query(sql, params).await;
        let rows = out.as_ref().map_or(0, Vec::len);
        self.record("query", first_table(sql), rows, started);
        out
    }
    async fn execute(&self, sql: &str, params: &Params) -> WarehouseResult<u64> {
        let started = Instant::now();
        let out = self.inner.execute(sql, params).await;
        self.record("execute", first_table(sql), 0, started);
        out
    }
    async fn insert_rows(&self, dataset: &str, schema: &TableSchema, rows: &[Row]) -> WarehouseResult<u64> {
        let started = Instant::now();
        let out = self.inner.insert_rows(dataset, schema, rows).await;
        self.record("insert_rows", format!("{dataset}.{}", schema.name), rows.len(), started);
        out
    }
    async fn append_rows(
        &self,
        dataset: &str,
        schema: &TableSchema,
        id_column: &str,
        rows: &[Row],
    ) -> WarehouseResult<u64> {
        let started = Instant::now();
        let out = self.inner.append_rows(dataset, schema, id_column, rows).await;
        self.record("append_rows", format!("{dataset}.{}", schema.name), rows.len(), started);
        out
    }
    async fn replace_slice(
        &self,
        dataset: &str,
        schema: &TableSchema,
        predicate: &str,
        params: &Params,
        rows: &[Row],
    ) -> WarehouseResult<(u64, u64)> {
        let started = Instant::now();
        let out = self.inner.replace_slice(dataset, schema, predicate, params, rows).await;
        self.record("replace_slice", format!("{dataset}.{}", schema.name), rows.len(), started);
        out
    }
    async fn replace_slice_from_select(
        &self,
        dataset: &str,
        schema: &TableSchema,
        predicate: &str,
        params: &Params,
        select_sql: &str,
    ) -> WarehouseResult<(u64, u64)> {
        let started = Instant::now();
        let out = self.inner.replace_slice_from_select(dataset, schema, predicate, params, select_sql).await;
        let rows = out.as_ref().map_or(0, |(_, inserted)| *inserted as usize);
        self.record("replace_slice_from_select", format!("{dataset}.{}", schema.name), rows, started);
        out
    }
    async fn query_batches(&self, sql: &str, params: &Params, batch_rows: usize) -> WarehouseResult<RecordBatches> {
        self.inner.query_batches(sql, params, batch_rows).await
    }
    async fn stage(
        &self,
        dataset: &str,
        schema: &TableSchema,
        predicate: &str,
        params: &Params,
    ) -> WarehouseResult<Box<dyn Staging>> {
        self.inner.stage(dataset, schema, predicate, params).await
    }
}

// ---------------------------------------------------------------------------------------------
// The tick over many organizations

/// How seeded organization `i` stands: the mix the tick's gates sort out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Active,
    Trial,
    Suspended,
    ExpiredTrial,
}

fn standing(i: usize) -> Standing {
    match i % 20 {
        0..=13 => Standing::Active,
        14..=17 => Standing::Trial,
        18 => Standing::Suspended,
        _ => Standing::ExpiredTrial,
    }
}

fn slug(i: usize) -> String {
    format!("bench_org_{i:05}")
}

/// What was seeded, for the report.
#[derive(Default)]
struct Seeded {
    organizations: usize,
    eligible_organizations: usize,
    credentials: usize,
    invalid_credentials: usize,
    run_events: usize,
    runs: usize,
    seconds: f64,
}

/// Profiles, subscriptions, quotas and three credentials per organization, as onboarding and
/// integration setup write them, in one bulk insert per table.
async fn seed_organizations(app: &InProcess, orgs: Range<usize>, now: DateTime<Utc>, seeded: &mut Seeded) {
    let state = &app.state;
    let plans = ["STARTER", "PROFESSIONAL", "SCALE"];
    let ts = |t: DateTime<Utc>| format_timestamp(&t);
    let created = now - chrono::Duration::days(40);
    let (mut profiles, mut subscriptions, mut quotas, mut credentials) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in orgs.clone() {
        let org = slug(i);
        let plan_name = plans[i % plans.len()];
        let plan = state.configs.plan(plan_name).expect("plan in configs");
        profiles.push(to_row(json!({
            "org_slug": org,
            "company_name": format!("Bench {i}"),
            "admin_email": format!("admin@bench-{i}.example.com"),
            "status": "ACTIVE",
            "dataset_id": state.org_dataset(&org),
            "default_currency": "USD",
            "timezone": "UTC",
            "created_at": ts(created),
            "updated_at": ts(created),
        })));
        let (status, billing, trial_ends_at) = match standing(i) {
            Standing::Active => ("ACTIVE", json!("active"), Value::Null),
            Standing::Trial => ("TRIAL", json!("trialing"), json!(ts(now + chrono::Duration::days(10)))),
            Standing::Suspended => ("SUSPENDED", json!("past_due"), Value::Null),
            Standing::ExpiredTrial => ("TRIAL", Value::Null, json!(ts(now - chrono::Duration::days(2)))),
        };
        subscriptions.push(to_row(json!({
            "subscription_id": uuid::Uuid::new_v4().to_string(),
            "org_slug": org,
            "plan_name": plan_name,
            "status": status,
            "billing_status": billing,
            "trial_ends_at": trial_ends_at,
            "created_at": ts(created),
            "updated_at": ts(now - chrono::Duration::days(1)),
        })));
        quotas.push(to_row(json!({
            "org_slug": org,
            "plan_name": plan_name,
            "max_pipeline_runs_per_day": plan.max_pipeline_runs_per_day,
            "max_pipeline_runs_per_month": plan.max_pipeline_runs_per_month,
            "max_concurrent_runs": plan.max_concurrent_runs,
            "max_integrations": plan.max_integrations,
            "created_at": ts(created),
            "updated_at": ts(created),
        })));
        for provider in PROVIDERS {
            // A few integrations failed their last validation.
            let invalid = (provider == "anthropic" && i % 50 == 3) || (provider == "openai" && i % 97 == 5);
            let secret = format!("sk-admin-bench-{provider}-{i}");
            let cipher = state
                .kms
                .encrypt(secret.as_bytes(), &common::credentials::aad(&org, provider))
                .await
                .expect("local KMS encrypts");
            use base64::Engine;
            credentials.push(to_row(json!({
                "credential_id": uuid::Uuid::new_v4().to_string(),
                "org_slug": org,
                "provider": provider,
                "credential_name": format!("{provider} admin key"),
                "encrypted_credential": base64::engine::general_purpose::STANDARD.encode(&cipher),
                "fingerprint": format!("…{:04}", i % 10_000),
                "status": if invalid { "INVALID" } else { "VALID" },
                "validated_at": ts(created),
                "last_error": if invalid { json!("401 from the provider: the key was revoked") } else { Value::Null },
                "metadata": json!({"validated_with": "bench"}).to_string(),
                "created_at": ts(created),
                "updated_at": ts(created),
            })));
            seeded.invalid_credentials += usize::from(invalid);
        }
    }
    seeded.organizations += orgs.len();
    seeded.eligible_organizations +=
        orgs.filter(|&i| matches!(standing(i), Standing::Active | Standing::Trial)).count();
    seeded.credentials += credentials.len();
    app.insert("org_profiles", &profiles).await;
    app.insert("org_subscriptions", &subscriptions).await;
    app.insert("org_usage_quotas", &quotas).await;
    app.insert(common::credentials::TABLE, &credentials).await;
}

/// A run that succeeded: its trigger, window and submission time.
type LastSuccess = (Trigger, Window, DateTime<Utc>);

/// The three events of a run that succeeded: submitted at `at`, claimed a second later, finished
/// half a minute after.
fn succeeded(new: &NewRun<'_>, at: DateTime<Utc>, lease: chrono::Duration) -> [RunRow; 3] {
    let submitted = new.pending(at, lease);
    let mut claimed = submitted.clone();
    let started = at + chrono::Duration::seconds(1);
    claimed.status = RunStatus::Running;
    claimed.event = RunEvent::Claimed;
    claimed.event_at = started;
    claimed.started_at = Some(started);
    claimed.lease_expires_at = Some(started + lease);
    claimed.claim_id = Some(uuid::Uuid::new_v4().simple().to_string());
    let mut done = claimed.clone();
    let finished = at + chrono::Duration::seconds(31);
    done.status = RunStatus::Success;
    done.event = RunEvent::Finished;
    done.event_at = finished;
    done.finished_at = Some(finished);
    done.duration_ms = Some(30_000);
    done.rows_written = 1_000 + (at.timestamp() as u64 % 500);
    done.lease_expires_at = None;
    [submitted, claimed, done]
}

/// Run history for the tick to find, per organization `i` and pipeline:
/// - `i % 4 == 0`: today's window already succeeded (an earlier tick today): "done";
/// - `i % 4 == 1`: yesterday's tick succeeded: the newest day plus the re-pulls are due;
/// - `i % 4 == 2`: the last success ended five days ago: caught up from the day after;
/// - `i % 4 == 3`: never ran: the capped catch-up is due.
///
/// And across them: `i % 100 == 1` an ad-hoc run still pending (the window is "active");
/// `i % 100 == 2` a scheduled run claimed an hour and a half ago whose lease passed (the tick
/// records it expired, then submits the window's next attempt). Monthly pipelines: the previous
/// month succeeded for even `i`, the month before for odd `i`.
async fn seed_runs(app: &InProcess, orgs: Range<usize>, as_of: NaiveDate, now: DateTime<Utc>, seeded: &mut Seeded) {
    let (settings, configs) = (&app.state.settings, &app.state.configs);
    let lease = chrono::Duration::seconds(i64::try_from(settings.run_lease_secs).unwrap_or(3600));
    let newest = as_of.pred_opt().expect("a day before as_of");
    let window_of = |p: &Pipeline, as_of: NaiveDate, last: Option<NaiveDate>| -> Option<Window> {
        let spec = configs.providers.providers.get(&p.key.provider)?;
        due_window(
            p,
            as_of,
            spec.settle_days,
            settings.scheduler_catchup_days,
            spec.first_usable_day,
            &PipelineHistory { last_success_end: last },
        )
    };
    let mut events: Vec<RunRow> = Vec::new();
    let mut runs = 0usize;
    for i in orgs {
        let org = slug(i);
        for p in configs.pipelines.iter() {
            let pipeline_id = p.pipeline_id(&org);
            let new = |trigger: Trigger, window: Window, attempt: u32| NewRun {
                org_slug: &org,
                pipeline_id: &pipeline_id,
                provider: &p.key.provider,
                domain: &p.key.domain,
                pipeline: p.key.pipeline.as_deref(),
                file: &p.file,
                trigger,
                window,
                attempt,
            };
            let past = |days: i64| now - chrono::Duration::days(days);
            // The run that succeeded last, and the last day it covered.
            let (history, last_end): (Option<LastSuccess>, Option<NaiveDate>) = match p.schedule {
                Schedule::Monthly => {
                    let (month_as_of, at) = if i % 2 == 0 {
                        (as_of, now - chrono::Duration::hours(2))
                    } else {
                        (as_of - Months::new(1), past(30))
                    };
                    let w = window_of(p, month_as_of, None);
                    (w.map(|w| (Trigger::Scheduled, w, at)), w.map(|w| w.end))
                }
                Schedule::Daily => match i % 4 {
                    0 => {
                        let w = window_of(p, as_of, Some(newest));
                        (w.map(|w| (Trigger::Scheduled, w, now - chrono::Duration::hours(3))), w.map(|w| w.end))
                    }
                    1 => {
                        let yesterday = as_of.pred_opt().expect("day");
                        let w = window_of(p, yesterday, Some(newest - chrono::Duration::days(1)));
                        (w.map(|w| (Trigger::Scheduled, w, past(1))), w.map(|w| w.end))
                    }
                    2 => {
                        let end = newest - chrono::Duration::days(5);
                        let w = Window { start: end - chrono::Duration::days(2), end };
                        (Some((Trigger::Adhoc, w, past(5))), Some(end))
                    }
                    _ => (None, None),
                },
                Schedule::Manual => (None, None),
            };
            if let Some((trigger, window, at)) = history {
                events.extend(succeeded(&new(trigger, window, 1), at, lease));
                runs += 1;
            }
            if p.schedule == Schedule::Daily && i % 100 == 1 {
                // An ad-hoc run of the last two days, submitted five minutes ago, not delivered yet.
                let window = Window { start: newest - chrono::Duration::days(1), end: newest };
                events.push(new(Trigger::Adhoc, window, 1).pending(now - chrono::Duration::minutes(5), lease));
                runs += 1;
            }
            if p.schedule == Schedule::Daily && i % 100 == 2 {
                // Today's due window, claimed 90 minutes ago by a process that died.
                if let Some(window) = window_of(p, as_of, last_end) {
                    let [_, mut claimed, _] = succeeded(&new(Trigger::Scheduled, window, 1), now, lease);
                    let at = now - chrono::Duration::minutes(90);
                    claimed.created_at = at - chrono::Duration::seconds(1);
                    claimed.event_at = at;
                    claimed.started_at = Some(at);
                    claimed.lease_expires_at = Some(at + chrono::Duration::minutes(30));
                    let mut submitted = claimed.clone();
                    submitted.status = RunStatus::Pending;
                    submitted.event = RunEvent::Submitted;
                    submitted.event_at = claimed.created_at;
                    submitted.started_at = None;
                    submitted.lease_expires_at = Some(submitted.event_at + lease.max(chrono::Duration::hours(1)));
                    submitted.claim_id = None;
                    events.push(submitted);
                    events.push(claimed);
                    runs += 1;
                }
            }
        }
    }
    seeded.run_events += events.len();
    seeded.runs += runs;
    RunLog::new(app.raw.as_ref(), configs).append_events(&events).await.expect("seeding run events");
}

/// One tick, measured: wall time, statements (from the counter), peak RSS while it ran.
struct TickMeasure {
    report: common::pipeline::schedule::TickReport,
    timings: Vec<Timing>,
    seconds: f64,
    statements: Vec<Statement>,
    rss_before_kib: u64,
    peak_kib: u64,
    peak_reset: bool,
}

async fn measured_tick(
    pipelines: &Pipelines,
    log: &StatementLog,
    timings: &Mutex<Vec<Timing>>,
    as_of: NaiveDate,
) -> TickMeasure {
    let take_timings = || std::mem::take(&mut *timings.lock().unwrap_or_else(|e| e.into_inner()));
    take_timings();
    log.reset();
    let peak_reset = reset_peak_rss();
    let rss_before_kib = own_kib("VmRSS:");
    let now = Utc::now();
    let started = Instant::now();
    let report = pipelines.tick(as_of, now).await.expect("tick");
    let seconds = started.elapsed().as_secs_f64();
    let peak_kib = own_kib("VmHWM:");
    TickMeasure {
        report,
        timings: take_timings(),
        seconds,
        statements: log.take(),
        rss_before_kib,
        peak_kib,
        peak_reset,
    }
}

/// `orgs` organizations × 3 integrations, seeded in bulk, then two ticks for the same day.
pub async fn tick_at_scale(orgs: usize) {
    let timings = Arc::new(Mutex::new(Vec::new()));
    let app = InProcess::start(&[("RUN_WORKERS", "1")], Some(timings.clone())).await;
    app.bootstrap().await;
    let now = Utc::now();
    let as_of = now.date_naive();
    let mut seeded = Seeded::default();
    let seeding = Instant::now();
    // A thousand organizations at a time, so the seeding's rows do not swell the heap the tick
    // is measured in.
    for start in (0..orgs).step_by(1_000) {
        let chunk = start..(start + 1_000).min(orgs);
        seed_organizations(&app, chunk.clone(), now, &mut seeded).await;
        seed_runs(&app, chunk, as_of, now, &mut seeded).await;
    }
    seeded.seconds = seeding.elapsed().as_secs_f64();
    // The tick enqueues into a local queue that is never started: an enqueue is a channel send
    // and nothing executes, so the second tick sees exactly what the first recorded.
    let buffer = Arc::new(LocalRunQueue::new(1, 1));
    let pipelines = Pipelines { queue: buffer, ..app.state.pipelines.clone() };
    println!(
        "Seeded in {:.1} s (uncounted): {} organizations ({} ACTIVE or TRIAL not ended; the rest SUSPENDED or an ended TRIAL), {} credentials ({} INVALID), {} earlier runs as {} run events; {} pipelines in the catalog. as_of {as_of}.\n",
        seeded.seconds,
        seeded.organizations,
        seeded.eligible_organizations,
        seeded.credentials,
        seeded.invalid_credentials,
        seeded.runs,
        seeded.run_events,
        app.state.configs.pipelines.len(),
    );

    let first = measured_tick(&pipelines, &app.log, &timings, as_of).await;
    let second = measured_tick(&pipelines, &app.log, &timings, as_of).await;
    println!(
        "| tick | wall | statements (counted) | statements (tick's own count) | by kind | submitted | already active | already done | expired | not queued | organizations in report | RSS before | peak RSS during the tick |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, m) in [("first", &first), ("second, same as_of", &second)] {
        let r = &m.report;
        println!(
            "| {name} | {:.3} s | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} MB | {:.1} MB{} |",
            m.seconds,
            m.statements.len(),
            r.statements,
            by_kind(&m.statements),
            r.submitted,
            r.already_active,
            r.already_done,
            r.expired,
            r.not_queued,
            r.organizations.len(),
            mb(m.rss_before_kib),
            mb(m.peak_kib),
            if m.peak_reset { "" } else { " (process peak: VmHWM could not be reset)" },
        );
    }
    println!("\nStatements of the first tick by kind and table:\n");
    print_summary(&Summary::of(&first.statements));
    for (name, m) in [("first", &first), ("second", &second)] {
        println!("\nWhere the {name} tick's time went (each warehouse call, in order):\n");
        println!("| call | table | rows (read or written) | time |");
        println!("|---|---|---|---|");
        for t in &m.timings {
            println!("| {} | {} | {} | {:.3} s |", t.method, t.target, t.rows, t.elapsed.as_secs_f64());
        }
        let in_warehouse: f64 = m.timings.iter().map(|t| t.elapsed.as_secs_f64()).sum();
        println!(
            "| outside the warehouse (due windows, rows, enqueue) | | | {:.3} s |",
            (m.seconds - in_warehouse).max(0.0)
        );
    }
    println!("\nProcess peak RSS (VmHWM) after both ticks: {:.1} MB.", mb(own_kib("VmHWM:")));
    let ok_time = first.seconds < TICK_SECONDS_TARGET;
    let ok_statements = first.statements.len() < TICK_STATEMENTS_TARGET;
    let ok_idempotent = second.report.submitted == 0;
    println!(
        "\nTargets: tick under {TICK_SECONDS_TARGET:.0} s: {} ({:.3} s); under {TICK_STATEMENTS_TARGET} statements: {} ({}); second tick submits nothing: {} ({} submitted, {} statements).",
        pass(ok_time),
        first.seconds,
        pass(ok_statements),
        first.statements.len(),
        pass(ok_idempotent),
        second.report.submitted,
        second.statements.len(),
    );
}

// ---------------------------------------------------------------------------------------------
// The statements of one run

/// One 7-day `openai/usage_cost` run on a fresh app with the provider sandbox and the local
/// queue's workers: every statement from the POST to SUCCESS, by kind and table.
pub async fn run_statements() {
    let app = InProcess::start(&[("SANDBOX_PROVIDERS", "true")], None).await;
    app.bootstrap().await;
    let org = "bench_org";
    app.call(
        reqwest::Method::POST,
        "/api/v1/organizations/onboard",
        Some(json!({"org_slug": org, "company_name": "Bench", "admin_email": "a@bench.example", "subscription_plan": "SCALE"})),
    )
    .await;
    app.call(
        reqwest::Method::PUT,
        &format!("/api/v1/organizations/{org}/subscription"),
        Some(json!({"status": "active"})),
    )
    .await;
    app.call(
        reqwest::Method::POST,
        &format!("/api/v1/integrations/{org}/openai/setup"),
        Some(json!({"credential": "sk-admin-sandbox-bench"})),
    )
    .await;
    let end = Utc::now().date_naive() - chrono::Duration::days(1);
    let start = end - chrono::Duration::days(6);
    app.log.reset();
    let started = Instant::now();
    let accepted = app
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/pipelines/run/{org}/openai/usage_cost"),
            Some(json!({"start_date": start.to_string(), "end_date": end.to_string()})),
        )
        .await;
    let run_id = accepted["run_id"].as_str().expect("run id").to_string();
    // Polled under the counter: the benchmark's reads are not the run's.
    let runs = RunLog::new(app.raw.as_ref(), &app.state.configs);
    let run = loop {
        if let Some(run) = runs.find(org, &run_id).await.expect("run log") {
            if matches!(run.status, RunStatus::Success | RunStatus::Failed) {
                break run;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(120), "run {run_id} not finished after 120 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(run.status, RunStatus::Success, "{:?}", run.error_message);
    // The finish is the run's last statement; wait a little in case anything follows it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let statements = app.log.take();
    let central = app.state.configs.central_dataset().to_string();
    let mutating_central = statements.iter().filter(|s| s.kind.mutates_rows() && s.touches_dataset(&central)).count();
    let mutating_org =
        statements.iter().filter(|s| s.kind.mutates_rows() && s.touches_dataset(&app.state.org_dataset(org))).count();
    let on_central = statements.iter().filter(|s| s.touches_dataset(&central)).count();
    println!(
        "Run {start}..{end} ({} rows written) SUCCESS in {seconds:.2} s: {} statements from the POST to SUCCESS ({} touching `{central}`), by kind: {}.\n",
        run.rows_written,
        statements.len(),
        on_central,
        by_kind(&statements),
    );
    print_summary(&Summary::of(&statements));
    println!(
        "\nMutating statements (UPDATE, MERGE, DELETE, slice replace, staged commit) on central tables (`{central}`): {mutating_central}; on the organization's dataset (the window's atomic replaces): {mutating_org}."
    );
    println!(
        "\nTarget: zero mutating statements on central tables per run: {} ({mutating_central}).",
        pass(mutating_central == 0)
    );
}
