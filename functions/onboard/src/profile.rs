//! `GET /api/v1/organizations/{org}`: the organization's profile, subscription and quotas.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use common::auth::Caller;
use common::domain::OrgSlug;
use common::http::error::ApiResult;
use common::http::ApiPath;
use common::{ApiError, AppState};

#[utoipa::path(
    get,
    path = "/api/v1/organizations/{org}",
    tag = "onboard",
    summary = "The organization's profile, subscription and quotas.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$")),
    responses(
        (status = 200, description = "The organization.", body = common::http::openapi::JsonObject),
        (status = 404, description = "No such organization.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn get_organization(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(org): ApiPath<String>,
) -> ApiResult<Response> {
    caller.require_org(&org)?;
    let slug = OrgSlug::parse(&org).map_err(ApiError::bad_request)?;
    state
        .orgs
        .get(state.warehouse.as_ref(), &state.configs, slug.as_str())
        .await?
        .map(|view| Json(view.as_ref()).into_response())
        .ok_or_else(|| ApiError::not_found(format!("no organization {slug}")))
}
