//! OpenAI. The usage and cost pipelines read `/v1/organization/*`, which only an organization
//! Admin key (`sk-admin-…`) may call; a project key (`sk-proj-…`) or a service-account key works
//! on `/v1/models` but is refused there.
//!
//! Validation: `GET {base}/organization/projects?limit=1` (Bearer). On a 401/403 the key is told
//! apart: a known non-admin prefix, or a key that `GET {base}/models` accepts, is refused with a
//! message asking for an admin key; anything else is an invalid key.
//!
//! Usage and costs (`shared/reference/provider-apis.md` §1, §2): `GET {base}/organization/usage/{kind}`
//! and `GET {base}/organization/costs`, daily buckets over `[start_time, end_time)` (unix seconds,
//! UTC midnights), `group_by` as repeated keys, paged by `next_page` until it is null. Costs are
//! in dollars (`amount.value`, a JSON number read exactly as a decimal).

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::retry::{Pages, RetryPolicy};
use super::{common_outcome, provider_message, redact, ProviderHttp, Validation};

pub const NAME: &str = "OpenAI";

const ADMIN_KEY_ADVICE: &str = "the usage and cost pipelines need an OpenAI organization admin key (sk-admin-…), \
created by an organization owner under Settings → Organization → Admin keys";

/// Prefixes of keys that are never admin keys.
const NON_ADMIN_PREFIXES: [&str; 2] = ["sk-proj-", "sk-svcacct-"];

pub struct OpenAi<'a> {
    pub http: &'a ProviderHttp,
    /// e.g. `https://api.openai.com/v1`, without a trailing slash.
    pub base: &'a str,
}

impl OpenAi<'_> {
    pub async fn validate_admin_key(&self, key: &str) -> Validation {
        let request = self
            .http
            .client
            .get(format!("{}/organization/projects", self.base))
            .query(&[("limit", "1")])
            .bearer_auth(key);
        let (status, headers, body) = match self.http.send(NAME, request).await {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        if (200..300).contains(&status) {
            let projects = body.get("data").and_then(Value::as_array);
            return Validation::Valid {
                details: json!({
                    "key_type": "organization_admin",
                    "first_project_id": projects.and_then(|p| p.first()).and_then(|p| p.get("id")).cloned(),
                }),
            };
        }
        if let Some(outcome) = common_outcome(NAME, status, &headers) {
            return outcome;
        }
        let said = provider_message(&body).map(|m| redact(&m, key)).unwrap_or_else(|| format!("HTTP {status}"));
        if status == 401 || status == 403 {
            let code = body.pointer("/error/code").and_then(Value::as_str);
            let non_admin = NON_ADMIN_PREFIXES.iter().any(|p| key.starts_with(p))
                || (code != Some("invalid_api_key") && self.works_on_models(key).await);
            if non_admin {
                return Validation::Rejected {
                    provider_status: status,
                    reason: format!(
                        "this is an OpenAI project or user API key, not an admin key: {ADMIN_KEY_ADVICE} (OpenAI said: {said})"
                    ),
                };
            }
            return Validation::Rejected {
                provider_status: status,
                reason: format!("OpenAI refused the key: {said}; check that it is a current admin key (sk-admin-…)"),
            };
        }
        Validation::Rejected {
            provider_status: status,
            reason: format!("OpenAI refused the request ({status}): {said}"),
        }
    }

    /// Whether the key is accepted for ordinary API calls (`GET /models`).
    async fn works_on_models(&self, key: &str) -> bool {
        let request = self.http.client.get(format!("{}/models", self.base)).bearer_auth(key);
        matches!(self.http.send(NAME, request).await, Ok((200..=299, _, _)))
    }
}

/// One page of a usage or costs report.
pub type Page<R> = super::retry::Page<Bucket<R>>;

/// One day (`bucket_width=1d`) of results.
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "R: Deserialize<'de>"))]
pub struct Bucket<R> {
    pub start_time: i64,
    pub end_time: i64,
    #[serde(default)]
    pub results: Vec<R>,
}

impl<R> Bucket<R> {
    /// The UTC day the bucket starts on.
    pub fn day(&self) -> Option<NaiveDate> {
        chrono::DateTime::from_timestamp(self.start_time, 0).map(|t| t.date_naive())
    }
}

/// `organization.usage.completions.result`. Fields newer than the January 2025 shape are optional.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CompletionsResult {
    /// All input, cached and cache-write tokens included.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Cache hits: a subset of `input_tokens`.
    #[serde(default)]
    pub input_cached_tokens: Option<u64>,
    #[serde(default)]
    pub input_cache_write_tokens: Option<u64>,
    #[serde(default)]
    pub input_uncached_tokens: Option<u64>,
    #[serde(default)]
    pub input_audio_tokens: Option<u64>,
    #[serde(default)]
    pub output_audio_tokens: Option<u64>,
    /// Cached audio input: a subset of `input_audio_tokens` and of `input_cached_tokens`.
    #[serde(default)]
    pub input_cached_audio_tokens: Option<u64>,
    #[serde(default)]
    pub input_image_tokens: Option<u64>,
    /// Cached image input: a subset of `input_image_tokens` and of `input_cached_tokens`.
    #[serde(default)]
    pub input_cached_image_tokens: Option<u64>,
    #[serde(default)]
    pub output_image_tokens: Option<u64>,
    #[serde(default)]
    pub num_model_requests: u64,
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub api_key_id: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub batch: Option<bool>,
    #[serde(default)]
    pub service_tier: Option<String>,
}

/// `organization.usage.embeddings.result`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EmbeddingsResult {
    pub input_tokens: u64,
    #[serde(default)]
    pub num_model_requests: u64,
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub api_key_id: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
}

/// `organization.costs.result`.
#[derive(Debug, Clone, Deserialize)]
pub struct CostsResult {
    pub amount: CostAmount,
    #[serde(default)]
    pub line_item: Option<String>,
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub api_key_id: Option<String>,
    /// How much of the line item was billed (grouped by `line_item`), e.g. tokens.
    #[serde(default, deserialize_with = "optional_exact_decimal")]
    pub quantity: Option<Decimal>,
    /// `tokens`, `images`, `gibibyte_hours`, … (other strings allowed).
    #[serde(default)]
    pub quantity_unit: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CostAmount {
    /// Dollars (not cents), exact.
    #[serde(deserialize_with = "exact_decimal")]
    pub value: Decimal,
    /// Lowercase ISO 4217 (`usd`).
    pub currency: String,
}

/// A JSON number (or numeric string) read from its text, so `4.8123` is exactly 4.8123, never
/// the nearest binary float.
fn exact_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    let raw: Box<serde_json::value::RawValue> = Deserialize::deserialize(d)?;
    let text = raw.get().trim().trim_matches('"');
    crate::pricebook::records::parse_decimal(text)
        .ok_or_else(|| serde::de::Error::custom(format!("amount {text:?} is not a decimal number")))
}

fn optional_exact_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    let raw: Option<Box<serde_json::value::RawValue>> = Deserialize::deserialize(d)?;
    let Some(raw) = raw else { return Ok(None) };
    let text = raw.get().trim().trim_matches('"');
    if text == "null" {
        return Ok(None);
    }
    crate::pricebook::records::parse_decimal(text)
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("quantity {text:?} is not a decimal number")))
}

/// A daily report over the UTC days `start..=end`.
#[derive(Debug, Clone)]
pub struct ReportQuery<'a> {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub group_by: &'a [&'a str],
    /// Buckets per page (usage: at most 31; costs: at most 180).
    pub limit: u32,
}

impl ReportQuery<'_> {
    fn pairs(&self) -> Vec<(String, String)> {
        let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp();
        let end = self.end.succ_opt().unwrap_or(self.end);
        let mut q = vec![
            ("start_time".to_string(), midnight(self.start).to_string()),
            ("end_time".to_string(), midnight(end).to_string()),
            ("bucket_width".to_string(), "1d".to_string()),
            ("limit".to_string(), self.limit.to_string()),
        ];
        q.extend(self.group_by.iter().map(|g| ("group_by".to_string(), g.to_string())));
        q
    }
}

impl OpenAi<'_> {
    /// The pages of a bucketed report, read one at a time.
    pub fn pages<'a, R: DeserializeOwned>(
        &'a self,
        key: &'a str,
        policy: &'a RetryPolicy,
        path: &'a str,
        query: &ReportQuery<'_>,
    ) -> Pages<'a, Bucket<R>> {
        let url = format!("{}{path}", self.base);
        let base_query = query.pairs();
        let client = &self.http.client;
        let request = move || client.get(&url).query(&base_query).bearer_auth(key);
        self.http.pages(NAME, key, policy, path, Box::new(request))
    }

    /// Completions usage (`/organization/usage/completions`), page by page.
    pub fn completions_usage<'a>(
        &'a self,
        key: &'a str,
        policy: &'a RetryPolicy,
        query: &ReportQuery<'_>,
    ) -> Pages<'a, Bucket<CompletionsResult>> {
        self.pages(key, policy, "/organization/usage/completions", query)
    }

    /// Embeddings usage (`/organization/usage/embeddings`), page by page.
    pub fn embeddings_usage<'a>(
        &'a self,
        key: &'a str,
        policy: &'a RetryPolicy,
        query: &ReportQuery<'_>,
    ) -> Pages<'a, Bucket<EmbeddingsResult>> {
        self.pages(key, policy, "/organization/usage/embeddings", query)
    }

    /// What OpenAI bills (`/organization/costs`), in dollars, page by page.
    pub fn costs<'a>(
        &'a self,
        key: &'a str,
        policy: &'a RetryPolicy,
        query: &ReportQuery<'_>,
    ) -> Pages<'a, Bucket<CostsResult>> {
        self.pages(key, policy, "/organization/costs", query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The usage example of provider-apis.md §1, verbatim.
    const USAGE_PAGE: &str = r#"{
      "object": "page",
      "data": [
        {
          "object": "bucket", "start_time": 1793491200, "end_time": 1793577600,
          "results": [
            {
              "object": "organization.usage.completions.result", "input_tokens": 182340,
              "input_cached_tokens": 64000, "input_cache_write_tokens": 0,
              "input_uncached_tokens": 118340, "output_tokens": 20311, "input_text_tokens": 118340,
              "output_text_tokens": 20311, "input_cached_text_tokens": 64000, "input_audio_tokens": 0,
              "input_cached_audio_tokens": 0, "output_audio_tokens": 0, "input_image_tokens": 0,
              "input_cached_image_tokens": 0, "output_image_tokens": 0, "num_model_requests": 412,
              "project_id": "proj_abc123", "user_id": null, "api_key_id": null,
              "model": "gpt-4o-mini-2024-07-18", "batch": null, "service_tier": null
            }
          ]
        },
        {"object": "bucket", "start_time": 1793577600, "end_time": 1793664000, "results": []}
      ],
      "has_more": true, "next_page": "page_AAAAAGdGxdEiJdKOAAAAAGcqsYA="
    }"#;

    #[test]
    fn usage_and_cost_pages_parse() {
        let page: Page<CompletionsResult> = serde_json::from_str(USAGE_PAGE).unwrap();
        assert_eq!(page.data.len(), 2);
        assert_eq!(page.data[0].day(), NaiveDate::from_ymd_opt(2026, 11, 1));
        let r = &page.data[0].results[0];
        assert_eq!((r.input_tokens, r.input_cached_tokens, r.output_tokens), (182_340, Some(64_000), 20_311));
        assert_eq!(r.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        assert!(page.data[1].results.is_empty());
        assert_eq!(page.next_page.as_deref(), Some("page_AAAAAGdGxdEiJdKOAAAAAGcqsYA="));
        // The January 2025 shape: no newer fields.
        let old: CompletionsResult =
            serde_json::from_str(r#"{"object":"organization.usage.completions.result","input_tokens":5,"output_tokens":1,"num_model_requests":1,"input_cached_tokens":0}"#)
                .unwrap();
        assert_eq!(old.input_uncached_tokens, None);

        let costs: Page<CostsResult> = serde_json::from_str(
            r#"{"object":"page","data":[{"object":"bucket","start_time":1793491200,"end_time":1793577600,
            "results":[{"object":"organization.costs.result","amount":{"value":4.8123,"currency":"usd"},
            "line_item":"gpt-4o-mini-2024-07-18, input","project_id":"proj_abc123","api_key_id":null,
            "quantity":32081000,"quantity_unit":"tokens","organization_id":"org-x"}]}],"has_more":false,"next_page":null}"#,
        )
        .unwrap();
        assert_eq!(costs.data[0].results[0].amount.value, "4.8123".parse::<Decimal>().unwrap());
        // Digits a float would lose are kept.
        let exact: CostAmount = serde_json::from_str(r#"{"value":0.30000000000000001234,"currency":"usd"}"#).unwrap();
        assert_eq!(exact.value.to_string(), "0.30000000000000001234");
    }

    #[test]
    fn report_query_is_day_aligned_with_repeated_group_by() {
        let q = ReportQuery {
            start: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            end: NaiveDate::from_ymd_opt(2026, 11, 2).unwrap(),
            group_by: &["model", "project_id"],
            limit: 31,
        };
        let pairs = q.pairs();
        assert_eq!(pairs[0], ("start_time".into(), "1793491200".into()));
        assert_eq!(pairs[1], ("end_time".into(), "1793664000".into()), "exclusive: the day after the end");
        assert_eq!(pairs.iter().filter(|(k, _)| k == "group_by").count(), 2);
    }

    #[test]
    fn non_admin_prefixes() {
        assert!(NON_ADMIN_PREFIXES.iter().any(|p| "sk-proj-abc".starts_with(p)));
        assert!(!NON_ADMIN_PREFIXES.iter().any(|p| "sk-admin-abc".starts_with(p)));
    }
}
