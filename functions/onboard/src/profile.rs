//! `GET /api/v1/organizations/{org}`: the organization's profile, subscription and quotas.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use common::auth::Caller;
use common::domain::OrgSlug;
use common::http::error::ApiResult;
use common::http::ApiPath;
use common::{ApiError, AppState};

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
