//! The pipelines-run function: pipeline runs, their history, and their execution (DESIGN §8, §12).
//!
//! - `POST /api/v1/pipelines/run/{org}/{provider}/{domain}[/{pipeline}]` with `{"date"}` or
//!   `{"start_date", "end_date"}`: submits an ad-hoc run through the pipeline layer → 202.
//!   The path is a key into the pipeline catalog: `/run/acme/openai/usage_cost` runs
//!   `configs/openai/usage_cost.yml`, `/run/acme/gcp/cost/billing` would run `configs/gcp/cost/billing.yml`.
//! - `GET /api/v1/pipelines/runs/{org}/{run_id}`: one run with its steps, totals and errors.
//! - `GET /api/v1/pipelines/runs/{org}?status=&limit=&offset=`: the run history, newest first.
//! - `POST /api/v1/pipelines/push`: Pub/Sub's push delivery of a run, executed in the request.

mod push;
mod run;
mod runs;
mod window;

use axum::routing::{get, post};
use axum::Router;
use common::http::{health_router, with_plumbing};
use common::AppState;

pub const SERVICE: &str = "convergence-pipelines-run";

/// The function's routes, without the shared plumbing (`convergence-local` merges them).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/pipelines/run/{org}/{provider}/{domain}", post(run::run_domain))
        .route("/api/v1/pipelines/run/{org}/{provider}/{domain}/{pipeline}", post(run::run_pipeline))
        .route("/api/v1/pipelines/runs/{org}", get(runs::list))
        .route("/api/v1/pipelines/runs/{org}/{run_id}", get(runs::get_one))
        .route("/api/v1/pipelines/push", post(push::push))
}

/// This function's part of the API contract: its routes' `#[utoipa::path]` annotations.
#[derive(utoipa::OpenApi)]
#[openapi(paths(run::run_domain, run::run_pipeline, runs::list, runs::get_one, push::push))]
pub struct ApiDoc;

/// The function as a complete app: routes, `/health`, its spec at `/openapi.json` and the
/// shared plumbing.
pub fn router(state: AppState) -> Router {
    let spec = common::http::openapi::finish(SERVICE, <ApiDoc as utoipa::OpenApi>::openapi());
    with_plumbing(routes().merge(health_router(SERVICE)).merge(common::http::openapi::spec_router(spec)), state)
}
