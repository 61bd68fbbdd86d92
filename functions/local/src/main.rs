//! `convergence-local`: the whole API on one port with embedded backends.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let defaults = common::settings::BackendDefaults::Embedded;
    if let Some(reason) = common::queue::unsupported_backend_in_env(defaults) {
        eprintln!("{}: {reason}", local::SERVICE);
        return std::process::ExitCode::FAILURE;
    }
    let needs = common::settings::ServiceNeeds::INTERNAL_ENDPOINTS;
    common::app::run_service_needing(local::SERVICE, defaults, needs, local::router)
}
