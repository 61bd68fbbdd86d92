//! A local stand-in for a Slack incoming webhook: records every JSON body posted to `/hook/...`
//! and answers with the status the test sets (200 `ok` as Slack does, or a failure).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde_json::Value;

#[derive(Default)]
struct Received {
    bodies: Mutex<Vec<Value>>,
    status: StatusCode,
}

pub struct FakeSlack {
    pub base_url: String,
    state: Arc<Received>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeSlack {
    /// Starts the receiver on `127.0.0.1:0`, answering `status` to every post.
    pub async fn start(status: StatusCode) -> FakeSlack {
        let state = Arc::new(Received { status, ..Received::default() });
        let app = Router::new().route("/hook/{*rest}", post(receive)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeSlack { base_url, state, server }
    }

    /// A webhook URL on this receiver (with a secret-looking path, as Slack's have).
    pub fn webhook(&self, secret: &str) -> String {
        format!("{}/hook/services/T000/B000/{secret}", self.base_url)
    }

    /// Every body posted so far.
    pub fn received(&self) -> Vec<Value> {
        self.state.bodies.lock().unwrap().clone()
    }

    /// Waits (up to 30 s) until `n` bodies arrived; returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..300 {
            let bodies = self.received();
            if bodies.len() >= n {
                return bodies;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{n} post(s) expected, {} received", self.received().len());
    }
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(State(state): State<Arc<Received>>, body: Bytes) -> (StatusCode, &'static str) {
    let json = serde_json::from_slice(&body).unwrap_or(Value::String(String::from_utf8_lossy(&body).into()));
    state.bodies.lock().unwrap().push(json);
    let status = state.status;
    (status, if status.is_success() { "ok" } else { "internal_error" })
}
