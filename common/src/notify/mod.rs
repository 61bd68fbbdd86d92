//! Run notifications (DESIGN §8): email over SMTP and Slack through an incoming webhook, sent
//! when a run's end has been recorded, never before and never in its way.
//!
//! Which runs: a pipeline file's `notifications` map each trigger (`on_failure`, `on_success`,
//! `on_completion`, `always`) to channels; an organization that set its own `triggers`
//! (`PUT /api/v1/organizations/{org}/notifications`) overrides them, for every channel it has.
//! Where: the organization's recipients (default: its admin email) through the SMTP server of the
//! settings (`SMTP_*`), and its Slack webhook (KMS-encrypted at rest).
//!
//! How: each channel on its own, each attempt bounded by the channel's timeout, transient
//! failures retried with backoff (`configs/notify_systems/`). Every channel tried is recorded on
//! the run as a step row (`notify_email`, `notify_slack`: SUCCESS, or FAILED with the reason),
//! the insert-only way the run log records everything; a message that could not be sent is
//! logged once, without the webhook URL or the SMTP password. The run's status never changes.

pub mod email;
pub mod message;
pub mod org_settings;
pub mod slack;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use rust_decimal::Decimal;
use serde_json::{json, Value};

pub use email::EmailSender;
pub use message::{FailedExpectation, RunMessage};
pub use org_settings::OrgNotifications;
pub use slack::SlackSender;

use crate::configs::notify::{Channel, Delivery, NotifyTrigger};
use crate::configs::pipelines::Notifications;
use crate::configs::Configs;
use crate::kms::{Kms, KmsError};
use crate::orgs::OrgDirectory;
use crate::pipeline::runlog::{json_column, NewStep, RunLog, RunLogError, RunRow, RunStatus, StepEnd};
use crate::pipeline::RunNotifier;
use crate::settings::{Environment, Settings};
use crate::warehouse::{Warehouse, WarehouseError};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error(transparent)]
    Kms(#[from] KmsError),
    #[error(transparent)]
    RunLog(#[from] RunLogError),
    /// A stored row that cannot be what we wrote.
    #[error("the stored notification settings of {org_slug} are unreadable: {problem}")]
    Corrupt { org_slug: String, problem: &'static str },
}

/// Why one attempt to send failed. The text never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// May pass if tried again (connection, timeout, 4xx SMTP answer, 429/5xx from Slack).
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Permanent(String),
}

/// The channels an ended run is sent to, before checking what is configured: with the
/// organization's own triggers, every channel when one of them fired; otherwise the channels of
/// the pipeline's fired triggers.
pub fn channels_for(fired: &[NotifyTrigger], pipeline: &Notifications, org: &OrgNotifications) -> BTreeSet<Channel> {
    match &org.triggers {
        Some(triggers) if fired.iter().any(|t| triggers.contains(t)) => Channel::ALL.into_iter().collect(),
        Some(_) => BTreeSet::new(),
        None => fired.iter().flat_map(|t| pipeline.channels(*t).iter().copied()).collect(),
    }
}

/// Sends through `send` until it succeeds, fails for good, or `delivery.max_attempts` are
/// spent; each attempt bounded by `delivery.timeout_secs`. Returns the attempts made.
pub async fn with_retries<F, Fut>(delivery: &Delivery, mut send: F) -> (u32, Result<(), SendError>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), SendError>>,
{
    let limit = Duration::from_secs(delivery.timeout_secs);
    let mut attempt = 1;
    loop {
        let result = tokio::time::timeout(limit, send())
            .await
            .unwrap_or_else(|_| Err(SendError::Transient(format!("no answer within {} s", delivery.timeout_secs))));
        match result {
            Err(SendError::Transient(reason)) if attempt < delivery.max_attempts => {
                tracing::debug!(attempt, reason = %reason, "notification attempt failed; trying again");
                attempt += 1;
                tokio::time::sleep(delivery.backoff(attempt)).await;
            }
            other => return (attempt, other),
        }
    }
}

/// The link to a run's status: `PUBLIC_BASE_URL`, else this process on localhost in
/// development, else the path alone.
pub fn status_url(settings: &Settings, org_slug: &str, run_id: &str) -> String {
    let path = format!("/api/v1/pipelines/runs/{org_slug}/{run_id}");
    match (&settings.public_base_url, settings.environment) {
        (Some(base), _) => format!("{base}{path}"),
        (None, Environment::Development) => format!("http://localhost:{}{path}", settings.port),
        (None, _) => path,
    }
}

/// The run notifier the composition root hands to the pipeline engine.
pub struct Notifier {
    settings: Arc<Settings>,
    configs: Arc<Configs>,
    warehouse: Arc<dyn Warehouse>,
    kms: Arc<dyn Kms>,
    orgs: Arc<OrgDirectory>,
    /// `None` when `SMTP_HOST` is unset: email is off.
    email: Option<EmailSender>,
    slack: SlackSender,
}

/// One channel's result, recorded on the run.
struct Sent {
    channel: Channel,
    attempts: u32,
    recipients: usize,
    started_at: chrono::DateTime<Utc>,
    result: Result<(), SendError>,
}

impl Notifier {
    pub fn new(
        settings: Arc<Settings>,
        configs: Arc<Configs>,
        warehouse: Arc<dyn Warehouse>,
        kms: Arc<dyn Kms>,
        orgs: Arc<OrgDirectory>,
    ) -> Result<Notifier, String> {
        let email_timeout = Duration::from_secs(configs.notify.email.delivery.timeout_secs);
        let email = match &settings.smtp {
            Some(smtp) => Some(EmailSender::new(smtp, email_timeout)?),
            None => None,
        };
        let slack = SlackSender::new(Duration::from_secs(configs.notify.slack.delivery.timeout_secs))?;
        match &email {
            Some(sender) => tracing::info!(server = sender.server(), "email notifications through SMTP"),
            None => tracing::info!("email notifications off: SMTP_HOST is not set"),
        }
        Ok(Notifier { settings, configs, warehouse, kms, orgs, email, slack })
    }

    async fn notify(&self, run: &RunRow, finished: bool) -> Result<(), NotifyError> {
        let Some(pipeline) = self.configs.pipelines.get(&run.provider, &run.domain, run.pipeline.as_deref()) else {
            return Ok(());
        };
        let fired = NotifyTrigger::fired(finished, run.status == RunStatus::Success);
        let org = org_settings::find(self.warehouse.as_ref(), &self.configs, &run.org_slug).await?.unwrap_or_default();
        let wanted = channels_for(fired, &pipeline.notifications, &org);
        let email_on = wanted.contains(&Channel::Email) && self.configs.notify.email.enabled && self.email.is_some();
        let slack_on =
            wanted.contains(&Channel::Slack) && self.configs.notify.slack.enabled && org.slack_webhook.is_some();
        if !email_on && !slack_on {
            return Ok(());
        }
        let profile = match self.orgs.get(self.warehouse.as_ref(), &self.configs, &run.org_slug).await {
            Ok(profile) => profile,
            Err(e) => {
                tracing::warn!(error = %e, "organization profile not read for a notification");
                None
            }
        };
        let recipients: Vec<String> = match &org.email_recipients {
            Some(list) => list.clone(),
            None => profile.iter().map(|p| p.admin_email.clone()).filter(|e| !e.is_empty()).collect(),
        };
        let message = self.message(run, profile.as_ref().map(|p| p.company_name.clone())).await;
        let started_at = Utc::now();
        let email = async {
            if !email_on || recipients.is_empty() {
                return None;
            }
            let (subject, body) = (message.subject(&self.configs.notify.email.subject_prefix), message.text());
            let sender = self.email.as_ref()?;
            let (attempts, result) =
                with_retries(&self.configs.notify.email.delivery, || sender.send(&recipients, &subject, &body)).await;
            Some(Sent { channel: Channel::Email, attempts, recipients: recipients.len(), started_at, result })
        };
        let slack = async {
            let cipher = org.slack_webhook.as_ref().filter(|_| slack_on)?;
            let (attempts, result) = match org_settings::decrypt_webhook(self.kms.as_ref(), &run.org_slug, cipher).await
            {
                Ok(webhook) => {
                    let payload = message.slack_payload();
                    with_retries(&self.configs.notify.slack.delivery, || self.slack.post(&webhook, &payload)).await
                }
                Err(e) => {
                    tracing::error!(error = %e, "Slack webhook cannot be decrypted");
                    (0, Err(SendError::Permanent("the Slack webhook cannot be decrypted; set it again".into())))
                }
            };
            Some(Sent { channel: Channel::Slack, attempts, recipients: 1, started_at, result })
        };
        let (email, slack) = tokio::join!(email, slack);
        let log = RunLog::new(self.warehouse.as_ref(), &self.configs);
        for sent in email.into_iter().chain(slack) {
            self.record(&log, run, pipeline.steps.len(), fired, &sent).await;
        }
        Ok(())
    }

    /// The message of `run`: what the run row says, the cost its steps computed, the
    /// expectations its checks failed. A part that cannot be read is left out (and logged): the
    /// notification still goes.
    async fn message(&self, run: &RunRow, org_name: Option<String>) -> RunMessage {
        let log = RunLog::new(self.warehouse.as_ref(), &self.configs);
        let costs = match log.steps_of(&run.org_slug, &run.run_id).await {
            Ok(steps) => {
                let mut totals: std::collections::BTreeMap<String, Decimal> = Default::default();
                for step in &steps {
                    let metrics = &json_column(step, "metadata")["metrics"];
                    let total = metrics["total_cost"].as_str().and_then(|t| t.parse::<Decimal>().ok());
                    if let (Some(total), Some(currency)) = (total, metrics["currency"].as_str()) {
                        *totals.entry(currency.to_string()).or_default() += total;
                    }
                }
                totals.into_iter().collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, "run steps not read for a notification");
                Vec::new()
            }
        };
        let (failed_expectations, failed_expectations_total) = match self.failed_expectations(run).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "data-quality results not read for a notification");
                (Vec::new(), 0)
            }
        };
        RunMessage {
            org_slug: run.org_slug.clone(),
            org_name,
            pipeline_id: run.pipeline_id.clone(),
            run_id: run.run_id.clone(),
            status: match run.status {
                RunStatus::Success => "SUCCESS".into(),
                RunStatus::Failed => "FAILED".into(),
                RunStatus::Pending | RunStatus::Running => "RETRYING".into(),
            },
            trigger: run.trigger.as_str().into(),
            window_start: run.window.start,
            window_end: run.window.end,
            duration_ms: run.duration_ms,
            rows_written: run.rows_written,
            costs,
            error: run.error_message.clone(),
            warnings: run.warnings.len(),
            failed_expectations,
            failed_expectations_total,
            status_url: status_url(&self.settings, &run.org_slug, &run.run_id),
        }
    }

    /// The expectations that failed the run (the first few) and how many there are.
    async fn failed_expectations(&self, run: &RunRow) -> Result<(Vec<FailedExpectation>, usize), WarehouseError> {
        let (rows, total) = crate::pipeline::dq_results::failed_expectations(
            self.warehouse.as_ref(),
            &self.configs,
            &run.org_slug,
            &run.run_id,
            false,
        )
        .await?;
        let text = |v: Option<&Value>| match v {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let listed = rows
            .iter()
            .take(message::MAX_LISTED_EXPECTATIONS)
            .map(|r| FailedExpectation {
                check_name: text(r.get("expectation")).unwrap_or_default(),
                table_name: text(r.get("table_name")).unwrap_or_default(),
                usage_date: text(r.get("usage_date")),
                dimension: text(r.get("dimension")),
                observed: text(r.get("observed_value")).map(|v| number(&v)),
                expected: text(r.get("expected_value")).map(|v| number(&v)),
            })
            .collect();
        Ok((listed, total))
    }

    /// Records one channel's result on the run as a `notify_*` step row; a failure is logged
    /// once here (the reason holds no secret).
    async fn record(&self, log: &RunLog<'_>, run: &RunRow, steps: usize, fired: &[NotifyTrigger], sent: &Sent) {
        let channel = sent.channel.as_str();
        match &sent.result {
            Ok(()) => tracing::info!(channel, attempts = sent.attempts, "run notification sent"),
            Err(e) => tracing::warn!(channel, attempts = sent.attempts, error = %e, "run notification not sent"),
        }
        let (step_id, ps_type) = match sent.channel {
            Channel::Email => ("notify_email", "notify.email"),
            Channel::Slack => ("notify_slack", "notify.slack"),
        };
        let step_log_id = uuid::Uuid::new_v4().to_string();
        let new = NewStep {
            step_log_id: &step_log_id,
            run_id: &run.run_id,
            org_slug: &run.org_slug,
            pipeline_id: &run.pipeline_id,
            step_id,
            ps_type,
            step_index: steps + if sent.channel == Channel::Email { 0 } else { 1 },
            started_at: sent.started_at,
        };
        let triggers: Vec<&str> = fired.iter().map(|t| t.as_str()).collect();
        let metadata = json!({
            "metrics": {"channel": channel, "attempts": sent.attempts, "recipients": sent.recipients, "triggers": triggers},
            "warnings": [],
        });
        let error = sent.result.as_ref().err().map(|e| format!("{channel} notification not sent: {e}"));
        let end = StepEnd { success: sent.result.is_ok(), rows: 0, error: error.as_deref(), metadata: &metadata };
        if let Err(e) = log.finish_step(&new, &end).await {
            tracing::error!(channel, error = %e, "run notification result not recorded");
        }
    }
}

/// A NUMERIC as people write it (`3`, not `3.000000000`); other text as it is.
fn number(text: &str) -> String {
    text.parse::<Decimal>().map_or_else(|_| text.to_string(), |d| d.normalize().to_string())
}

#[async_trait]
impl RunNotifier for Notifier {
    async fn run_ended(&self, run: &RunRow, finished: bool) {
        if let Err(e) = self.notify(run, finished).await {
            tracing::warn!(error = %e, "run notifications not sent: their settings cannot be read");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organization_triggers_override_the_pipelines() {
        use Channel::*;
        use NotifyTrigger::*;
        let pipeline = Notifications { on_failure: vec![Email, Slack], on_success: vec![Slack], ..Default::default() };
        let none = OrgNotifications::default();
        let failed = NotifyTrigger::fired(true, false);
        let succeeded = NotifyTrigger::fired(true, true);
        let retrying = NotifyTrigger::fired(false, false);
        assert_eq!(channels_for(failed, &pipeline, &none), BTreeSet::from([Email, Slack]));
        assert_eq!(channels_for(succeeded, &pipeline, &none), BTreeSet::from([Slack]));
        assert!(channels_for(retrying, &pipeline, &none).is_empty());
        let own = OrgNotifications { triggers: Some(vec![OnSuccess]), ..Default::default() };
        assert!(channels_for(failed, &pipeline, &own).is_empty(), "the organization's triggers win");
        assert_eq!(channels_for(succeeded, &pipeline, &own), BTreeSet::from([Email, Slack]));
        let always = OrgNotifications { triggers: Some(vec![Always]), ..Default::default() };
        assert_eq!(channels_for(retrying, &Notifications::default(), &always).len(), 2);
        let silent = OrgNotifications { triggers: Some(vec![]), ..Default::default() };
        assert!(channels_for(failed, &pipeline, &silent).is_empty());
    }

    #[tokio::test]
    async fn transient_failures_are_retried_and_permanent_ones_are_not() {
        let delivery = Delivery { timeout_secs: 1, max_attempts: 3, initial_backoff_ms: 10, max_backoff_ms: 20 };
        let calls = std::sync::atomic::AtomicU32::new(0);
        let (attempts, result) = with_retries(&delivery, || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(SendError::Transient("down".into()))
        })
        .await;
        assert_eq!((attempts, result), (3, Err(SendError::Transient("down".into()))));
        let (attempts, result) = with_retries(&delivery, || async { Err(SendError::Permanent("no".into())) }).await;
        assert_eq!((attempts, result), (1, Err(SendError::Permanent("no".into()))));
        // An attempt that never answers is cut at the timeout, then tried again.
        let slow = std::sync::atomic::AtomicU32::new(0);
        let (attempts, result) = with_retries(&delivery, || async {
            if slow.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                std::future::pending::<()>().await;
            }
            Ok(())
        })
        .await;
        assert_eq!((attempts, result), (2, Ok(())));
    }
}
