//! `GET /api/v1/integrations/{org}/{provider}/pricing/repricing?start_date=&end_date=`: per day
//! of the window, the organization's cost rows priced with a version that is no longer the one in
//! force for their day (after a past-dated catalog or override change), which versions, the
//! version in force now, and the window the provider's `reprice` pipeline should run for. The
//! rules are `common::processors::repricing`'s.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::Json;
use common::http::error::ApiResult;
use common::http::{ApiPath, OrgAccess, ProviderPath};
use common::pricebook::{self, BookKind};
use common::processors::repricing;
use common::{ApiError, AppState};
use serde_json::Value;

use crate::handlers::open;
use crate::input;

#[utoipa::path(
    get,
    path = "/api/v1/integrations/{org}/{provider}/pricing/repricing",
    tag = "pricing",
    summary = "Cost rows priced with a version no longer in force for their day.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$"), ("provider" = String, Path, description = "A provider: openai, anthropic or gcp."), ("start_date" = Option<String>, Query, description = "First day (YYYY-MM-DD; default 31 days ago).", pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"), ("end_date" = Option<String>, Query, description = "Last day (YYYY-MM-DD; default today).", pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")),
    responses(
        (status = 200, description = "The stale rows, counted.", body = repricing::RepricingReport),
        (status = 404, description = "No such organization or provider, or its book is not created yet.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn read_repricing(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiPath(ProviderPath { provider }): ApiPath<ProviderPath>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let book = open(&state, &access, &provider, BookKind::Pricing).await?;
    let org = access.slug.as_str();
    let (start, end) = input::parse_window_query(&query, pricebook::today()).map_err(ApiError::bad_request)?;
    book.require_exists().await?;
    let dataset = state.org_dataset(org);
    let report =
        repricing::repricing_report(state.warehouse.as_ref(), &state.configs, &dataset, org, &provider, start, end)
            .await?;
    Ok(Json(serde_json::to_value(report).map_err(|e| ApiError::internal(e.to_string()))?))
}
