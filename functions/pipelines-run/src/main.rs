//! `convergence-pipelines-run`: one Cloud Run service.
fn main() -> std::process::ExitCode {
    let defaults = common::settings::BackendDefaults::Cloud;
    let needs = common::settings::ServiceNeeds::INTERNAL_ENDPOINTS;
    common::http::run_service_needing(pipelines_run::SERVICE, defaults, needs, pipelines_run::router)
}
