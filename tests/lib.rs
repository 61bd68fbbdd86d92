//! The end-to-end harness: `TestApp::spawn()` starts the real `convergence-local` app on a random
//! loopback port with its own temp data directory, and offers typed helpers over HTTP.

pub mod conformance;
pub mod fakes;

use std::collections::HashMap;
use std::sync::Arc;

use common::settings::{BackendDefaults, Settings};
use common::warehouse::counting::{CountingWarehouse, StatementLog};
use common::warehouse::{Params, Warehouse};
use common::AppState;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

pub const ROOT_KEY: &str = "test-root-key-0123456789-abcdefghijklmnop";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub data_dir: tempfile::TempDir,
}

/// A response: status, headers and JSON body (Null when the body is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The `error.code` of an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
    /// Asserts the JSON error shape and returns the message.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> &str {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.code(), code, "body: {}", self.body);
        assert!(self.body["error"]["request_id"].is_string(), "request_id missing: {}", self.body);
        assert!(!self.message().is_empty());
        self.message()
    }
}

/// Which key a request carries.
#[derive(Clone, Copy)]
pub enum Key<'a> {
    None,
    Root,
    Api(&'a str),
    RootValue(&'a str),
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(&[]).await
    }

    /// Starts the app on the BigQuery backend, against the emulator `make test` starts, in a
    /// project of its own (the emulator keeps projects apart, so tests do not collide).
    pub async fn spawn_bigquery(extra: &[(&str, &str)]) -> TestApp {
        let url = bigquery_emulator();
        let project = unique_project();
        let mut vars: Vec<(&str, &str)> =
            vec![("WAREHOUSE_BACKEND", "bigquery"), ("GCP_PROJECT_ID", &project), ("BIGQUERY_API_BASE", &url)];
        vars.extend_from_slice(extra);
        Self::spawn_with(&vars).await
    }

    /// Starts the app with extra environment settings (e.g. a low rate limit).
    pub async fn spawn_with(extra: &[(&str, &str)]) -> TestApp {
        Self::spawn_counting(extra, StatementLog::new()).await
    }

    /// As [`TestApp::spawn_with`], with every warehouse statement recorded in `log` (the run
    /// workers' too): what a test asserts about the statements a run or a tick issues.
    pub async fn spawn_counting(extra: &[(&str, &str)], log: StatementLog) -> TestApp {
        Self::spawn_adjusted(extra, log, |_| {}).await
    }

    /// As [`TestApp::spawn_counting`], with the warehouse (under the counting one) passed through
    /// `wrap` first: a test's own warehouse in between, e.g. one that fails on cue
    /// ([`fakes::faulty_warehouse`]).
    pub async fn spawn_wrapped(
        extra: &[(&str, &str)],
        log: StatementLog,
        wrap: impl FnOnce(Arc<dyn Warehouse>) -> Arc<dyn Warehouse>,
    ) -> TestApp {
        Self::spawn_built(extra, log, |_| {}, wrap).await
    }

    /// The app as deployed in `environment` would behave, on the embedded backends: settings are
    /// read as for development, then the environment is set, so the environment's runtime rules
    /// (not its start-up checks, which refuse embedded backends) are what a test exercises.
    pub async fn spawn_in(environment: common::settings::Environment, extra: &[(&str, &str)]) -> TestApp {
        Self::spawn_adjusted(extra, StatementLog::new(), |s| s.environment = environment).await
    }

    async fn spawn_adjusted(extra: &[(&str, &str)], log: StatementLog, adjust: impl FnOnce(&mut Settings)) -> TestApp {
        Self::spawn_built(extra, log, adjust, |w| w).await
    }

    async fn spawn_built(
        extra: &[(&str, &str)],
        log: StatementLog,
        adjust: impl FnOnce(&mut Settings),
        wrap: impl FnOnce(Arc<dyn Warehouse>) -> Arc<dyn Warehouse>,
    ) -> TestApp {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut vars: HashMap<String, String> = HashMap::from([
            ("CA_ROOT_API_KEY".into(), ROOT_KEY.into()),
            ("DATA_DIR".into(), data_dir.path().display().to_string()),
            ("PORT".into(), "0".into()),
            ("RATE_LIMIT_PER_SECOND".into(), "1000".into()),
            ("RATE_LIMIT_BURST".into(), "1000".into()),
            ("RATE_LIMIT_ADDRESS_PER_SECOND".into(), "1000".into()),
            ("RATE_LIMIT_ADDRESS_BURST".into(), "1000".into()),
            ("CORS_ORIGINS".into(), "https://app.example.com".into()),
            ("CONFIGS_DIR".into(), concat!(env!("CARGO_MANIFEST_DIR"), "/../configs").into()),
            // No background ticks: a test ticks by hand (POST /api/v1/scheduler/tick) when it means to.
            ("SCHEDULER_INTERVAL".into(), "0".into()),
        ]);
        for (k, v) in extra {
            vars.insert((*k).into(), (*v).into());
        }
        let mut settings = Settings::from_vars(&vars, BackendDefaults::Embedded).expect("settings");
        adjust(&mut settings);
        // As convergence-local starts: bind first, then aim the provider bases left unset at the
        // sandbox on the bound port.
        let listener = common::http::server::bind(0).await.expect("bind");
        let port = listener.local_addr().unwrap().port();
        settings.point_providers_at_sandbox(port);
        let state = AppState::build_with_warehouse(settings, |w| -> Arc<dyn Warehouse> {
            Arc::new(CountingWarehouse::with_log(wrap(w), log))
        })
        .await
        .expect("state");
        let app = local::router(state.clone());
        tokio::spawn(async move {
            let _ = common::http::serve(listener, app).await;
        });
        TestApp { base: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new(), state, data_dir }
    }

    pub async fn request(&self, method: Method, path: &str, key: Key<'_>, body: Option<Value>) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        req = match key {
            Key::None => req,
            Key::Root => req.header("X-CA-Root-Key", ROOT_KEY),
            Key::RootValue(v) => req.header("X-CA-Root-Key", v),
            Key::Api(k) => req.header("X-API-Key", k),
        };
        if let Some(body) = body {
            req = req.json(&body);
        }
        Self::reply(req.send().await.expect("request")).await
    }

    pub async fn reply(resp: reqwest::Response) -> Reply {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, headers, body }
    }

    pub async fn get(&self, path: &str, key: Key<'_>) -> Reply {
        self.request(Method::GET, path, key, None).await
    }

    pub async fn post(&self, path: &str, key: Key<'_>, body: Value) -> Reply {
        self.request(Method::POST, path, key, Some(body)).await
    }

    pub async fn put(&self, path: &str, key: Key<'_>, body: Value) -> Reply {
        self.request(Method::PUT, path, key, Some(body)).await
    }

    pub async fn bootstrap(&self) -> Reply {
        let r = self.post("/api/v1/admin/bootstrap", Key::Root, json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "bootstrap: {}", r.body);
        r
    }

    /// Onboards `slug` and returns its API key.
    pub async fn onboard(&self, slug: &str) -> String {
        let r = self.post("/api/v1/organizations/onboard", Key::Root, onboard_body(slug)).await;
        assert_eq!(r.status, StatusCode::CREATED, "onboard {slug}: {}", r.body);
        r.body["api_key"].as_str().expect("api_key").to_string()
    }

    /// Onboards `slug`, makes its subscription ACTIVE on `plan` (what runs need) and returns
    /// its API key.
    pub async fn onboard_active(&self, slug: &str, plan: &str) -> String {
        let key = self.onboard(slug).await;
        let path = format!("/api/v1/organizations/{slug}/subscription");
        let r = self.put(&path, Key::Root, json!({"status": "active", "plan_name": plan})).await;
        assert_eq!(r.status, StatusCode::OK, "activate {slug}: {}", r.body);
        key
    }

    pub fn warehouse(&self) -> Arc<dyn Warehouse> {
        self.state.warehouse.clone()
    }

    /// Rows in a central table (optionally only those of one organization).
    pub async fn count(&self, table: &str, org_slug: Option<&str>) -> i64 {
        let t = self.state.central_table(table).unwrap();
        let (sql, params) = match org_slug {
            Some(slug) => {
                (format!("SELECT COUNT(*) AS n FROM {t} WHERE org_slug = @org"), Params::new().bind("org", slug))
            }
            None => (format!("SELECT COUNT(*) AS n FROM {t}"), Params::new()),
        };
        let rows = self.state.warehouse.query(&sql, &params).await.unwrap();
        rows[0]["n"].as_i64().unwrap()
    }

    /// Row counts of every central table, by name.
    pub async fn all_counts(&self) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for t in self.state.configs.central_table_names() {
            out.push((t.to_string(), self.count(t, None).await));
        }
        out
    }
}

/// Serves `routes` with the shared plumbing over `state` on a port of its own, for routes a test
/// mounts itself (a probe for an extractor, say). Returns the base URL; the server runs until the
/// test's runtime ends.
pub async fn serve_routes(state: AppState, routes: axum::Router<AppState>) -> String {
    let listener = common::http::server::bind(0).await.expect("bind");
    let port = listener.local_addr().unwrap().port();
    let app = common::http::with_plumbing(routes, state);
    tokio::spawn(async move {
        let _ = common::http::serve(listener, app).await;
    });
    format!("http://127.0.0.1:{port}")
}

/// A valid onboarding request for `slug`.
pub fn onboard_body(slug: &str) -> Value {
    json!({
        "org_slug": slug,
        "company_name": format!("{slug} Inc."),
        "admin_email": format!("admin@{}.example.com", slug.replace('_', "-")),
        "subscription_plan": "STARTER",
    })
}

/// The BigQuery emulator's base URL, from `CONVERGENCE_BIGQUERY_EMULATOR` (set by `make test`,
/// which starts the emulator around the test run).
pub fn bigquery_emulator() -> String {
    std::env::var("CONVERGENCE_BIGQUERY_EMULATOR").unwrap_or_else(|_| {
        panic!(
            "CONVERGENCE_BIGQUERY_EMULATOR is not set: run the tests with `make test`, or start the emulator with \
             `scripts/bqemulator.sh start <dir>` and export its URL as CONVERGENCE_BIGQUERY_EMULATOR"
        )
    })
}

/// A fresh project id (6–30 lowercase characters), so each test owns its datasets.
pub fn unique_project() -> String {
    format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..20])
}

/// A PENDING OpenAI usage/cost run of `org` over `[start, end]` submitted at `at` (its events
/// not yet written): what tests seed to stand for a run of another process.
pub fn openai_run(
    org: &str,
    (start, end): (&str, &str),
    trigger: common::pipeline::runlog::Trigger,
    attempt: u32,
    at: chrono::DateTime<chrono::Utc>,
) -> common::pipeline::runlog::RunRow {
    let pipeline_id = format!("{org}-openai-usage-cost");
    let new = common::pipeline::runlog::NewRun {
        org_slug: org,
        pipeline_id: &pipeline_id,
        provider: "openai",
        domain: "usage_cost",
        pipeline: None,
        file: "openai/usage_cost.yml",
        trigger,
        window: common::pipeline::runlog::Window {
            start: start.parse().expect("start date"),
            end: end.parse().expect("end date"),
        },
        attempt,
    };
    new.pending(at, chrono::Duration::hours(1))
}

/// `run` as claimed at `at` by `claim_id` under a lease of `lease`: the event another process
/// writes when it takes the run.
pub fn claimed(
    run: &common::pipeline::runlog::RunRow,
    at: chrono::DateTime<chrono::Utc>,
    lease: chrono::Duration,
    claim_id: &str,
) -> common::pipeline::runlog::RunRow {
    let mut claimed = run.clone();
    claimed.status = common::pipeline::runlog::RunStatus::Running;
    claimed.event = common::pipeline::runlog::RunEvent::Claimed;
    claimed.event_at = at;
    claimed.started_at = Some(at);
    claimed.claim_id = Some(claim_id.into());
    claimed.lease_expires_at = Some(at + lease);
    claimed
}

/// The directory cargo put the workspace's binaries in: a test runs from `<dir>/deps/`.
pub fn binaries_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>").to_path_buf()
}

/// A loopback port nothing listens on (for a process started by the test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Copies a directory tree (a test's own copy of `configs/` to edit).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The error that stops start-up with the configs in `configs_dir` (panics if it starts).
pub async fn start_up_error(configs_dir: &std::path::Path) -> String {
    let data = tempfile::tempdir().unwrap();
    let vars = [
        ("CA_ROOT_API_KEY", ROOT_KEY),
        ("DATA_DIR", data.path().to_str().unwrap()),
        ("CONFIGS_DIR", configs_dir.to_str().unwrap()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let settings = Settings::from_vars(&vars, BackendDefaults::Embedded).unwrap();
    match AppState::build(settings).await {
        Ok(_) => panic!("start-up with the configs in {} must fail", configs_dir.display()),
        Err(e) => format!("{e:#}"),
    }
}
