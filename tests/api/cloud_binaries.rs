//! Every Cloud Run binary, started the way Cloud Run starts it: with exactly the environment
//! terraform/ gives its service (evaluated by `terraform_text.rs`, references to resources and
//! inputs replaced by test values), plus only what a test must add: the endpoint overrides
//! (`BIGQUERY_API_BASE` the emulator, `KMS_API_BASE` the fake Cloud KMS, `PUBSUB_API_BASE` a
//! local stand-in) and `PORT`. Each must answer `GET /health` with 200 and keep running: the
//! settings parser accepting the environment is not enough, the binary must start with it.
//!
//! `make test` builds the six binaries (`cargo build -p convergence-<service>`) before the tests;
//! they are found beside this test's own executable.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use convergence_tests::fakes::kms::FakeKms;
use convergence_tests::{bigquery_emulator, binaries_dir, free_port, unique_project};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::terraform_text::{deployed_env, repo, services, terraform_files, Samples};

/// What the test adds to Terraform's environment; Terraform must set none of these itself.
const OVERRIDES: &[&str] = &["BIGQUERY_API_BASE", "KMS_API_BASE", "PUBSUB_API_BASE", "PORT"];

/// How long a binary may take to answer /health (they take ~10 ms; the machine may be busy).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a healthy binary must then keep running: the warehouse is pinged in the background
/// after the listener is up, and a binary that cannot use it stops.
const SETTLE: Duration = Duration::from_secs(1);

/// Stands in for Pub/Sub's REST API (`projects.topics.get` and `.publish`) so `PUBSUB_API_BASE`
/// points at something local; the binaries publish nothing while starting.
async fn start_pubsub_stand_in() -> String {
    async fn topic(Path(name): Path<String>) -> Json<Value> {
        Json(json!({ "name": name }))
    }
    async fn publish(Json(body): Json<Value>) -> Json<Value> {
        let count = body["messages"].as_array().map_or(0, Vec::len);
        Json(json!({ "messageIds": (1..=count).map(|i| i.to_string()).collect::<Vec<_>>() }))
    }
    let app = Router::new().route("/v1/{*name}", get(topic).post(publish));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the Pub/Sub stand-in");
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

struct Started {
    service: String,
    port: u16,
    child: Child,
}

/// Stops the binary and returns what it wrote to stderr (its logs and any start-up error).
async fn stop(mut child: Child) -> String {
    let _ = child.start_kill();
    match child.wait_with_output().await {
        Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
        Err(e) => format!("(stderr unavailable: {e})"),
    }
}

/// Polls `/health` until 200; the problem otherwise (the binary exited, or never answered).
async fn wait_healthy(client: &reqwest::Client, started: &mut Started) -> Result<Value, String> {
    let url = format!("http://127.0.0.1:{}/health", started.port);
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = started.child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("exited ({status}) before answering GET /health"));
        }
        match client.get(&url).send().await {
            Ok(response) if response.status().is_success() => {
                return response.json().await.map_err(|e| format!("GET /health: the body is not JSON: {e}"))
            }
            Ok(response) => return Err(format!("GET /health answered {}", response.status())),
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(25)).await,
            Err(e) => return Err(format!("no answer on GET /health within {START_TIMEOUT:?}: {e}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_cloud_run_binary_starts_with_the_environment_terraform_gives_it() {
    let files = terraform_files();
    let samples = Samples {
        project_id: unique_project(),
        domain: "api.example.com".into(),
        cors_origins: "https://app.example.com".into(),
        root_key: "root-key-from-secret-manager-0123456789-abcdef".into(),
    };
    let kms = FakeKms::start(&[&samples.kms_key_name()]).await;
    let pubsub = start_pubsub_stand_in().await;
    let bigquery = bigquery_emulator();
    let bin_dir = binaries_dir();

    let mut running = Vec::new();
    for service in services(&files).into_keys() {
        let env: BTreeMap<String, String> = deployed_env(&files, &service, &samples);
        for name in OVERRIDES {
            assert!(!env.contains_key(*name), "terraform/ sets {name} for {service}; the test would override it");
        }
        let binary = bin_dir.join(format!("convergence-{service}"));
        assert!(
            binary.is_file(),
            "{} is missing: build the Cloud Run binaries first (`cargo build -p convergence-{service}`; `make test` does)",
            binary.display()
        );
        let port = free_port();
        let child = Command::new(&binary)
            .env_clear()
            .envs(&env)
            .env("BIGQUERY_API_BASE", &bigquery)
            .env("KMS_API_BASE", kms.base_url())
            .env("PUBSUB_API_BASE", &pubsub)
            .env("PORT", port.to_string())
            // The image's working directory holds configs/, as the repository root does.
            .current_dir(repo())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        running.push(Started { service, port, child });
    }
    assert_eq!(running.len(), 6, "six Cloud Run services in terraform/");

    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let mut outcomes = Vec::new();
    for started in &mut running {
        let outcome = wait_healthy(&client, started).await.and_then(|health| {
            let expected = json!({
                "status": "ok",
                "service": format!("convergence-{}", started.service),
                "environment": "production",
                "warehouse": "bigquery",
                "kms": "gcp",
            });
            let matches = expected.as_object().unwrap().iter().all(|(k, v)| &health[k] == v);
            if matches {
                Ok(())
            } else {
                Err(format!("GET /health answered {health}, expected at least {expected}"))
            }
        });
        outcomes.push(outcome);
    }
    tokio::time::sleep(SETTLE).await;

    let mut failures = Vec::new();
    for (mut started, outcome) in running.into_iter().zip(outcomes) {
        let outcome = outcome.and_then(|()| match started.child.try_wait() {
            Ok(Some(status)) => Err(format!("answered /health, then exited ({status})")),
            Ok(None) => Ok(()),
            Err(e) => Err(e.to_string()),
        });
        let stderr = stop(started.child).await;
        if let Err(problem) = outcome {
            failures.push(format!("convergence-{}: {problem}\n--- stderr ---\n{stderr}", started.service));
        }
    }
    assert!(
        failures.is_empty(),
        "Cloud Run binaries that do not start with the environment terraform/ gives them:\n\n{}",
        failures.join("\n\n")
    );
}
