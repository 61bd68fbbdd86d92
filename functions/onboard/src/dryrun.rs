//! `POST /api/v1/organizations/dryrun`: every onboarding check, passed or not; creates nothing.

use axum::extract::State;
use axum::Json;
use common::http::error::ApiResult;
use common::http::extract::RootCaller;
use common::http::ApiJson;
use common::AppState;
use serde::Serialize;

use crate::request::OnboardRequest;
use crate::store;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Check {
    pub check: &'static str,
    pub passed: bool,
    pub message: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DryRunReport {
    /// True when every check passed: onboarding this request would succeed now.
    pub valid: bool,
    pub org_slug: String,
    pub dataset_id: Option<String>,
    pub checks: Vec<Check>,
}

#[utoipa::path(
    post,
    path = "/api/v1/organizations/dryrun",
    tag = "onboard",
    summary = "Check an onboarding request without changing anything.",
    request_body = crate::request::OnboardRequest,
    responses(
        (status = 200, description = "Each check and whether it passed.", body = DryRunReport),
    ),
    security(("root_key" = [])),
)]
pub async fn dryrun(
    State(state): State<AppState>,
    RootCaller(caller): RootCaller,
    ApiJson(request): ApiJson<OnboardRequest>,
) -> ApiResult<Json<DryRunReport>> {
    caller.require_root()?;
    let mut checks: Vec<Check> = request
        .field_checks(&state)
        .into_iter()
        .map(|(check, outcome)| match outcome {
            Ok(message) => Check { check, passed: true, message },
            Err(message) => Check { check, passed: false, message },
        })
        .collect();
    let slug_ok = checks.first().is_some_and(|c| c.passed);

    let reachable = state.warehouse.ping().await;
    checks.push(match &reachable {
        Ok(()) => Check {
            check: "warehouse_reachable",
            passed: true,
            message: format!("{} warehouse answered", state.warehouse.backend_name()),
        },
        Err(_) => Check { check: "warehouse_reachable", passed: false, message: "the warehouse did not answer".into() },
    });
    let missing = if reachable.is_ok() { store::missing_central_tables(&state).await? } else { Vec::new() };
    let bootstrapped = reachable.is_ok() && missing.is_empty();
    checks.push(Check {
        check: "central_tables_present",
        passed: bootstrapped,
        message: if bootstrapped {
            format!("all {} central tables exist", state.configs.central_tables.len())
        } else if reachable.is_err() {
            "cannot check: the warehouse did not answer".into()
        } else {
            format!("missing {}; call POST /api/v1/admin/bootstrap first", missing.join(", "))
        },
    });
    let available =
        if slug_ok && bootstrapped { Some(!store::org_exists(&state, &request.org_slug).await?) } else { None };
    checks.push(Check {
        check: "org_slug_available",
        passed: available == Some(true),
        message: match available {
            Some(true) => format!("{} is not taken", request.org_slug),
            Some(false) => format!("an organization {} already exists", request.org_slug),
            None => "cannot check until the slug is valid and the system is bootstrapped".into(),
        },
    });
    let dataset_id = slug_ok.then(|| state.org_dataset(&request.org_slug));
    Ok(Json(DryRunReport { valid: checks.iter().all(|c| c.passed), org_slug: request.org_slug, dataset_id, checks }))
}
