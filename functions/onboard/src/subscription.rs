//! `PUT /api/v1/organizations/{org}/subscription`: the frontend's billing system reports a status
//! (and possibly a plan change); it is mapped to the backend status (configs) and quotas follow
//! the plan. Root key only: the frontend never holds organization keys.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use common::audit::AuditEvent;
use common::http::error::ApiResult;
use common::http::extract::RootOrgAccess;
use common::http::ApiJson;
use common::warehouse::{Param, Params};
use common::{ApiError, AppState};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::store;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionUpdate {
    /// The billing system's status: trialing, active, past_due, paused, incomplete, canceled.
    #[schema(pattern = "^(active|canceled|incomplete|past_due|paused|trialing)$")]
    pub status: String,
    /// A new plan (STARTER, PROFESSIONAL, SCALE); unchanged when absent.
    #[serde(default)]
    #[schema(pattern = "^(STARTER|PROFESSIONAL|SCALE)$")]
    pub plan_name: Option<String>,
    /// RFC 3339 end of the trial; unchanged when absent.
    #[serde(default)]
    pub trial_ends_at: Option<String>,
}

#[utoipa::path(
    put,
    path = "/api/v1/organizations/{org}/subscription",
    tag = "onboard",
    summary = "Set the organization's subscription status (from the billing system).",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$")),
    request_body = crate::subscription::SubscriptionUpdate,
    responses(
        (status = 200, description = "The subscription as stored.", body = SubscriptionChanged),
        (status = 404, description = "No such organization.", body = common::http::openapi::ErrorBody),
    ),
    security(("root_key" = [])),
)]
pub async fn update_subscription(
    State(state): State<AppState>,
    RootOrgAccess(access): RootOrgAccess,
    ApiJson(update): ApiJson<SubscriptionUpdate>,
) -> ApiResult<Json<SubscriptionChanged>> {
    let slug = &access.slug;
    let map = &state.configs.plans.billing_status_map;
    let billing_status = update.status.trim().to_ascii_lowercase();
    let Some(status) = map.get(&billing_status) else {
        let valid: Vec<&str> = map.keys().map(String::as_str).collect();
        return Err(ApiError::bad_request(format!(
            "status {:?} is not a billing status; use one of {}",
            update.status,
            valid.join(", ")
        )));
    };
    let plan = match &update.plan_name {
        Some(p) => {
            let p = p.trim().to_ascii_uppercase();
            if state.configs.plan(&p).is_none() {
                return Err(ApiError::bad_request(format!(
                    "plan_name must be one of {}",
                    state.configs.plan_names().join(", ")
                )));
            }
            Some(p)
        }
        None => None,
    };
    let trial_ends_at = match &update.trial_ends_at {
        Some(raw) => Some(
            DateTime::parse_from_rfc3339(raw)
                .map_err(|_| {
                    ApiError::bad_request("trial_ends_at must be an RFC 3339 timestamp such as 2026-12-31T00:00:00Z")
                })?
                .with_timezone(&Utc),
        ),
        None => None,
    };

    let _guard = store::org_lock(slug.as_str()).await;
    if !store::org_exists(&state, slug.as_str()).await? {
        return Err(ApiError::not_found(format!("no organization {slug}")));
    }
    let sql = format!(
        "UPDATE {} SET status = @status, billing_status = @billing_status, \
         plan_name = COALESCE(@plan_name, plan_name), trial_ends_at = COALESCE(@trial_ends_at, trial_ends_at), \
         updated_at = @now WHERE org_slug = @org_slug",
        state.central_table("org_subscriptions")?
    );
    let now = Utc::now();
    let params = Params::new()
        .bind("status", status.as_str())
        .bind("billing_status", billing_status.as_str())
        .bind("plan_name", plan.clone())
        .bind("trial_ends_at", Param::from(trial_ends_at))
        .bind("now", now)
        .bind("org_slug", slug.as_str());
    state.warehouse.execute(&sql, &params).await?;
    if let Some(plan) = &plan {
        let q = store::quota_row(&state, slug.as_str(), plan)?;
        let sql = format!(
            "UPDATE {} SET plan_name = @plan_name, max_pipeline_runs_per_day = @per_day, \
             max_pipeline_runs_per_month = @per_month, max_concurrent_runs = @concurrent, \
             max_integrations = @integrations, updated_at = @now WHERE org_slug = @org_slug",
            state.central_table("org_usage_quotas")?
        );
        let n = |k: &str| q.get(k).and_then(Value::as_i64).unwrap_or(0);
        let params = Params::new()
            .bind("plan_name", plan.as_str())
            .bind("per_day", n("max_pipeline_runs_per_day"))
            .bind("per_month", n("max_pipeline_runs_per_month"))
            .bind("concurrent", n("max_concurrent_runs"))
            .bind("integrations", n("max_integrations"))
            .bind("now", now)
            .bind("org_slug", slug.as_str());
        state.warehouse.execute(&sql, &params).await?;
    }
    state.audit(&access.caller,
        AuditEvent {
            org_slug: Some(slug.as_str()),
            action: "subscription.update",
            resource_type: "subscription",
            resource_id: Some(slug.as_str()),
            success: true,
            details: json!({"billing_status": billing_status, "status": status, "plan_name": plan, "trial_ends_at": update.trial_ends_at}),
        },
    )
    .await;
    state.orgs.invalidate(slug.as_str());
    let org = access.organization(&state).await?;
    Ok(Json(SubscriptionChanged {
        org_slug: slug.as_str().to_string(),
        subscription: org.subscription.clone(),
        quotas: org.quotas.clone(),
    }))
}

/// The organization's subscription and quotas after the change (as its profile shows them).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SubscriptionChanged {
    org_slug: String,
    subscription: common::orgs::Subscription,
    quotas: common::orgs::Quotas,
}
