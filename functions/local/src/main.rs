//! `convergence-local`: the whole API on one port with embedded backends.
fn main() -> std::process::ExitCode {
    common::app::run_service(local::SERVICE, common::settings::BackendDefaults::Embedded, local::router)
}
