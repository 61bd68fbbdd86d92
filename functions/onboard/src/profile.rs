//! `GET /api/v1/organizations/{org}`: the organization's profile, subscription and quotas.

use axum::extract::State;
use axum::Json;
use common::http::error::ApiResult;
use common::http::OrgAccess;
use common::orgs::Organization;
use common::AppState;

#[utoipa::path(
    get,
    path = "/api/v1/organizations/{org}",
    tag = "onboard",
    summary = "The organization's profile, subscription and quotas.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$")),
    responses(
        (status = 200, description = "The organization.", body = Organization),
        (status = 404, description = "No such organization.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn get_organization(State(state): State<AppState>, access: OrgAccess) -> ApiResult<Json<Organization>> {
    Ok(Json(access.organization(&state).await?.as_ref().clone()))
}
