//! `GET /api/v1/organizations/{org}`: the organization's profile, subscription and quotas.

use axum::extract::State;
use axum::Json;
use common::http::error::ApiResult;
use common::http::OrgAccess;
use common::orgs::Organization;
use common::AppState;

pub async fn get_organization(State(state): State<AppState>, access: OrgAccess) -> ApiResult<Json<Organization>> {
    Ok(Json(access.organization(&state).await?.as_ref().clone()))
}
