//! `POST /api/v1/organizations/onboard`: profile, API key (returned once), subscription, quotas
//! and the organization's dataset. A failure part-way undoes what it wrote, and a retry cleans
//! up whatever a crash left, so nothing ever blocks a second attempt.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{Duration, Utc};
use common::audit::AuditEvent;
use common::auth::Caller;
use common::http::error::ApiResult;
use common::http::extract::RootCaller;
use common::http::ApiJson;
use common::warehouse::{format_timestamp, DatasetAccess, DatasetOptions};
use common::{ApiError, AppState};
use serde::Serialize;
use serde_json::{json, Value};

use crate::request::{OnboardRequest, ValidOnboarding};
use crate::store::{self, now};

#[utoipa::path(
    post,
    path = "/api/v1/organizations/onboard",
    tag = "onboard",
    summary = "Onboard an organization: profile, dataset, tables and its first API key (returned once).",
    request_body = crate::request::OnboardRequest,
    responses(
        (status = 201, description = "The organization and its API key.", body = OnboardCreated),
        (status = 400, description = "A field is not valid.", body = common::http::openapi::ErrorBody),
        (status = 409, description = "The organization exists.", body = common::http::openapi::ErrorBody),
    ),
    security(("root_key" = [])),
)]
pub async fn onboard(
    State(state): State<AppState>,
    RootCaller(caller): RootCaller,
    ApiJson(request): ApiJson<OnboardRequest>,
) -> ApiResult<(StatusCode, Json<OnboardCreated>)> {
    caller.require_root()?;
    let org = request.validate(&state).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "validation_failed", m))?;
    store::require_bootstrapped(&state).await?;
    let slug = org.org_slug.as_str().to_string();
    let _guard = store::org_lock(&slug).await;
    if store::org_exists(&state, &slug).await? {
        return Err(ApiError::conflict(format!("an organization {slug} already exists")));
    }
    // Rows from an attempt that died before finishing (its profile never became ACTIVE).
    store::delete_org_rows(&state, &slug).await?;

    let dataset_id = state.org_dataset(&slug);
    let (actor_type, _) = caller.actor();
    let dataset_created = match create_everything(&state, &org, &dataset_id, actor_type).await {
        Ok(outcome) => outcome,
        Err((error, dataset_created)) => {
            undo(&state, &slug, &dataset_id, dataset_created).await;
            audit_onboard(&state, &caller, &slug, false, json!({"reason": error.message})).await;
            return Err(error);
        }
    };
    let Created { api_key, subscription, dataset_created } = dataset_created;
    state.auth.remember(&api_key.key_hash, api_key.key.clone());
    let details = json!({"plan": org.plan, "dataset_id": dataset_id, "dataset_created": dataset_created, "api_key_fingerprint": api_key.key.fingerprint});
    audit_onboard(&state, &caller, &slug, true, details).await;
    tracing::info!(org_slug = %slug, dataset_id = %dataset_id, plan = %org.plan, "organization onboarded");
    Ok((
        StatusCode::CREATED,
        Json(OnboardCreated {
            org_slug: slug.to_string(),
            api_key: api_key.secret,
            fingerprint: api_key.key.fingerprint,
            dataset_id,
            dataset_created,
            subscription,
            message: "store the API key now: it is shown only once",
        }),
    ))
}

/// The audit row of an onboarding attempt, successful or not.
async fn audit_onboard(state: &AppState, caller: &Caller, slug: &str, success: bool, details: Value) {
    let event = AuditEvent {
        org_slug: Some(slug),
        action: "organization.onboard",
        resource_type: "organization",
        resource_id: Some(slug),
        success,
        details,
    };
    state.audit(caller, event).await;
}

struct Created {
    api_key: store::NewApiKey,
    subscription: TrialSubscription,
    dataset_created: bool,
}

/// Writes everything; on error returns it with whether this attempt created the dataset.
async fn create_everything(
    state: &AppState,
    org: &ValidOnboarding,
    dataset_id: &str,
    actor: &str,
) -> Result<Created, (ApiError, bool)> {
    let slug = org.org_slug.as_str();
    let onboarding = &state.configs.onboarding;
    let access = &state.settings.org_dataset_access;
    let options = DatasetOptions {
        description: onboarding.dataset_description.replace("{org_slug}", slug),
        labels: onboarding
            .dataset_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain([("org_slug".to_string(), slug.to_string())])
            .collect(),
        // The services that use organization datasets get their access here, on each dataset,
        // instead of a project-wide role (terraform/iam.tf sets who).
        access: DatasetAccess::list(&access.owners, &access.writers, &access.readers),
    };
    let dataset_created = state.warehouse.create_dataset(dataset_id, &options).await.map_err(|e| (e.into(), false))?;
    let fail = |e: ApiError| (e, dataset_created);

    let api_key = store::mint_api_key(slug, actor);
    store::insert(state, "org_api_keys", api_key.row.clone()).await.map_err(fail)?;
    let trial_ends_at = format_timestamp(&(Utc::now() + Duration::days(i64::from(onboarding.trial_days))));
    let subscription = json!({
        "subscription_id": uuid::Uuid::new_v4().to_string(),
        "org_slug": slug,
        "plan_name": org.plan,
        "status": "TRIAL",
        "billing_status": Value::Null,
        "trial_ends_at": trial_ends_at,
        "created_at": now(),
        "updated_at": now(),
    });
    store::insert(state, "org_subscriptions", subscription.clone()).await.map_err(fail)?;
    store::insert(state, "org_usage_quotas", store::quota_row(state, slug, &org.plan).map_err(fail)?)
        .await
        .map_err(fail)?;
    // The profile goes last and makes the organization exist: until it is written, a retry
    // treats everything above as leftovers.
    store::insert(
        state,
        "org_profiles",
        json!({
            "org_slug": slug,
            "company_name": org.company_name,
            "admin_email": org.admin_email.as_str(),
            "status": "ACTIVE",
            "dataset_id": dataset_id,
            "default_currency": org.currency,
            "timezone": org.timezone,
            "created_at": now(),
            "updated_at": now(),
        }),
    )
    .await
    .map_err(fail)?;
    let quotas = state.configs.plan(&org.plan).cloned();
    Ok(Created {
        api_key,
        subscription: TrialSubscription { plan_name: org.plan.clone(), status: "TRIAL", trial_ends_at, quotas },
        dataset_created,
    })
}

/// Best effort: anything left behind is also cleaned by the next attempt.
async fn undo(state: &AppState, slug: &str, dataset_id: &str, dataset_created: bool) {
    if let Err(e) = store::delete_org_rows(state, slug).await {
        tracing::warn!(org_slug = %slug, cause = ?e.cause, "could not undo onboarding rows; the next attempt will");
    }
    if dataset_created {
        if let Err(e) = state.warehouse.drop_dataset(dataset_id).await {
            tracing::warn!(org_slug = %slug, error = %e, "could not drop the dataset of a failed onboarding");
        }
    }
}

/// What onboarding created.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OnboardCreated {
    org_slug: String,
    /// The organization's API key: shown only this once.
    api_key: String,
    fingerprint: String,
    dataset_id: String,
    dataset_created: bool,
    subscription: TrialSubscription,
    #[schema(value_type = String)]
    message: &'static str,
}

/// The subscription an organization starts with: a trial of its plan.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TrialSubscription {
    plan_name: String,
    /// `TRIAL`.
    #[schema(value_type = String, pattern = "^TRIAL$")]
    status: &'static str,
    #[schema(format = DateTime)]
    trial_ends_at: String,
    /// The plan's quotas, copied to the organization (`configs/system/subscription_plans.yml`).
    quotas: Option<common::configs::Plan>,
}
