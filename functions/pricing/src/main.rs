//! `convergence-pricing`: one Cloud Run service.
fn main() -> std::process::ExitCode {
    common::http::run_service(pricing::SERVICE, common::settings::BackendDefaults::Cloud, pricing::router)
}
