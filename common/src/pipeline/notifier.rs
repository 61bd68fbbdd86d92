//! What the engine tells the outside world about a run's end: a small trait the composition
//! root hands in (the notification channels of [`crate::notify`] implement it), so the engine
//! knows no SMTP server or webhook and never waits on one before recording an outcome.

use std::sync::Arc;

use async_trait::async_trait;

use super::runlog::RunRow;

#[async_trait]
pub trait RunNotifier: Send + Sync {
    /// `run` has ended and its end is recorded: `finished` (SUCCESS or FAILED for good), or
    /// released after a transient failure for a redelivery (PENDING again). Called on a task of
    /// its own; an implementation bounds its own time and records its own failures, it never
    /// changes the run's outcome.
    async fn run_ended(&self, run: &RunRow, finished: bool);
}

/// At most this many notifications of runs ended outside an execution go out at once.
const CONCURRENT_NOTIFICATIONS: usize = 8;

/// Tells `notifier` that `runs` ended outside an execution (the tick's expired runs and
/// submissions it could not queue, the runs a previous local process left running) and waits for
/// it: a tick on Cloud Run has CPU only until it answers. A few at a time, each on a task of its
/// own, so one notification's panic reaches neither the others nor the caller.
pub async fn notify_ended(notifier: &Arc<dyn RunNotifier>, runs: Vec<RunRow>) {
    let mut tasks = tokio::task::JoinSet::new();
    for run in runs {
        if tasks.len() >= CONCURRENT_NOTIFICATIONS {
            log_panic(tasks.join_next().await);
        }
        let notifier = notifier.clone();
        tasks.spawn(async move {
            let (org, id) = (run.org_slug.clone(), run.run_id.clone());
            crate::logging::in_run(&org, &id, notifier.run_ended(&run, true)).await
        });
    }
    while let Some(done) = tasks.join_next().await {
        log_panic(Some(done));
    }
}

fn log_panic(done: Option<Result<(), tokio::task::JoinError>>) {
    if let Some(Err(e)) = done {
        tracing::error!(error = %e, "run notification task failed");
    }
}
