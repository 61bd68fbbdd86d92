//! Provider calls the pipelines make: a GET that retries 429 and 5xx with exponential backoff
//! and jitter (honoring `Retry-After`), times out per call, caps its attempts, and on giving up
//! says which provider answered what. Paging loops are built on it in `openai` and `anthropic`.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{provider_message, redact, ProviderHttp};
use crate::domain::{read_capped_body, BodyError};

/// How a pipeline step retries provider calls (the `retry:` key of a step's config). Checked as
/// it is parsed (see the `Deserialize` impl), so a pipeline file with a bad policy is refused at
/// start-up, when its steps' settings are parsed, and a step never runs with one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts per call, the first included (1 = no retry).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait before the first retry, in milliseconds; doubled on each further retry.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Longest wait between two attempts, in milliseconds. A `Retry-After` longer than this ends
    /// the retries (waiting less than the provider asked would only be refused again).
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Per-call timeout in seconds; unset: the process default (`PROVIDER_TIMEOUT_SECS`).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

fn default_max_attempts() -> u32 {
    5
}
fn default_initial_backoff_ms() -> u64 {
    500
}
fn default_max_backoff_ms() -> u64 {
    30_000
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: default_max_attempts(),
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            timeout_secs: None,
        }
    }
}

impl<'de> Deserialize<'de> for RetryPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The derived parse (`remote = "Self"`), then every problem at once.
        let policy = RetryPolicy::deserialize(d)?;
        let problems = policy.problems();
        if problems.is_empty() {
            Ok(policy)
        } else {
            Err(serde::de::Error::custom(problems.join("; ")))
        }
    }
}

impl RetryPolicy {
    /// The jittered wait before retry number `retry` (1-based): uniform in [b/2, b] where
    /// b = min(initial × 2^(retry−1), max) ("equal jitter": never zero, never above the cap).
    pub fn backoff(&self, retry: u32, unit_random: f64) -> Duration {
        let exp = self.initial_backoff_ms.saturating_mul(1u64 << retry.saturating_sub(1).min(30));
        let capped = exp.min(self.max_backoff_ms);
        let half = capped / 2;
        let jitter = ((capped - half) as f64 * unit_random.clamp(0.0, 1.0)) as u64;
        Duration::from_millis(half + jitter)
    }

    /// What the step's config may get wrong, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.max_attempts == 0 || self.max_attempts > 20 {
            p.push("retry.max_attempts must be between 1 and 20".to_string());
        }
        if self.initial_backoff_ms > self.max_backoff_ms {
            p.push("retry.initial_backoff_ms must not exceed retry.max_backoff_ms".to_string());
        }
        if self.timeout_secs == Some(0) {
            p.push("retry.timeout_secs must be at least 1".to_string());
        }
        p
    }
}

/// A provider call that failed for good: retries exhausted, or an answer not worth retrying
/// (4xx, a body of the wrong shape). `status` is the provider's HTTP status, or 504 (no answer
/// in time) / 502 (unreachable) when there was none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{provider} answered {status}: {message}")]
pub struct ProviderError {
    pub provider: String,
    pub status: u16,
    pub message: String,
}

/// A random number in [0, 1) for jitter (v4 UUIDs come from the OS generator; no extra crate).
fn unit_random() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}

/// The longest `Retry-After` taken as sent; a larger one (or `1e300`) is clamped to it before
/// it becomes a `Duration` (which would panic on overflow). The step's own backoff cap then
/// decides whether to wait that long or give up.
const MAX_RETRY_AFTER_SECS: f64 = 24.0 * 3600.0;

/// `Retry-After` in seconds (the providers send delta-seconds; an HTTP date, a negative number or
/// garbage is ignored; a huge number is clamped, never a panic).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    text.parse::<f64>()
        .ok()
        .filter(|s| !s.is_nan() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(MAX_RETRY_AFTER_SECS)))
}

/// The largest provider response read by default (a day of usage at the finest grouping is
/// megabytes; a body beyond this is refused rather than allowed to exhaust memory). Settings
/// may lower or raise it: [`ProviderHttp::max_page_bytes`] (`PROVIDER_MAX_PAGE_MB`).
pub(super) const MAX_RESPONSE_BYTES: usize = 256 << 20;

fn retryable(status: u16) -> bool {
    status == 429 || status >= 500
}

impl ProviderHttp {
    /// GETs JSON with retries. `request` builds the request afresh for each attempt; `secret` is
    /// removed from any provider message kept in the error.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        provider: &str,
        secret: &str,
        policy: &RetryPolicy,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, ProviderError> {
        self.get_json_in(&mut Vec::new(), provider, secret, policy, request).await
    }

    /// [`get_json`](Self::get_json) reading the response into `body`, a buffer the caller
    /// reuses: a report's pages are megabytes each, and one buffer for all of them keeps the
    /// allocator from holding a freed page-sized block per page read.
    pub async fn get_json_in<T: DeserializeOwned>(
        &self,
        body: &mut Vec<u8>,
        provider: &str,
        secret: &str,
        policy: &RetryPolicy,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, ProviderError> {
        let fail = |status: u16, message: String| ProviderError { provider: provider.to_string(), status, message };
        let attempts = policy.max_attempts.max(1);
        let timeout = policy.timeout_secs.map_or(self.timeout, |secs| Duration::from_secs(secs.max(1)));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut builder = request();
            if let Some(secs) = policy.timeout_secs {
                builder = builder.timeout(Duration::from_secs(secs.max(1)));
            }
            // (status, message, Retry-After) of a failure worth retrying.
            let failure: (u16, String, Option<Duration>) = match builder.send().await {
                Err(e) => {
                    let (status, what) = if e.is_timeout() {
                        (504, format!("no answer within the timeout of {} s", timeout.as_secs()))
                    } else {
                        (502, format!("could not be reached ({})", super::root_cause(&e)))
                    };
                    (status, what, None)
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    match read_capped_body(response, body, self.max_page_bytes).await {
                        Ok(()) => {}
                        Err(BodyError::Read(e)) => {
                            let (status, what) = if e.is_timeout() {
                                (504, format!("the timeout of {} s ran out", timeout.as_secs()))
                            } else {
                                (502, super::root_cause(&e))
                            };
                            return Err(fail(status, format!("the response could not be read whole ({what})")));
                        }
                        Err(BodyError::TooLarge) => {
                            // Not retried: the same page would be as large again.
                            return Err(fail(
                                status,
                                format!(
                                    "the response is larger than {} MB (PROVIDER_MAX_PAGE_MB) and was not read",
                                    self.max_page_bytes >> 20
                                ),
                            ));
                        }
                    };
                    if (200..300).contains(&status) {
                        // serde's message may quote a value of the body, which a hostile or
                        // confused provider could fill with the key it was sent.
                        return serde_json::from_slice(body).map_err(|e| {
                            let said = redact(&e.to_string(), secret);
                            fail(status, format!("the response is not JSON of the documented shape: {said}"))
                        });
                    }
                    let body = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
                    let said = provider_message(&body).map(|m| redact(&m, secret)).unwrap_or_default();
                    let message = if said.is_empty() { format!("HTTP {status}") } else { said };
                    if !retryable(status) {
                        return Err(fail(status, message));
                    }
                    (status, message, retry_after(&headers))
                }
            };
            let (status, message, asked) = failure;
            if attempt >= attempts {
                return Err(fail(status, format!("{message} (gave up after {attempt} attempt(s))")));
            }
            let max = Duration::from_millis(policy.max_backoff_ms);
            let wait = match asked {
                Some(asked) if asked > max => {
                    return Err(fail(
                        status,
                        format!(
                            "{message} (asked to retry after {} s, beyond the retry budget of {} s between \
                             attempts (retry.max_backoff_ms); not waiting)",
                            asked.as_secs_f64().ceil() as u64,
                            policy.max_backoff_ms.div_ceil(1000)
                        ),
                    ))
                }
                Some(asked) => asked,
                None => policy.backoff(attempt, unit_random()),
            };
            tracing::warn!(
                provider,
                status,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "provider call failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// A page of an admin report, in the envelope OpenAI and Anthropic share: `data`, `has_more`,
/// `next_page` (a cursor sent back as `page`).
#[derive(Debug, serde::Deserialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    #[serde(default)]
    pub has_more: bool,
    #[serde(default)]
    pub next_page: Option<String>,
}

/// Pages one report may have before the provider is taken to be paging without end (with fresh
/// cursors each time; a cursor seen before is caught at once). A report is at most a window's
/// days of buckets, a few per page.
const MAX_PAGES: u32 = 10_000;

/// Longest cursor quoted in a message.
const MAX_CURSOR_QUOTED: usize = 40;

/// Builds a report's request (URL, query, auth); `Pages` adds the `page` cursor after the first.
pub type PageRequest<'a> = Box<dyn Fn() -> reqwest::RequestBuilder + Send + Sync + 'a>;

/// A paged listing read one page at a time, following `next_page`: whoever reads it handles a
/// page before the next is fetched, so a window is never held whole, as JSON or as rows.
pub struct Pages<'a, T> {
    http: &'a ProviderHttp,
    provider: &'a str,
    secret: &'a str,
    policy: &'a RetryPolicy,
    path: &'a str,
    request: PageRequest<'a>,
    cursor: Option<String>,
    /// Every cursor followed so far: one sent again means the provider's paging loops (the
    /// same `next_page` again, or a cycle through several).
    seen: std::collections::HashSet<String>,
    pages: u32,
    done: bool,
    /// The response buffer every page is read into.
    body: Vec<u8>,
    _items: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Pages<'_, T> {
    /// The next page's items; `None` after the last page.
    pub async fn next(&mut self) -> Result<Option<Vec<T>>, ProviderError> {
        if self.done {
            return Ok(None);
        }
        let request = || {
            let r = (self.request)();
            match &self.cursor {
                Some(c) => r.query(&[("page", c)]),
                None => r,
            }
        };
        let page: Page<T> =
            self.http.get_json_in(&mut self.body, self.provider, self.secret, self.policy, request).await?;
        self.pages += 1;
        let fail = |message: String| {
            // Nothing more is read: a caller that asks again gets no page, never a loop.
            ProviderError { provider: self.provider.to_string(), status: 200, message }
        };
        match page.next_page.filter(|n| !n.is_empty()) {
            Some(next) if self.seen.contains(&next) => {
                self.done = true;
                return Err(fail(format!(
                    "{} sent a page cursor it had sent before ({}) after {} page(s): its paging loops",
                    self.path,
                    quoted_cursor(&next, self.secret),
                    self.pages
                )));
            }
            Some(_) if self.pages >= MAX_PAGES => {
                self.done = true;
                return Err(fail(format!("{} kept returning more pages ({} so far)", self.path, self.pages)));
            }
            Some(next) => {
                self.seen.insert(next.clone());
                self.cursor = Some(next);
            }
            None => self.done = true,
        }
        Ok(Some(page.data))
    }

    /// Pages read so far.
    pub fn count(&self) -> u32 {
        self.pages
    }
}

/// A cursor as a message quotes it: redacted, printable, short.
fn quoted_cursor(cursor: &str, secret: &str) -> String {
    let text = redact(cursor, secret);
    if text.chars().count() > MAX_CURSOR_QUOTED {
        format!("{:?}…", text.chars().take(MAX_CURSOR_QUOTED).collect::<String>())
    } else {
        format!("{text:?}")
    }
}

impl ProviderHttp {
    /// The pages of a listing; `request()` builds the call, to which each page after the first
    /// adds the previous one's cursor as `page`.
    pub fn pages<'a, T>(
        &'a self,
        provider: &'a str,
        secret: &'a str,
        policy: &'a RetryPolicy,
        path: &'a str,
        request: PageRequest<'a>,
    ) -> Pages<'a, T> {
        Pages {
            http: self,
            provider,
            secret,
            policy,
            path,
            request,
            cursor: None,
            seen: std::collections::HashSet::new(),
            pages: 0,
            done: false,
            body: Vec::new(),
            _items: std::marker::PhantomData,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let p = RetryPolicy { max_attempts: 5, initial_backoff_ms: 100, max_backoff_ms: 1_000, timeout_secs: None };
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(50));
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(3, 1.0), Duration::from_millis(400));
        assert_eq!(p.backoff(10, 1.0), Duration::from_millis(1_000), "capped");
        assert_eq!(p.backoff(10, 0.0), Duration::from_millis(500));
        for _ in 0..100 {
            let r = unit_random();
            assert!((0.0..1.0).contains(&r));
        }
    }

    #[test]
    fn retry_after_and_statuses() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(reqwest::header::RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&h), None);
        // Huge, infinite, negative and garbage values: clamped or ignored, never a panic.
        for (sent, expected) in [
            ("1e300", Some(Duration::from_secs(86_400))),
            ("inf", Some(Duration::from_secs(86_400))),
            ("99999999999999999999", Some(Duration::from_secs(86_400))),
            ("-5", None),
            ("NaN", None),
            ("soon", None),
            ("0.5", Some(Duration::from_millis(500))),
        ] {
            h.insert(reqwest::header::RETRY_AFTER, sent.parse().unwrap());
            assert_eq!(retry_after(&h), expected, "Retry-After: {sent}");
        }
        assert!(retryable(429) && retryable(500) && retryable(529));
        assert!(!retryable(400) && !retryable(401) && !retryable(404));
    }

    #[test]
    fn quoted_cursors_are_short_and_never_the_secret() {
        assert_eq!(quoted_cursor("page_abc", "sk-admin-secret"), "\"page_abc\"");
        let q = quoted_cursor(&format!("{}sk-admin-secret", "x".repeat(50)), "sk-admin-secret");
        assert!(q.ends_with('…') && !q.contains("secret"), "{q}");
        assert!(!quoted_cursor("sk-admin-secret", "sk-admin-secret").contains("secret"));
    }

    #[test]
    fn policy_config_is_checked() {
        let p: RetryPolicy = serde_yaml::from_str("max_attempts: 3").unwrap();
        assert_eq!((p.max_attempts, p.initial_backoff_ms), (3, 500));
        assert!(serde_yaml::from_str::<RetryPolicy>("attempts: 3").is_err());
        assert!(!RetryPolicy { max_attempts: 0, ..RetryPolicy::default() }.problems().is_empty());
        let err = serde_yaml::from_str::<RetryPolicy>("{max_attempts: 0, initial_backoff_ms: 10, max_backoff_ms: 1}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("retry.max_attempts must be between 1 and 20"), "{err}");
        assert!(err.contains("retry.initial_backoff_ms must not exceed retry.max_backoff_ms"), "{err}");
    }
}
