//! The run request body: one day or a window, checked at the edge. Every message names the field.

use chrono::{NaiveDate, Utc};
use common::pipeline::Pipeline;
use common::ApiError;
use serde::Deserialize;

/// `{"date": "YYYY-MM-DD"}` or `{"start_date": "YYYY-MM-DD", "end_date": "YYYY-MM-DD"}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// One UTC day.
    #[serde(default)]
    pub date: Option<String>,
    /// First day of the window (UTC, inclusive).
    #[serde(default)]
    pub start_date: Option<String>,
    /// Last day of the window (UTC, inclusive).
    #[serde(default)]
    pub end_date: Option<String>,
}

/// Both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl Window {
    pub fn days(&self) -> i64 {
        (self.end - self.start).num_days() + 1
    }
}

fn parse_date(field: &str, raw: &str) -> Result<NaiveDate, ApiError> {
    let raw = raw.trim();
    // chrono accepts unpadded fields; the API promises YYYY-MM-DD exactly.
    let shaped = raw.len() == 10 && raw.as_bytes()[4] == b'-' && raw.as_bytes()[7] == b'-';
    match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        Ok(d) if shaped => Ok(d),
        _ => Err(ApiError::bad_request(format!("{field} must be a date in the form YYYY-MM-DD, not {raw:?}"))),
    }
}

impl RunBody {
    /// The window, checked: format, order, not in the future (UTC), at most the pipeline's
    /// `max_window_days`.
    pub fn window(&self, pipeline: &Pipeline, today: NaiveDate) -> Result<Window, ApiError> {
        let (window, end_field) = match (&self.date, &self.start_date, &self.end_date) {
            (Some(date), None, None) => {
                let d = parse_date("date", date)?;
                (Window { start: d, end: d }, "date")
            }
            (None, Some(start), Some(end)) => {
                let window = Window { start: parse_date("start_date", start)?, end: parse_date("end_date", end)? };
                if window.end < window.start {
                    return Err(ApiError::bad_request(format!(
                        "end_date ({}) must not be before start_date ({})",
                        window.end, window.start
                    )));
                }
                (window, "end_date")
            }
            (Some(_), _, _) => {
                return Err(ApiError::bad_request("send either date or start_date and end_date, not both"));
            }
            (None, Some(_), None) => return Err(ApiError::bad_request("end_date is missing (start_date was sent)")),
            (None, None, Some(_)) => return Err(ApiError::bad_request("start_date is missing (end_date was sent)")),
            (None, None, None) => {
                return Err(ApiError::bad_request(
                    "send {\"date\": \"YYYY-MM-DD\"} or {\"start_date\": \"YYYY-MM-DD\", \"end_date\": \"YYYY-MM-DD\"}",
                ))
            }
        };
        if window.end > today {
            return Err(ApiError::bad_request(format!(
                "{end_field} ({}) is in the future; the latest day that can be run is today ({today}, UTC)",
                window.end
            )));
        }
        if window.days() > i64::from(pipeline.max_window_days) {
            return Err(ApiError::bad_request(format!(
                "the window from start_date {} to end_date {} is {} days; {} accepts at most {} (max_window_days)",
                window.start,
                window.end,
                window.days(),
                pipeline.file,
                pipeline.max_window_days
            )));
        }
        Ok(window)
    }
}

pub fn today() -> NaiveDate {
    Utc::now().date_naive()
}
