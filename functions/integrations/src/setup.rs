//! `POST /api/v1/integrations/{org}/{provider}/setup` (org key or root): validate the credential
//! with the provider, then store it KMS-encrypted, replacing any earlier one. Nothing is stored
//! unless the provider accepted it. Setting up an LLM provider also seeds the organization's
//! price book.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use common::audit::AuditEvent;
use common::http::error::ApiResult;
use common::http::{ApiJson, ApiPath, OrgAccess, ProviderPath};
use common::orgs::Organization;
use common::providers::Validation;
use common::{ApiError, AppState};
use serde_json::{json, Value};

use crate::request::{self, SetupRequest};
use crate::{check, store};

#[utoipa::path(
    post,
    path = "/api/v1/integrations/{org}/{provider}/setup",
    tag = "integrations",
    summary = "Validate a provider credential with the provider and store it encrypted.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$"), ("provider" = String, Path, description = "A provider: openai, anthropic or gcp.")),
    request_body = crate::request::SetupRequest,
    responses(
        (status = 201, description = "The integration, validated and stored.", body = crate::view::IntegrationView),
        (status = 403, description = "The plan allows no more integrations, or not this key.", body = common::http::openapi::ErrorBody),
        (status = 404, description = "No such organization or provider.", body = common::http::openapi::ErrorBody),
        (status = 422, description = "The provider refused the credential.", body = common::http::openapi::ErrorBody),
        (status = 429, description = "The provider is rate limiting us.", body = common::http::openapi::ErrorBody),
        (status = 501, description = "A provider the configs name that this build does not support.", body = common::http::openapi::ErrorBody),
        (status = 502, description = "The provider answered with an error.", body = common::http::openapi::ErrorBody),
        (status = 504, description = "The provider did not answer in time.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn setup(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiPath(ProviderPath { provider }): ApiPath<ProviderPath>,
    ApiJson(body): ApiJson<SetupRequest>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let slug = &access.slug;
    let config = request::provider(&state, &provider)?;
    let org = access.organization(&state).await?;
    let (credential, credential_name) = request::parse(&provider, config, body, state.settings.is_development())?;

    let _guard = store::org_lock(slug.as_str()).await;
    check_quota(&state, slug.as_str(), &provider, &org).await?;

    let outcome = check::run(&state, &provider, &credential).await?;
    let new_fingerprint = credential.fingerprint();
    let details = match (check::refusal(&outcome), &outcome) {
        (Some(error), _) => {
            state
                .audit(
                    &access.caller,
                    AuditEvent {
                        org_slug: Some(slug.as_str()),
                        action: "integration.setup",
                        resource_type: "integration",
                        resource_id: Some(&provider),
                        success: false,
                        details: json!({
                            "provider": provider,
                            "fingerprint": new_fingerprint,
                            "outcome": check::outcome_name(&outcome),
                            "message": outcome.error_message(),
                        }),
                    },
                )
                .await;
            return Err(error);
        }
        (None, Validation::Valid { details }) => details.clone(),
        (None, _) => Value::Null,
    };

    let previous = store::find(&state, slug.as_str(), &provider).await?;
    let ciphertext =
        state.kms.encrypt(credential.plaintext().as_bytes(), &store::aad(slug.as_str(), &provider)).await?;
    drop(credential);
    let (credential_id, replaced) = store::replace(
        &state,
        store::NewCredential {
            org_slug: slug.as_str(),
            provider: &provider,
            credential_name: &credential_name,
            ciphertext: &ciphertext,
            fingerprint: &new_fingerprint,
            metadata: &details,
        },
    )
    .await?;
    let previous_fingerprint = previous.as_ref().and_then(|r| r.get("fingerprint")).cloned();
    state
        .audit(
            &access.caller,
            AuditEvent {
                org_slug: Some(slug.as_str()),
                action: if replaced > 0 { "integration.replace" } else { "integration.setup" },
                resource_type: "integration",
                resource_id: Some(&credential_id),
                success: true,
                details: json!({
                    "provider": provider,
                    "credential_name": credential_name,
                    "fingerprint": new_fingerprint,
                    "replaced_fingerprint": previous_fingerprint,
                }),
            },
        )
        .await;

    let price_book =
        if config.category == "llm" { Some(seed_price_book(&state, &access, &provider).await) } else { None };

    let row = store::find(&state, slug.as_str(), &provider).await?;
    let mut response = store::view(&provider, config, row.as_ref());
    response["org_slug"] = json!(slug);
    response["replaced"] = json!(replaced > 0);
    response["replaced_fingerprint"] = previous_fingerprint.unwrap_or(Value::Null);
    if let Some(price_book) = price_book {
        response["price_book"] = price_book;
    }
    Ok((StatusCode::CREATED, Json(response)))
}

/// Seeds the provider's price book. A failure does not undo the stored credential (it is valid and
/// the pipelines can use it); the response says so and how to retry.
async fn seed_price_book(state: &AppState, access: &OrgAccess, provider: &str) -> Value {
    match common::pricebook::seed(state, access.slug.as_str(), provider, &access.actor()).await {
        Ok(report) => json!({"seeded": true, "report": report}),
        Err(e) => {
            let e = ApiError::from(e);
            tracing::warn!(
                provider,
                status = e.status.as_u16(),
                cause = e.cause.as_deref().unwrap_or(""),
                "price book seeding failed"
            );
            json!({
                "seeded": false,
                "error": e.message,
                "message": format!(
                    "the credential is stored, but the price book could not be seeded; retry with \
                     POST /api/v1/integrations/{}/{provider}/pricing/reset",
                    access.slug
                ),
            })
        }
    }
}

/// The plan's `max_integrations`: a new provider beyond it is refused with 403; replacing the
/// credential of a provider already set up is always allowed.
async fn check_quota(state: &AppState, org_slug: &str, provider: &str, org: &Organization) -> ApiResult<()> {
    let plan = org.subscription.plan_name.as_deref().unwrap_or("");
    let limit = org.quotas.max_integrations.or_else(|| state.configs.plan(plan).map(|p| i64::from(p.max_integrations)));
    let Some(limit) = limit else { return Ok(()) };
    let others = store::count_others(state, org_slug, provider).await?;
    if others >= limit {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "quota_exceeded",
            format!(
                "the {plan} plan allows {limit} integration(s) and {others} are set up; delete one \
                 (DELETE /api/v1/integrations/{org_slug}/{{provider}}) or move to a larger plan"
            ),
        ));
    }
    Ok(())
}
