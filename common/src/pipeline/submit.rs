//! The one way a single run starts (the run API and anything later call it): the window's range,
//! the organization's subscription, its integration with the pipeline's provider, a run of an
//! overlapping window still going, the plan's quotas, then the PENDING run and the enqueue. Every
//! refusal is a [`SubmitError`] saying what to do; the HTTP edge maps it to a status. The
//! scheduler tick applies the same rules to every organization at once, in a few set-based
//! queries (`schedule.rs`), and records the same run events.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};

use super::catalog::Pipeline;
use super::runlog::{NewRun, RunEvent, RunLogError, RunRow, Trigger, Window};
use super::Pipelines;
use crate::credentials::CredentialError;
use crate::orgs::{Quotas, Subscription};
use crate::queue::RunRequest;
use crate::warehouse::WarehouseError;

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The window is outside what can be run (400).
    #[error("{0}")]
    Window(String),
    #[error("no organization {0}")]
    NoOrganization(String),
    /// The subscription does not allow runs (403).
    #[error("{0}")]
    Subscription(String),
    /// The integration is missing or not VALID (409).
    #[error("{0}")]
    Integration(String),
    /// A plan quota is used up (429), until `retry_after_secs` from now.
    #[error("{message}")]
    Quota { message: String, retry_after_secs: u64 },
    /// The run was recorded but could not be queued; it now reads FAILED with this reason (503).
    #[error("the run could not be queued: {0}")]
    Queue(String),
    #[error(transparent)]
    RunLog(#[from] RunLogError),
    #[error(transparent)]
    Credential(#[from] CredentialError),
}

impl From<WarehouseError> for SubmitError {
    fn from(e: WarehouseError) -> SubmitError {
        SubmitError::RunLog(RunLogError::Warehouse(e))
    }
}

/// What to submit.
pub struct Submission<'a> {
    pub org_slug: &'a str,
    pub pipeline: &'a Pipeline,
    pub window: Window,
    pub trigger: Trigger,
    pub now: DateTime<Utc>,
}

/// What a submission did.
#[derive(Debug)]
pub enum Submitted {
    /// A new PENDING run, queued.
    Accepted(RunRow),
    /// A run of an overlapping window is still PENDING or RUNNING: nothing was submitted.
    AlreadyActive(RunRow),
}

/// Checks a window against the provider's first usable day, today and the pipeline's longest
/// window; the message names the allowed range.
pub fn check_window(
    pipeline: &Pipeline,
    first_usable_day: NaiveDate,
    window: Window,
    today: NaiveDate,
) -> Result<(), SubmitError> {
    if window.end < window.start {
        return Err(SubmitError::Window(format!(
            "end_date ({}) must not be before start_date ({})",
            window.end, window.start
        )));
    }
    if window.start < first_usable_day || window.end > today {
        return Err(SubmitError::Window(format!(
            "the window {} to {} is outside the days {} can be run for: {first_usable_day} (the provider's first usable \
             day) to today ({today}, UTC)",
            window.start, window.end, pipeline.key.provider
        )));
    }
    if window.days() > i64::from(pipeline.max_window_days) {
        return Err(SubmitError::Window(format!(
            "the window from start_date {} to end_date {} is {} days; {} accepts at most {} (max_window_days)",
            window.start,
            window.end,
            window.days(),
            pipeline.file,
            pipeline.max_window_days
        )));
    }
    Ok(())
}

/// The organization's subscription is `ACTIVE`, or `TRIAL` and the trial has not ended.
pub fn check_subscription(sub: &Subscription, now: DateTime<Utc>) -> Result<(), SubmitError> {
    let status = sub.status.as_deref().unwrap_or("NONE");
    match status {
        "ACTIVE" => Ok(()),
        "TRIAL" => {
            let ends = sub.trial_ends_at.as_deref().and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            match ends {
                Some(end) if end.with_timezone(&Utc) <= now => Err(SubmitError::Subscription(format!(
                    "the trial ended at {}; pipelines run only for an ACTIVE subscription or a trial that has not ended",
                    end.with_timezone(&Utc).to_rfc3339()
                ))),
                _ => Ok(()),
            }
        }
        other => Err(SubmitError::Subscription(format!(
            "the subscription is {other}; pipelines run only for an ACTIVE subscription or a TRIAL"
        ))),
    }
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
}

fn seconds_until(now: DateTime<Utc>, then: DateTime<Utc>) -> u64 {
    u64::try_from((then - now).num_seconds()).unwrap_or(1).max(1)
}

impl Pipelines {
    /// The organization has a `VALID` credential for `provider`.
    async fn check_integration(&self, org_slug: &str, provider: &str) -> Result<(), SubmitError> {
        let stored =
            crate::credentials::find_secret(self.warehouse.as_ref(), &self.configs, org_slug, provider).await?;
        match stored {
            Some(c) if c.status == "VALID" => Ok(()),
            Some(c) => Err(SubmitError::Integration(format!(
                "the {provider} integration is {}; fix it with POST /api/v1/integrations/{org_slug}/{provider}/validate \
                 or set it up again",
                c.status
            ))),
            None => Err(SubmitError::Integration(format!(
                "no {provider} integration; set one up with POST /api/v1/integrations/{org_slug}/{provider}/setup"
            ))),
        }
    }

    /// Concurrent, daily and monthly run quotas of the organization's plan. Scheduled runs do
    /// not count against the daily and monthly quotas (they are the product's own work), but
    /// every pending or running run counts against the concurrency cap.
    async fn check_quotas(&self, org_slug: &str, quotas: &Quotas, now: DateTime<Utc>) -> Result<(), SubmitError> {
        let log = self.run_log();
        if let Some(max) = quotas.max_concurrent_runs {
            let active = log.count_active(org_slug, None, None).await?;
            if active >= max {
                return Err(SubmitError::Quota {
                    message: format!(
                        "{active} run(s) are already pending or running; the plan allows {max} at a time. Retry when one finishes"
                    ),
                    retry_after_secs: 30,
                });
            }
        }
        let today = now.date_naive();
        let first_of_month = today.with_day(1).unwrap_or(today);
        let next_month = if first_of_month.month() == 12 {
            NaiveDate::from_ymd_opt(first_of_month.year() + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(first_of_month.year(), first_of_month.month() + 1, 1)
        }
        .unwrap_or(first_of_month);
        let periods = [
            (
                quotas.max_pipeline_runs_per_day,
                "today",
                "per day",
                midnight(today),
                midnight(today) + Duration::days(1),
            ),
            (
                quotas.max_pipeline_runs_per_month,
                "this month",
                "per month",
                midnight(first_of_month),
                midnight(next_month),
            ),
        ];
        for (max, when, per, since, resets) in periods {
            let Some(max) = max else { continue };
            let used = log.count_requested_since(org_slug, since).await?;
            if used >= max {
                return Err(SubmitError::Quota {
                    message: format!(
                        "{used} runs {when}; the plan allows {max} {per}. The quota resets at {}",
                        resets.to_rfc3339()
                    ),
                    retry_after_secs: seconds_until(now, resets),
                });
            }
        }
        Ok(())
    }

    /// Submits one run: checks the window, the organization, its subscription and integration;
    /// then, under the organization's lock, a run of an overlapping window still going
    /// ([`Submitted::AlreadyActive`]), the quotas (ad-hoc and backfill runs), and writes the
    /// PENDING run (its id deterministic: the same window submitted again after a finish is the
    /// next attempt) and enqueues it. A failed enqueue leaves the run FAILED with the reason.
    pub async fn submit(&self, s: &Submission<'_>) -> Result<Submitted, SubmitError> {
        let provider = &s.pipeline.key.provider;
        let first_usable_day =
            self.configs.providers.providers.get(provider).map(|p| p.first_usable_day).unwrap_or(NaiveDate::MIN);
        check_window(s.pipeline, first_usable_day, s.window, s.now.date_naive())?;
        let Some(org) = self.orgs.get(self.warehouse.as_ref(), &self.configs, s.org_slug).await? else {
            return Err(SubmitError::NoOrganization(s.org_slug.to_string()));
        };
        check_subscription(&org.subscription, s.now)?;
        self.check_integration(s.org_slug, provider).await?;

        let pipeline_id = s.pipeline.pipeline_id(s.org_slug);
        let log = self.run_log();
        // One submitter per organization at a time in this process; across instances the
        // deterministic run id keeps a double submission one run.
        let _guard = crate::locks::lock(&format!("pipeline-runs:{}", s.org_slug)).await;
        // Its own runs, and those of the pipelines writing the same tables (`exclusive_with`).
        let exclusive = s.pipeline.exclusive_ids(s.org_slug);
        if let Some(active) = log.active_overlapping(s.org_slug, &exclusive, s.window).await?.into_iter().next() {
            return Ok(Submitted::AlreadyActive(active));
        }
        if s.trigger != Trigger::Scheduled {
            self.check_quotas(s.org_slug, &org.quotas, s.now).await?;
        }
        let attempt =
            log.latest_attempt(s.org_slug, &pipeline_id, s.window, s.trigger).await?.map_or(1, |r| r.attempt + 1);
        let new = NewRun {
            org_slug: s.org_slug,
            pipeline_id: &pipeline_id,
            provider,
            domain: &s.pipeline.key.domain,
            pipeline: s.pipeline.key.pipeline.as_deref(),
            file: &s.pipeline.file,
            trigger: s.trigger,
            window: s.window,
            attempt,
        };
        let run = new.pending(s.now, self.run_lease());
        log.submit(&run).await?;
        self.enqueue(&run).await?;
        Ok(Submitted::Accepted(run))
    }

    /// Hands a recorded run to the queue; if it cannot be queued, the run is FAILED with the
    /// reason (never a PENDING run nothing will execute) and the error says so.
    pub async fn enqueue(&self, run: &RunRow) -> Result<(), SubmitError> {
        let request = RunRequest { org_slug: run.org_slug.clone(), run_id: run.run_id.clone() };
        if let Err(e) = self.queue.enqueue(request).await {
            let reason = e.to_string();
            let failed = run.failed(RunEvent::Finished, &format!("the run could not be queued: {reason}"), Utc::now());
            self.run_log().append_events(&[failed]).await?;
            return Err(SubmitError::Queue(reason));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_statuses() {
        let now = Utc::now();
        let org = |status: &str, trial: Option<String>| Subscription {
            status: Some(status.into()),
            trial_ends_at: trial,
            ..Subscription::default()
        };
        assert!(check_subscription(&org("ACTIVE", None), now).is_ok());
        assert!(check_subscription(&org("TRIAL", Some((now + Duration::days(3)).to_rfc3339())), now).is_ok());
        let ended = check_subscription(&org("TRIAL", Some((now - Duration::days(1)).to_rfc3339())), now).unwrap_err();
        assert!(matches!(&ended, SubmitError::Subscription(m) if m.contains("trial ended")), "{ended}");
        let suspended = check_subscription(&org("SUSPENDED", None), now).unwrap_err();
        assert!(check_subscription(&Subscription::default(), now).unwrap_err().to_string().contains("NONE"));
        assert!(suspended.to_string().contains("SUSPENDED"));
    }
}
