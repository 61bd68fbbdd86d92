//! The scheduler tick: for every organization that may run pipelines (ACTIVE, or TRIAL not
//! ended) × every VALID integration × every catalog pipeline of that provider whose schedule is
//! due, submit one run whose window is the newest complete period plus the provider's re-pull
//! days and any catch-up since the last success (capped). The tick only submits; execution is the
//! queue's.
//!
//! Set-based, because a tick covers every organization: four queries read the state of all of
//! them (eligibility, last successes, unfinished runs, this window's earlier attempts), the due
//! runs are computed here, one append records their submissions (and the expiry of runs whose
//! lease passed), one more the `org_scheduled_pipeline_runs` rows, and then each run is published.
//! The number of warehouse statements does not grow with the number of organizations.
//!
//! Idempotent: run ids are deterministic (organization, pipeline, window, trigger, attempt), the
//! attempt follows the window's earlier scheduled runs, and a window with a run still going or a
//! scheduled success is not due, so the same tick twice, or two at once, submit nothing twice.
//! The gates mirror [`super::submit`]'s single-run checks, evaluated over every organization at
//! once.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use super::catalog::{Pipeline, Schedule};
use super::runlog::{NewRun, RunEvent, RunLogError, RunRow, Trigger, Window};
use super::Pipelines;
use crate::warehouse::{format_timestamp, to_row, Params, Row};

/// `org_scheduled_pipeline_runs`: one row per run the tick submitted.
pub const SCHEDULED: &str = "org_scheduled_pipeline_runs";

/// What one (organization, pipeline) needs to know to find its due window.
#[derive(Debug, Clone, Default)]
pub struct PipelineHistory {
    /// The last day covered by a successful run, any trigger.
    pub last_success_end: Option<NaiveDate>,
}

/// The window a pipeline should run for on `as_of` (the tick's day: the newest complete day is
/// the day before), or `None` when nothing is due yet.
///
/// - daily: `[newest - settle_days, newest]`, extended back to the day after the last success
///   (catch-up) but never more than `catchup_days` before `newest`, nor past the pipeline's
///   longest window or the provider's first usable day.
/// - monthly: the previous calendar month.
/// - manual: never due (run on request only).
pub fn due_window(
    pipeline: &Pipeline,
    as_of: NaiveDate,
    settle_days: u32,
    catchup_days: u32,
    first_usable_day: NaiveDate,
    history: &PipelineHistory,
) -> Option<Window> {
    match pipeline.schedule {
        Schedule::Daily => {
            let newest = as_of.pred_opt()?;
            let mut start = newest - Duration::days(i64::from(settle_days));
            let resume_from = match history.last_success_end {
                Some(last) => last.succ_opt()?,
                // Never ran: catch up on the capped history.
                None => NaiveDate::MIN,
            };
            if resume_from < start {
                start = resume_from;
            }
            let longest = i64::from(catchup_days.max(settle_days + 1).min(pipeline.max_window_days.max(1)));
            start = start.max(newest - Duration::days(longest - 1)).max(first_usable_day);
            (start <= newest).then_some(Window { start, end: newest })
        }
        Schedule::Monthly => {
            let this_month = as_of.with_day(1)?;
            let end = this_month.pred_opt()?;
            let start = end.with_day(1)?;
            (start >= first_usable_day).then_some(Window { start, end })
        }
        Schedule::Manual => None,
    }
}

/// Counts of one tick.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct TickReport {
    pub as_of: String,
    /// Runs submitted by this tick.
    pub submitted: usize,
    /// Due windows with a run of an overlapping window still pending or running.
    pub already_active: usize,
    /// Due windows whose scheduled run already succeeded (an earlier tick today).
    pub already_done: usize,
    /// Runs whose lease had passed, recorded as expired (their windows are due again).
    pub expired: usize,
    /// Runs recorded but not queued (each FAILED with the reason).
    pub not_queued: usize,
    /// Warehouse statements this tick issued.
    pub statements: usize,
    /// Per organization, per pipeline id: what happened (`submitted`, `active`, `done`) and the run.
    pub organizations: BTreeMap<String, BTreeMap<String, Value>>,
}

/// One eligible (organization, provider) pair.
struct Eligible {
    org_slug: String,
    provider: String,
}

impl Pipelines {
    /// Runs one tick for `as_of` (UTC day; the newest window ends the day before).
    pub async fn tick(&self, as_of: NaiveDate, now: DateTime<Utc>) -> Result<TickReport, RunLogError> {
        // Two ticks in one process run one after the other; across instances the deterministic
        // run ids keep a double tick from submitting twice.
        let _guard = crate::locks::lock("scheduler-tick").await;
        let log = self.run_log();
        let mut report = TickReport { as_of: as_of.to_string(), ..TickReport::default() };

        let eligible = self.eligible(now).await?;
        let successes = self.last_successes().await?;
        let unfinished = log.unfinished().await?;
        let earliest = as_of - Duration::days(i64::from(self.settings.scheduler_catchup_days.max(1)) + 62);
        let attempts = self.scheduled_attempts(earliest).await?;
        report.statements += 4;
        // (organization, pipeline, last day) of every scheduled success: one lookup per due window.
        let covered_days: std::collections::HashSet<(&(String, String), NaiveDate)> =
            attempts.iter().filter(|(_, a)| a.succeeded).map(|((key, w), _)| (key, w.end)).collect();

        // Runs whose lease passed are recorded as expired; live ones block overlapping windows.
        let mut events: Vec<RunRow> = Vec::new();
        let mut live: HashMap<(String, String), Vec<Window>> = HashMap::new();
        for run in unfinished {
            if run.status.is_active() {
                live.entry((run.org_slug.clone(), run.pipeline_id.clone())).or_default().push(run.window);
            } else {
                let when = run.lease_expires_at.map_or_else(|| "unknown".to_string(), |t| t.to_rfc3339());
                let message = format!("lease expired at {when}: the run stopped reporting; its window is due again");
                events.push(run.failed(RunEvent::Expired, &message, now));
                report.expired += 1;
            }
        }

        let lease = self.run_lease();
        let mut submitted: Vec<RunRow> = Vec::new();
        for Eligible { org_slug, provider } in &eligible {
            let Some(spec) = self.configs.providers.providers.get(provider) else { continue };
            for pipeline in self.configs.pipelines.iter().filter(|p| &p.key.provider == provider) {
                let pipeline_id = pipeline.pipeline_id(org_slug);
                let key = (org_slug.clone(), pipeline_id.clone());
                let history = PipelineHistory { last_success_end: successes.get(&key).copied() };
                let Some(window) = due_window(
                    pipeline,
                    as_of,
                    spec.settle_days,
                    self.settings.scheduler_catchup_days,
                    spec.first_usable_day,
                    &history,
                ) else {
                    continue;
                };
                let outcome = report.organizations.entry(org_slug.clone()).or_default();
                let earlier = attempts.get(&(key.clone(), window)).copied().unwrap_or_default();
                // One run per pipeline per day: a scheduled success of any window ending on the
                // newest day covers this tick (the window itself may differ: it was computed
                // before that success moved the catch-up start).
                let covered = covered_days.contains(&(&key, window.end));
                let blocked_by = |id: String| {
                    live.get(&(org_slug.clone(), id)).is_some_and(|w| w.iter().any(|w| w.overlaps(&window)))
                };
                if pipeline.exclusive_ids(org_slug).into_iter().any(blocked_by) {
                    report.already_active += 1;
                    outcome.insert(
                        pipeline_id,
                        json!({"status": "active", "start_date": window.start, "end_date": window.end}),
                    );
                    continue;
                }
                if covered {
                    report.already_done += 1;
                    outcome.insert(
                        pipeline_id,
                        json!({"status": "done", "start_date": window.start, "end_date": window.end}),
                    );
                    continue;
                }
                let new = NewRun {
                    org_slug,
                    pipeline_id: &pipeline_id,
                    provider,
                    domain: &pipeline.key.domain,
                    pipeline: pipeline.key.pipeline.as_deref(),
                    file: &pipeline.file,
                    trigger: Trigger::Scheduled,
                    window,
                    attempt: earlier.attempts + 1,
                };
                let run = new.pending(now, lease);
                outcome.insert(
                    pipeline_id,
                    json!({"status": "submitted", "run_id": run.run_id, "start_date": window.start, "end_date": window.end, "attempt": run.attempt}),
                );
                submitted.push(run);
            }
        }

        // The expired runs have ended: their notifications go once the end is recorded.
        let mut ended = events.clone();
        events.extend(submitted.iter().cloned());
        if !events.is_empty() {
            log.append_events(&events).await?;
            report.statements += 1;
        }
        if !submitted.is_empty() {
            self.record_scheduled(&submitted, now).await?;
            report.statements += 1;
        }
        report.submitted = submitted.len();

        // Publish: the runs are recorded, so a failed publish leaves a run FAILED with the
        // reason (one more append for all of them), never PENDING with nothing to execute it.
        let mut not_queued = Vec::new();
        for run in &submitted {
            let request = crate::queue::RunRequest { org_slug: run.org_slug.clone(), run_id: run.run_id.clone() };
            if let Err(e) = self.queue.enqueue(request).await {
                let message = format!("the run could not be queued: {e}");
                not_queued.push(run.failed(RunEvent::Finished, &message, Utc::now()));
            }
        }
        if !not_queued.is_empty() {
            report.not_queued = not_queued.len();
            log.append_events(&not_queued).await?;
            report.statements += 1;
            ended.extend(not_queued);
        }
        if let Some(notifier) = &self.notifier {
            super::notifier::notify_ended(notifier, ended).await;
        }
        tracing::info!(
            as_of = %as_of,
            submitted = report.submitted,
            already_active = report.already_active,
            already_done = report.already_done,
            expired = report.expired,
            not_queued = report.not_queued,
            statements = report.statements,
            "scheduler tick"
        );
        Ok(report)
    }

    /// Every (organization, provider) that may run: the organization exists (not provisioning),
    /// its latest subscription is ACTIVE or a TRIAL not ended at `now`, and its latest credential
    /// for the provider is VALID. One query for every organization.
    async fn eligible(&self, now: DateTime<Utc>) -> Result<Vec<Eligible>, RunLogError> {
        let central = |t: &str| self.warehouse.table_ref(self.configs.central_dataset(), t);
        let sql = format!(
            "WITH subs AS (\
               SELECT org_slug, status, trial_ends_at FROM {subs} WHERE TRUE \
               QUALIFY ROW_NUMBER() OVER (PARTITION BY org_slug ORDER BY updated_at DESC, subscription_id DESC) = 1), \
             creds AS (\
               SELECT org_slug, provider, status FROM {creds} WHERE TRUE \
               QUALIFY ROW_NUMBER() OVER (PARTITION BY org_slug, provider ORDER BY updated_at DESC, credential_id DESC) = 1) \
             SELECT c.org_slug, c.provider FROM creds AS c \
             INNER JOIN subs AS s ON s.org_slug = c.org_slug \
             INNER JOIN {profiles} AS p ON p.org_slug = c.org_slug \
             WHERE c.status = 'VALID' AND p.status <> 'PROVISIONING' \
               AND (s.status = 'ACTIVE' OR (s.status = 'TRIAL' AND (s.trial_ends_at IS NULL OR s.trial_ends_at > @now))) \
             ORDER BY c.org_slug, c.provider",
            subs = central("org_subscriptions")?,
            creds = central(crate::credentials::TABLE)?,
            profiles = central("org_profiles")?,
        );
        let rows = self.warehouse.query(&sql, &Params::new().bind("now", now)).await?;
        Ok(rows
            .iter()
            .filter_map(|r| Some(Eligible { org_slug: text(r, "org_slug")?, provider: text(r, "provider")? }))
            .collect())
    }

    /// The last day covered by a successful run, per (organization, pipeline id).
    async fn last_successes(&self) -> Result<HashMap<(String, String), NaiveDate>, RunLogError> {
        let sql = format!(
            "SELECT org_slug, pipeline_id, MAX(end_date) AS last_end FROM {} WHERE status = 'SUCCESS' \
             GROUP BY org_slug, pipeline_id",
            self.warehouse.table_ref(self.configs.central_dataset(), super::runlog::RUNS_CURRENT)?
        );
        let rows = self.warehouse.query(&sql, &Params::new()).await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let day = text(r, "last_end")?.parse().ok()?;
                Some(((text(r, "org_slug")?, text(r, "pipeline_id")?), day))
            })
            .collect())
    }

    /// Earlier scheduled runs per (organization, pipeline id, window) ending on or after `since`:
    /// how many there were (the next attempt follows them) and whether one succeeded.
    async fn scheduled_attempts(
        &self,
        since: NaiveDate,
    ) -> Result<HashMap<((String, String), Window), Attempts>, RunLogError> {
        let sql = format!(
            "SELECT org_slug, pipeline_id, start_date, end_date, COUNT(*) AS attempts, \
               SUM(CASE WHEN status = 'SUCCESS' THEN 1 ELSE 0 END) AS successes \
             FROM {} WHERE trigger = 'scheduled' AND end_date >= @since \
             GROUP BY org_slug, pipeline_id, start_date, end_date",
            self.warehouse.table_ref(self.configs.central_dataset(), super::runlog::RUNS_CURRENT)?
        );
        let rows = self.warehouse.query(&sql, &Params::new().bind("since", since)).await?;
        let mut out = HashMap::new();
        for r in &rows {
            let (Some(org), Some(pipeline_id), Some(start), Some(end)) = (
                text(r, "org_slug"),
                text(r, "pipeline_id"),
                text(r, "start_date").and_then(|d| d.parse().ok()),
                text(r, "end_date").and_then(|d| d.parse().ok()),
            ) else {
                continue;
            };
            let count = |name: &str| r.get(name).and_then(Value::as_i64).unwrap_or(0);
            let attempts = Attempts {
                attempts: u32::try_from(count("attempts")).unwrap_or(u32::MAX),
                succeeded: count("successes") > 0,
            };
            out.insert(((org, pipeline_id), Window { start, end }), attempts);
        }
        Ok(out)
    }

    /// One `org_scheduled_pipeline_runs` row per submitted run, in one append.
    async fn record_scheduled(&self, runs: &[RunRow], now: DateTime<Utc>) -> Result<(), RunLogError> {
        let rows: Vec<Row> = runs
            .iter()
            .map(|run| {
                to_row(json!({
                    "schedule_id": run.run_id,
                    "org_slug": run.org_slug,
                    "pipeline_id": run.pipeline_id,
                    "logical_date": run.window.end.to_string(),
                    "trigger": "scheduled",
                    "status": "ENQUEUED",
                    "run_id": run.run_id,
                    "scheduled_at": format_timestamp(&now),
                    "created_at": format_timestamp(&now),
                }))
            })
            .collect();
        let schema = self.configs.central_table(SCHEDULED);
        self.warehouse.append_rows(self.configs.central_dataset(), schema, "schedule_id", &rows).await?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Attempts {
    attempts: u32,
    succeeded: bool,
}

fn text(row: &Row, name: &str) -> Option<String> {
    row.get(name).and_then(Value::as_str).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::catalog::{Notifications, PipelineKey};

    fn pipeline(schedule: Schedule, max_window_days: u32) -> Pipeline {
        Pipeline {
            key: PipelineKey { provider: "openai".into(), domain: "usage_cost".into(), pipeline: None },
            file: "openai/usage_cost.yml".into(),
            pipeline_id_template: "{org_slug}-openai-usage-cost".into(),
            description: String::new(),
            schedule,
            max_window_days,
            variables: BTreeMap::new(),
            steps: Vec::new(),
            notifications: Notifications::default(),
            exclusive_with: Vec::new(),
        }
    }

    fn day(d: &str) -> NaiveDate {
        d.parse().unwrap()
    }

    fn window(start: &str, end: &str) -> Option<Window> {
        Some(Window { start: day(start), end: day(end) })
    }

    const FIRST: &str = "2020-01-01";

    #[test]
    fn daily_windows_re_pull_settling_days_and_catch_up_capped() {
        let p = pipeline(Schedule::Daily, 31);
        let as_of = day("2026-11-20");
        let after = |last: &str| PipelineHistory { last_success_end: Some(day(last)) };
        // Up to date: the newest day and the two before it (re-pulled while they settle).
        assert_eq!(due_window(&p, as_of, 2, 7, day(FIRST), &after("2026-11-18")), window("2026-11-17", "2026-11-19"));
        assert_eq!(due_window(&p, as_of, 2, 7, day(FIRST), &after("2026-11-19")), window("2026-11-17", "2026-11-19"));
        // A gap since the last success: caught up from the day after it.
        assert_eq!(due_window(&p, as_of, 2, 7, day(FIRST), &after("2026-11-14")), window("2026-11-15", "2026-11-19"));
        // A long gap, or never run: capped at the catch-up days.
        assert_eq!(due_window(&p, as_of, 2, 7, day(FIRST), &after("2026-10-01")), window("2026-11-13", "2026-11-19"));
        assert_eq!(
            due_window(&p, as_of, 2, 7, day(FIRST), &PipelineHistory::default()),
            window("2026-11-13", "2026-11-19")
        );
        // Never more than the pipeline's longest window, never before the provider's first day.
        assert_eq!(
            due_window(&pipeline(Schedule::Daily, 3), as_of, 2, 7, day(FIRST), &PipelineHistory::default()),
            window("2026-11-17", "2026-11-19")
        );
        assert_eq!(
            due_window(&p, as_of, 2, 7, day("2026-11-18"), &PipelineHistory::default()),
            window("2026-11-18", "2026-11-19")
        );
        assert_eq!(due_window(&p, as_of, 2, 7, day("2026-11-20"), &PipelineHistory::default()), None);
        // No settling days: just the newest day.
        assert_eq!(due_window(&p, as_of, 0, 7, day(FIRST), &after("2026-11-18")), window("2026-11-19", "2026-11-19"));
    }

    #[test]
    fn a_month_of_ticks_with_gaps_covers_every_day_and_re_pulls_the_settling_ones() {
        let p = pipeline(Schedule::Daily, 31);
        let first_tick = day("2026-10-01");
        // Days the tick did not run (an outage), and days whose run failed.
        let skipped = ["2026-10-05", "2026-10-06", "2026-10-07", "2026-10-20"];
        let failed = ["2026-10-12", "2026-10-13"];
        let mut history = PipelineHistory { last_success_end: Some(day("2026-09-30")) };
        let mut pulled: BTreeMap<NaiveDate, u32> = BTreeMap::new();
        for offset in 0..31 {
            let as_of = first_tick + Duration::days(offset);
            if skipped.contains(&as_of.to_string().as_str()) {
                continue;
            }
            let window = due_window(&p, as_of, 2, 7, day(FIRST), &history).expect("a window every day");
            assert_eq!(window.end, as_of - Duration::days(1), "the newest complete day");
            assert!(window.days() <= 7, "{window:?}");
            if failed.contains(&as_of.to_string().as_str()) {
                continue;
            }
            let mut d = window.start;
            while d <= window.end {
                *pulled.entry(d).or_default() += 1;
                d = d.succ_opt().unwrap();
            }
            history.last_success_end = Some(window.end);
        }
        // Every day of the month (up to the last tick's newest day) was pulled, gaps included...
        let mut d = day("2026-09-30");
        while d <= day("2026-10-30") {
            assert!(pulled.get(&d).copied().unwrap_or(0) >= 1, "{d} never pulled");
            d = d.succ_opt().unwrap();
        }
        // ...and a day in steady state is pulled three times: as the newest day and in the two
        // re-pulls while it settles.
        assert_eq!(pulled[&day("2026-10-25")], 3);
    }

    #[test]
    fn monthly_windows_are_the_previous_month() {
        let p = pipeline(Schedule::Monthly, 31);
        let none = PipelineHistory::default();
        assert_eq!(due_window(&p, day("2026-12-01"), 2, 7, day(FIRST), &none), window("2026-11-01", "2026-11-30"));
        assert_eq!(due_window(&p, day("2026-03-15"), 2, 7, day(FIRST), &none), window("2026-02-01", "2026-02-28"));
        assert_eq!(due_window(&p, day("2026-01-01"), 2, 7, day(FIRST), &none), window("2025-12-01", "2025-12-31"));
    }

    #[test]
    fn manual_pipelines_are_never_due() {
        let p = pipeline(Schedule::Manual, 92);
        for as_of in ["2026-12-01", "2026-03-15"] {
            assert_eq!(due_window(&p, day(as_of), 2, 7, day(FIRST), &PipelineHistory::default()), None);
        }
    }
}
