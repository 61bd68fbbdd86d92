//! Serving: the common layers around a function's router, `/health`, and the listener loop with
//! graceful shutdown on SIGTERM (Cloud Run sends it before stopping an instance).

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;

use super::error::ApiError;
use super::middleware::{rate_limit, request_context, REQUEST_ID_HEADER};
use crate::app::AppState;
use crate::auth::{API_KEY_HEADER, ROOT_KEY_HEADER};

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
    routes
        .fallback(|| async { ApiError::not_found("no such route; see the README for the API") })
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), rate_limit))
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
        .allow_headers([
            header::CONTENT_TYPE,
            HeaderName::from_static(API_KEY_HEADER),
            HeaderName::from_static(ROOT_KEY_HEADER),
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
