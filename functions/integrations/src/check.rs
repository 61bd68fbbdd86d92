//! Asking the provider about a credential, and what our API answers for each outcome.

use axum::http::StatusCode;
use common::http::error::ApiResult;
use common::providers::anthropic::Anthropic;
use common::providers::gcp::{Gcp, DEFAULT_BIGQUERY_BASE};
use common::providers::openai::OpenAi;
use common::providers::{ProviderHttp, Validation};
use common::{ApiError, AppState};
use secrecy::ExposeSecret;

use crate::request::Credential;

/// Calls the provider (every call bounded by `PROVIDER_TIMEOUT_SECS`).
pub async fn run(state: &AppState, provider: &str, credential: &Credential) -> ApiResult<Validation> {
    let http = ProviderHttp::from_settings(&state.settings).map_err(ApiError::internal)?;
    let settings = &state.settings;
    let outcome = match (provider, credential) {
        ("openai", Credential::ApiKey(key)) => {
            OpenAi { http: &http, base: &settings.openai_api_base }.validate_admin_key(key.expose_secret()).await
        }
        ("anthropic", Credential::ApiKey(key)) => {
            Anthropic { http: &http, base: &settings.anthropic_api_base }.validate_admin_key(key.expose_secret()).await
        }
        ("gcp", Credential::ServiceAccount { key, table, .. }) => {
            let base = settings.bigquery_api_base.as_deref().unwrap_or(DEFAULT_BIGQUERY_BASE);
            Gcp { http: &http, bigquery_base: base }.validate(key, table).await
        }
        (other, _) => {
            return Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "not_implemented",
                format!("{other} credentials cannot be validated yet"),
            ))
        }
    };
    // The outcome is safe to log: no credential enters it.
    tracing::info!(provider, status = outcome.credential_status(), "provider validation");
    Ok(outcome)
}

/// The error a setup answers when the provider did not accept the credential.
pub fn refusal(outcome: &Validation) -> Option<ApiError> {
    match outcome {
        Validation::Valid { .. } => None,
        Validation::Rejected { reason, .. } => Some(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "credential_rejected",
            format!("{reason}; nothing was stored"),
        )),
        Validation::Throttled { retry_after_secs, message } => {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "provider_rate_limited",
                format!("{message}; nothing was stored"),
            );
            e.retry_after = Some(retry_after_secs.unwrap_or(30));
            Some(e)
        }
        Validation::Unreachable { status, message } => {
            let (status, code) = if *status == 504 {
                (StatusCode::GATEWAY_TIMEOUT, "provider_timeout")
            } else {
                (StatusCode::BAD_GATEWAY, "provider_unreachable")
            };
            Some(ApiError::new(status, code, format!("{message}; nothing was stored")))
        }
    }
}

/// A short name of the outcome for responses and audit rows.
pub fn outcome_name(outcome: &Validation) -> &'static str {
    match outcome {
        Validation::Valid { .. } => "valid",
        Validation::Rejected { .. } => "rejected",
        Validation::Throttled { .. } => "rate_limited",
        Validation::Unreachable { status: 504, .. } => "timeout",
        Validation::Unreachable { .. } => "unreachable",
    }
}
