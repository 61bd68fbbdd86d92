//! A restart never leaves a window blocked: the real `convergence-local` binary is killed with
//! SIGKILL in the middle of a run and started again on the same data directory. The run it was
//! executing reads FAILED ("interrupted"), the run that was waiting is queued again, and the same
//! window can be submitted at once (no 409 for an hour).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{Duration as Days, Utc};
use convergence_tests::{binaries_dir, free_port, ROOT_KEY};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn binary() -> PathBuf {
    binaries_dir().join("convergence-local")
}

struct Local {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(data_dir: &Path) -> Local {
    let port = free_port();
    let child = Command::new(binary())
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("PORT", port.to_string())
        .env("DATA_DIR", data_dir)
        .env("CA_ROOT_API_KEY", ROOT_KEY)
        .env("SCHEDULER_INTERVAL", "0")
        // One run of an organization at a time, so a second run waits PENDING behind the first.
        .env("RUN_WORKERS_PER_ORG", "1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e} (make test builds it)", binary().display()));
    let local = Local { child, base: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new() };
    let started = Instant::now();
    loop {
        if let Ok(r) = local.client.get(format!("{}/health", local.base)).send().await {
            if r.status() == StatusCode::OK {
                return local;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(30), "convergence-local did not answer /health");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Local {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base)).header("X-CA-Root-Key", ROOT_KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn run(&self, run_id: &str) -> Value {
        self.call(reqwest::Method::GET, &format!("/api/v1/pipelines/runs/acme/{run_id}"), None).await.1
    }

    /// Waits until the run's status is `status`; returns the run.
    async fn wait_for(&self, run_id: &str, status: &str) -> Value {
        let started = Instant::now();
        loop {
            let run = self.run(run_id).await;
            if run["status"] == status {
                return run;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "run never became {status}: {run}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn day(offset: i64) -> String {
    (Utc::now().date_naive() - Days::days(offset)).to_string()
}

const RUN: &str = "/api/v1/pipelines/run/acme/openai/usage_cost";

#[tokio::test]
async fn a_run_killed_with_its_process_does_not_block_its_window_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(dir.path()).await;
    assert_eq!(first.post("/api/v1/admin/bootstrap", json!({})).await.0, StatusCode::OK);
    let onboard = json!({"org_slug": "acme", "company_name": "Acme", "admin_email": "admin@acme.example.com", "subscription_plan": "SCALE"});
    assert_eq!(first.post("/api/v1/organizations/onboard", onboard).await.0, StatusCode::CREATED);
    let active = json!({"status": "active"});
    assert_eq!(
        first.call(reqwest::Method::PUT, "/api/v1/organizations/acme/subscription", Some(active)).await.0,
        StatusCode::OK
    );
    // The sandbox's largest days, so the 7-day run is still going when the process is killed.
    let setup = json!({"credential": "sk-admin-sandbox-acme-rows200000"});
    let (status, body) = first.post("/api/v1/integrations/acme/openai/setup", setup).await;
    assert!(status.is_success(), "{body}");

    let week = json!({"start_date": day(7), "end_date": day(1)});
    let (status, body) = first.post(RUN, week.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let running = body["run_id"].as_str().unwrap().to_string();
    let (status, body) = first.post(RUN, json!({"date": day(10)})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let waiting = body["run_id"].as_str().unwrap().to_string();
    first.wait_for(&running, "RUNNING").await;
    assert_eq!(first.run(&waiting).await["status"], "PENDING");
    // While it runs, the same window is refused (409 naming the run).
    let (status, body) = first.post(RUN, week.clone()).await;
    assert_eq!((status, body["run_id"].as_str()), (StatusCode::CONFLICT, Some(running.as_str())), "{body}");

    // kill -9: no shutdown, no chance to record anything.
    let mut first = first;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    drop(first);

    let second = start(dir.path()).await;
    let interrupted = second.wait_for(&running, "FAILED").await;
    assert!(interrupted["error_message"].as_str().unwrap().contains("interrupted"), "{interrupted}");
    // The waiting run was queued again and runs now.
    let started = Instant::now();
    loop {
        let status = second.run(&waiting).await["status"].as_str().unwrap_or("").to_string();
        if status == "RUNNING" || status == "SUCCESS" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the waiting run was not queued again: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The same window is accepted again at once, as its next attempt.
    let (status, body) = second.post(RUN, week).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_ne!(body["run_id"].as_str(), Some(running.as_str()));
    assert_eq!(second.run(body["run_id"].as_str().unwrap()).await["attempt"], 2);
}
