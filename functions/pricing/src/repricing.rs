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
use utoipa::ToSchema;

use crate::handlers::open;
use crate::input;

#[utoipa::path(
    get,
    path = "/api/v1/integrations/{org}/{provider}/pricing/repricing",
    tag = "pricing",
    summary = "Cost rows priced with a version no longer in force for their day.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$"), ("provider" = String, Path, description = "A provider: openai, anthropic or gcp."), ("start_date" = Option<String>, Query, description = "First day (YYYY-MM-DD; default 31 days ago).", pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"), ("end_date" = Option<String>, Query, description = "Last day (YYYY-MM-DD; default today).", pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")),
    responses(
        (status = 200, description = "The stale rows, counted.", body = RepricingReport),
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

// The report is `common::processors::repricing::RepricingReport`; its schema is described here
// (the processors do not depend on the API contract), and the test below fails when the two
// differ in a field.

/// What the repricing read found over a window.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RepricingReport {
    org_slug: String,
    provider: String,
    /// The organization's cost table read.
    cost_table: String,
    #[schema(format = Date)]
    start_date: String,
    #[schema(format = Date)]
    end_date: String,
    /// Cost rows in the window.
    rows: u64,
    /// Rows whose cost would change if priced again now.
    stale_rows: u64,
    /// Rows naming a superseded version whose successor has the same prices.
    relabelled_rows: u64,
    /// Only the days with stale or relabelled rows, in order.
    days: Vec<RepricingDay>,
    /// The smallest window covering every day with stale rows, and the run that reprices it;
    /// null when nothing is stale.
    reprice: Option<RepriceWindow>,
}

/// One day's out-of-date rows.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RepricingDay {
    #[schema(format = Date)]
    usage_date: String,
    /// Cost rows of the day.
    rows: u64,
    stale_rows: u64,
    relabelled_rows: u64,
    changes: Vec<VersionChange>,
}

/// Rows of one model on one day priced with one version that is no longer in force for them.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct VersionChange {
    /// The model as the provider reported it.
    model: String,
    rows: u64,
    /// The version the rows name (null: they were left unpriced).
    priced_with: Option<String>,
    /// The version in force for them now (null: no price now).
    in_force: Option<String>,
    /// `catalog` or `override`.
    #[schema(pattern = "^(catalog|override)$")]
    in_force_source: Option<String>,
    /// The price entry the model matches now (a family or the exact snapshot).
    in_force_model: Option<String>,
    /// False when only the version id would change.
    prices_changed: bool,
}

/// The reprice run that brings the stale rows up to date.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RepriceWindow {
    #[schema(format = Date)]
    start_date: String,
    #[schema(format = Date)]
    end_date: String,
    /// `POST` it with `{"start_date", "end_date"}`.
    run: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use repricing::{RepriceWindow as Window, RepricingDay as Day, RepricingReport as Report, VersionChange as Change};
    use utoipa::PartialSchema;

    /// The field names of a documented struct, as serialized.
    fn documented<T: PartialSchema>() -> Vec<String> {
        let schema = serde_json::to_value(T::schema()).unwrap();
        let mut names: Vec<String> = schema["properties"].as_object().unwrap().keys().cloned().collect();
        names.sort();
        names
    }

    fn answered(value: &impl serde::Serialize) -> Vec<String> {
        let value = serde_json::to_value(value).unwrap();
        let mut names: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        names.sort();
        names
    }

    #[test]
    fn the_documented_report_has_the_fields_of_the_real_one() {
        let change = Change {
            model: "gpt-4o".into(),
            rows: 1,
            priced_with: None,
            in_force: Some("v".into()),
            in_force_source: Some("catalog"),
            in_force_model: None,
            prices_changed: true,
        };
        let day = Day { usage_date: "2026-01-01".into(), rows: 1, stale_rows: 1, relabelled_rows: 0, changes: vec![] };
        let window = Window { start_date: "2026-01-01".into(), end_date: "2026-01-01".into(), run: "/x".into() };
        let report = Report {
            org_slug: "acme".into(),
            provider: "openai".into(),
            cost_table: "openai_cost_daily".into(),
            start_date: "2026-01-01".into(),
            end_date: "2026-01-01".into(),
            rows: 1,
            stale_rows: 1,
            relabelled_rows: 0,
            days: vec![day.clone()],
            reprice: Some(window.clone()),
        };
        assert_eq!(documented::<VersionChange>(), answered(&change));
        assert_eq!(documented::<RepricingDay>(), answered(&day));
        assert_eq!(documented::<RepriceWindow>(), answered(&window));
        assert_eq!(documented::<RepricingReport>(), answered(&report));
    }
}
