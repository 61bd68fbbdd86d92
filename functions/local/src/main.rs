//! `convergence-local`: the whole API on one port with embedded backends.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let defaults = common::settings::BackendDefaults::Embedded;
    let needs = common::settings::ServiceNeeds::INTERNAL_ENDPOINTS;
    common::http::run_service_needing(local::SERVICE, defaults, needs, local::router)
}
