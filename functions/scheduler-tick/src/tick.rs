//! `POST /api/v1/scheduler/tick` `{"as_of"?}`: one scheduler tick (see `common::pipeline::schedule`).

use axum::extract::State;
use axum::Json;
use chrono::{NaiveDate, Utc};
use common::http::error::ApiResult;
use common::http::{InternalCaller, OptionalJson};
use common::{ApiError, AppState};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TickBody {
    /// The tick's day (UTC): the newest window ends the day before. Default: today.
    #[serde(default)]
    #[schema(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub as_of: Option<String>,
}

/// The tick's day: a plain `YYYY-MM-DD`, not after today (a tick for a future day would submit
/// windows that have not happened).
fn as_of(body: &TickBody, today: NaiveDate) -> ApiResult<NaiveDate> {
    let Some(raw) = body.as_of.as_deref().map(str::trim) else { return Ok(today) };
    let day = common::domain::parse_date(raw)
        .ok_or_else(|| ApiError::bad_request(format!("as_of must be a date in the form YYYY-MM-DD, not {raw:?}")))?;
    if day > today {
        return Err(ApiError::bad_request(format!("as_of ({day}) is after today ({today}, UTC)")));
    }
    Ok(day)
}

#[utoipa::path(
    post,
    path = "/api/v1/scheduler/tick",
    tag = "internal",
    summary = "Submit every due run of every organization (Cloud Scheduler).",
    request_body = Option<crate::tick::TickBody>,
    responses(
        (status = 200, description = "The counts per organization and pipeline.", body = common::pipeline::schedule::TickReport),
    ),
    security(("google_oidc" = []), ("root_key" = [])),
)]
pub async fn tick(
    caller: InternalCaller,
    State(state): State<AppState>,
    OptionalJson(body): OptionalJson<TickBody>,
) -> ApiResult<Json<Value>> {
    let (caller_type, caller_id) = caller.actor();
    tracing::info!(caller = caller_type, caller_id = caller_id.as_deref().unwrap_or(""), "scheduler tick requested");
    let now = Utc::now();
    let day = as_of(&body, now.date_naive())?;
    let report = state.pipelines.tick(day, now).await?;
    Ok(Json(serde_json::to_value(report).map_err(|e| ApiError::internal(e.to_string()))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_is_checked() {
        let today: NaiveDate = "2026-12-01".parse().unwrap();
        let body = |d: &str| TickBody { as_of: Some(d.into()) };
        assert_eq!(as_of(&TickBody::default(), today).unwrap(), today);
        assert_eq!(as_of(&body("2026-11-15"), today).unwrap().to_string(), "2026-11-15");
        for bad in ["2026-12-02", "-999-01-01", "2026-1-01", "yesterday"] {
            assert_eq!(as_of(&body(bad), today).unwrap_err().status, 400, "{bad}");
        }
    }
}
