//! What a run notification says, whatever the channel: organization, pipeline, run id, status,
//! window, duration, rows, cost totals, the error and the failed expectations, and the link to
//! the run's status. Rendered as a plain-text email and as a Slack message (Block Kit).

use rust_decimal::Decimal;
use serde_json::{json, Value};

/// Failed expectations listed by name; the rest are counted.
pub const MAX_LISTED_EXPECTATIONS: usize = 20;

/// Longest error text quoted (a Slack section holds 3,000 characters).
const MAX_ERROR_CHARS: usize = 1500;

/// A data-quality expectation the run's checks failed.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedExpectation {
    pub check_name: String,
    pub table_name: String,
    pub usage_date: Option<String>,
    pub dimension: Option<String>,
    pub observed: Option<String>,
    pub expected: Option<String>,
}

impl FailedExpectation {
    fn line(&self) -> String {
        let mut line = format!("{} on {}", self.check_name, self.table_name);
        if let Some(day) = &self.usage_date {
            line.push_str(&format!(" ({day})"));
        }
        if let Some(d) = &self.dimension {
            line.push_str(&format!(" [{d}]"));
        }
        match (&self.observed, &self.expected) {
            (Some(o), Some(e)) => line.push_str(&format!(": observed {o}, expected {e}")),
            (Some(o), None) => line.push_str(&format!(": observed {o}")),
            _ => {}
        }
        line
    }
}

/// One run's notification.
#[derive(Debug, Clone, PartialEq)]
pub struct RunMessage {
    pub org_slug: String,
    /// The organization's company name, when known.
    pub org_name: Option<String>,
    pub pipeline_id: String,
    pub run_id: String,
    /// SUCCESS, FAILED, or RETRYING (failed transiently, waiting for a redelivery).
    pub status: String,
    pub trigger: String,
    pub window_start: chrono::NaiveDate,
    pub window_end: chrono::NaiveDate,
    pub duration_ms: Option<i64>,
    pub rows_written: u64,
    /// Computed cost per currency, summed over the run's steps.
    pub costs: Vec<(String, Decimal)>,
    pub error: Option<String>,
    pub warnings: usize,
    /// At most [`MAX_LISTED_EXPECTATIONS`].
    pub failed_expectations: Vec<FailedExpectation>,
    /// How many failed, listed or not.
    pub failed_expectations_total: usize,
    pub status_url: String,
}

impl RunMessage {
    fn organization(&self) -> String {
        match &self.org_name {
            Some(name) if !name.is_empty() => format!("{name} ({})", self.org_slug),
            _ => self.org_slug.clone(),
        }
    }

    fn window(&self) -> String {
        if self.window_start == self.window_end {
            self.window_start.to_string()
        } else {
            format!("{} to {}", self.window_start, self.window_end)
        }
    }

    fn duration(&self) -> String {
        match self.duration_ms {
            // A run released for a redelivery has not finished yet.
            None => "not finished".into(),
            Some(ms) if ms < 1000 => format!("{ms} ms"),
            Some(ms) if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
            Some(ms) => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
        }
    }

    fn cost(&self) -> String {
        if self.costs.is_empty() {
            return "none computed".into();
        }
        self.costs
            .iter()
            .map(|(currency, total)| format!("{} {currency}", total.normalize()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn error(&self) -> Option<String> {
        self.error.as_ref().map(|e| {
            if e.chars().count() > MAX_ERROR_CHARS {
                format!("{}…", e.chars().take(MAX_ERROR_CHARS).collect::<String>())
            } else {
                e.clone()
            }
        })
    }

    fn expectations_more(&self) -> Option<String> {
        let more = self.failed_expectations_total.saturating_sub(self.failed_expectations.len());
        (more > 0).then(|| format!("… and {more} more"))
    }

    /// `[Convergence] FAILED: acme-openai-usage-cost (2026-11-01 to 2026-11-07)`.
    pub fn subject(&self, prefix: &str) -> String {
        let subject = format!("{} {}: {} ({})", prefix.trim(), self.status, self.pipeline_id, self.window());
        // One header line whatever the pipeline id holds.
        subject.replace(['\r', '\n'], " ").trim().to_string()
    }

    /// The plain-text body.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let what = match self.status.as_str() {
            "SUCCESS" => "succeeded",
            "FAILED" => "failed",
            _ => "failed transiently and will be retried",
        };
        out.push_str(&format!("The pipeline run {} {what}.\n\n", self.pipeline_id));
        for (label, value) in [
            ("Organization", self.organization()),
            ("Pipeline", self.pipeline_id.clone()),
            ("Run id", self.run_id.clone()),
            ("Status", self.status.clone()),
            ("Trigger", self.trigger.clone()),
            ("Window", self.window()),
            ("Duration", self.duration()),
            ("Rows written", self.rows_written.to_string()),
            ("Cost", self.cost()),
        ] {
            out.push_str(&format!("{label:<14}{value}\n"));
        }
        if self.warnings > 0 {
            out.push_str(&format!("{:<14}{}\n", "Warnings", self.warnings));
        }
        if let Some(error) = self.error() {
            out.push_str(&format!("\nError:\n{error}\n"));
        }
        if !self.failed_expectations.is_empty() {
            out.push_str(&format!("\nFailed expectations ({}):\n", self.failed_expectations_total));
            for e in &self.failed_expectations {
                out.push_str(&format!("- {}\n", e.line()));
            }
            if let Some(more) = self.expectations_more() {
                out.push_str(&format!("{more}\n"));
            }
        }
        out.push_str(&format!("\nRun status: {}\n", self.status_url));
        out
    }

    /// The Slack message: a fallback `text` (notifications, old clients) and blocks.
    pub fn slack_payload(&self) -> Value {
        let esc = slack_escape;
        let headline = format!("{} {}: {}", status_emoji(&self.status), self.status, self.pipeline_id);
        let field = |label: &str, value: &str| json!({"type": "mrkdwn", "text": format!("*{label}*\n{}", esc(value))});
        let mut blocks = vec![
            json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&headline, 150)}}),
            json!({"type": "section", "fields": [
                field("Organization", &self.organization()),
                field("Run id", &self.run_id),
                field("Window", &self.window()),
                field("Duration", &self.duration()),
                field("Rows written", &self.rows_written.to_string()),
                field("Cost", &self.cost()),
                field("Trigger", &self.trigger),
                field("Warnings", &self.warnings.to_string()),
            ]}),
        ];
        if let Some(error) = self.error() {
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Error*\n```{}```", esc(&error))}}));
        }
        if !self.failed_expectations.is_empty() {
            let mut lines: Vec<String> =
                self.failed_expectations.iter().map(|e| format!("• {}", esc(&e.line()))).collect();
            lines.extend(self.expectations_more());
            let text = truncate(
                &format!("*Failed expectations ({})*\n{}", self.failed_expectations_total, lines.join("\n")),
                2900,
            );
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}));
        }
        blocks.push(json!({"type": "context", "elements": [
            {"type": "mrkdwn", "text": format!("<{}|Run status>", self.status_url)}
        ]}));
        json!({
            "text": format!(
                "{} {}: {} for {} ({}), run {}",
                status_emoji(&self.status),
                self.status,
                esc(&self.pipeline_id),
                esc(&self.organization()),
                self.window(),
                self.run_id
            ),
            "blocks": blocks,
        })
    }
}

fn status_emoji(status: &str) -> &'static str {
    match status {
        "SUCCESS" => ":white_check_mark:",
        "FAILED" => ":x:",
        _ => ":warning:",
    }
}

/// Slack's mrkdwn control characters, escaped as Slack asks.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max - 1).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> RunMessage {
        RunMessage {
            org_slug: "acme".into(),
            org_name: Some("Acme <Inc>".into()),
            pipeline_id: "acme-openai-usage-cost".into(),
            run_id: "0123abcd-0000-0000-0000-000000000000".into(),
            status: "FAILED".into(),
            trigger: "adhoc".into(),
            window_start: "2026-11-01".parse().unwrap(),
            window_end: "2026-11-07".parse().unwrap(),
            duration_ms: Some(65_400),
            rows_written: 42,
            costs: vec![("USD".into(), "12.3400".parse().unwrap())],
            error: Some("step transform_cost failed: x".into()),
            warnings: 1,
            failed_expectations: vec![FailedExpectation {
                check_name: "cost_matches_provider".into(),
                table_name: "openai_cost_daily".into(),
                usage_date: Some("2026-11-02".into()),
                dimension: None,
                observed: Some("10".into()),
                expected: Some("12".into()),
            }],
            failed_expectations_total: 3,
            status_url: "https://api.example.com/api/v1/pipelines/runs/acme/0123abcd".into(),
        }
    }

    #[test]
    fn text_names_everything() {
        let m = message();
        assert_eq!(
            m.subject("[Convergence] "),
            "[Convergence] FAILED: acme-openai-usage-cost (2026-11-01 to 2026-11-07)"
        );
        let text = m.text();
        for needle in [
            "Acme <Inc> (acme)",
            "acme-openai-usage-cost",
            "0123abcd-0000-0000-0000-000000000000",
            "FAILED",
            "2026-11-01 to 2026-11-07",
            "1 min 5 s",
            "Rows written  42",
            "12.34 USD",
            "step transform_cost failed: x",
            "cost_matches_provider on openai_cost_daily (2026-11-02): observed 10, expected 12",
            "… and 2 more",
            "Run status: https://api.example.com/api/v1/pipelines/runs/acme/0123abcd",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn slack_payload_escapes_and_links() {
        let payload = message().slack_payload();
        let all = payload.to_string();
        assert!(all.contains("Acme &lt;Inc&gt; (acme)"), "{all}");
        assert!(!all.contains("Acme <Inc>"), "{all}");
        assert!(all.contains("<https://api.example.com/api/v1/pipelines/runs/acme/0123abcd|Run status>"), "{all}");
        assert!(payload["text"].as_str().unwrap().contains("FAILED: acme-openai-usage-cost"));
        assert_eq!(payload["blocks"][0]["type"], "header");
    }
}
