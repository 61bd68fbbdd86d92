//! The scheduler-tick function (DESIGN §2, §8, §12): `POST /api/v1/scheduler/tick`, called by
//! Cloud Scheduler, optional body `{"as_of": "YYYY-MM-DD"}` (default: today, UTC). It submits
//! every due run of every organization that may run pipelines and answers with the counts per
//! organization and pipeline; execution is the run queue's.

mod tick;

use axum::routing::post;
use axum::Router;
use common::http::{health_router, with_plumbing};
use common::AppState;

pub const SERVICE: &str = "convergence-scheduler-tick";

/// The function's routes, without the shared plumbing (`convergence-local` merges them).
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/scheduler/tick", post(tick::tick))
}

/// This function's part of the API contract: its routes' `#[utoipa::path]` annotations.
#[derive(utoipa::OpenApi)]
#[openapi(paths(tick::tick))]
pub struct ApiDoc;

/// The function as a complete app: routes, `/health`, its spec at `/openapi.json` and the
/// shared plumbing.
pub fn router(state: AppState) -> Router {
    let spec = common::http::openapi::finish(SERVICE, <ApiDoc as utoipa::OpenApi>::openapi());
    with_plumbing(routes().merge(health_router(SERVICE)).merge(common::http::openapi::spec_router(spec)), state)
}
