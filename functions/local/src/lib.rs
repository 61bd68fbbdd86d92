//! `convergence-local`: every function's routes in one process with the embedded backends
//! (DuckDB file, local key file), for laptops, CI and the end-to-end tests.

use axum::Router;
use common::http::{health_router, with_plumbing};
use common::AppState;

pub mod sandbox;

pub const SERVICE: &str = "convergence-local";

/// The whole API's contract: the six functions' documents merged (the pricing function's
/// entries' schemas come from the configs).
pub fn openapi(configs: &common::configs::Configs) -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    common::http::openapi::merged(
        SERVICE,
        [
            bootstrap::ApiDoc::openapi(),
            onboard::ApiDoc::openapi(),
            integrations::ApiDoc::openapi(),
            pricing::openapi(configs),
            pipelines_run::ApiDoc::openapi(),
            scheduler_tick::ApiDoc::openapi(),
        ],
    )
}

/// Every function's routes behind the shared plumbing, plus the provider sandbox when
/// `SANDBOX_PROVIDERS` is on (outside the rate limiter and our error shapes: it answers like the
/// providers do).
pub fn router(state: AppState) -> Router {
    let routes = bootstrap::routes()
        .merge(onboard::routes())
        .merge(integrations::routes())
        .merge(pricing::routes())
        .merge(pipelines_run::routes())
        .merge(scheduler_tick::routes())
        .merge(health_router(SERVICE))
        .merge(common::http::openapi::spec_router(openapi(&state.configs)));
    let sandbox = state
        .settings
        .sandbox_providers
        .then(|| sandbox::router(&state).layer(axum::middleware::from_fn(common::http::middleware::request_context)));
    let app = with_plumbing(routes, state);
    match sandbox {
        Some(sandbox) => app.merge(sandbox),
        None => app,
    }
}
