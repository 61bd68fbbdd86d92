//! What the in-process queue's owner (`convergence-local`, one process per data directory) does
//! beside executing runs: at start-up it recovers the runs a previous process left behind, and
//! it ticks its own scheduler every `SCHEDULER_INTERVAL`, so a laptop gets yesterday's costs
//! without cron. On Cloud Run neither applies: Pub/Sub redelivers and Cloud Scheduler ticks.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::runlog::{RunEvent, RunLogError};
use super::Pipelines;
use crate::queue::RunRequest;
use crate::warehouse::WarehouseError;

/// Runs found unfinished at start-up.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// RUNNING when the previous process stopped: now FAILED ("interrupted").
    pub interrupted: usize,
    /// PENDING: queued again.
    pub requeued: usize,
}

pub const INTERRUPTED: &str = "interrupted: the process stopped while the run was going; its window may run again";

impl Pipelines {
    /// Recovers the runs of an earlier process: every run whose latest event is older than
    /// `started` (this process's start) and leaves it unfinished. A claimed run is recorded
    /// FAILED (interrupted), so its window is free at once; a waiting run is queued again.
    /// Runs of this process (events at or after `started`) are left alone.
    pub async fn recover_in_process(&self, started: DateTime<Utc>) -> Result<Recovery, RunLogError> {
        let log = self.run_log();
        let unfinished = match log.unfinished().await {
            Ok(runs) => runs,
            // Not bootstrapped yet: nothing to recover.
            Err(RunLogError::Warehouse(WarehouseError::NotFound(_))) => return Ok(Recovery::default()),
            Err(e) => return Err(e),
        };
        let mut report = Recovery::default();
        let mut interrupted = Vec::new();
        for run in unfinished.into_iter().filter(|r| r.event_at < started) {
            if matches!(run.event, RunEvent::Claimed | RunEvent::Heartbeat) {
                interrupted.push(run.failed(RunEvent::Interrupted, INTERRUPTED, Utc::now()));
            } else {
                let request = RunRequest { org_slug: run.org_slug.clone(), run_id: run.run_id.clone() };
                if let Err(e) = self.queue.enqueue(request).await {
                    tracing::error!(run_id = %run.run_id, error = %e, "run could not be queued again");
                    continue;
                }
                report.requeued += 1;
            }
        }
        report.interrupted = interrupted.len();
        log.append_events(&interrupted).await?;
        if let Some(notifier) = &self.notifier {
            super::notifier::notify_ended(notifier, interrupted).await;
        }
        Ok(report)
    }
}

/// Starts recovery, then the scheduler loop (when `SCHEDULER_INTERVAL` is not 0), in the
/// background: the warehouse may still be opening.
pub fn start(pipelines: Pipelines, started: DateTime<Utc>) {
    tokio::spawn(async move {
        if let Err(e) = pipelines.warehouse.ping().await {
            tracing::error!(error = %e, "the warehouse cannot be used; runs were not recovered");
            return;
        }
        match pipelines.recover_in_process(started).await {
            Ok(r) if r == Recovery::default() => {}
            Ok(r) => tracing::warn!(
                interrupted = r.interrupted,
                requeued = r.requeued,
                "runs of a previous process recovered"
            ),
            Err(e) => tracing::error!(error = %e, "runs of a previous process could not be recovered"),
        }
        let every = pipelines.settings.scheduler_interval_secs;
        if every == 0 {
            return;
        }
        let mut interval = tokio::time::interval(Duration::from_secs(every));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let now = Utc::now();
            match pipelines.tick(now.date_naive(), now).await {
                Ok(_) => {}
                // Before bootstrap there is nothing to tick.
                Err(RunLogError::Warehouse(WarehouseError::NotFound(_))) => {}
                Err(e) => tracing::error!(error = %e, "scheduler tick failed"),
            }
        }
    });
}
