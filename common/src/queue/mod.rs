//! The run queue: ad-hoc (and, later, scheduled) pipeline runs are accepted by the API, written
//! as PENDING run rows, and handed to a [`RunQueue`] that delivers each request to the executor
//! at least once. The executor claims a run (PENDING → RUNNING) before doing anything, so a
//! second delivery of the same run does nothing.
//!
//! Backends (DESIGN §3): [`local::LocalRunQueue`] (in-process tokio workers, the embedded
//! default) and [`pubsub::PubSubRunQueue`] (one Pub/Sub message per run; the topic's push
//! subscription delivers it to pipelines-run, which executes it: nothing runs in-process).

pub mod local;
pub mod pubsub;

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
    /// Accepts a run for delivery at least once: to the handler the local queue was started
    /// with, or through Pub/Sub's push subscription to pipelines-run.
    async fn enqueue(&self, request: RunRequest) -> Result<(), QueueError>;
}
