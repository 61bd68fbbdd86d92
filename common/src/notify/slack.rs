//! Slack through an incoming webhook: one JSON POST per message. The webhook URL is a secret
//! (it is the credential): it never appears in an error or a log line.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::SendError;

/// Most of an error answer's body kept for the message (Slack answers `invalid_payload`,
/// `no_service`, …).
const MAX_ANSWER_CHARS: usize = 200;

#[derive(Debug, Clone)]
pub struct SlackSender {
    client: reqwest::Client,
}

impl SlackSender {
    /// Each post times out after `timeout`; redirects are not followed (a webhook does not
    /// redirect, and the URL's secret must not travel elsewhere).
    pub fn new(timeout: Duration) -> Result<SlackSender, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(SlackSender { client })
    }

    pub async fn post(&self, webhook: &SecretString, payload: &Value) -> Result<(), SendError> {
        let response = self
            .client
            .post(webhook.expose_secret())
            .json(payload)
            .send()
            .await
            .map_err(|e| SendError::Transient(format!("Slack webhook: {}", e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let answer = read_limited(response).await;
        let text = format!("Slack webhook answered {}: {answer}", status.as_u16());
        if status.as_u16() == 429 || status.is_server_error() || status.as_u16() == 408 {
            Err(SendError::Transient(text))
        } else {
            Err(SendError::Permanent(text))
        }
    }
}

/// The start of an answer's body, read no further than needed.
async fn read_limited(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        bytes.extend_from_slice(&chunk);
        if bytes.len() >= MAX_ANSWER_CHARS * 4 {
            break;
        }
    }
    let text: String = String::from_utf8_lossy(&bytes).chars().take(MAX_ANSWER_CHARS).collect();
    let text = text.trim().replace(['\r', '\n'], " ");
    if text.is_empty() {
        "(no body)".into()
    } else {
        text
    }
}
