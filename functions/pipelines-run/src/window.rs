//! The run request body: one day or a window, its shape checked here (every message names the
//! field); its range (the provider's first usable day to today, the pipeline's longest window)
//! is checked by the pipeline layer when the run is submitted.

use chrono::NaiveDate;
use common::pipeline::runlog::Window;
use common::ApiError;
use serde::Deserialize;

/// `{"date": "YYYY-MM-DD"}` or `{"start_date": "YYYY-MM-DD", "end_date": "YYYY-MM-DD"}`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// One UTC day.
    #[serde(default)]
    #[schema(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub date: Option<String>,
    /// First day of the window (UTC, inclusive).
    #[serde(default)]
    #[schema(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub start_date: Option<String>,
    /// Last day of the window (UTC, inclusive).
    #[serde(default)]
    #[schema(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub end_date: Option<String>,
}

fn parse_date(field: &str, raw: &str) -> Result<NaiveDate, ApiError> {
    common::domain::parse_date(raw).ok_or_else(|| {
        ApiError::bad_request(format!("{field} must be a date in the form YYYY-MM-DD, not {:?}", raw.trim()))
    })
}

impl RunBody {
    /// The window the body names, in order.
    pub fn window(&self) -> Result<Window, ApiError> {
        match (&self.date, &self.start_date, &self.end_date) {
            (Some(date), None, None) => {
                let d = parse_date("date", date)?;
                Ok(Window { start: d, end: d })
            }
            (None, Some(start), Some(end)) => {
                let window = Window { start: parse_date("start_date", start)?, end: parse_date("end_date", end)? };
                if window.end < window.start {
                    return Err(ApiError::bad_request(format!(
                        "end_date ({}) must not be before start_date ({})",
                        window.end, window.start
                    )));
                }
                Ok(window)
            }
            (Some(_), _, _) => Err(ApiError::bad_request("send either date or start_date and end_date, not both")),
            (None, Some(_), None) => Err(ApiError::bad_request("end_date is missing (start_date was sent)")),
            (None, None, Some(_)) => Err(ApiError::bad_request("start_date is missing (end_date was sent)")),
            (None, None, None) => Err(ApiError::bad_request(
                "send {\"date\": \"YYYY-MM-DD\"} or {\"start_date\": \"YYYY-MM-DD\", \"end_date\": \"YYYY-MM-DD\"}",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(start: &str, end: &str) -> RunBody {
        RunBody { date: None, start_date: Some(start.into()), end_date: Some(end.into()) }
    }

    #[test]
    fn dates_must_be_plain_four_digit_years() {
        for bad in ["-999-01-01", "+2026-1-01", "2026-1-01", "26-01-01", "2026/01/01", "2026-01-1x"] {
            let e = body(bad, "2026-01-07").window().unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
            assert!(e.message.contains("start_date"), "{bad}: {}", e.message);
        }
        assert!(body("2026-01-01", "2026-01-07").window().is_ok());
        assert!(body("2026-01-08", "2026-01-07").window().unwrap_err().message.contains("before"));
    }
}
