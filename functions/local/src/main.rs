//! `convergence-local`: the whole API on one port with embedded backends.
fn main() -> std::process::ExitCode {
    let defaults = common::settings::BackendDefaults::Embedded;
    if let Some(reason) = common::queue::unsupported_backend_in_env(defaults) {
        eprintln!("{}: {reason}", local::SERVICE);
        return std::process::ExitCode::FAILURE;
    }
    common::app::run_service(local::SERVICE, defaults, local::router)
}
