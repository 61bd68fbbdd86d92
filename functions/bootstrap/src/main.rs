//! `convergence-bootstrap`: one Cloud Run service.
fn main() -> std::process::ExitCode {
    common::http::run_service(bootstrap::SERVICE, common::settings::BackendDefaults::Cloud, bootstrap::router)
}
