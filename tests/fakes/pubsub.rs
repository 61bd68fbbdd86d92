//! A local fake of Pub/Sub's REST publish API (`topics.publish`), checking a request as Pub/Sub
//! does: `POST /v1/projects/{project}/topics/{topic}:publish` with the JSON body
//! `{"messages": [{"data", "attributes", "orderingKey"}]}`, answered `{"messageIds": [...]}`.
//!
//! Where the client can tell, it behaves like Pub/Sub: an unknown topic is 404 NOT_FOUND, a
//! malformed name, unknown field, non-base64 `data`, non-string attribute or message with neither
//! data nor attributes is 400 INVALID_ARGUMENT, all in Google's error shape
//! `{"error": {"code", "message", "status"}}`; a request is accepted or refused whole. Accepted
//! messages are recorded (topic, decoded data, attributes, the `Authorization` header) for the
//! test to take; [`FakePubSub::fail_next`] makes the next publishes fail with a given status, as an
//! outage would.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

/// Pub/Sub's limits on one message.
const MAX_DATA_BYTES: usize = 10 * 1024 * 1024;
const MAX_ATTRIBUTES: usize = 100;
const MAX_ATTRIBUTE_KEY_BYTES: usize = 256;
const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1024;
/// The fields of `PubsubMessage` in its JSON form; any other is refused, as Google does.
const MESSAGE_FIELDS: [&str; 5] = ["data", "attributes", "messageId", "publishTime", "orderingKey"];

/// One message Pub/Sub accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedMessage {
    /// The full topic name, `projects/{project}/topics/{topic}`.
    pub topic: String,
    pub message_id: String,
    /// The data, base64-decoded.
    pub data: Vec<u8>,
    pub attributes: BTreeMap<String, String>,
    /// The request's `Authorization` header (anonymous credentials send none).
    pub authorization: Option<String>,
}

impl PublishedMessage {
    /// The data parsed as JSON (panics when it is not: a test helper).
    pub fn data_json(&self) -> Value {
        serde_json::from_slice(&self.data)
            .unwrap_or_else(|e| panic!("message data is not JSON ({e}): {}", String::from_utf8_lossy(&self.data)))
    }
}

pub struct FakePubSub {
    base_url: String,
    state: Arc<FakeState>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct FakeState {
    topics: Mutex<BTreeSet<String>>,
    messages: Mutex<Vec<PublishedMessage>>,
    requests: AtomicUsize,
    next_id: AtomicU64,
    /// Publishes still to fail, and with which status.
    failing: Mutex<Option<(usize, StatusCode)>>,
}

impl FakePubSub {
    /// Starts the fake on `127.0.0.1:0` with these topics (full names).
    pub async fn start(topics: &[&str]) -> FakePubSub {
        let state = Arc::new(FakeState {
            topics: Mutex::new(topics.iter().map(|t| (*t).to_string()).collect()),
            next_id: AtomicU64::new(1_000_000_000_001),
            ..FakeState::default()
        });
        let app = Router::new().route("/v1/{*call}", post(call)).fallback(unknown_route).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Pub/Sub");
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakePubSub { base_url: format!("http://127.0.0.1:{port}"), state, server }
    }

    /// `http://127.0.0.1:{port}`, the value for `PUBSUB_API_BASE`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Deletes `topic`: publishing to it is then NOT_FOUND.
    pub fn delete_topic(&self, topic: &str) {
        assert!(self.state.topics.lock().unwrap().remove(topic), "the fake has no topic {topic}");
    }

    /// The next `count` publish requests fail with `status` (e.g. 503), before any check, as an
    /// outage would; later ones are served again.
    pub fn fail_next(&self, count: usize, status: StatusCode) {
        *self.state.failing.lock().unwrap() = (count > 0).then_some((count, status));
    }

    /// Every message accepted since the last call, in order.
    pub fn take_messages(&self) -> Vec<PublishedMessage> {
        std::mem::take(&mut *self.state.messages.lock().unwrap())
    }

    /// Every request received, refused ones included.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FakePubSub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Google's error body.
fn error(http: StatusCode, message: impl Into<String>) -> Response {
    let status = match http.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    };
    let body = json!({"error": {"code": http.as_u16(), "message": message.into(), "status": status}});
    (http, Json(body)).into_response()
}

fn invalid(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

async fn unknown_route(State(state): State<Arc<FakeState>>, req: axum::extract::Request) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    error(StatusCode::NOT_FOUND, format!("The requested URL {} was not found on this server.", req.uri().path()))
}

/// A Pub/Sub resource id: 3 to 255 characters of letters, digits and `-._~%+`, starting with a
/// letter, not with `goog`.
fn is_resource_id(id: &str) -> bool {
    (3..=255).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && !id.starts_with("goog")
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "-._~%+".contains(c))
}

async fn call(
    State(state): State<Arc<FakeState>>,
    Path(call): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    {
        let mut failing = state.failing.lock().unwrap();
        if let Some((left, status)) = *failing {
            *failing = (left > 1).then_some((left - 1, status));
            return error(status, "The service was unable to fulfill your request. Please try again. [code=8a75]");
        }
    }
    let Some((topic, "publish")) = call.rsplit_once(':') else {
        return error(StatusCode::NOT_FOUND, format!("The requested URL /v1/{call} was not found on this server."));
    };
    let topic_id = match topic.split('/').collect::<Vec<_>>().as_slice() {
        ["projects", project, "topics", id] if !project.is_empty() && is_resource_id(id) => (*id).to_string(),
        _ => {
            return invalid(format!(
                "Invalid resource name given (name={topic}). Refer to https://cloud.google.com/pubsub/docs/pubsub-basics#resource_names for more information."
            ))
        }
    };
    if !state.topics.lock().unwrap().contains(topic) {
        return error(StatusCode::NOT_FOUND, format!("Resource not found (resource={topic_id})."));
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
    if !is_json {
        return invalid("Invalid JSON payload received. The request's Content-Type is not application/json.");
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return invalid(format!("Invalid JSON payload received. {e}")),
    };
    let Some(fields) = request.as_object() else {
        return invalid("Invalid JSON payload received. The request is not an object.");
    };
    if let Some(unknown) = fields.keys().find(|k| *k != "messages") {
        return invalid(format!("Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field."));
    }
    let messages = match fields.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        Some(Value::Array(_)) | None => return invalid("The request contains no messages."),
        Some(_) => return invalid("Invalid value at 'messages': not a list."),
    };
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut accepted = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        match parse_message(i, message) {
            Ok((data, attributes)) => accepted.push(PublishedMessage {
                topic: topic.to_string(),
                message_id: String::new(),
                data,
                attributes,
                authorization: authorization.clone(),
            }),
            Err(response) => return response,
        }
    }
    // Accepted whole: every message gets its id and is recorded.
    let mut ids = Vec::with_capacity(accepted.len());
    let mut recorded = state.messages.lock().unwrap();
    for mut message in accepted {
        message.message_id = state.next_id.fetch_add(1, Ordering::SeqCst).to_string();
        ids.push(message.message_id.clone());
        recorded.push(message);
    }
    Json(json!({"messageIds": ids})).into_response()
}

/// One `PubsubMessage`: its decoded data and attributes, or Pub/Sub's refusal.
#[allow(clippy::result_large_err)]
fn parse_message(i: usize, message: &Value) -> Result<(Vec<u8>, BTreeMap<String, String>), Response> {
    let Some(fields) = message.as_object() else {
        return Err(invalid(format!("Invalid value at 'messages[{i}]': not an object.")));
    };
    if let Some(unknown) = fields.keys().find(|k| !MESSAGE_FIELDS.contains(&k.as_str())) {
        return Err(invalid(format!(
            "Invalid JSON payload received. Unknown name \"{unknown}\" at 'messages[{i}]': Cannot find field."
        )));
    }
    let data = match fields.get("data") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(b64)) => [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(b64).ok())
            .ok_or_else(|| {
                invalid(format!(
                    "Invalid value at 'messages[{i}].data' (TYPE_BYTES), Base64 decoding failed for {b64:?}"
                ))
            })?,
        Some(other) => {
            return Err(invalid(format!("Invalid value at 'messages[{i}].data' (TYPE_BYTES), {other}")));
        }
    };
    if data.len() > MAX_DATA_BYTES {
        return Err(invalid(format!("Message at 'messages[{i}]' is larger than {MAX_DATA_BYTES} bytes.")));
    }
    let mut attributes = BTreeMap::new();
    match fields.get("attributes") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (key, value) in map {
                let Value::String(value) = value else {
                    return Err(invalid(format!(
                        "Invalid value at 'messages[{i}].attributes[{key}].value' (TYPE_STRING), {value}"
                    )));
                };
                if key.is_empty() || key.len() > MAX_ATTRIBUTE_KEY_BYTES || key.starts_with("goog") {
                    return Err(invalid(format!(
                        "Invalid attribute key {key:?} at 'messages[{i}]': 1 to {MAX_ATTRIBUTE_KEY_BYTES} bytes, not starting with goog."
                    )));
                }
                if value.len() > MAX_ATTRIBUTE_VALUE_BYTES {
                    return Err(invalid(format!(
                        "The value of attribute {key:?} at 'messages[{i}]' is larger than {MAX_ATTRIBUTE_VALUE_BYTES} bytes."
                    )));
                }
                attributes.insert(key.clone(), value.clone());
            }
            if attributes.len() > MAX_ATTRIBUTES {
                return Err(invalid(format!("Message at 'messages[{i}]' has more than {MAX_ATTRIBUTES} attributes.")));
            }
        }
        Some(other) => {
            return Err(invalid(format!("Invalid value at 'messages[{i}].attributes': not a map, {other}")));
        }
    }
    if data.is_empty() && attributes.is_empty() {
        return Err(invalid(format!("Message at 'messages[{i}]' has no data and no attributes.")));
    }
    Ok((data, attributes))
}
