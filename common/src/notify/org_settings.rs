//! An organization's notification settings in `organizations.org_notification_settings`: one
//! row per organization, replaced whole (atomically, like a provider credential) on each change.
//! The Slack webhook URL is a secret: KMS-encrypted with the organization as associated data,
//! never returned, never logged; only its fingerprint is shown.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::NotifyError;
use crate::configs::notify::NotifyTrigger;
use crate::configs::Configs;
use crate::kms::Kms;
use crate::settings::Environment;
use crate::warehouse::{format_timestamp, to_row, Params, Row, Warehouse};

pub const TABLE: &str = "org_notification_settings";

/// Where Slack's incoming webhooks live; the only destination accepted outside development
/// (DESIGN §6: outbound calls go only where they should).
pub const SLACK_WEBHOOK_PREFIX: &str = "https://hooks.slack.com/";

/// Longest webhook URL accepted (Slack's are about 80 characters).
const MAX_WEBHOOK_LEN: usize = 512;

/// What an organization stored; the default (no row) is "admin email, no Slack, each
/// pipeline's triggers".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrgNotifications {
    /// `None`: the organization's admin email.
    pub email_recipients: Option<Vec<String>>,
    /// KMS ciphertext of the webhook URL.
    pub slack_webhook: Option<Vec<u8>>,
    pub slack_webhook_fingerprint: Option<String>,
    /// `None`: each pipeline's own triggers.
    pub triggers: Option<Vec<NotifyTrigger>>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

/// KMS associated data: the ciphertext decrypts only as this organization's webhook.
pub fn webhook_aad(org_slug: &str) -> Vec<u8> {
    format!("notifications:{org_slug}:slack_webhook").into_bytes()
}

/// The organization's stored settings, if it stored any.
pub async fn find(
    warehouse: &dyn Warehouse,
    configs: &Configs,
    org_slug: &str,
) -> Result<Option<OrgNotifications>, NotifyError> {
    let sql = format!(
        "SELECT email_recipients, encrypted_slack_webhook, slack_webhook_fingerprint, triggers, created_at, updated_at \
         FROM {} WHERE org_slug = @org_slug ORDER BY updated_at DESC LIMIT 1",
        warehouse.table_ref(configs.central_dataset(), TABLE)?
    );
    let Some(row) = warehouse.query(&sql, &Params::new().bind("org_slug", org_slug)).await?.into_iter().next() else {
        return Ok(None);
    };
    let corrupt = |problem: &'static str| NotifyError::Corrupt { org_slug: org_slug.to_string(), problem };
    let email_recipients = match json_column(&row, "email_recipients") {
        Value::Null => None,
        Value::Array(items) => Some(
            items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| corrupt("email_recipients is not a list of addresses"))?,
        ),
        _ => return Err(corrupt("email_recipients is not a list")),
    };
    let triggers = match json_column(&row, "triggers") {
        Value::Null => None,
        Value::Array(items) => Some(
            items
                .iter()
                .map(|v| v.as_str().and_then(NotifyTrigger::parse))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| corrupt("triggers holds an unknown trigger"))?,
        ),
        _ => return Err(corrupt("triggers is not a list")),
    };
    let slack_webhook = match row.get("encrypted_slack_webhook") {
        None | Some(Value::Null) => None,
        Some(Value::String(b64)) if b64.is_empty() => None,
        Some(Value::String(b64)) => Some(STANDARD.decode(b64).map_err(|_| corrupt("the webhook is not base64"))?),
        Some(_) => return Err(corrupt("the webhook is not bytes")),
    };
    let text = |name: &str| row.get(name).and_then(Value::as_str).map(str::to_string);
    Ok(Some(OrgNotifications {
        email_recipients,
        slack_webhook,
        slack_webhook_fingerprint: text("slack_webhook_fingerprint"),
        triggers,
        created_at: text("created_at"),
        updated_at: text("updated_at"),
    }))
}

/// Stores `settings` as the organization's, replacing what it had in one atomic step.
pub async fn replace(
    warehouse: &dyn Warehouse,
    configs: &Configs,
    org_slug: &str,
    settings: &OrgNotifications,
    updated_by: &str,
) -> Result<(), NotifyError> {
    let now = format_timestamp(&Utc::now());
    let json_text = |v: Option<Value>| v.map_or(Value::Null, |v| Value::String(v.to_string()));
    let row = to_row(json!({
        "settings_id": uuid::Uuid::new_v4().to_string(),
        "org_slug": org_slug,
        "email_recipients": json_text(settings.email_recipients.as_ref().map(|r| json!(r))),
        "encrypted_slack_webhook": settings.slack_webhook.as_ref().map(|c| STANDARD.encode(c)),
        "slack_webhook_fingerprint": settings.slack_webhook_fingerprint,
        "triggers": json_text(settings.triggers.as_ref().map(|t| json!(t))),
        "updated_by": updated_by,
        "created_at": settings.created_at.clone().unwrap_or_else(|| now.clone()),
        "updated_at": now,
    }));
    warehouse
        .replace_slice(
            configs.central_dataset(),
            configs.central_table(TABLE),
            "org_slug = @org_slug",
            &Params::new().bind("org_slug", org_slug),
            &[row],
        )
        .await?;
    Ok(())
}

pub async fn encrypt_webhook(kms: &dyn Kms, org_slug: &str, url: &SecretString) -> Result<Vec<u8>, NotifyError> {
    Ok(kms.encrypt(url.expose_secret().as_bytes(), &webhook_aad(org_slug)).await?)
}

pub async fn decrypt_webhook(kms: &dyn Kms, org_slug: &str, ciphertext: &[u8]) -> Result<SecretString, NotifyError> {
    let plaintext = kms.decrypt(ciphertext, &webhook_aad(org_slug)).await?;
    let url = String::from_utf8(plaintext)
        .map_err(|_| NotifyError::Corrupt { org_slug: org_slug.to_string(), problem: "the webhook is not UTF-8" })?;
    Ok(SecretString::from(url))
}

/// Whether `url` may be an organization's Slack webhook: `https://hooks.slack.com/…`, or in
/// development any http(s) URL (a local receiver in tests). The error never repeats the URL.
pub fn check_webhook_url(url: &str, environment: Environment) -> Result<(), String> {
    if url.len() > MAX_WEBHOOK_LEN || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("slack_webhook_url must be one URL of at most {MAX_WEBHOOK_LEN} characters"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|_| "slack_webhook_url is not a URL".to_string())?;
    let slack = url.starts_with(SLACK_WEBHOOK_PREFIX)
        && parsed.host_str() == Some("hooks.slack.com")
        && parsed.port().is_none()
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && parsed.path().len() > 1;
    let local = environment == Environment::Development
        && matches!(parsed.scheme(), "http" | "https")
        && parsed.host_str().is_some()
        && parsed.username().is_empty()
        && parsed.password().is_none();
    if slack || local {
        Ok(())
    } else {
        Err(format!(
            "slack_webhook_url must be a Slack incoming webhook starting with {SLACK_WEBHOOK_PREFIX} (Slack: Apps → \
             Incoming Webhooks)"
        ))
    }
}

/// A JSON column as JSON (stored as a JSON document in a string).
fn json_column(row: &Row, name: &str) -> Value {
    match row.get(name) {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
        Some(other) => other.clone(),
        None => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_slack_hooks_outside_development() {
        let slack = "https://hooks.slack.com/services/T000/B000/XXXXXXXX";
        for env in [Environment::Development, Environment::Staging, Environment::Production] {
            assert_eq!(check_webhook_url(slack, env), Ok(()), "{env:?}");
        }
        for bad in [
            "http://hooks.slack.com/services/T/B/X",
            "https://hooks.slack.com.evil.example/services/T/B/X",
            "https://user:pw@hooks.slack.com/services/T/B/X",
            "https://hooks.slack.com:8443/services/T/B/X",
            "https://example.com/hook",
            "http://127.0.0.1:9999/hook",
            "not a url",
        ] {
            let err = check_webhook_url(bad, Environment::Production).unwrap_err();
            assert!(!err.contains(bad), "the URL is not repeated: {err}");
        }
        assert_eq!(check_webhook_url("http://127.0.0.1:9999/hook", Environment::Development), Ok(()));
        assert!(check_webhook_url("file:///etc/passwd", Environment::Development).is_err());
    }
}
