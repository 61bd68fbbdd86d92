//! A tap between the app and a provider API: every request is forwarded as it came (method,
//! path, query, headers, body) to the target set with [`ProviderTap::aim`] (the app's own
//! sandbox, whose port is known only once the app is up), and its `METHOD /path` recorded (never
//! headers or bodies: they hold secrets). What a test asserts to prove a step made no provider
//! call. Before it is aimed it answers 503.

use std::sync::{Arc, Mutex, OnceLock};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

#[derive(Default)]
struct TapState {
    target: OnceLock<String>,
    log: Mutex<Vec<String>>,
    client: reqwest::Client,
}

pub struct ProviderTap {
    base_url: String,
    state: Arc<TapState>,
    server: tokio::task::JoinHandle<()>,
}

impl ProviderTap {
    pub async fn start() -> ProviderTap {
        let state = Arc::new(TapState::default());
        let app = Router::new().fallback(forward).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the provider tap");
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ProviderTap { base_url: format!("http://127.0.0.1:{port}"), state, server }
    }

    /// The tap's base URL: `{url}/x` is forwarded to `{target}/x`.
    pub fn url(&self) -> &str {
        &self.base_url
    }

    /// Where requests go from now on (once).
    pub fn aim(&self, target: &str) {
        self.state.target.set(target.trim_end_matches('/').to_string()).expect("the tap is aimed once");
    }

    /// `METHOD /path` of every request so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.state.log.lock().unwrap().clone()
    }
}

impl Drop for ProviderTap {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn forward(State(state): State<Arc<TapState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    state.log.lock().unwrap().push(format!("{} {}", parts.method, parts.uri.path()));
    let Some(target) = state.target.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "the tap is not aimed yet").into_response();
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let body = to_bytes(body, 16 * 1024 * 1024).await.unwrap_or_default();
    let mut outbound = state.client.request(parts.method.clone(), format!("{target}{path}")).body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            outbound = outbound.header(name, value);
        }
    }
    let answer = match outbound.send().await {
        Ok(answer) => answer,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        let skip = ["content-length", "transfer-encoding", "connection"].contains(&name.as_str());
        if !skip {
            response = response.header(HeaderName::from_bytes(name.as_ref()).unwrap(), value.as_bytes());
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    response.body(Body::from(bytes)).unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}
