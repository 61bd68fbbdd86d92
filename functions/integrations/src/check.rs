//! Asking the provider about a credential, and what our API answers for each outcome.

use axum::http::StatusCode;
use common::http::error::ApiResult;
use common::providers::anthropic::Anthropic;
use common::providers::gcp::{BillingExportTable, Gcp, ServiceAccountKey, DEFAULT_BIGQUERY_BASE, SANDBOX_PROJECT};
use common::providers::gcp_sandbox::SandboxExport;
use common::providers::openai::OpenAi;
use common::providers::{ProviderHttp, Validation};
use common::{ApiError, AppState};
use secrecy::ExposeSecret;
use serde_json::json;

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
        ("gcp", Credential::ServiceAccount { key, table, .. })
            if key.project_id == SANDBOX_PROJECT && settings.is_development() =>
        {
            sandbox_export(state, key, table).await
        }
        ("gcp", Credential::ServiceAccount { key, table, .. }) => {
            let base = settings.bigquery_api_base.as_deref().unwrap_or(DEFAULT_BIGQUERY_BASE);
            Gcp { http: &http, bigquery_base: base, token_url: settings.google_token_url.as_deref() }
                .validate(key, table)
                .await
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

/// A sandbox service-account key (local mode): its export table is created in the embedded
/// warehouse (rows are generated when a day is first read), so setting it up works offline.
async fn sandbox_export(state: &AppState, key: &ServiceAccountKey, table: &BillingExportTable) -> Validation {
    let rejected = |reason: String| Validation::Rejected { provider_status: 0, reason };
    if !state.settings.sandbox_providers {
        return rejected("a service account of project \"sandbox\" reads the sandbox billing export, which needs SANDBOX_PROVIDERS=true".into());
    }
    let Some(etl) = state.configs.gcp_bq_etl.as_ref() else {
        return rejected("configs/gcp/bq_etl/ is not loaded".into());
    };
    let sandbox = match SandboxExport::resolve(table, &etl.settings) {
        Ok(s) => s,
        Err(reason) => return rejected(reason),
    };
    match sandbox.ensure_table(state.warehouse.as_ref(), &etl.export_template).await {
        Ok(()) => Validation::Valid {
            details: json!({
                "client_email": key.client_email,
                "service_account_project_id": key.project_id,
                "billing_export_table": table.to_string(),
                "table_type": "TABLE",
                "sandbox": true,
                "sandbox_rows_per_day": sandbox.rows_per_day,
                "export_kind": if sandbox.detailed { "detailed" } else { "standard" },
            }),
        },
        Err(e) => rejected(format!("the sandbox billing export cannot be created: {e}")),
    }
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
