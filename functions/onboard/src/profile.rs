//! `GET /api/v1/organizations/{org}`: the organization's profile, subscription and quotas.

use axum::extract::State;
use axum::Json;
use common::auth::Caller;
use common::domain::OrgSlug;
use common::http::error::ApiResult;
use common::http::ApiPath;
use common::{ApiError, AppState};
use serde_json::Value;

use crate::store;

pub async fn get_organization(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(org): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    caller.require_org(&org)?;
    let slug = OrgSlug::parse(&org).map_err(ApiError::bad_request)?;
    store::load_org(&state, slug.as_str())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no organization {slug}")))
}
