//! What the engine tells the outside world about a run's end: a small trait the composition
//! root hands in (the notification channels of [`crate::notify`] implement it), so the engine
//! knows no SMTP server or webhook and never waits on one before recording an outcome.

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
