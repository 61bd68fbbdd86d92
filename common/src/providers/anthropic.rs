//! Anthropic. The usage and cost reports (`/v1/organizations/*`) need an Admin key
//! (`sk-ant-admin…`); workspace API keys (`sk-ant-api…`) are refused there.
//!
//! Validation: `GET {base}/v1/organizations/me` with `x-api-key` and `anthropic-version`. On a
//! 401/403 a workspace key (by prefix, or because `GET {base}/v1/models?limit=1` accepts it) is
//! refused with a message asking for an Admin key; anything else is an invalid key.

use serde_json::{json, Value};

use super::{common_outcome, provider_message, redact, ProviderHttp, Validation};

pub const NAME: &str = "Anthropic";
pub const API_VERSION: &str = "2023-06-01";

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
