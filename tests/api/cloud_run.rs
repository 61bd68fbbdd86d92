//! A Cloud Run binary started as Cloud Run starts it, for `cloud_binaries.rs` (the six binaries of
//! the build) and `images.rs` (a binary inside its image's root file system): exactly the
//! environment terraform/ gives its service (`terraform_text.rs`), plus only what a test must add:
//! the endpoint overrides (`BIGQUERY_API_BASE` the emulator, `KMS_API_BASE` the fake Cloud KMS,
//! `PUBSUB_API_BASE` a local stand-in), `PORT`, and `ENVIRONMENT=development`, because staging and
//! production refuse endpoint overrides. That Terraform's own environment (`ENVIRONMENT=production`)
//! passes production's start-up checks is `terraform.rs`'s test.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use convergence_tests::fakes::kms::FakeKms;
use convergence_tests::{bigquery_emulator, unique_project};
use serde_json::{json, Value};
use tokio::process::Child;

use crate::terraform_text::{deployed_env, Samples, Tf};

/// What the test adds to Terraform's environment; Terraform must set none of these itself.
const OVERRIDES: &[&str] = &["BIGQUERY_API_BASE", "KMS_API_BASE", "PUBSUB_API_BASE", "PORT"];

/// How long a binary may take to answer /health (they take ~10 ms; the machine may be busy).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// What a deployment would put in for Terraform's inputs, in a project of the test's own.
pub fn sample_deployment() -> Samples {
    Samples {
        project_id: unique_project(),
        domain: "api.example.com".into(),
        cors_origins: "https://app.example.com".into(),
        root_key: "root-key-from-secret-manager-0123456789-abcdef".into(),
    }
}

/// The local stand-ins for the Google APIs a deployed service calls.
pub struct Endpoints {
    pub bigquery: String,
    pub kms: FakeKms,
    pub pubsub: String,
}

impl Endpoints {
    pub async fn start(samples: &Samples) -> Endpoints {
        Endpoints {
            bigquery: bigquery_emulator(),
            kms: FakeKms::start(&[&samples.kms_key_name()]).await,
            pubsub: start_pubsub_stand_in().await,
        }
    }

    /// The environment `service` is deployed with, aimed at these endpoints and listening on `port`.
    pub fn service_env(&self, files: &[Tf], service: &str, samples: &Samples, port: u16) -> BTreeMap<String, String> {
        let mut env = deployed_env(files, service, samples);
        for name in OVERRIDES {
            assert!(!env.contains_key(*name), "terraform/ sets {name} for {service}; the test would override it");
        }
        assert_eq!(env.get("ENVIRONMENT").map(String::as_str), Some("production"), "{service} deploys as production");
        // Only development takes emulator endpoints; every other setting stays as deployed.
        env.insert("ENVIRONMENT".into(), "development".into());
        env.insert("BIGQUERY_API_BASE".into(), self.bigquery.clone());
        env.insert("KMS_API_BASE".into(), self.kms.base_url().into());
        env.insert("PUBSUB_API_BASE".into(), self.pubsub.clone());
        env.insert("PORT".into(), port.to_string());
        env
    }
}

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

/// Stops the binary and returns what it wrote to stderr (its logs and any start-up error).
pub async fn stop(mut child: Child) -> String {
    let _ = child.start_kill();
    match child.wait_with_output().await {
        Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
        Err(e) => format!("(stderr unavailable: {e})"),
    }
}

/// Polls `/health` on `port` until 200, then checks that it names `service` deployed in
/// development (which the endpoint overrides need) on the GCP backends; the problem otherwise (the
/// binary exited, never answered, or answered something else).
pub async fn wait_healthy(client: &reqwest::Client, service: &str, port: u16, child: &mut Child) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{port}/health");
    let deadline = Instant::now() + START_TIMEOUT;
    let health: Value = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("exited ({status}) before answering GET /health"));
        }
        match client.get(&url).send().await {
            Ok(response) if response.status().is_success() => {
                break response.json().await.map_err(|e| format!("GET /health: the body is not JSON: {e}"))?
            }
            Ok(response) => return Err(format!("GET /health answered {}", response.status())),
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(25)).await,
            Err(e) => return Err(format!("no answer on GET /health within {START_TIMEOUT:?}: {e}")),
        }
    };
    let expected = json!({
        "status": "ok",
        "service": format!("convergence-{service}"),
        "environment": "development",
        "warehouse": "bigquery",
        "kms": "gcp",
    });
    if expected.as_object().unwrap().iter().all(|(k, v)| &health[k] == v) {
        Ok(())
    } else {
        Err(format!("GET /health answered {health}, expected at least {expected}"))
    }
}
