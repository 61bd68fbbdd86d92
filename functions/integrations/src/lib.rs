//! The integrations function: an organization's provider credentials (OpenAI and Anthropic admin
//! keys, a Google Cloud service account reading the billing export). Each is validated with the
//! provider before it is stored KMS-encrypted, one per (org, provider); it is never returned,
//! logged or quoted in an error. Setting up an LLM provider seeds its price book.

mod check;
mod request;
mod setup;
mod store;
mod validate;
mod view;

use axum::routing::{get, post};
use axum::Router;
use common::http::{health_router, with_plumbing};
use common::AppState;

pub const SERVICE: &str = "convergence-integrations";

/// The function's routes, without the shared plumbing (`convergence-local` merges them).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/integrations/{org}", get(view::list))
        .route("/api/v1/integrations/{org}/{provider}", get(view::get_one).delete(view::delete))
        .route("/api/v1/integrations/{org}/{provider}/setup", post(setup::setup))
        .route("/api/v1/integrations/{org}/{provider}/validate", post(validate::validate))
}

/// This function's part of the API contract: its routes' `#[utoipa::path]` annotations.
#[derive(utoipa::OpenApi)]
#[openapi(paths(view::list, view::get_one, view::delete, setup::setup, validate::validate))]
pub struct ApiDoc;

/// The function as a complete app: routes, `/health`, its spec at `/openapi.json` and the
/// shared plumbing.
pub fn router(state: AppState) -> Router {
    let spec = common::http::openapi::finish(SERVICE, <ApiDoc as utoipa::OpenApi>::openapi());
    with_plumbing(routes().merge(health_router(SERVICE)).merge(common::http::openapi::spec_router(spec)), state)
}
