//! HTTP clients of the providers an organization integrates (OpenAI, Anthropic, Google Cloud):
//! credential validation, and the usage and cost reads of the pipelines (paged, retried: [`retry`]).
//!
//! Every call has a timeout (`PROVIDER_TIMEOUT_SECS`), goes to a base URL from settings (the real
//! provider by default, a sandbox or a test double otherwise), and ends in a [`Validation`]
//! outcome. The credential never enters an outcome, an error or a log line: provider messages are
//! passed through [`redact`] before they are kept, since some providers echo the key they refused.

pub mod anthropic;
pub mod gcp;
pub mod gcp_sandbox;
pub mod openai;
pub mod retry;

use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde_json::Value;

use crate::settings::Settings;

/// What a provider said about a credential.
#[derive(Debug, Clone, PartialEq)]
pub enum Validation {
    /// The credential works for what the pipelines need; `details` is non-secret metadata
    /// (organization id, service-account e-mail, table facts) worth keeping.
    Valid { details: Value },
    /// The provider refused it: a bad key, a key without admin rights, no access to the table.
    /// `provider_status` is the provider's HTTP status (0 when refused before any call);
    /// `reason` is the provider's message (redacted) plus what to do.
    Rejected { provider_status: u16, reason: String },
    /// The provider is rate limiting us: says nothing about the credential. Retry later.
    Throttled { retry_after_secs: Option<u64>, message: String },
    /// The provider could not be asked: unreachable, a 5xx, or no answer within the timeout.
    /// `status` is what our API answers: 502 (bad gateway) or 504 (timeout).
    Unreachable { status: u16, message: String },
}

impl Validation {
    /// The stored status this outcome leads to: `VALID`, `INVALID` or `ERROR`.
    pub fn credential_status(&self) -> &'static str {
        match self {
            Validation::Valid { .. } => "VALID",
            Validation::Rejected { .. } => "INVALID",
            Validation::Throttled { .. } | Validation::Unreachable { .. } => "ERROR",
        }
    }

    /// The message worth keeping as `last_error` (None when valid).
    pub fn error_message(&self) -> Option<&str> {
        match self {
            Validation::Valid { .. } => None,
            Validation::Rejected { reason, .. } => Some(reason),
            Validation::Throttled { message, .. } | Validation::Unreachable { message, .. } => Some(message),
        }
    }
}

/// The most a single-answer call (a key check, a token, a table's metadata) reads: its answers
/// are a few KB, and a larger one is not read into memory whole.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The HTTP client every provider call goes through, with the configured timeout.
#[derive(Clone)]
pub struct ProviderHttp {
    pub client: reqwest::Client,
    pub timeout: Duration,
    /// The largest page of a paged report read (`PROVIDER_MAX_PAGE_MB`).
    pub max_page_bytes: usize,
}

impl ProviderHttp {
    pub fn from_settings(settings: &Settings) -> Result<ProviderHttp, String> {
        let mut http = Self::with_timeout(Duration::from_secs(settings.provider_timeout_secs.max(1)))?;
        http.max_page_bytes = settings.provider_max_page_mb.max(1) << 20;
        Ok(http)
    }

    pub fn with_timeout(timeout: Duration) -> Result<ProviderHttp, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A provider never redirects these calls; following one could carry the key elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("convergence/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the provider HTTP client: {e}"))?;
        Ok(ProviderHttp { client, timeout, max_page_bytes: retry::MAX_RESPONSE_BYTES })
    }

    /// Sends a request; a failure to get any answer becomes `Unreachable` (504 on timeout).
    pub(crate) async fn send(
        &self,
        provider: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, reqwest::header::HeaderMap, Value), Validation> {
        let response = request.send().await.map_err(|e| self.unreachable(provider, &e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut text = Vec::new();
        match crate::domain::read_capped_body(response, &mut text, MAX_ANSWER_BYTES).await {
            Ok(()) => {}
            Err(crate::domain::BodyError::Read(e)) => return Err(self.unreachable(provider, &e)),
            Err(crate::domain::BodyError::TooLarge) => {
                return Err(Validation::Unreachable {
                    status: 502,
                    message: format!(
                        "{provider} answered with more than {} KB, not the short answer of this call; try again later",
                        MAX_ANSWER_BYTES >> 10
                    ),
                })
            }
        }
        let body = serde_json::from_slice(&text).unwrap_or(Value::Null);
        Ok((status, headers, body))
    }

    fn unreachable(&self, provider: &str, e: &reqwest::Error) -> Validation {
        if e.is_timeout() {
            Validation::Unreachable {
                status: 504,
                message: format!("{provider} did not answer within {} s; try again later", self.timeout.as_secs()),
            }
        } else {
            // The cause (connection refused, DNS, TLS) helps an operator; it holds no secret since
            // credentials travel in headers or bodies, never in URLs.
            Validation::Unreachable {
                status: 502,
                message: format!("{provider} could not be reached ({}); try again later", root_cause(e)),
            }
        }
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    if text.is_empty() {
        "no answer".into()
    } else {
        text
    }
}

/// The common answers: 429 → Throttled (with Retry-After), 5xx → Unreachable (502). `None` for
/// the statuses each provider interprets itself.
pub(crate) fn common_outcome(provider: &str, status: u16, headers: &reqwest::header::HeaderMap) -> Option<Validation> {
    if status == 429 {
        let retry_after_secs = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| s.clamp(1, 3600));
        return Some(Validation::Throttled {
            retry_after_secs,
            message: format!("{provider} is rate limiting requests (429); try again later"),
        });
    }
    if status >= 500 {
        return Some(Validation::Unreachable {
            status: 502,
            message: format!("{provider} answered {status} (a server error); try again later"),
        });
    }
    None
}

static KEY_LIKE: LazyLock<Regex> = LazyLock::new(|| {
    // Anything shaped like a provider key (sk-…, sk-ant-…, sk-admin-…), masked or not.
    Regex::new(r"sk-[A-Za-z0-9_\-\*\.]{4,}").unwrap()
});

/// Longest provider message kept.
const MAX_REASON: usize = 400;

/// A provider's message made safe to keep and show: the secret and anything key-shaped removed,
/// control characters dropped, length bounded.
pub fn redact(message: &str, secret: &str) -> String {
    let mut text = message.to_string();
    if secret.len() >= 4 {
        text = text.replace(secret, "[redacted]");
    }
    let text = KEY_LIKE.replace_all(&text, "[redacted]");
    let mut text: String = text.chars().filter(|c| !c.is_control()).collect();
    if text.chars().count() > MAX_REASON {
        text = text.chars().take(MAX_REASON).collect::<String>() + "…";
    }
    text.trim().to_string()
}

/// `error.message` (OpenAI, Anthropic, Google APIs) or `error_description` (OAuth).
pub(crate) fn provider_message(body: &Value) -> Option<String> {
    body.pointer("/error/message")
        .or_else(|| body.get("error_description"))
        .or_else(|| body.get("message"))
        .or_else(|| body.get("error").filter(|e| e.is_string()))
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_the_secret_and_key_shapes() {
        let secret = "sk-admin-abcdefghijklmnop1234";
        let out = redact(&format!("Incorrect API key provided: {secret}. See docs."), secret);
        assert!(!out.contains("abcdefghij"), "{out}");
        assert!(out.contains("Incorrect API key provided"));
        let out = redact("Incorrect API key provided: sk-proj-********1234.", "other-secret");
        assert!(!out.contains("sk-proj"), "{out}");
        assert!(redact(&"x".repeat(1000), "s").chars().count() <= MAX_REASON + 1);
        assert_eq!(redact("a\nb\u{7}c", "zzzz"), "abc");
    }

    #[test]
    fn statuses_map_to_outcomes() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(
            common_outcome("OpenAI", 429, &headers),
            Some(Validation::Throttled {
                retry_after_secs: Some(7),
                message: "OpenAI is rate limiting requests (429); try again later".into()
            })
        );
        assert!(matches!(common_outcome("OpenAI", 503, &headers), Some(Validation::Unreachable { status: 502, .. })));
        assert_eq!(common_outcome("OpenAI", 401, &headers), None);
        assert_eq!(Validation::Valid { details: Value::Null }.credential_status(), "VALID");
    }
}
