//! Per-request middleware: request id (echoed and logged), one log line per request (with the
//! cause of any 5xx), rate limiting per key and client address, and the JSON shape for every
//! error response, including ones produced outside a handler (unknown route, wrong method,
//! timeouts).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::{code_for, ApiError, InternalCause};
use crate::auth::{API_KEY_HEADER, ROOT_KEY_HEADER};

tokio::task_local! {
    static REQUEST_ID: String;
}

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The id of the request being served, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// A caller's id is kept when it is short and plain; anything else is replaced.
fn acceptable_request_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    (!text.is_empty()
        && text.len() <= 128
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')))
    .then(|| text.to_string())
}

/// Outermost layer: assigns the request id, runs the request inside its scope, normalizes error
/// bodies to the JSON shape, echoes the id and logs one line.
pub async fn request_context(req: Request<Body>, next: Next) -> Response {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(acceptable_request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = req.method().clone();
    // The path only: a query string could carry something that must not be logged.
    let path = req.uri().path().to_string();
    // Read before the request moves on (the body is not Sync: nothing borrowed may cross an await).
    let (trace, user_agent) = {
        let header_text = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        let trace = crate::logging::TraceContext::from_headers(
            header_text("x-cloud-trace-context"),
            header_text("traceparent"),
        );
        (trace, header_text("user-agent").map(|ua| ua.chars().take(256).collect::<String>()))
    };
    let mut response = REQUEST_ID
        .scope(
            request_id.clone(),
            crate::logging::with_trace(trace.clone(), async move {
                let response = next.run(req).await;
                normalize_error_body(response)
            }),
        )
        .await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    // Cloud Logging's request fields, so the console shows the line as a request.
    let http_request = serde_json::json!({
        "requestMethod": method.as_str(),
        "requestUrl": path,
        "status": status,
        "latency": format!("{:.6}s", latency_ms / 1000.0),
        "userAgent": user_agent,
        "protocol": "HTTP/1.1",
    });
    let (trace_id, span_id) = match &trace {
        Some(t) => (Some(t.trace_id.as_str()), t.span_id.as_deref()),
        None => (None, None),
    };
    macro_rules! request_line {
        ($level:ident, $($extra:tt)*) => {
            tracing::$level!(
                request_id = %request_id, %method, %path, status, latency_ms, trace_id, span_id,
                http_request = %http_request, $($extra)*
            )
        };
    }
    if let Some(InternalCause(cause)) = response.extensions().get::<InternalCause>() {
        request_line!(error, cause = %cause, "request failed");
    } else if status >= 500 {
        request_line!(error, "request failed");
    } else if path == "/health" {
        request_line!(debug, "request");
    } else {
        request_line!(info, "request");
    }
    response
}

/// Gives an error response that is not already JSON (axum's own 404/405, a timeout layer, …)
/// the JSON error shape. Runs inside the request-id scope.
fn normalize_error_body(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let message = match status {
        StatusCode::NOT_FOUND => "no such route; see the README for the API".to_string(),
        // axum adds the Allow header outside this layer, so it is not known here yet.
        StatusCode::METHOD_NOT_ALLOWED => {
            "method not allowed on this route; the Allow header lists the methods it accepts".to_string()
        }
        StatusCode::REQUEST_TIMEOUT => "the request took too long and was stopped".to_string(),
        StatusCode::PAYLOAD_TOO_LARGE => "request body is larger than this endpoint accepts".to_string(),
        s if s.is_server_error() => "internal error".to_string(),
        s => s.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let (mut parts, _) = response.into_parts();
    let mut fresh = ApiError::new(status, code_for(status), message).into_response();
    // Keep headers such as Allow and Retry-After, but not the old body's length or type.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    for (name, value) in parts.headers.iter() {
        fresh.headers_mut().insert(name.clone(), value.clone());
    }
    fresh
}

/// Request budget per API key, root key or client address.
pub struct Limiter {
    limiter: DefaultKeyedRateLimiter<String>,
    seen: AtomicU64,
}

impl Limiter {
    pub fn new(per_second: u32, burst: u32) -> Limiter {
        let quota = Quota::per_second(NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN));
        Limiter { limiter: RateLimiter::keyed(quota), seen: AtomicU64::new(0) }
    }

    /// `Err(seconds)` when `key` is over budget.
    pub fn check(&self, key: String) -> Result<(), u64> {
        // Forget idle keys now and then so the map does not grow with every address ever seen.
        if self.seen.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

/// Rate limits by key (hashed: raw keys are not kept as map keys) or by client address.
pub async fn rate_limit(State(limiter): State<Arc<Limiter>>, req: Request<Body>, next: Next) -> Response {
    let headers = req.headers();
    let key = if let Some(k) = headers.get(API_KEY_HEADER).or_else(|| headers.get(ROOT_KEY_HEADER)) {
        format!("key:{}", &crate::domain::sha256_hex(k.as_bytes())[..32])
    } else {
        // Behind Google's load balancer the client is the first X-Forwarded-For entry.
        let forwarded = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_string());
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
        format!("ip:{}", forwarded.or(peer).unwrap_or_default())
    };
    match limiter.check(key) {
        Ok(()) => next.run(req).await,
        Err(retry_after) => {
            ApiError::too_many_requests(format!("too many requests; retry after {retry_after} second(s)"), retry_after)
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_only_when_plain() {
        assert_eq!(acceptable_request_id(&HeaderValue::from_static("abc-123")), Some("abc-123".into()));
        assert_eq!(acceptable_request_id(&HeaderValue::from_static("a b")), None);
        assert_eq!(acceptable_request_id(&HeaderValue::from_str(&"x".repeat(129)).unwrap()), None);
    }

    #[test]
    fn limiter_refuses_past_the_burst_and_says_when() {
        let l = Limiter::new(1, 2);
        assert!(l.check("k".into()).is_ok());
        assert!(l.check("k".into()).is_ok());
        assert_eq!(l.check("k".into()), Err(1));
        assert!(l.check("other".into()).is_ok(), "keys are independent");
    }
}
