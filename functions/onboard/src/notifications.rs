//! `GET`/`PUT /api/v1/organizations/{org}/notifications` (org key or root): who hears about the
//! organization's pipeline runs. Recipients default to the admin email; the Slack webhook URL is
//! a secret (KMS-encrypted, never returned: GET says whether one is set and shows its
//! fingerprint); `triggers` override every pipeline's own.
//!
//! PUT changes the fields it names: a field left out keeps its value, `null` returns it to its
//! default (admin email, no Slack, each pipeline's triggers). Every problem of a body is reported
//! at once, and nothing is stored unless the whole body is valid.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::Json;
use common::audit::AuditEvent;
use common::configs::notify::NotifyTrigger;
use common::domain::{fingerprint, Email, OrgSlug};
use common::http::error::ApiResult;
use common::http::{ApiJson, OrgAccess};
use common::notify::org_settings::{self, OrgNotifications};
use common::{ApiError, AppState};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use crate::store;

/// A PUT body. Each field: absent (unchanged), `null` (back to its default) or a value.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationsUpdate {
    /// Addresses run notifications are emailed to; `[]` turns email off for the organization.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub email_recipients: Option<Option<Vec<String>>>,
    /// A Slack incoming webhook (`https://hooks.slack.com/…`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub slack_webhook_url: Option<Option<String>>,
    /// `on_failure`, `on_success`, `on_completion`, `always`; `[]` turns notifications off.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub triggers: Option<Option<Vec<String>>>,
}

/// A field that is present, `null` or not: `Some(None)` for `null`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[utoipa::path(
    get,
    path = "/api/v1/organizations/{org}/notifications",
    tag = "onboard",
    summary = "The organization's run notification settings.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$")),
    responses(
        (status = 200, description = "The settings (the webhook is never returned, only whether one is set).", body = NotificationSettings),
        (status = 404, description = "No such organization.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn get_notifications(State(state): State<AppState>, access: OrgAccess) -> ApiResult<Json<Value>> {
    let admin_email = Some(access.organization(&state).await?.admin_email.clone());
    let slug = access.slug;
    let stored = org_settings::find(state.warehouse.as_ref(), &state.configs, slug.as_str()).await?;
    Ok(Json(view(&state, &slug, &admin_email, &stored.unwrap_or_default())))
}

#[utoipa::path(
    put,
    path = "/api/v1/organizations/{org}/notifications",
    tag = "onboard",
    summary = "Change the organization's run notification settings.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$")),
    request_body = crate::notifications::NotificationsUpdate,
    responses(
        (status = 200, description = "The settings as stored.", body = NotificationSettings),
        (status = 404, description = "No such organization.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn put_notifications(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiJson(update): ApiJson<NotificationsUpdate>,
) -> ApiResult<Json<Value>> {
    let slug = &access.slug;
    let mut problems = Vec::new();
    let recipients = update.email_recipients.map(|r| r.map(|list| recipients(&state, &list, &mut problems)));
    let webhook = update.slack_webhook_url.map(|url| {
        url.map(|url| {
            if let Err(problem) = org_settings::check_webhook_url(url.trim(), state.settings.environment) {
                problems.push(problem);
            }
            SecretString::from(url.trim().to_string())
        })
    });
    let triggers = update.triggers.map(|t| t.map(|list| triggers(&list, &mut problems)));
    if !problems.is_empty() {
        return Err(ApiError::bad_request(problems.join("; ")));
    }

    let _guard = store::org_lock(slug.as_str()).await;
    let admin_email = Some(access.organization(&state).await?.admin_email.clone());
    let mut settings =
        org_settings::find(state.warehouse.as_ref(), &state.configs, slug.as_str()).await?.unwrap_or_default();
    let slack_change = match &webhook {
        None => "unchanged",
        Some(None) => "removed",
        Some(Some(_)) => "set",
    };
    if let Some(recipients) = recipients {
        settings.email_recipients = recipients;
    }
    if let Some(triggers) = triggers {
        settings.triggers = triggers;
    }
    match webhook {
        None => {}
        Some(None) => {
            settings.slack_webhook = None;
            settings.slack_webhook_fingerprint = None;
        }
        Some(Some(url)) => {
            settings.slack_webhook =
                Some(org_settings::encrypt_webhook(state.kms.as_ref(), slug.as_str(), &url).await?);
            settings.slack_webhook_fingerprint = Some(fingerprint(secrecy::ExposeSecret::expose_secret(&url)));
        }
    }
    let updated_by = access.actor();
    org_settings::replace(state.warehouse.as_ref(), &state.configs, slug.as_str(), &settings, &updated_by).await?;
    state
        .audit(
            &access.caller,
            AuditEvent {
                org_slug: Some(slug.as_str()),
                action: "notifications.update",
                resource_type: "notification_settings",
                resource_id: Some(slug.as_str()),
                success: true,
                details: json!({
                    "email_recipients": settings.email_recipients.as_ref().map(Vec::len),
                    "slack_webhook": slack_change,
                    "slack_webhook_fingerprint": settings.slack_webhook_fingerprint,
                    "triggers": settings.triggers,
                }),
            },
        )
        .await;
    let stored = org_settings::find(state.warehouse.as_ref(), &state.configs, slug.as_str()).await?;
    Ok(Json(view(&state, slug, &admin_email, &stored.unwrap_or(settings))))
}

/// Checked, lowercased, without duplicates, in the order given.
fn recipients(state: &AppState, list: &[String], problems: &mut Vec<String>) -> Vec<String> {
    let max = state.configs.notify.email.max_recipients;
    if list.len() > max {
        problems.push(format!("email_recipients lists {} addresses; at most {max} are allowed", list.len()));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, raw) in list.iter().enumerate() {
        match Email::parse(raw) {
            Ok(email) if seen.insert(email.as_str().to_string()) => out.push(email.as_str().to_string()),
            Ok(_) => {}
            Err(_) => problems.push(format!(
                "email_recipients[{i}] {:?} is not an e-mail address such as ops@example.com",
                raw.chars().take(100).collect::<String>()
            )),
        }
    }
    out
}

/// Checked, without duplicates, in their usual order.
fn triggers(list: &[String], problems: &mut Vec<String>) -> Vec<NotifyTrigger> {
    let mut out = BTreeSet::new();
    for (i, raw) in list.iter().enumerate() {
        match NotifyTrigger::parse(raw.trim()) {
            Some(t) => {
                out.insert(t);
            }
            None => {
                let valid: Vec<&str> = NotifyTrigger::ALL.iter().map(|t| t.as_str()).collect();
                problems.push(format!(
                    "triggers[{i}] {:?} is not a trigger; use {}",
                    raw.chars().take(50).collect::<String>(),
                    valid.join(", ")
                ));
            }
        }
    }
    out.into_iter().collect()
}

/// What the API shows: never the webhook, only whether one is set and its fingerprint.
fn view(state: &AppState, slug: &OrgSlug, admin_email: &Option<String>, s: &OrgNotifications) -> Value {
    let recipients = match &s.email_recipients {
        Some(list) => list.clone(),
        None => admin_email.iter().cloned().collect(),
    };
    json!({
        "org_slug": slug,
        "email_recipients": recipients,
        "email_recipients_default": s.email_recipients.is_none(),
        "slack_webhook_configured": s.slack_webhook.is_some(),
        "slack_webhook_fingerprint": s.slack_webhook_fingerprint,
        "triggers": s.triggers,
        "triggers_source": if s.triggers.is_some() { "organization" } else { "pipelines" },
        "channels": {
            "email": state.configs.notify.email.enabled && state.settings.smtp.is_some(),
            "slack": state.configs.notify.slack.enabled,
        },
        "updated_at": s.updated_at,
    })
}

/// The response's schema for the API contract (the handler builds it with `json!`; schemathesis
/// checks real responses against it).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct NotificationSettings {
    org_slug: String,
    /// Who is emailed: the organization's list, else its admin.
    email_recipients: Vec<String>,
    email_recipients_default: bool,
    /// The webhook itself is never returned.
    slack_webhook_configured: bool,
    slack_webhook_fingerprint: Option<String>,
    triggers: Option<Vec<String>>,
    triggers_source: String,
    channels: NotificationChannels,
    updated_at: Option<String>,
}

/// The response's schema for the API contract (the handler builds it with `json!`; schemathesis
/// checks real responses against it).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct NotificationChannels {
    email: bool,
    slack: bool,
}
