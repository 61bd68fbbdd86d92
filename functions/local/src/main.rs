//! `convergence-local`: the whole API on one port with embedded backends.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    common::app::run_service(local::SERVICE, common::settings::BackendDefaults::Embedded, local::router)
}
