//! `configs/notify_systems/{email_notification,slack_notification}/config.yml`: how run
//! notifications are delivered (DESIGN §8), and the words a pipeline file and an organization use
//! to ask for them (channels and triggers). Loaded and checked with the rest of `configs/`.
//!
//! Where a message goes (SMTP server, recipients, webhook) is not here: the SMTP server is a
//! setting (`SMTP_*`), recipients and the Slack webhook belong to each organization
//! (`PUT /api/v1/organizations/{org}/notifications`).

use serde::{Deserialize, Serialize};

pub const EMAIL_CONFIG: &str = "notify_systems/email_notification/config.yml";
pub const SLACK_CONFIG: &str = "notify_systems/slack_notification/config.yml";

/// Where a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Slack,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::Email, Channel::Slack];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Slack => "slack",
        }
    }
}

/// When a run is notified. A finished run fires `on_success` or `on_failure`, and
/// `on_completion` and `always`; a run that failed transiently and waits for a redelivery
/// (PENDING again, not finished) fires only `always`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyTrigger {
    OnFailure,
    OnSuccess,
    OnCompletion,
    Always,
}

impl NotifyTrigger {
    pub const ALL: [NotifyTrigger; 4] =
        [NotifyTrigger::OnFailure, NotifyTrigger::OnSuccess, NotifyTrigger::OnCompletion, NotifyTrigger::Always];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyTrigger::OnFailure => "on_failure",
            NotifyTrigger::OnSuccess => "on_success",
            NotifyTrigger::OnCompletion => "on_completion",
            NotifyTrigger::Always => "always",
        }
    }

    pub fn parse(text: &str) -> Option<NotifyTrigger> {
        NotifyTrigger::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// The triggers an ended run fires: `finished` (SUCCESS or FAILED for good) with `success`,
    /// or not finished (released for a redelivery after a transient failure).
    pub fn fired(finished: bool, success: bool) -> &'static [NotifyTrigger] {
        match (finished, success) {
            (true, true) => &[NotifyTrigger::OnSuccess, NotifyTrigger::OnCompletion, NotifyTrigger::Always],
            (true, false) => &[NotifyTrigger::OnFailure, NotifyTrigger::OnCompletion, NotifyTrigger::Always],
            (false, _) => &[NotifyTrigger::Always],
        }
    }
}

/// How one channel's message is delivered: each attempt bounded by `timeout_secs`, failed
/// attempts retried up to `max_attempts` in all, waiting `initial_backoff_ms` doubled each time
/// up to `max_backoff_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// Longest one attempt may take (connect, send, answer), 1–60 s.
    pub timeout_secs: u64,
    /// Attempts in all, 1–5.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each later one.
    pub initial_backoff_ms: u64,
    /// Longest wait between two attempts, at most 60,000.
    pub max_backoff_ms: u64,
}

impl Delivery {
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=60).contains(&self.timeout_secs) {
            problems.push("delivery.timeout_secs must be from 1 to 60".to_string());
        }
        if !(1..=5).contains(&self.max_attempts) {
            problems.push("delivery.max_attempts must be from 1 to 5".to_string());
        }
        if self.max_backoff_ms > 60_000 {
            problems.push("delivery.max_backoff_ms must be at most 60000".to_string());
        }
        if self.initial_backoff_ms > self.max_backoff_ms {
            problems.push("delivery.initial_backoff_ms must not exceed delivery.max_backoff_ms".to_string());
        }
        problems
    }

    /// The wait before attempt `attempt` (2, 3, …).
    pub fn backoff(&self, attempt: u32) -> std::time::Duration {
        let doublings = attempt.saturating_sub(2).min(16);
        let ms = self.initial_backoff_ms.saturating_mul(1u64 << doublings).min(self.max_backoff_ms);
        std::time::Duration::from_millis(ms)
    }

    /// The longest all attempts may take together (timeouts and waits).
    pub fn budget(&self) -> std::time::Duration {
        let waits: std::time::Duration = (2..=self.max_attempts).map(|a| self.backoff(a)).sum();
        std::time::Duration::from_secs(self.timeout_secs * u64::from(self.max_attempts)) + waits
    }
}

/// `notify_systems/email_notification/config.yml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailNotificationConfig {
    /// Off: no run is emailed, whatever pipelines and organizations ask.
    pub enabled: bool,
    /// Put before every subject, e.g. `[Convergence]`.
    pub subject_prefix: String,
    /// Most recipients an organization may list, 1–50.
    pub max_recipients: usize,
    pub delivery: Delivery,
}

/// `notify_systems/slack_notification/config.yml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackNotificationConfig {
    /// Off: no run is posted to Slack, whatever pipelines and organizations ask.
    pub enabled: bool,
    pub delivery: Delivery,
}

/// Both channels' delivery settings.
#[derive(Debug, Clone)]
pub struct NotifySystems {
    pub email: EmailNotificationConfig,
    pub slack: SlackNotificationConfig,
}

impl NotifySystems {
    /// The problems of both files, each with its file (relative to `configs/`).
    /// Those of a file that parsed are checked, whether or not the other did.
    pub fn problems(
        email: Option<&EmailNotificationConfig>,
        slack: Option<&SlackNotificationConfig>,
    ) -> Vec<(&'static str, String)> {
        let mut problems: Vec<(&'static str, String)> = Vec::new();
        if let Some(email) = email {
            if email.subject_prefix.chars().any(char::is_control) {
                problems.push((EMAIL_CONFIG, "subject_prefix must be one line of text".into()));
            }
            if !(1..=50).contains(&email.max_recipients) {
                problems.push((EMAIL_CONFIG, "max_recipients must be from 1 to 50".into()));
            }
            problems.extend(email.delivery.problems().into_iter().map(|p| (EMAIL_CONFIG, p)));
        }
        if let Some(slack) = slack {
            problems.extend(slack.delivery.problems().into_iter().map(|p| (SLACK_CONFIG, p)));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_the_budget_adds_up() {
        let d = Delivery { timeout_secs: 10, max_attempts: 4, initial_backoff_ms: 500, max_backoff_ms: 1500 };
        let ms = |a| d.backoff(a).as_millis();
        assert_eq!((ms(2), ms(3), ms(4)), (500, 1000, 1500));
        assert_eq!(d.budget(), std::time::Duration::from_millis(40_000 + 3_000));
        assert!(d.problems().is_empty());
        let bad = Delivery { timeout_secs: 0, max_attempts: 9, initial_backoff_ms: 5, max_backoff_ms: 1 };
        assert_eq!(bad.problems().len(), 3, "{:?}", bad.problems());
    }

    #[test]
    fn triggers_fired_by_each_end() {
        use NotifyTrigger::*;
        assert_eq!(NotifyTrigger::fired(true, true), &[OnSuccess, OnCompletion, Always]);
        assert_eq!(NotifyTrigger::fired(true, false), &[OnFailure, OnCompletion, Always]);
        assert_eq!(NotifyTrigger::fired(false, false), &[Always]);
        assert_eq!(NotifyTrigger::parse("on_completion"), Some(OnCompletion));
        assert_eq!(NotifyTrigger::parse("on_error"), None);
    }
}
