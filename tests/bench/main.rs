//! `convergence-bench`: measures what docs/BENCHMARKS.md reports, against release binaries.
//!
//! 1. exec → first 200 on `/health` (N runs per binary) and RSS once healthy.
//! 2. Authenticated `GET /api/v1/organizations/{org}` from a load generator on loopback:
//!    p50/p99 latency at concurrency 1, throughput at higher concurrency.
//! 3. The scheduler tick over 10,000 organizations × 3 integrations, and the warehouse statements
//!    one pipeline run issues, in this process on DuckDB (`daily.rs`, issue 11).
//!
//! Usage: convergence-bench <target-dir> [runs] [requests]

// A report printed to stdout is this program's output.
#![allow(clippy::print_stdout)]

mod daily;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ROOT_KEY: &str = "bench-root-key-0123456789-abcdefghijklmnopq";

struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(bin: &Path, extra: &[(&str, &str)]) -> (Server, Instant) {
    let dir = tempfile::tempdir().unwrap();
    let port = convergence_tests::free_port();
    let mut cmd = Command::new(bin);
    cmd.env("PORT", port.to_string())
        .env("DATA_DIR", dir.path())
        .env("CA_ROOT_API_KEY", ROOT_KEY)
        .env("CONFIGS_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/../configs"))
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    (Server { child, port, _dir: dir }, started)
}

/// Polls `/health` over a raw socket until it answers 200.
fn wait_healthy(port: u16, started: Instant) -> Duration {
    use std::io::{Read, Write};
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n");
            let mut buf = [0u8; 12];
            if s.read_exact(&mut buf).is_ok() && &buf == b"HTTP/1.1 200" {
                return started.elapsed();
            }
        }
        assert!(started.elapsed() < Duration::from_secs(20), "not healthy after 20 s");
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) the process has used, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Clock ticks are 100 per second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// The process's peak resident set (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn startup(name: &str, backends: &str, bin: &Path, extra: &[(&str, &str)], runs: usize) {
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..runs {
        let (server, started) = spawn(bin, extra);
        times.push(wait_healthy(server.port, started).as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(200));
        rss.push(rss_kib(server.child.id()) as f64 / 1024.0);
    }
    times.sort_by(f64::total_cmp);
    rss.sort_by(f64::total_cmp);
    println!(
        "| {name} | {backends} | {runs} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} MB |",
        percentile(&times, 0.5),
        percentile(&times, 0.9),
        times[times.len() - 1],
        percentile(&rss, 0.5)
    );
}

async fn load(bin: &Path, requests: usize) {
    let (server, started) = spawn(bin, &[("RATE_LIMIT_ENABLED", "false")]);
    wait_healthy(server.port, started);
    let base = format!("http://127.0.0.1:{}", server.port);
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        client.post(format!("{base}{path}")).header("X-CA-Root-Key", ROOT_KEY).json(&body).send()
    };
    assert!(post("/api/v1/admin/bootstrap", json!({})).await.unwrap().status().is_success());
    let onboarded: Value = post(
        "/api/v1/organizations/onboard",
        json!({"org_slug": "bench_org", "company_name": "Bench", "admin_email": "a@bench.example"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let key = onboarded["api_key"].as_str().expect("api key").to_string();
    let url = format!("{base}/api/v1/organizations/bench_org");
    let rss_before = rss_kib(server.child.id());

    for concurrency in [1usize, 4, 16] {
        let per_worker = requests / concurrency;
        // Warm-up: connections, caches.
        for _ in 0..200 {
            let r = client.get(&url).header("X-API-Key", &key).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
        }
        let wall = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..concurrency {
            let (client, url, key) = (reqwest::Client::new(), url.clone(), key.clone());
            workers.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_worker);
                for _ in 0..per_worker {
                    let t = Instant::now();
                    let r = client.get(&url).header("X-API-Key", &key).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    r.bytes().await.unwrap();
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.unwrap());
        }
        let secs = wall.elapsed().as_secs_f64();
        all.sort_by(f64::total_cmp);
        println!(
            "| {concurrency} | {} | {:.3} ms | {:.3} ms | {:.3} ms | {:.0} req/s |",
            all.len(),
            percentile(&all, 0.5),
            percentile(&all, 0.99),
            all[all.len() - 1],
            all.len() as f64 / secs
        );
    }
    println!();
    println!(
        "RSS of convergence-local: {:.1} MB after bootstrap + onboarding, {:.1} MB after the load.",
        rss_before as f64 / 1024.0,
        rss_kib(server.child.id()) as f64 / 1024.0
    );
}

/// Prices `rows` synthetic OpenAI usage rows (snapshot model names, cached and batch tokens, a
/// week of days) with the default book: matching, version lookup and decimal arithmetic.
fn cost_alone(rows: usize) {
    use common::cost::{PriceBook, Tier, Tokens, Usage};
    let csv = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/openai/seed/data/default_pricing.csv"
    ))
    .expect("default OpenAI prices");
    let entries =
        common::pricebook::records::parse_seed_csv(common::pricebook::BookKind::Pricing, &csv).expect("valid CSV");
    let book_rows: Vec<common::warehouse::Row> = entries
        .into_iter()
        .map(|mut e| {
            e.insert("version_id".into(), json!("v1"));
            e.insert("version".into(), json!(1));
            e.insert("effective_from".into(), json!("1970-01-01"));
            e
        })
        .collect();
    let mut book = PriceBook::from_rows(&book_rows).expect("book");
    let models =
        ["gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "gpt-4.1", "o3-mini", "gpt-5-mini", "text-embedding-3-small"];
    let start = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    let started = Instant::now();
    let mut total = rust_decimal::Decimal::ZERO;
    let mut priced = 0usize;
    for i in 0..rows {
        let model = models[i % models.len()];
        let day = start + chrono::Duration::days((i % 7) as i64);
        let input = 1_000 + (i as u64 * 7919) % 500_000;
        let cached = input / 4;
        let output = 200 + (i as u64 * 104_729) % 80_000;
        let tokens = Tokens::openai(input, cached, output).expect("cached ≤ input");
        let tier = Tier::openai(Some(i % 5 == 0), None);
        if let (_, Ok(cost)) = book.price(model, day, &Usage::openai(tokens, tier)) {
            total += cost.total;
            priced += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("| rows | priced | time | rows/s | total |");
    println!("|---|---|---|---|---|");
    println!("| {rows} | {priced} | {:.3} s | {:.0} | {total} USD |", secs, rows as f64 / secs);
}

/// A 7-day `usage_cost` run on convergence-local with the sandbox producing `ROWS_PER_DAY`
/// finest-grain rows per endpoint and day (over 100,000 usage rows once the Usage API has grouped
/// them): wall time from the POST to SUCCESS, rows written, peak RSS.
///
/// The provider sandbox runs in a second convergence-local process, as the real providers are
/// remote: the server's peak RSS is the pipeline's (fetching, converting, pricing, DuckDB), not
/// the synthetic-data generator's, which is reported beside it. Both share the 2 cores.
///
/// Each run starts both processes afresh. On two shared cores identical runs differ by ±15 % in
/// wall time, so `runs` of them are made and summarized: the median throughput (the code, not
/// the machine's worst moment) and the highest peak RSS (memory must hold in every run).
async fn pipeline_end_to_end(bin: &Path, runs: usize) {
    println!(
        "| run | window | usage rows | rows written (all steps) | wall | usage rows/s | server peak RSS (VmHWM) | server RSS before | steps | server CPU | sandbox process CPU, peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut rates = Vec::new();
    let mut peaks = Vec::new();
    for run in 1..=runs.max(1) {
        let (rate, peak_mb) = pipeline_run(bin, run).await;
        rates.push(rate);
        peaks.push(peak_mb);
    }
    rates.sort_by(f64::total_cmp);
    peaks.sort_by(f64::total_cmp);
    println!(
        "\n{} runs: usage rows/s median {:.0} (lowest {:.0}, highest {:.0}; target ≥ 50,000); server peak RSS highest {:.1} MB (lowest {:.1} MB; target < 200 MB)",
        rates.len(),
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1],
        peaks[peaks.len() - 1],
        peaks[0],
    );
}

/// Root-key calls to a server under test: each must answer 2xx; its JSON body is returned.
struct RootApi {
    client: reqwest::Client,
    base: String,
}

impl RootApi {
    fn new(port: u16) -> RootApi {
        RootApi { client: reqwest::Client::new(), base: format!("http://127.0.0.1:{port}") }
    }

    async fn call(&self, method: reqwest::Method, path: String, body: Option<Value>) -> Value {
        let mut req = self.client.request(method, format!("{}{path}", self.base)).header("X-CA-Root-Key", ROOT_KEY);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{status}: {body}");
        body
    }
}

/// One run of [`pipeline_end_to_end`], printed as a table row; returns (usage rows/s, peak MB).
async fn pipeline_run(bin: &Path, number: usize) -> (f64, f64) {
    const ROWS_PER_DAY: usize = 15_000;
    let (provider, started) = spawn(bin, &[("RATE_LIMIT_ENABLED", "false"), ("SANDBOX_PROVIDERS", "true")]);
    wait_healthy(provider.port, started);
    let openai_base = format!("http://127.0.0.1:{}/sandbox/openai/v1", provider.port);
    let (server, started) = spawn(bin, &[("RATE_LIMIT_ENABLED", "false"), ("OPENAI_API_BASE", openai_base.as_str())]);
    wait_healthy(server.port, started);
    let api = RootApi::new(server.port);
    api.call(reqwest::Method::POST, "/api/v1/admin/bootstrap".into(), Some(json!({}))).await;
    api.call(reqwest::Method::POST,
        "/api/v1/organizations/onboard".into(),
        Some(json!({"org_slug": "bench_org", "company_name": "Bench", "admin_email": "a@bench.example", "subscription_plan": "SCALE"})),).await;
    api.call(
        reqwest::Method::PUT,
        "/api/v1/organizations/bench_org/subscription".into(),
        Some(json!({"status": "active"})),
    )
    .await;
    let key = format!("sk-admin-sandbox-bench-rows{ROWS_PER_DAY}");
    api.call(
        reqwest::Method::POST,
        "/api/v1/integrations/bench_org/openai/setup".into(),
        Some(json!({"credential": key, "credential_name": "bench"})),
    )
    .await;
    let end = chrono::Utc::now().date_naive() - chrono::Duration::days(1);
    let start = end - chrono::Duration::days(6);
    let rss_before = rss_kib(server.child.id());
    let cpu_before = (cpu_secs(server.child.id()), cpu_secs(provider.child.id()));
    let wall = Instant::now();
    let accepted = api
        .call(
            reqwest::Method::POST,
            "/api/v1/pipelines/run/bench_org/openai/usage_cost".into(),
            Some(json!({"start_date": start.to_string(), "end_date": end.to_string()})),
        )
        .await;
    let run_id = accepted["run_id"].as_str().expect("run id").to_string();
    let mut peak_kib = 0;
    let run = loop {
        peak_kib = peak_kib.max(rss_kib(server.child.id()));
        let run = api.call(reqwest::Method::GET, format!("/api/v1/pipelines/runs/bench_org/{run_id}"), None).await;
        if matches!(run["status"].as_str(), Some("SUCCESS" | "FAILED")) {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let secs = wall.elapsed().as_secs_f64();
    let hwm = peak_rss_kib(server.child.id()).max(peak_kib);
    assert_eq!(run["status"], "SUCCESS", "{run}");
    let usage_rows =
        run["steps"].as_array().and_then(|s| s.first()).and_then(|s| s["rows_written"].as_i64()).unwrap_or(0);
    assert!(usage_rows >= 100_000, "the benchmark window must produce at least 100k usage rows, got {usage_rows}");
    let total_rows = run["totals"]["rows_written"].as_i64().unwrap_or(0);
    let step_times: Vec<String> = run["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .map(|s| {
                    format!(
                        "{} {:.2} s",
                        s["step_id"].as_str().unwrap_or("?"),
                        s["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let provider_hwm = peak_rss_kib(provider.child.id());
    let server_cpu = cpu_secs(server.child.id()) - cpu_before.0;
    let provider_cpu = cpu_secs(provider.child.id()) - cpu_before.1;
    let (rate, peak_mb) = (usage_rows as f64 / secs, hwm as f64 / 1024.0);
    println!(
        "| {number} | 7 days | {usage_rows} | {total_rows} | {secs:.2} s | {rate:.0} | {peak_mb:.1} MB | {:.1} MB | {} | {server_cpu:.2} s | {provider_cpu:.2} s, {:.1} MB |",
        rss_before as f64 / 1024.0,
        step_times.join(", "),
        provider_hwm as f64 / 1024.0
    );
    (rate, peak_mb)
}

/// Writes "5" to `/proc/<pid>/clear_refs`: the process's peak RSS (`VmHWM`) starts again from
/// its current RSS, so a later reading is the peak of what ran since.
fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// One usage day of `rows` sandbox billing export rows through `gcp.bq_etl`
/// (`/run/{org}/gcp/cost/billing`) on convergence-local (DuckDB): the first run also generates
/// the sandbox export's day (in SQL inside DuckDB), the reruns are the ETL alone (the day
/// replaced server-side in one transaction). Wall time from the POST to SUCCESS, the step's own
/// time, rows/s, and the server's peak RSS over each rerun and over the whole process.
async fn gcp_billing(bin: &Path, rows: usize, reruns: usize) {
    let limit = std::env::var("BENCH_GCP_DUCKDB_MEMORY_LIMIT").unwrap_or_else(|_| "96MB".into());
    let extra =
        [("RATE_LIMIT_ENABLED", "false"), ("SANDBOX_PROVIDERS", "true"), ("DUCKDB_MEMORY_LIMIT", limit.as_str())];
    println!("DUCKDB_MEMORY_LIMIT={limit} (`BENCH_GCP_DUCKDB_MEMORY_LIMIT` sets it)\n");
    let (server, started) = spawn(bin, &extra);
    wait_healthy(server.port, started);
    let api = RootApi::new(server.port);
    api.call(reqwest::Method::POST, "/api/v1/admin/bootstrap".into(), Some(json!({}))).await;
    let onboard = json!({"org_slug": "bench_gcp", "company_name": "Bench", "admin_email": "a@bench.example", "subscription_plan": "SCALE"});
    api.call(reqwest::Method::POST, "/api/v1/organizations/onboard".into(), Some(onboard)).await;
    let active = json!({"status": "active"});
    api.call(reqwest::Method::PUT, "/api/v1/organizations/bench_gcp/subscription".into(), Some(active)).await;
    let setup = json!({
        "service_account_json": {"type": "service_account", "project_id": "sandbox", "private_key": "bench",
                                 "client_email": "bench@sandbox.iam.gserviceaccount.com"},
        "billing_export_table": format!("sandbox.billing.gcp_billing_export_v1_bench-rows{rows}"),
    });
    api.call(reqwest::Method::POST, "/api/v1/integrations/bench_gcp/gcp/setup".into(), Some(setup)).await;
    let day = (chrono::Utc::now().date_naive() - chrono::Duration::days(2)).to_string();
    let pid = server.child.id();
    println!("| run | rows | wall (POST → SUCCESS) | step | rows/s (step) | rows/s (wall) | server peak RSS during the run | server CPU |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut rates = Vec::new();
    let mut peaks = Vec::new();
    for run in 0..=reruns {
        reset_peak_rss(pid);
        let cpu_before = cpu_secs(pid);
        let wall = Instant::now();
        let accepted = api
            .call(
                reqwest::Method::POST,
                "/api/v1/pipelines/run/bench_gcp/gcp/cost/billing".into(),
                Some(json!({"start_date": day, "end_date": day})),
            )
            .await;
        let run_id = accepted["run_id"].as_str().expect("run id").to_string();
        let mut peak_kib = 0;
        let body = loop {
            peak_kib = peak_kib.max(rss_kib(pid));
            let body = api.call(reqwest::Method::GET, format!("/api/v1/pipelines/runs/bench_gcp/{run_id}"), None).await;
            if matches!(body["status"].as_str(), Some("SUCCESS" | "FAILED")) {
                break body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let secs = wall.elapsed().as_secs_f64();
        assert_eq!(body["status"], "SUCCESS", "{body}");
        let written = body["rows_written"].as_u64().unwrap_or(0);
        assert_eq!(written, rows as u64, "the day's rows: {body}");
        let step_secs = body["steps"][0]["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0;
        let peak_mb = peak_rss_kib(pid).max(peak_kib) as f64 / 1024.0;
        let label = if run == 0 {
            "1 (generates the sandbox day, then the ETL)".to_string()
        } else {
            format!("{} (rerun: ETL only)", run + 1)
        };
        println!(
            "| {label} | {written} | {secs:.2} s | {step_secs:.2} s | {:.0} | {:.0} | {peak_mb:.1} MB | {:.2} s |",
            written as f64 / step_secs,
            written as f64 / secs,
            cpu_secs(pid) - cpu_before
        );
        if run > 0 {
            rates.push(written as f64 / secs);
            peaks.push(peak_mb);
        }
    }
    rates.sort_by(f64::total_cmp);
    peaks.sort_by(f64::total_cmp);
    if !rates.is_empty() {
        println!(
            "\n{} reruns: rows/s (wall) median {:.0}, lowest {:.0} (target ≥ 200,000); server peak RSS highest {:.1} MB (target < 300 MB)",
            rates.len(),
            rates[rates.len() / 2],
            rates[0],
            peaks[peaks.len() - 1],
        );
    }
}

/// The six Cloud Run services (built without DuckDB).
const FUNCTIONS: [&str; 6] = [
    "convergence-bootstrap",
    "convergence-onboard",
    "convergence-integrations",
    "convergence-pricing",
    "convergence-pipelines-run",
    "convergence-scheduler-tick",
];

/// Whether a section runs: all by default, or those named in `BENCH_ONLY` (comma-separated:
/// `binaries`, `startup`, `cost`, `pipeline`, `gcp`, `load`, `tick`, `statements`).
fn section(name: &str) -> bool {
    match std::env::var("BENCH_ONLY") {
        Ok(only) if !only.trim().is_empty() => only.split(',').any(|s| s.trim() == name),
        _ => true,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let target = PathBuf::from(args.get(1).expect("usage: convergence-bench <target-dir> [runs] [requests]"));
    let runs: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(20);
    let requests: usize = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let release = target.join("release");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    if section("binaries") {
        println!("### Release binaries\n");
        println!("| binary | size |");
        println!("|---|---|");
        for name in FUNCTIONS.iter().chain(["convergence-local"].iter()) {
            let size = std::fs::metadata(release.join(name)).map(|m| m.len()).unwrap_or(0);
            println!("| {name} | {:.1} MB |", size as f64 / 1_048_576.0);
        }
    }

    if section("startup") {
        println!("\n### exec → first 200 on /health, and RSS once healthy\n");
        println!("| binary | backends | runs | p50 | p90 | max | RSS (p50) |");
        println!("|---|---|---|---|---|---|---|");
        // The Cloud Run binaries as deployed: BigQuery (the emulator `make bench` starts) and
        // Cloud KMS (the fake from the tests), no DuckDB in the binary.
        let emulator = std::env::var("CONVERGENCE_BIGQUERY_EMULATOR")
            .expect("run through scripts/bench.sh (starts the BigQuery emulator)");
        let key = "projects/bench-project/locations/global/keyRings/bench/cryptoKeys/keys";
        let kms = rt.block_on(convergence_tests::fakes::kms::FakeKms::start(&[key]));
        let topic = "projects/bench-project/topics/runs";
        let pubsub = rt.block_on(convergence_tests::fakes::pubsub::FakePubSub::start(&[topic]));
        let cloud = [
            // The Cloud binaries refuse to start without ENVIRONMENT; the fakes need development.
            ("ENVIRONMENT", "development"),
            ("WAREHOUSE_BACKEND", "bigquery"),
            ("GCP_PROJECT_ID", "bench-project"),
            ("BIGQUERY_API_BASE", emulator.as_str()),
            ("KMS_BACKEND", "gcp"),
            ("KMS_KEY_NAME", key),
            ("KMS_API_BASE", kms.base_url()),
            ("QUEUE_BACKEND", "pubsub"),
            ("PUBSUB_TOPIC", topic),
            ("PUBSUB_API_BASE", pubsub.base_url()),
        ];
        for name in FUNCTIONS {
            startup(name, "BigQuery emulator + fake Cloud KMS", &release.join(name), &cloud, runs);
        }
        startup("convergence-local", "DuckDB + local KMS", &release.join("convergence-local"), &[], runs);
    }

    if section("cost") {
        println!("\n### Cost computation alone (1,000,000 usage rows, default OpenAI book, 7 days)\n");
        cost_alone(1_000_000);
    }

    if section("pipeline") {
        println!("\n### Pipeline end to end: sandbox → openai.usage + openai.cost → DuckDB (convergence-local)\n");
        let pipeline_runs = std::env::var("BENCH_PIPELINE_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
        println!("{pipeline_runs} runs, each with fresh processes (`BENCH_PIPELINE_RUNS` sets how many)\n");
        rt.block_on(pipeline_end_to_end(&release.join("convergence-local"), pipeline_runs));
    }

    if section("gcp") {
        let rows = std::env::var("BENCH_GCP_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
        println!("\n### gcp.bq_etl: one day of {rows} sandbox billing export rows → gcp_billing_daily_raw on DuckDB (convergence-local)\n");
        rt.block_on(gcp_billing(&release.join("convergence-local"), rows, 3));
    }

    if section("load") {
        println!("\n### Authenticated GET /api/v1/organizations/{{org}} on loopback (convergence-local)\n");
        println!("| concurrency | requests | p50 | p99 | max | throughput |");
        println!("|---|---|---|---|---|---|");
        rt.block_on(load(&release.join("convergence-local"), requests));
    }

    if section("tick") {
        let orgs = std::env::var("BENCH_TICK_ORGS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
        println!("\n### Scheduler tick: {orgs} organizations × 3 integrations on DuckDB (in this process)\n");
        rt.block_on(daily::tick_at_scale(orgs));
    }

    if section("statements") {
        println!("\n### Warehouse statements of one run: 7-day openai/usage_cost on DuckDB (in this process)\n");
        rt.block_on(daily::run_statements());
    }
}
