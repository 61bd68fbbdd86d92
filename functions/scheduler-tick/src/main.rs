//! `convergence-scheduler-tick`: one Cloud Run service.
fn main() -> std::process::ExitCode {
    let defaults = common::settings::BackendDefaults::Cloud;
    let needs = common::settings::ServiceNeeds::INTERNAL_ENDPOINTS;
    common::http::run_service_needing(scheduler_tick::SERVICE, defaults, needs, scheduler_tick::router)
}
