//! `convergence-pipelines-run`: one Cloud Run service.
fn main() -> std::process::ExitCode {
    common::app::run_service(pipelines_run::SERVICE, common::settings::BackendDefaults::Cloud, pipelines_run::router)
}
