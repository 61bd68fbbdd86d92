//! `convergence-integrations`: one Cloud Run service.
fn main() -> std::process::ExitCode {
    common::http::run_service(integrations::SERVICE, common::settings::BackendDefaults::Cloud, integrations::router)
}
