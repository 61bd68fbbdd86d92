//! The onboard function: organization lifecycle. Dry-run and onboarding (root key), the
//! subscription status pushed by the frontend's billing (root key), the organization's own view
//! of itself (its key), its run notification settings (its key or root), and API-key rotation
//! (its key or root) and revocation (root).

mod api_keys;
mod dryrun;
mod notifications;
mod onboarding;
mod profile;
mod request;
mod store;
mod subscription;

use axum::routing::{get, post, put};
use axum::Router;
use common::http::{health_router, with_plumbing};
use common::AppState;

pub const SERVICE: &str = "convergence-onboard";

/// The function's routes, without the shared plumbing (`convergence-local` merges them).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/organizations/dryrun", post(dryrun::dryrun))
        .route("/api/v1/organizations/onboard", post(onboarding::onboard))
        .route("/api/v1/organizations/{org}", get(profile::get_organization))
        .route("/api/v1/organizations/{org}/subscription", put(subscription::update_subscription))
        .route(
            "/api/v1/organizations/{org}/notifications",
            get(notifications::get_notifications).put(notifications::put_notifications),
        )
        .route("/api/v1/organizations/{org}/api-key/rotate", post(api_keys::rotate))
        .route("/api/v1/organizations/{org}/api-key/revoke", post(api_keys::revoke))
}

/// This function's part of the API contract: its routes' `#[utoipa::path]` annotations.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    dryrun::dryrun,
    onboarding::onboard,
    profile::get_organization,
    subscription::update_subscription,
    notifications::get_notifications,
    notifications::put_notifications,
    api_keys::rotate,
    api_keys::revoke
))]
pub struct ApiDoc;

/// The function as a complete app: routes, `/health`, its spec at `/openapi.json` and the
/// shared plumbing.
pub fn router(state: AppState) -> Router {
    let spec = common::http::openapi::finish(SERVICE, <ApiDoc as utoipa::OpenApi>::openapi());
    with_plumbing(routes().merge(health_router(SERVICE)).merge(common::http::openapi::spec_router(spec)), state)
}
