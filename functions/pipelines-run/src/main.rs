//! `convergence-pipelines-run`: one Cloud Run service.
fn main() -> std::process::ExitCode {
    let defaults = common::settings::BackendDefaults::Cloud;
    if let Some(reason) = common::queue::unsupported_backend_in_env(defaults) {
        eprintln!("{}: {reason}", pipelines_run::SERVICE);
        return std::process::ExitCode::FAILURE;
    }
    let needs = common::settings::ServiceNeeds::INTERNAL_ENDPOINTS;
    common::app::run_service_needing(pipelines_run::SERVICE, defaults, needs, pipelines_run::router)
}
