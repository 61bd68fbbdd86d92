//! The pricing function: LLM prices (DESIGN §2, §9). For each LLM provider with a seed under
//! `configs/{provider}/seed/`: the system-wide price catalog (read with
//! `GET /api/v1/pricing/catalog/{provider}`, written by bootstrap from the seed CSVs and by
//! `POST /api/v1/pricing/catalog/import`), and two books per organization: `pricing` (its
//! overrides of the catalog, listed merged with it, keyed by `{model_id}`) and `subscriptions`
//! (plans and usage tiers, keyed by `{plan_name}`). All are effective-dated; the rules are in
//! `common::pricebook`.
//!
//! `GET .../pricing/repricing` counts the organization's cost rows priced with a version no
//! longer in force for their day (after a past-dated change), for the `reprice` pipelines.
//!
//! The books are created when the integration is set up (integrations calls
//! `common::pricebook::seed`). Before that, reads and edits are 404 saying so, and
//! `POST .../reset` creates and seeds them: the defaults need no credential, and an organization
//! may want to check its prices before connecting the provider.

mod handlers;
mod import;
mod input;
mod repricing;
mod schemas;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;
use common::configs::Configs;
use common::http::{health_router, with_plumbing};
use common::AppState;

pub const SERVICE: &str = "convergence-pricing";

/// The function's routes, without the shared plumbing (`convergence-local` merges them).
pub fn routes() -> Router<AppState> {
    const BASE: &str = "/api/v1/integrations/{org}/{provider}";
    Router::new()
        .route(&format!("{BASE}/pricing"), get(handlers::list_pricing).post(handlers::add_pricing))
        .route(&format!("{BASE}/pricing/reset"), post(handlers::reset_pricing))
        .route(&format!("{BASE}/pricing/repricing"), get(repricing::read_repricing))
        .route(&format!("{BASE}/pricing/{{model_id}}"), put(handlers::update_pricing).delete(handlers::delete_pricing))
        .route(&format!("{BASE}/subscriptions"), get(handlers::list_subscriptions).post(handlers::add_subscription))
        .route(&format!("{BASE}/subscriptions/reset"), post(handlers::reset_subscriptions))
        .route(
            &format!("{BASE}/subscriptions/{{plan_name}}"),
            put(handlers::update_subscription).delete(handlers::delete_subscription),
        )
        .route("/api/v1/pricing/catalog/{provider}", get(handlers::read_catalog))
        // A whole LiteLLM price file is larger than the API's default body limit.
        .route(
            "/api/v1/pricing/catalog/import",
            post(import::import_catalog).layer(DefaultBodyLimit::max(import::MAX_IMPORT_BYTES)),
        )
}

/// This function's part of the API contract: its routes' `#[utoipa::path]` annotations.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    handlers::list_pricing,
    handlers::add_pricing,
    handlers::update_pricing,
    handlers::delete_pricing,
    handlers::reset_pricing,
    repricing::read_repricing,
    handlers::list_subscriptions,
    handlers::add_subscription,
    handlers::update_subscription,
    handlers::delete_subscription,
    handlers::reset_subscriptions,
    handlers::read_catalog,
    import::import_catalog
))]
pub struct ApiDoc;

/// This function's part of the API contract: [`ApiDoc`] with the book entries' schemas, which
/// are generated from the configs (their columns are the book tables').
pub fn openapi(configs: &Configs) -> utoipa::openapi::OpenApi {
    let mut doc = <ApiDoc as utoipa::OpenApi>::openapi();
    schemas::complete(&mut doc, configs);
    doc
}

/// The function as a complete app: routes, `/health`, its spec at `/openapi.json` and the
/// shared plumbing.
pub fn router(state: AppState) -> Router {
    let spec = common::http::openapi::finish(SERVICE, openapi(&state.configs));
    with_plumbing(routes().merge(health_router(SERVICE)).merge(common::http::openapi::spec_router(spec)), state)
}
