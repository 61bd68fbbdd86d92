//! The pricing function. Its routes (DESIGN §2) arrive in their own issue; until then it builds,
//! starts and serves `GET /health` like every function.

use axum::Router;
use common::http::{health_router, with_plumbing};
use common::AppState;

pub const SERVICE: &str = "convergence-pricing";

/// The function's routes, without the shared plumbing (`convergence-local` merges them).
pub fn routes() -> Router<AppState> {
    Router::new()
}

/// The function as a complete app: routes, `/health` and the shared plumbing.
pub fn router(state: AppState) -> Router {
    with_plumbing(routes().merge(health_router(SERVICE)), state)
}
