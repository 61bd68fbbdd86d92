//! `convergence-onboard`: one Cloud Run service.
fn main() -> std::process::ExitCode {
    common::http::run_service(onboard::SERVICE, common::settings::BackendDefaults::Cloud, onboard::router)
}
