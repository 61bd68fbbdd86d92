//! The run queue: ad-hoc (and, later, scheduled) pipeline runs are accepted by the API, written
//! as PENDING run rows, and handed to a [`RunQueue`] that delivers each request to the executor
//! at least once. The executor claims a run (PENDING → RUNNING) before doing anything, so a
//! second delivery of the same run does nothing.
//!
//! Backends (DESIGN §3): [`local::LocalRunQueue`] (in-process tokio workers, the embedded
//! default) and Pub/Sub (its own issue: selecting it is refused at start-up by the services that
//! enqueue).

pub mod local;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// What travels through the queue: the run row holds everything else (pipeline, window,
/// parameters), so a message is small and a duplicate is harmless.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRequest {
    pub org_slug: String,
    pub run_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("run queue unavailable: {0}")]
    Unavailable(String),
}

/// What a queue delivers requests to (the pipeline executor, bound to the app state).
pub type RunHandler = Arc<dyn Fn(RunRequest) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

#[async_trait]
pub trait RunQueue: Send + Sync + 'static {
    /// `local` or `pubsub`, for logs and health.
    fn backend_name(&self) -> &'static str;
    /// Accepts a run for delivery (at least once) to the handler the queue was started with.
    async fn enqueue(&self, request: RunRequest) -> Result<(), QueueError>;
}

/// Stands in for the Pub/Sub queue until it exists: services that enqueue refuse to start with
/// it ([`unsupported_backend`]); any other service never calls it.
pub struct NotImplementedQueue;

#[async_trait]
impl RunQueue for NotImplementedQueue {
    fn backend_name(&self) -> &'static str {
        "pubsub"
    }

    async fn enqueue(&self, _request: RunRequest) -> Result<(), QueueError> {
        Err(QueueError::Unavailable(PUBSUB_NOT_IMPLEMENTED.into()))
    }
}

pub const PUBSUB_NOT_IMPLEMENTED: &str =
    "QUEUE_BACKEND=pubsub: the Pub/Sub run queue is not implemented yet; use QUEUE_BACKEND=local";

/// [`unsupported_backend`] for the settings in the process environment (a `main` calls it
/// before `run_service`; settings problems themselves are reported by `run_service`).
pub fn unsupported_backend_in_env(defaults: crate::settings::BackendDefaults) -> Option<&'static str> {
    crate::settings::Settings::from_env(defaults).ok().as_ref().and_then(unsupported_backend)
}

/// For the binaries that enqueue runs (`convergence-pipelines-run`, `convergence-local`): the
/// reason to refuse to start when the selected queue backend cannot deliver runs.
pub fn unsupported_backend(settings: &crate::settings::Settings) -> Option<&'static str> {
    (settings.queue_backend == crate::settings::QueueBackend::PubSub).then_some(PUBSUB_NOT_IMPLEMENTED)
}
