//! Serving: the common layers around a function's router, `/health`, the listener loop with
//! graceful shutdown on SIGTERM (Cloud Run sends it before stopping an instance), and the start-up
//! sequence every binary's `main` runs: settings → state (configs, backends) → listener.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;

use super::error::ApiError;
use super::middleware::{rate_limit, request_context, Limiter, RateLimits, REQUEST_ID_HEADER};
use crate::app::AppState;
use crate::auth::API_KEY_HEADER;
use crate::settings::{BackendDefaults, RootKeySource, ServiceNeeds, Settings};

/// `GET /health`: the process is up and its configs loaded. Cheap on purpose (Cloud Run probes
/// it); it does not touch the warehouse.
pub fn health_router(service: &'static str) -> Router<AppState> {
    Router::new().route(
        "/health",
        get(move |State(state): State<AppState>| async move {
            Json(json!({
                "status": "ok",
                "service": service,
                "version": env!("CARGO_PKG_VERSION"),
                "environment": state.settings.environment.as_str(),
                "warehouse": state.warehouse.backend_name(),
                "kms": state.kms.backend_name(),
            }))
        }),
    )
}

/// Wraps a function's routes with the shared plumbing, outermost first: request context (id,
/// logging, JSON errors), CORS, timeout, rate limit, body limit, and a JSON 404 fallback.
pub fn with_plumbing(routes: Router<AppState>, state: AppState) -> Router {
    let settings = &state.settings;
    let cors = cors_layer(&settings.cors_origins);
    let mut routes = routes
        .fallback(|| async { ApiError::not_found("no such route; see the README for the API") })
        .layer(DefaultBodyLimit::max(settings.max_body_bytes));
    // One budget per served router, which is one per process. The client address is found
    // even with rate limiting off: failed authentications are counted per address regardless.
    let enabled = settings.rate_limit_enabled;
    let limits = Arc::new(RateLimits {
        trusted_proxy_hops: settings.trusted_proxy_hops,
        address: enabled
            .then(|| Limiter::new(settings.rate_limit_address_per_second, settings.rate_limit_address_burst)),
        identity: enabled.then(|| Arc::new(Limiter::new(settings.rate_limit_per_second, settings.rate_limit_burst))),
    });
    routes = routes.layer(axum::middleware::from_fn_with_state(limits, rate_limit));
    routes
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(settings.request_timeout_secs),
        ))
        .layer(cors)
        .layer(axum::middleware::from_fn(request_context))
        .with_state(state)
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS])
        // Never the root key's header: a browser has no business holding the root key, and a
        // page that could make one send it would be an attack on it.
        .allow_headers([
            header::CONTENT_TYPE,
            HeaderName::from_static(API_KEY_HEADER),
            HeaderName::from_static(REQUEST_ID_HEADER),
        ])
        .expose_headers([HeaderName::from_static(REQUEST_ID_HEADER), header::RETRY_AFTER])
        .max_age(Duration::from_secs(3600))
}

/// Binds `0.0.0.0:port` (port 0 picks a free one).
pub async fn bind(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))).await
}

/// Serves until SIGTERM or Ctrl-C, then finishes in-flight requests.
pub async fn serve(listener: TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; draining in-flight requests");
}

/// Everything a binary's `main` does: read settings (printing every problem and exiting
/// non-zero when any), build state, bind `$PORT`, serve `app(state)` until SIGTERM.
pub fn run_service(service: &'static str, defaults: BackendDefaults, app: fn(AppState) -> Router) -> ExitCode {
    run_service_needing(service, defaults, ServiceNeeds::PUBLIC_API, app)
}

/// [`run_service`] for a service that needs more than the shared settings (internal endpoints:
/// OIDC settings in staging and production), refused at start-up with every other problem.
pub fn run_service_needing(
    service: &'static str,
    defaults: BackendDefaults,
    needs: ServiceNeeds,
    app: fn(AppState) -> Router,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{service}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut settings = match Settings::from_env_for(defaults, needs) {
            Ok(s) => s,
            Err(problems) => {
                eprintln!("{service}: {problems}");
                return ExitCode::FAILURE;
            }
        };
        crate::logging::init(settings.log_format, settings.gcp_project_id.clone());
        match start(service, defaults, &mut settings, app).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{service}: {e:#}");
                tracing::error!(service, error = %format!("{e:#}"), "start-up failed");
                ExitCode::FAILURE
            }
        }
    })
}

async fn start(
    service: &'static str,
    defaults: BackendDefaults,
    settings: &mut Settings,
    app: fn(AppState) -> Router,
) -> anyhow::Result<()> {
    settings.ensure_root_key().context("cannot prepare the development root key")?;
    let listener = bind(settings.port).await.with_context(|| format!("cannot listen on port {}", settings.port))?;
    let addr = listener.local_addr()?;
    // With PORT=0 the bound port is only known now: provider bases defaulting to the sandbox follow it.
    settings.point_providers_at_sandbox(addr.port());
    let state = AppState::build(settings.clone()).await?;
    let root_key_from = match &settings.root_key_source {
        Some(RootKeySource::Environment) => "CA_ROOT_API_KEY".to_string(),
        Some(RootKeySource::GeneratedFile(p)) => format!("generated development key saved in {}", p.display()),
        Some(RootKeySource::ExistingFile(p)) => format!("development key read from {}", p.display()),
        None => "none (root routes are refused)".to_string(),
    };
    tracing::info!(
        service,
        port = addr.port(),
        environment = settings.environment.as_str(),
        warehouse = state.warehouse.backend_name(),
        kms = state.kms.backend_name(),
        queue = state.queue.backend_name(),
        root_key_from = %root_key_from,
        "listening"
    );
    if defaults == BackendDefaults::Embedded {
        print_local_banner(service, addr.port(), settings);
    }
    // The warehouse may still be opening (DuckDB opens its file in the background so /health
    // answers at once). If it cannot be reached at all, stop instead of serving errors.
    let warehouse = state.warehouse.clone();
    let reachable = tokio::spawn(async move {
        let pinged = warehouse.ping().await;
        if pinged.is_ok() {
            tracing::info!(warehouse = warehouse.backend_name(), "warehouse reachable");
        }
        pinged
    });
    tokio::select! {
        served = serve(listener, app(state)) => served?,
        Ok(Err(e)) = reachable => anyhow::bail!("the warehouse cannot be used: {e}"),
    }
    Ok(())
}

/// What a developer needs after `make run`: the URL, and which root key to use. A development key
/// is printed here, on the terminal, never in a log line; a key from the environment is not.
#[allow(clippy::print_stdout)]
fn print_local_banner(service: &str, port: u16, settings: &Settings) {
    use secrecy::ExposeSecret;
    println!("{service} listening on http://localhost:{port}  (data in {})", settings.data_dir.display());
    match (&settings.root_key_source, &settings.root_api_key) {
        (Some(RootKeySource::Environment), _) => println!("root key: from CA_ROOT_API_KEY"),
        (Some(RootKeySource::GeneratedFile(path)), Some(key)) => println!(
            "root key: generated development key, saved (0600) in {}:\n  {}",
            path.display(),
            key.expose_secret()
        ),
        (Some(RootKeySource::ExistingFile(path)), Some(key)) => {
            println!("root key: development key from {}:\n  {}", path.display(), key.expose_secret())
        }
        _ => println!("root key: none configured; root routes are refused"),
    }
    if settings.sandbox_providers {
        println!(
            "provider sandbox: {base}/sandbox/openai/v1 (keys sk-admin-sandbox-…), {base}/sandbox/anthropic (keys sk-ant-admin01-sandbox-…)",
            base = format_args!("http://localhost:{port}")
        );
    }
}
