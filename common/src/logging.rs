//! Logs: JSON lines with `severity` and `message` for Cloud Logging in production, readable text
//! locally. Fields come before the message; secrets are never fields.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// Installs the global subscriber once; later calls (tests starting several apps) are no-ops.
/// `project` (GCP_PROJECT_ID) makes trace ids the full names Cloud Logging links to Cloud Trace.
pub fn init(format: LogFormat, project: Option<String>) {
    let filter = EnvFilter::try_from_env("LOG_LEVEL").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.event_format(CloudLoggingJson { project }).try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
}

/// The trace a request belongs to, from Google's load balancer (`X-Cloud-Trace-Context:
/// TRACE_ID/SPAN_ID;o=1`) or W3C `traceparent` (`00-TRACE_ID-SPAN_ID-FLAGS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The span as Cloud Logging wants it: 16 hex digits (decimal X-Cloud-Trace-Context span
    /// ids are converted).
    pub span_id: Option<String>,
}

impl TraceContext {
    /// Parses `X-Cloud-Trace-Context` first, then `traceparent`; anything malformed is ignored
    /// (a client cannot inject text into log fields through it).
    pub fn from_headers(cloud: Option<&str>, traceparent: Option<&str>) -> Option<TraceContext> {
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        if let Some(value) = cloud {
            let (trace, rest) = value.split_once('/').unwrap_or((value, ""));
            let span = rest.split(';').next().unwrap_or("");
            if hex(trace, 32) {
                let span_id = span.parse::<u64>().ok().filter(|s| *s != 0).map(|s| format!("{s:016x}"));
                return Some(TraceContext { trace_id: trace.to_ascii_lowercase(), span_id });
            }
        }
        let parts: Vec<&str> = traceparent?.trim().split('-').collect();
        match parts.as_slice() {
            [version, trace, span, flags] if hex(version, 2) && hex(trace, 32) && hex(span, 16) && hex(flags, 2) => {
                Some(TraceContext { trace_id: trace.to_ascii_lowercase(), span_id: Some(span.to_ascii_lowercase()) })
            }
            _ => None,
        }
    }
}

/// What a run's log lines carry, so one run's story can be filtered in the console.
#[derive(Debug, Clone)]
struct RunContext {
    org_slug: String,
    run_id: String,
}

tokio::task_local! {
    static TRACE: TraceContext;
    static RUN: RunContext;
}

/// Runs `future` with every log line it writes (in this task) carrying `trace`.
pub async fn with_trace<F: std::future::Future>(trace: Option<TraceContext>, future: F) -> F::Output {
    match trace {
        Some(t) => TRACE.scope(t, future).await,
        None => future.await,
    }
}

/// Runs `future` with every log line it writes (in this task) labelled with the run.
pub async fn in_run<F: std::future::Future>(org_slug: &str, run_id: &str, future: F) -> F::Output {
    RUN.scope(RunContext { org_slug: org_slug.to_string(), run_id: run_id.to_string() }, future).await
}

/// One JSON object per event, in the shape Cloud Logging reads: `severity`, `message`, `time`,
/// the trace and span (`logging.googleapis.com/trace`, `…/spanId`: from the request's scope, or
/// `trace_id`/`span_id` fields), `httpRequest` (an `http_request` field holding the object as
/// JSON text), labels (request id, organization and run id), then the event's fields.
pub struct CloudLoggingJson {
    pub project: Option<String>,
}

impl<S, N> FormatEvent<S, N> for CloudLoggingJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut fields = JsonFields(Map::new());
        event.record(&mut fields);
        let mut line = Map::new();
        line.insert("severity".into(), Value::from(severity(*event.metadata().level())));
        line.insert("time".into(), Value::from(chrono::Utc::now().to_rfc3339()));
        let message = fields.0.remove("message").unwrap_or(Value::from(""));
        line.insert("message".into(), message);

        let scoped = TRACE.try_with(Clone::clone).ok();
        let from_fields = fields.0.remove("trace_id").and_then(|t| t.as_str().map(str::to_string)).map(|trace_id| {
            TraceContext { trace_id, span_id: fields.0.remove("span_id").and_then(|s| s.as_str().map(str::to_string)) }
        });
        if let Some(trace) = scoped.or(from_fields) {
            let name = match &self.project {
                Some(p) => format!("projects/{p}/traces/{}", trace.trace_id),
                None => trace.trace_id.clone(),
            };
            line.insert("logging.googleapis.com/trace".into(), Value::from(name));
            if let Some(span) = trace.span_id {
                line.insert("logging.googleapis.com/spanId".into(), Value::from(span));
            }
        }
        if let Some(Value::String(text)) = fields.0.remove("http_request") {
            if let Ok(object) = serde_json::from_str::<Value>(&text) {
                line.insert("httpRequest".into(), object);
            }
        }
        let mut labels = Map::new();
        if let Some(id) = fields.0.get("request_id").cloned() {
            // Cloud Logging groups entries by these labels.
            labels.insert("request_id".into(), id);
        }
        if let Ok(run) = RUN.try_with(Clone::clone) {
            labels.insert("org_slug".into(), Value::from(run.org_slug.clone()));
            labels.insert("run_id".into(), Value::from(run.run_id.clone()));
            fields.0.entry("org").or_insert(Value::from(run.org_slug));
            fields.0.entry("run_id").or_insert(Value::from(run.run_id));
        }
        if !labels.is_empty() {
            line.insert("logging.googleapis.com/labels".into(), Value::Object(labels));
        }
        line.insert("target".into(), Value::from(event.metadata().target()));
        line.extend(fields.0);
        writeln!(writer, "{}", Value::Object(line))
    }
}

fn severity(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

struct JsonFields(Map<String, Value>);

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), Value::from(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_carry_severity_message_and_fields() {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(CloudLoggingJson { project: None })
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(request_id = "r-1", status = 503u64, "backend slow");
            tracing::error!(cause = "boom", "request failed");
        });
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["severity"], "WARNING");
        assert_eq!(lines[0]["message"], "backend slow");
        assert_eq!(lines[0]["request_id"], "r-1");
        assert_eq!(lines[0]["status"], 503);
        assert_eq!(lines[0]["logging.googleapis.com/labels"]["request_id"], "r-1");
        assert_eq!(lines[1]["severity"], "ERROR");
        assert_eq!(lines[1]["cause"], "boom");
    }

    #[test]
    fn trace_headers_are_parsed_and_garbage_ignored() {
        let trace = "105445aa7843bc8bf206b12000100000";
        let cloud = TraceContext::from_headers(Some(&format!("{trace}/1;o=1")), None).unwrap();
        assert_eq!(cloud, TraceContext { trace_id: trace.into(), span_id: Some("0000000000000001".into()) });
        let w3c = TraceContext::from_headers(None, Some(&format!("00-{trace}-00f067aa0ba902b7-01"))).unwrap();
        assert_eq!(w3c.span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(TraceContext::from_headers(Some(trace), None).unwrap().span_id, None);
        for bad in ["", "not-a-trace/1", "\"injected\"/1", &"a".repeat(33)] {
            assert_eq!(TraceContext::from_headers(Some(bad), None), None, "{bad}");
        }
        assert_eq!(TraceContext::from_headers(None, Some("00-short-00f067aa0ba902b7-01")), None);
    }

    #[test]
    fn request_and_run_lines_carry_trace_http_request_and_run_labels() {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(CloudLoggingJson { project: Some("acme-prod".into()) })
            .with_writer(move || writer.clone())
            .finish();
        let trace = TraceContext {
            trace_id: "105445aa7843bc8bf206b12000100000".into(),
            span_id: Some("0000000000000001".into()),
        };
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        tracing::subscriber::with_default(subscriber, || {
            runtime.block_on(async {
                with_trace(Some(trace.clone()), async {
                    in_run("acme", "run-1", async { tracing::info!(step = "extract_usage", "step finished") }).await;
                })
                .await;
                // The request line is written after the request's scope, with the trace as fields.
                tracing::info!(
                    request_id = "r-1",
                    trace_id = %trace.trace_id,
                    span_id = "0000000000000001",
                    http_request = %serde_json::json!({"requestMethod": "GET", "status": 200, "latency": "0.002s"}),
                    "request"
                );
            });
        });
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{text}");
        let full = "projects/acme-prod/traces/105445aa7843bc8bf206b12000100000";
        for line in &lines {
            assert_eq!(line["logging.googleapis.com/trace"], full, "{line}");
            assert_eq!(line["logging.googleapis.com/spanId"], "0000000000000001", "{line}");
        }
        assert_eq!(lines[0]["logging.googleapis.com/labels"]["run_id"], "run-1");
        assert_eq!(lines[0]["logging.googleapis.com/labels"]["org_slug"], "acme");
        assert_eq!((lines[0]["org"].as_str(), lines[0]["run_id"].as_str()), (Some("acme"), Some("run-1")));
        assert_eq!(lines[1]["httpRequest"]["requestMethod"], "GET");
        assert_eq!(lines[1]["httpRequest"]["status"], 200);
        assert!(lines[1].get("http_request").is_none() && lines[1].get("trace_id").is_none(), "{}", lines[1]);
        assert_eq!(lines[1]["logging.googleapis.com/labels"]["request_id"], "r-1");
    }
}
