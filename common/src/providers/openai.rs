//! OpenAI. The usage and cost pipelines read `/v1/organization/*`, which only an organization
//! Admin key (`sk-admin-…`) may call; a project key (`sk-proj-…`) or a service-account key works
//! on `/v1/models` but is refused there.
//!
//! Validation: `GET {base}/organization/projects?limit=1` (Bearer). On a 401/403 the key is told
//! apart: a known non-admin prefix, or a key that `GET {base}/models` accepts, is refused with a
//! message asking for an admin key; anything else is an invalid key.

use serde_json::{json, Value};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_admin_prefixes() {
        assert!(NON_ADMIN_PREFIXES.iter().any(|p| "sk-proj-abc".starts_with(p)));
        assert!(!NON_ADMIN_PREFIXES.iter().any(|p| "sk-admin-abc".starts_with(p)));
    }
}
