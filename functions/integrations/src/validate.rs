//! `POST /api/v1/integrations/{org}/{provider}/validate` (org key or root): decrypt the stored
//! credential and ask the provider again. The answer updates the row: `VALID`, `INVALID` (the
//! provider refused it) or `ERROR` (the provider could not be asked; `validated_at` keeps the
//! last real answer). The check itself succeeded either way, so the reply is 200 with the status.

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use common::audit::AuditEvent;
use common::http::error::ApiResult;
use common::http::{ApiPath, OrgAccess, ProviderPath};
use common::providers::gcp::{BillingExportTable, ServiceAccountKey};
use common::providers::Validation;
use common::{ApiError, AppState};
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::request::{self, Credential};
use crate::{check, store};

#[utoipa::path(
    post,
    path = "/api/v1/integrations/{org}/{provider}/validate",
    tag = "integrations",
    summary = "Check the stored credential with the provider again.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$"), ("provider" = String, Path, description = "A provider: openai, anthropic or gcp.")),
    responses(
        (status = 200, description = "The outcome, also recorded on the integration.", body = crate::view::IntegrationView),
        (status = 404, description = "No such organization, provider or integration.", body = common::http::openapi::ErrorBody),
        (status = 501, description = "A provider the configs name that this build does not support.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn validate(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiPath(ProviderPath { provider }): ApiPath<ProviderPath>,
) -> ApiResult<Json<Value>> {
    let slug = &access.slug;
    let config = request::provider(&state, &provider)?;
    access.organization(&state).await?;
    let _guard = store::org_lock(slug.as_str()).await;
    let Some((ciphertext, metadata)) = store::find_secret(&state, slug.as_str(), &provider).await? else {
        return Err(not_configured(slug.as_str(), &provider));
    };
    let plaintext = state.kms.decrypt(&ciphertext, &store::aad(slug.as_str(), &provider)).await?;
    let plaintext = String::from_utf8(plaintext).map_err(|_| ApiError::internal("stored credential is not UTF-8"))?;
    let credential = restore(&config.credential_type, plaintext, &metadata, state.settings.is_development())?;
    let outcome = check::run(&state, &provider, &credential).await?;
    drop(credential);

    let status = outcome.credential_status();
    let answered = matches!(outcome, Validation::Valid { .. } | Validation::Rejected { .. });
    let new_metadata = match &outcome {
        Validation::Valid { details } => Some(details.clone()),
        _ => None,
    };
    store::record_check(
        &state,
        slug.as_str(),
        &provider,
        status,
        outcome.error_message(),
        answered.then(Utc::now),
        new_metadata.as_ref(),
    )
    .await?;
    state
        .audit(
            &access.caller,
            AuditEvent {
                org_slug: Some(slug.as_str()),
                action: "integration.validate",
                resource_type: "integration",
                resource_id: Some(&provider),
                success: true,
                details: json!({"provider": provider, "status": status, "outcome": check::outcome_name(&outcome)}),
            },
        )
        .await;
    let row = store::find(&state, slug.as_str(), &provider).await?;
    let mut response = store::view(&provider, config, row.as_ref());
    response["org_slug"] = json!(slug);
    response["valid"] = json!(status == "VALID");
    response["outcome"] = json!(check::outcome_name(&outcome));
    if let Validation::Throttled { retry_after_secs: Some(s), .. } = outcome {
        response["retry_after_secs"] = json!(s);
    }
    Ok(Json(response))
}

pub fn not_configured(org_slug: &str, provider: &str) -> ApiError {
    ApiError::not_found(format!(
        "{org_slug} has no {provider} credential; set one up with POST /api/v1/integrations/{org_slug}/{provider}/setup"
    ))
}

/// The credential as it was set up, from its decrypted form and the row's metadata.
fn restore(credential_type: &str, plaintext: String, metadata: &Value, allow_sandbox: bool) -> ApiResult<Credential> {
    match credential_type {
        "service_account_json" => {
            let json: Value = serde_json::from_str(&plaintext)
                .map_err(|_| ApiError::internal("stored service-account key is not JSON"))?;
            // A stored key passed these checks at setup; failing now means the rules changed.
            let key = ServiceAccountKey::parse(&json, allow_sandbox).map_err(ApiError::bad_request)?;
            let table = metadata["billing_export_table"]
                .as_str()
                .ok_or_else(|| ApiError::internal("stored gcp credential has no billing_export_table"))
                .and_then(|t| BillingExportTable::parse(t).map_err(ApiError::internal))?;
            Ok(Credential::ServiceAccount { key, json: SecretString::from(plaintext), table })
        }
        _ => Ok(Credential::ApiKey(SecretString::from(plaintext))),
    }
}
