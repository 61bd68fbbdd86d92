//! What must hold before a run is accepted, each refused with its own status and a message that
//! says what to do: an active subscription (403), a VALID integration with the pipeline's
//! provider (409), and the plan's quotas (429 with `Retry-After` until the quota resets).

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use common::http::error::ApiResult;
use common::pipeline::runlog;
use common::{ApiError, AppState};
use serde_json::Value;

/// The subscription is `ACTIVE`, or `TRIAL` and the trial has not ended.
pub fn subscription(org: &Value, now: DateTime<Utc>) -> ApiResult<()> {
    let sub = &org["subscription"];
    let status = sub["status"].as_str().unwrap_or("NONE");
    match status {
        "ACTIVE" => Ok(()),
        "TRIAL" => {
            let ends = sub["trial_ends_at"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            match ends {
                Some(end) if end.with_timezone(&Utc) <= now => Err(ApiError::forbidden(format!(
                    "the trial ended at {}; pipelines run only for an ACTIVE subscription or a trial that has not ended",
                    end.with_timezone(&Utc).to_rfc3339()
                ))),
                _ => Ok(()),
            }
        }
        other => Err(ApiError::forbidden(format!(
            "the subscription is {other}; pipelines run only for an ACTIVE subscription or a TRIAL"
        ))),
    }
}

/// The organization has a `VALID` credential for `provider`.
pub async fn integration(state: &AppState, org_slug: &str, provider: &str) -> ApiResult<()> {
    match common::credentials::find_secret(state, org_slug, provider).await? {
        Some(c) if c.status == "VALID" => Ok(()),
        Some(c) => Err(ApiError::conflict(format!(
            "the {provider} integration is {}; fix it with POST /api/v1/integrations/{org_slug}/{provider}/validate \
             or set it up again",
            c.status
        ))),
        None => Err(ApiError::conflict(format!(
            "no {provider} integration; set one up with POST /api/v1/integrations/{org_slug}/{provider}/setup"
        ))),
    }
}

fn quota(org: &Value, name: &str) -> Option<i64> {
    org["quotas"][name].as_i64()
}

/// Concurrent, daily and monthly run quotas of the organization's plan.
pub async fn quotas(state: &AppState, org_slug: &str, org: &Value, now: DateTime<Utc>) -> ApiResult<()> {
    if let Some(max) = quota(org, "max_concurrent_runs") {
        let active = runlog::count_active(state, org_slug).await?;
        if active >= max {
            return Err(ApiError::too_many_requests(
                format!("{active} run(s) are already pending or running; the plan allows {max} at a time. Retry when one finishes"),
                30,
            ));
        }
    }
    let today = now.date_naive();
    let midnight = |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default());
    if let Some(max) = quota(org, "max_pipeline_runs_per_day") {
        let since = midnight(today);
        let resets = since + Duration::days(1);
        let used = runlog::count_since(state, org_slug, since).await?;
        if used >= max {
            return Err(ApiError::too_many_requests(
                format!(
                    "{used} runs today; the plan allows {max} per day. The quota resets at {}",
                    resets.to_rfc3339()
                ),
                seconds_until(now, resets),
            ));
        }
    }
    if let Some(max) = quota(org, "max_pipeline_runs_per_month") {
        let first = today.with_day(1).unwrap_or(today);
        let next = if first.month() == 12 {
            NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
        }
        .unwrap_or(first);
        let (since, resets) = (midnight(first), midnight(next));
        let used = runlog::count_since(state, org_slug, since).await?;
        if used >= max {
            return Err(ApiError::too_many_requests(
                format!(
                    "{used} runs this month; the plan allows {max} per month. The quota resets at {}",
                    resets.to_rfc3339()
                ),
                seconds_until(now, resets),
            ));
        }
    }
    Ok(())
}

fn seconds_until(now: DateTime<Utc>, then: DateTime<Utc>) -> u64 {
    u64::try_from((then - now).num_seconds()).unwrap_or(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subscription_statuses() {
        let now = Utc::now();
        let org = |status: &str, trial: Value| json!({"subscription": {"status": status, "trial_ends_at": trial}});
        assert!(subscription(&org("ACTIVE", Value::Null), now).is_ok());
        assert!(subscription(&org("TRIAL", json!((now + Duration::days(3)).to_rfc3339())), now).is_ok());
        let ended = subscription(&org("TRIAL", json!((now - Duration::days(1)).to_rfc3339())), now).unwrap_err();
        assert_eq!(ended.status, 403);
        assert!(ended.message.contains("trial ended"), "{}", ended.message);
        let suspended = subscription(&org("SUSPENDED", Value::Null), now).unwrap_err();
        assert!(suspended.message.contains("SUSPENDED"));
    }
}
