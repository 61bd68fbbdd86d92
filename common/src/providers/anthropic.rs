//! Anthropic. The usage and cost reports (`/v1/organizations/*`) need an Admin key
//! (`sk-ant-admin…`); workspace API keys (`sk-ant-api…`) are refused there.
//!
//! Validation: `GET {base}/v1/organizations/me` with `x-api-key` and `anthropic-version`. On a
//! 401/403 a workspace key (by prefix, or because `GET {base}/v1/models?limit=1` accepts it) is
//! refused with a message asking for an Admin key; anything else is an invalid key.
//!
//! Usage and cost reports (`shared/reference/provider-apis.md` §3):
//! `GET {base}/v1/organizations/usage_report/messages` and `GET {base}/v1/organizations/cost_report`,
//! daily buckets over `[starting_at, ending_at)` (RFC 3339, UTC midnights), `group_by[]` in
//! bracket syntax, paged by `next_page`. Cost report `amount` is a decimal string in **cents**.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::retry::{Pages, RetryPolicy};
use super::{common_outcome, provider_message, redact, ProviderHttp, Validation};

pub const NAME: &str = "Anthropic";
pub const API_VERSION: &str = "2023-06-01";
/// The beta a usage report grouped by `speed` (fast mode) needs; without it the API refuses the
/// group-by.
pub const FAST_MODE_BETA: &str = "fast-mode-2026-02-01";

const ADMIN_KEY_ADVICE: &str = "the usage and cost reports need an Anthropic Admin key (sk-ant-admin…), \
created by an organization admin in the Console under Settings → Admin keys";

const WORKSPACE_KEY_PREFIX: &str = "sk-ant-api";

pub struct Anthropic<'a> {
    pub http: &'a ProviderHttp,
    /// e.g. `https://api.anthropic.com`, without a trailing slash.
    pub base: &'a str,
}

impl Anthropic<'_> {
    fn get(&self, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.http
            .client
            .get(format!("{}{path}", self.base))
            .header("x-api-key", key)
            .header("anthropic-version", API_VERSION)
    }

    pub async fn validate_admin_key(&self, key: &str) -> Validation {
        let (status, headers, body) = match self.http.send(NAME, self.get("/v1/organizations/me", key)).await {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        if (200..300).contains(&status) {
            return Validation::Valid {
                details: json!({
                    "key_type": "admin",
                    "organization_id": body.get("id"),
                    "organization_name": body.get("name"),
                }),
            };
        }
        if let Some(outcome) = common_outcome(NAME, status, &headers) {
            return outcome;
        }
        let said = provider_message(&body).map(|m| redact(&m, key)).unwrap_or_else(|| format!("HTTP {status}"));
        if status == 401 || status == 403 {
            let error_type = body.pointer("/error/type").and_then(Value::as_str);
            let workspace_key = key.starts_with(WORKSPACE_KEY_PREFIX)
                || (error_type != Some("authentication_error") && self.works_on_models(key).await);
            if workspace_key {
                return Validation::Rejected {
                    provider_status: status,
                    reason: format!(
                        "this is an Anthropic workspace API key, not an Admin key: {ADMIN_KEY_ADVICE} (Anthropic said: {said})"
                    ),
                };
            }
            return Validation::Rejected {
                provider_status: status,
                reason: format!(
                    "Anthropic refused the key: {said}; check that it is a current Admin key (sk-ant-admin…)"
                ),
            };
        }
        Validation::Rejected {
            provider_status: status,
            reason: format!("Anthropic refused the request ({status}): {said}"),
        }
    }

    async fn works_on_models(&self, key: &str) -> bool {
        let request = self.get("/v1/models", key).query(&[("limit", "1")]);
        matches!(self.http.send(NAME, request).await, Ok((200..=299, _, _)))
    }
}

/// One page of a report: `{data: [bucket], has_more, next_page}`.
pub type Page<R> = super::retry::Page<Bucket<R>>;

/// One day of results.
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "R: Deserialize<'de>"))]
pub struct Bucket<R> {
    /// RFC 3339, e.g. `2026-11-01T00:00:00Z`.
    pub starting_at: String,
    pub ending_at: String,
    #[serde(default)]
    pub results: Vec<R>,
}

impl<R> Bucket<R> {
    /// The UTC day the bucket starts on.
    pub fn day(&self) -> Option<NaiveDate> {
        chrono::DateTime::parse_from_rfc3339(&self.starting_at).ok().map(|t| t.with_timezone(&chrono::Utc).date_naive())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CacheCreation {
    #[serde(default)]
    pub ephemeral_1h_input_tokens: u64,
    #[serde(default)]
    pub ephemeral_5m_input_tokens: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServerToolUse {
    #[serde(default)]
    pub web_search_requests: u64,
}

/// A usage-report result. Token types are disjoint: total input = uncached + cache read + 5 min
/// write + 1 h write.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UsageResult {
    #[serde(default)]
    pub uncached_input_tokens: u64,
    #[serde(default)]
    pub cache_creation: CacheCreation,
    #[serde(default)]
    pub cache_read_input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub server_tool_use: ServerToolUse,
    #[serde(default)]
    pub api_key_id: Option<String>,
    /// Null for the default workspace.
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub service_tier: Option<String>,
    /// `0-200k` or `200k-1M`.
    #[serde(default)]
    pub context_window: Option<String>,
    /// `standard` or `fast` (fast mode; grouped by `speed`, with the fast-mode beta header).
    #[serde(default)]
    pub speed: Option<String>,
    /// `global`, `us` or `not_available` (grouped by `inference_geo`).
    #[serde(default)]
    pub inference_geo: Option<String>,
}

/// A cost-report result.
#[derive(Debug, Clone, Deserialize)]
pub struct CostResult {
    /// Cents (the lowest currency unit), as a decimal string: `"123.45"` is $1.2345.
    pub amount: String,
    pub currency: String,
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// `tokens`, `web_search`, `code_execution`, `session_usage`.
    #[serde(default)]
    pub cost_type: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub service_tier: Option<String>,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub context_window: Option<String>,
    #[serde(default)]
    pub speed: Option<String>,
    #[serde(default)]
    pub inference_geo: Option<String>,
}

impl CostResult {
    /// The amount in the currency's major unit (dollars): cents / 100, exact.
    pub fn major_units(&self) -> Option<Decimal> {
        crate::pricebook::records::parse_decimal(&self.amount).map(|cents| cents / Decimal::ONE_HUNDRED)
    }
}

/// A daily report over the UTC days `start..=end`.
#[derive(Debug, Clone)]
pub struct ReportQuery<'a> {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub group_by: &'a [&'a str],
    /// Buckets per page (at most 31).
    pub limit: u32,
}

impl ReportQuery<'_> {
    fn pairs(&self) -> Vec<(String, String)> {
        let rfc3339 = |d: NaiveDate| format!("{}T00:00:00Z", d.format("%Y-%m-%d"));
        let mut q = vec![
            ("starting_at".to_string(), rfc3339(self.start)),
            ("ending_at".to_string(), rfc3339(self.end.succ_opt().unwrap_or(self.end))),
            ("bucket_width".to_string(), "1d".to_string()),
            ("limit".to_string(), self.limit.to_string()),
        ];
        q.extend(self.group_by.iter().map(|g| ("group_by[]".to_string(), g.to_string())));
        q
    }
}

impl Anthropic<'_> {
    /// The pages of a bucketed report, read one at a time.
    pub fn pages<'a, R: DeserializeOwned>(
        &'a self,
        key: &'a str,
        policy: &'a RetryPolicy,
        path: &'a str,
        query: &ReportQuery<'_>,
    ) -> Pages<'a, Bucket<R>> {
        let base_query = query.pairs();
        let fast_mode = query.group_by.contains(&"speed");
        let request = move || {
            let request = self.get(path, key).query(&base_query);
            if fast_mode {
                request.header("anthropic-beta", FAST_MODE_BETA)
            } else {
                request
            }
        };
        self.http.pages(NAME, key, policy, path, Box::new(request))
    }

    /// The messages usage report, page by page.
    pub fn usage_report<'a>(
        &'a self,
        key: &'a str,
        policy: &'a RetryPolicy,
        query: &ReportQuery<'_>,
    ) -> Pages<'a, Bucket<UsageResult>> {
        self.pages(key, policy, "/v1/organizations/usage_report/messages", query)
    }

    /// The cost report (amounts in cents), page by page.
    pub fn cost_report<'a>(
        &'a self,
        key: &'a str,
        policy: &'a RetryPolicy,
        query: &ReportQuery<'_>,
    ) -> Pages<'a, Bucket<CostResult>> {
        self.pages(key, policy, "/v1/organizations/cost_report", query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_pages_parse_in_the_documented_shape() {
        // provider-apis.md §3a, verbatim.
        let usage: Page<UsageResult> = serde_json::from_str(
            r#"{"data":[{"starting_at":"2026-11-01T00:00:00Z","ending_at":"2026-11-02T00:00:00Z","results":[{
              "uncached_input_tokens": 1500,
              "cache_creation": {"ephemeral_1h_input_tokens": 1000, "ephemeral_5m_input_tokens": 500},
              "cache_read_input_tokens": 200, "output_tokens": 500,
              "server_tool_use": {"web_search_requests": 10},
              "api_key_id": "apikey_01Rj2N8SVvo6BePZj99NhmiT",
              "workspace_id": "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ", "model": "claude-sonnet-4-20250514",
              "service_tier": "standard", "context_window": "0-200k"},
              {"uncached_input_tokens": 1, "output_tokens": 1, "model": "claude-opus-4-6",
               "speed": "fast", "inference_geo": "us", "account_id": null, "service_account_id": null}]}],
              "has_more": true, "next_page": "page_MjAyNS0wNS0xNFQwMDowMDowMFo="}"#,
        )
        .unwrap();
        let b = &usage.data[0];
        assert_eq!(b.day(), NaiveDate::from_ymd_opt(2026, 11, 1));
        let r = &b.results[0];
        assert_eq!(r.cache_creation.ephemeral_1h_input_tokens, 1000);
        assert_eq!(r.cache_creation.ephemeral_5m_input_tokens, 500);
        assert_eq!(r.server_tool_use.web_search_requests, 10);
        assert_eq!((r.speed.as_deref(), r.inference_geo.as_deref()), (None, None));
        let fast = &b.results[1];
        assert_eq!((fast.speed.as_deref(), fast.inference_geo.as_deref()), (Some("fast"), Some("us")));
        // §3b: "123.78912" cents is $1.2378912.
        let cost: Page<CostResult> = serde_json::from_str(
            r#"{"data":[{"starting_at":"2026-11-01T00:00:00Z","ending_at":"2026-11-02T00:00:00Z","results":[{
              "currency": "USD", "amount": "123.78912",
              "workspace_id": "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
              "description": "Claude Sonnet 4 Usage - Input Tokens", "cost_type": "tokens",
              "context_window": "0-200k", "model": "claude-sonnet-4-20250514",
              "service_tier": "standard", "token_type": "uncached_input_tokens", "inference_geo": null}]}],
              "has_more": false, "next_page": null}"#,
        )
        .unwrap();
        assert_eq!(cost.data[0].results[0].major_units(), Some("1.2378912".parse().unwrap()));
    }

    #[test]
    fn report_query_uses_brackets_and_an_exclusive_end() {
        let q = ReportQuery {
            start: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            end: NaiveDate::from_ymd_opt(2026, 11, 7).unwrap(),
            group_by: &["model", "workspace_id"],
            limit: 31,
        };
        let pairs = q.pairs();
        assert_eq!(pairs[0].1, "2026-11-01T00:00:00Z");
        assert_eq!(pairs[1].1, "2026-11-08T00:00:00Z");
        assert!(pairs.contains(&("group_by[]".to_string(), "workspace_id".to_string())));
    }
}
