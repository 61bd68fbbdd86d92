//! `convergence-local`: every function's routes in one process with the embedded backends
//! (DuckDB file, local key file), for laptops, CI and the end-to-end tests.

use axum::Router;
use common::http::{health_router, with_plumbing};
use common::AppState;

pub const SERVICE: &str = "convergence-local";

/// Every function's routes behind the shared plumbing.
pub fn router(state: AppState) -> Router {
    let routes = bootstrap::routes()
        .merge(onboard::routes())
        .merge(integrations::routes())
        .merge(pricing::routes())
        .merge(pipelines_run::routes())
        .merge(scheduler_tick::routes())
        .merge(health_router(SERVICE));
    with_plumbing(routes, state)
}
