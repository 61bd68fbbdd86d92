//! The setup body and the provider path segment, parsed at the edge. Every problem names the
//! field; no message ever quotes a credential.

use common::configs::Provider;
use common::domain::fingerprint;
use common::providers::gcp::{BillingExportTable, ServiceAccountKey};
use common::{ApiError, AppState};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

/// `POST /api/v1/integrations/{org}/{provider}/setup`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// openai, anthropic: the admin API key.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub credential: Option<SecretString>,
    /// A name to recognise the credential by (default: "<provider> admin key" / "… service account").
    #[serde(default)]
    pub credential_name: Option<String>,
    /// gcp: the service-account key file, as a JSON object or a string holding one.
    #[serde(default)]
    pub service_account_json: Option<Value>,
    /// gcp: `project.dataset.gcp_billing_export_v1_<BILLING_ACCOUNT_ID>`.
    #[serde(default)]
    pub billing_export_table: Option<String>,
}

/// A credential ready to validate and store.
pub enum Credential {
    ApiKey(SecretString),
    ServiceAccount { key: ServiceAccountKey, json: SecretString, table: BillingExportTable },
}

impl Credential {
    /// The bytes that are encrypted and stored.
    pub fn plaintext(&self) -> &str {
        match self {
            Credential::ApiKey(k) => k.expose_secret(),
            Credential::ServiceAccount { json, .. } => json.expose_secret(),
        }
    }

    /// The last four characters shown for recognition: of the key, or of the service-account
    /// key's id (the private key is never shown, even in part).
    pub fn fingerprint(&self) -> String {
        match self {
            Credential::ApiKey(k) => fingerprint(k.expose_secret()),
            Credential::ServiceAccount { key, .. } => {
                fingerprint(key.private_key_id.as_deref().unwrap_or(key.client_email.as_str()))
            }
        }
    }
}

/// The provider named in the path, or 404 naming the known ones.
pub fn provider<'a>(state: &'a AppState, raw: &str) -> Result<&'a Provider, ApiError> {
    state.configs.providers.providers.get(raw).ok_or_else(|| {
        let known: Vec<&str> = state.configs.providers.providers.keys().map(String::as_str).collect();
        let shown: String = raw.chars().take(40).collect();
        ApiError::not_found(format!("unknown provider {shown:?}; known providers: {}", known.join(", ")))
    })
}

/// Checks the body against what `provider` needs.
pub fn parse(
    provider: &str,
    config: &Provider,
    body: SetupRequest,
    allow_sandbox: bool,
) -> Result<(Credential, String), ApiError> {
    let mut problems = Vec::new();
    let credential_name = match body.credential_name.as_deref().map(str::trim) {
        None | Some("") => match config.credential_type.as_str() {
            "service_account_json" => format!("{} service account", config.display_name),
            _ => format!("{} admin key", config.display_name),
        },
        Some(name) => match common::domain::display_text_problem(name) {
            Some(problem) => {
                problems.push(format!(
                    "credential_name {problem}: names may not hold control, bidirectional or zero-width characters"
                ));
                String::new()
            }
            None if name.chars().count() > 100 => {
                problems.push("credential_name must be at most 100 characters".to_string());
                String::new()
            }
            None => name.to_string(),
        },
    };
    let credential = match config.credential_type.as_str() {
        "admin_api_key" => {
            for (field, present) in [
                ("service_account_json", body.service_account_json.is_some()),
                ("billing_export_table", body.billing_export_table.is_some()),
            ] {
                if present {
                    problems.push(format!("{field} is only for gcp; {provider} takes an admin key in credential"));
                }
            }
            match body.credential {
                None => {
                    problems.push(format!("credential is required: the {} admin API key", config.display_name));
                    None
                }
                Some(key) => {
                    let k = key.expose_secret().trim();
                    if k.is_empty() {
                        problems.push("credential must not be empty".into());
                        None
                    } else if k.len() < 8 || k.len() > 512 || !k.bytes().all(|b| b.is_ascii_graphic()) {
                        problems
                            .push("credential must be an API key: 8 to 512 printable characters without spaces".into());
                        None
                    } else {
                        Some(Credential::ApiKey(SecretString::from(k.to_string())))
                    }
                }
            }
        }
        "service_account_json" => {
            if body.credential.is_some() {
                problems
                    .push(format!("credential is not used for {provider}; send the key file in service_account_json"));
            }
            let table = match body.billing_export_table.as_deref() {
                None => {
                    problems.push(
                        "billing_export_table is required: project.dataset.gcp_billing_export_v1_<BILLING_ACCOUNT_ID>"
                            .into(),
                    );
                    None
                }
                Some(raw) => BillingExportTable::parse(raw).map_err(|e| problems.push(e)).ok(),
            };
            let key = match body.service_account_json {
                None => {
                    problems.push("service_account_json is required: the service-account key file (JSON)".into());
                    None
                }
                Some(value) => {
                    let value = match value {
                        Value::String(s) => serde_json::from_str::<Value>(&s).unwrap_or(Value::Null),
                        other => other,
                    };
                    match ServiceAccountKey::parse(&value, allow_sandbox) {
                        Ok(key) => Some((key, SecretString::from(value.to_string()))),
                        Err(e) => {
                            problems.push(e);
                            None
                        }
                    }
                }
            };
            match (key, table) {
                (Some((key, json)), Some(table)) => Some(Credential::ServiceAccount { key, json, table }),
                _ => None,
            }
        }
        other => {
            return Err(ApiError::new(
                axum::http::StatusCode::NOT_IMPLEMENTED,
                "not_implemented",
                format!("{provider} credentials of type {other} cannot be set up yet"),
            ))
        }
    };
    match credential {
        Some(c) if problems.is_empty() => Ok((c, credential_name)),
        _ => Err(ApiError::bad_request(problems.join("; "))),
    }
}
