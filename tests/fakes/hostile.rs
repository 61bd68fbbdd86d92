//! A hostile provider: a programmable stand-in for the OpenAI and Anthropic APIs that answers each
//! path from a script (malformed JSON with a 2xx, a page cursor that loops, a body over the size
//! limit, a `Retry-After` beyond any retry budget, no answer in time, an error on a later page),
//! and forwards everything unscripted to an honest provider (the app's own sandbox, set with
//! [`HostileProvider::aim`] once the app is up) as it came. It counts calls per path, never
//! recording headers or bodies (they hold the key).
//!
//! Aim the app at it with `OPENAI_API_BASE={url}/sandbox/openai/v1` and
//! `ANTHROPIC_API_BASE={url}/sandbox/anthropic`: a path the app calls is then the sandbox's path.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;

/// The report paths the pipelines page through, as the app calls them through the fake.
pub const OPENAI_COMPLETIONS: &str = "/sandbox/openai/v1/organization/usage/completions";
pub const OPENAI_COSTS: &str = "/sandbox/openai/v1/organization/costs";
pub const ANTHROPIC_USAGE: &str = "/sandbox/anthropic/v1/organizations/usage_report/messages";
pub const ANTHROPIC_COSTS: &str = "/sandbox/anthropic/v1/organizations/cost_report";

/// One answer of a script.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Forwarded to the honest provider as it came.
    Honest,
    /// Forwarded without its `page` cursor (so the honest provider serves the first page), with
    /// the answer's `next_page` replaced by this cursor and `has_more` true: paging that loops
    /// when a script repeats a cursor.
    Cursor(&'static str),
    /// This status, headers and body text, as they are.
    Raw { status: u16, headers: Vec<(&'static str, String)>, body: String },
    /// The honest answer, after this long.
    Stall(Duration),
    /// 200 with `bytes` bytes of JSON whitespace before a valid empty page, sent with its
    /// Content-Length (`announced`) or chunked without one.
    Flood { bytes: usize, announced: bool },
}

impl Answer {
    /// A JSON body with this status.
    pub fn json(status: u16, body: &Value) -> Answer {
        Answer::Raw { status, headers: vec![("content-type", "application/json".into())], body: body.to_string() }
    }

    /// A body that is not JSON at all, with this status and a JSON content type.
    pub fn text(status: u16, body: &str) -> Answer {
        Answer::Raw { status, headers: vec![("content-type", "application/json".into())], body: body.to_string() }
    }
}

#[derive(Default)]
struct HostileState {
    target: OnceLock<String>,
    scripts: Mutex<HashMap<String, VecDeque<Answer>>>,
    calls: Mutex<HashMap<String, usize>>,
    client: reqwest::Client,
}

pub struct HostileProvider {
    base_url: String,
    state: Arc<HostileState>,
    server: tokio::task::JoinHandle<()>,
}

impl HostileProvider {
    pub async fn start() -> HostileProvider {
        let state = Arc::new(HostileState::default());
        let app = Router::new().fallback(answer).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the hostile provider");
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HostileProvider { base_url: format!("http://127.0.0.1:{port}"), state, server }
    }

    pub fn url(&self) -> &str {
        &self.base_url
    }

    /// Where honest answers come from: `{target}{path}` (once).
    pub fn aim(&self, target: &str) {
        self.state.target.set(target.trim_end_matches('/').to_string()).expect("the fake is aimed once");
    }

    /// The next calls to `path` get these answers in turn, then honest ones; replaces any
    /// script left for the path.
    pub fn script(&self, path: &str, answers: Vec<Answer>) {
        self.state.scripts.lock().unwrap().insert(path.to_string(), answers.into());
    }

    /// The same answer to every call to `path` from now on (until [`HostileProvider::reset`]).
    pub fn always(&self, path: &str, answer: Answer) {
        self.script(path, vec![answer; 10_000]);
    }

    /// Forgets every script and count: honest again.
    pub fn reset(&self) {
        self.state.scripts.lock().unwrap().clear();
        self.state.calls.lock().unwrap().clear();
    }

    /// Calls so far, by path.
    pub fn all_calls(&self) -> Vec<(String, usize)> {
        let mut calls: Vec<_> = self.state.calls.lock().unwrap().iter().map(|(p, n)| (p.clone(), *n)).collect();
        calls.sort();
        calls
    }

    /// Calls to `path` so far.
    pub fn calls(&self, path: &str) -> usize {
        self.state.calls.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

impl Drop for HostileProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn answer(State(state): State<Arc<HostileState>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    *state.calls.lock().unwrap().entry(path.clone()).or_default() += 1;
    let scripted = state.scripts.lock().unwrap().get_mut(&path).and_then(VecDeque::pop_front);
    match scripted.unwrap_or(Answer::Honest) {
        Answer::Honest => forward(&state, request, false).await.unwrap_or_else(|r| r),
        Answer::Stall(wait) => {
            tokio::time::sleep(wait).await;
            forward(&state, request, false).await.unwrap_or_else(|r| r)
        }
        Answer::Cursor(cursor) => {
            let honest = match forward(&state, request, true).await {
                Ok(r) => r,
                Err(r) => return r,
            };
            let bytes = to_bytes(honest.into_body(), 64 << 20).await.unwrap_or_default();
            let mut page: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            page["next_page"] = cursor.into();
            page["has_more"] = true.into();
            axum::Json(page).into_response()
        }
        Answer::Raw { status, headers, body } => {
            let mut response = Response::builder().status(status);
            for (name, value) in headers {
                response = response.header(name, value);
            }
            response.body(Body::from(body)).unwrap()
        }
        Answer::Flood { bytes, announced } => {
            let mut body = vec![b' '; bytes];
            body.extend_from_slice(br#"{"object":"page","data":[],"has_more":false,"next_page":null}"#);
            if announced {
                Body::from(body).into_response()
            } else {
                // As a stream its size is unknown: sent chunked, so the client cannot tell the
                // size before it reads.
                Body::from_stream(Body::from(body).into_data_stream()).into_response()
            }
        }
    }
}

/// The honest provider's answer to `request` (without its `page` query parameter when
/// `drop_cursor`), or an error response when it cannot be had.
async fn forward(state: &HostileState, request: Request, drop_cursor: bool) -> Result<Response, Response> {
    let (parts, body) = request.into_parts();
    let Some(target) = state.target.get() else {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "the hostile provider is not aimed yet").into_response());
    };
    let query: Vec<&str> = parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| !(drop_cursor && pair.starts_with("page=")))
        .collect();
    let url = format!("{target}{}?{}", parts.uri.path(), query.join("&"));
    let body = to_bytes(body, 1 << 20).await.unwrap_or_default();
    let mut outbound = state.client.request(parts.method.clone(), url).body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            outbound = outbound.header(name, value);
        }
    }
    let answer = outbound.send().await.map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()).into_response())?;
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        let skip = ["content-length", "transfer-encoding", "connection"].contains(&name.as_str());
        if !skip {
            response = response.header(HeaderName::from_bytes(name.as_ref()).unwrap(), value.as_bytes());
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    Ok(response.body(Body::from(bytes)).unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response()))
}
