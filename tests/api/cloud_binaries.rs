//! Every Cloud Run binary, started the way Cloud Run starts it (`cloud_run.rs`: exactly the
//! environment terraform/ gives its service, plus the endpoint overrides and `PORT`). Each must
//! answer `GET /health` with 200 and keep running: the settings parser accepting the environment
//! is not enough, the binary must start with it.
//!
//! `make test` builds the six binaries (`cargo build -p convergence-<service>`) before the tests;
//! they are found beside this test's own executable.

use std::process::Stdio;
use std::time::Duration;

use convergence_tests::{binaries_dir, free_port};
use tokio::process::{Child, Command};

use crate::cloud_run::{sample_deployment, stop, wait_healthy, Endpoints};
use crate::terraform_text::{repo, services, terraform_files};

/// How long a healthy binary must then keep running: the warehouse is pinged in the background
/// after the listener is up, and a binary that cannot use it stops.
const SETTLE: Duration = Duration::from_secs(1);

struct Started {
    service: String,
    port: u16,
    child: Child,
}

/// Starts `binary` with exactly `env`, in the repository root (the image's working directory
/// holds configs/, as the root does), its stderr kept for the test.
fn start(binary: &std::path::Path, env: &std::collections::BTreeMap<String, String>) -> Child {
    Command::new(binary)
        .env_clear()
        .envs(env)
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_cloud_run_binary_starts_with_the_environment_terraform_gives_it() {
    let files = terraform_files();
    let samples = sample_deployment();
    let endpoints = Endpoints::start(&samples).await;
    let bin_dir = binaries_dir();

    let mut running = Vec::new();
    for service in services(&files).into_keys() {
        let port = free_port();
        let env = endpoints.service_env(&files, &service, &samples, port);
        let binary = bin_dir.join(format!("convergence-{service}"));
        assert!(
            binary.is_file(),
            "{} is missing: build the Cloud Run binaries first (`cargo build -p convergence-{service}`; `make test` does)",
            binary.display()
        );
        let child = start(&binary, &env);
        running.push(Started { service, port, child });
    }
    assert_eq!(running.len(), 6, "six Cloud Run services in terraform/");

    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let mut outcomes = Vec::new();
    for started in &mut running {
        outcomes.push(wait_healthy(&client, &started.service, started.port, &mut started.child).await);
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

/// A Cloud Run binary never runs as development by default: without `ENVIRONMENT` it refuses to
/// start, non-zero, and says to set it (DESIGN §6).
#[tokio::test(flavor = "multi_thread")]
async fn a_cloud_run_binary_without_environment_refuses_to_start_and_says_to_set_it() {
    let files = terraform_files();
    let bin_dir = binaries_dir();
    for service in services(&files).into_keys() {
        let binary = bin_dir.join(format!("convergence-{service}"));
        assert!(binary.is_file(), "{} is missing: `make test` builds the Cloud Run binaries", binary.display());
        let data_dir = tempfile::tempdir().unwrap();
        // Everything a development start would need except ENVIRONMENT itself.
        let child = Command::new(&binary)
            .env_clear()
            .env("PORT", free_port().to_string())
            .env("WAREHOUSE_BACKEND", "bigquery")
            .env("GCP_PROJECT_ID", "acme-dev-1")
            .env("KMS_BACKEND", "local")
            .env("QUEUE_BACKEND", "local")
            .env("DATA_DIR", data_dir.path())
            .current_dir(repo())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("convergence-{service} kept running without ENVIRONMENT"))
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "convergence-{service} exited 0 without ENVIRONMENT: {stderr}");
        assert!(
            stderr.contains("ENVIRONMENT is required") && stderr.contains("ENVIRONMENT=production"),
            "convergence-{service} should say to set ENVIRONMENT: {stderr}"
        );
    }
}

/// Staging and production talk to Google's own endpoints only: Terraform's environment with an
/// emulator endpoint added refuses to start, and says which variable (issue 15: production used to
/// accept emulator endpoints).
#[tokio::test(flavor = "multi_thread")]
async fn a_production_binary_refuses_google_endpoint_overrides() {
    let files = terraform_files();
    let samples = sample_deployment();
    let service = "onboard";
    let mut env = crate::terraform_text::deployed_env(&files, service, &samples);
    assert_eq!(env.get("ENVIRONMENT").map(String::as_str), Some("production"));
    env.insert("PORT".into(), free_port().to_string());
    env.insert("BIGQUERY_API_BASE".into(), "http://127.0.0.1:9050".into());
    env.insert("KMS_API_BASE".into(), "http://127.0.0.1:1".into());
    env.insert("ANTHROPIC_API_BASE".into(), "http://127.0.0.1:2".into());
    let child = start(&binaries_dir().join(format!("convergence-{service}")), &env);
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("a production binary with emulator endpoints kept running")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "exited 0 with emulator endpoints in production: {stderr}");
    for needle in [
        "BIGQUERY_API_BASE (an override of a Google endpoint, for emulators) is not allowed in production",
        "KMS_API_BASE (an override of a Google endpoint, for emulators) is not allowed in production",
        "ANTHROPIC_API_BASE must be an https URL in production",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in {stderr}");
    }
    assert!(!stderr.contains(&samples.root_key), "the root key must not be echoed: {stderr}");
}
