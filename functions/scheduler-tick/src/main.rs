//! `convergence-scheduler-tick`: one Cloud Run service.
fn main() -> std::process::ExitCode {
    common::app::run_service(scheduler_tick::SERVICE, common::settings::BackendDefaults::Cloud, scheduler_tick::router)
}
