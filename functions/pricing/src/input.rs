//! Request bodies and query strings. Bodies are read as raw JSON per field so an amount sent as
//! a JSON number keeps its exact text (`0.1` is never an f64); strings and numbers are both
//! accepted for amounts.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use common::pricebook::records::{self, BookKind};
use common::pricebook::Input;
use serde_json::value::RawValue;

/// A JSON object body, field by field, unparsed.
pub type RawBody = BTreeMap<String, Box<RawValue>>;

/// A body split into the version's start and the entry's values.
pub struct Body {
    pub effective_from: Option<NaiveDate>,
    pub values: BTreeMap<String, Input>,
}

/// One raw JSON value as an [`Input`]: strings and null as such, numbers as their literal text.
fn to_input(name: &str, raw: &RawValue) -> Result<Input, String> {
    let text = raw.get().trim();
    match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(text).map(Input::Text).map_err(|e| format!("{name}: {e}")),
        Some(b'-' | b'0'..=b'9') => Ok(Input::Number(text.to_string())),
        _ if text == "null" => Ok(Input::Null),
        _ => Err(format!("{name} must be a string or a number, not {text}")),
    }
}

/// Splits and pre-checks a body: `effective_from` (a date or null), and the other fields as
/// inputs for the book's own checks. Problems name their field.
pub fn parse_body(body: RawBody) -> Result<Body, Vec<String>> {
    let mut problems = Vec::new();
    let mut effective_from = None;
    let mut values = BTreeMap::new();
    for (name, raw) in body {
        match to_input(&name, &raw) {
            Ok(input) if name == "effective_from" => match input {
                Input::Null => {}
                Input::Text(t) => match records::parse_date(&t) {
                    Some(d) => effective_from = Some(d),
                    None => problems.push(format!("effective_from must be a date YYYY-MM-DD (got {t:?})")),
                },
                Input::Number(n) => problems.push(format!("effective_from must be a date YYYY-MM-DD (got {n})")),
            },
            Ok(input) => {
                values.insert(name, input);
            }
            Err(e) => problems.push(e),
        }
    }
    if problems.is_empty() {
        Ok(Body { effective_from, values })
    } else {
        Err(problems)
    }
}

/// The list's filters.
#[derive(Debug)]
pub struct ListQuery {
    pub key: Option<String>,
    /// None with `history=true`: every version.
    pub as_of: Option<NaiveDate>,
}

/// `?model=` (pricing) or `?plan=` (subscriptions), `?as_of=YYYY-MM-DD` (default today),
/// `?history=true` (every version; not with `as_of`).
pub fn parse_query(kind: BookKind, query: &HashMap<String, String>, today: NaiveDate) -> Result<ListQuery, String> {
    let key_param = match kind {
        BookKind::Pricing => "model",
        BookKind::Subscriptions => "plan",
    };
    for name in query.keys() {
        if ![key_param, "as_of", "history"].contains(&name.as_str()) {
            return Err(format!("unknown query parameter {name:?}; use {key_param}, as_of or history"));
        }
    }
    let key = match query.get(key_param) {
        Some(k) => {
            records::check_key(kind, k).map_err(|e| format!("{key_param}: {e}"))?;
            Some(k.clone())
        }
        None => None,
    };
    let history = flag(query, "history")?;
    let as_of = match query.get("as_of") {
        Some(_) if history => return Err("as_of and history=true cannot be combined".into()),
        Some(text) => {
            Some(records::parse_date(text).ok_or_else(|| format!("as_of must be a date YYYY-MM-DD (got {text:?})"))?)
        }
        None if history => None,
        None => Some(today),
    };
    Ok(ListQuery { key, as_of })
}

/// A `true`/`false` query parameter; absent is false.
fn flag(query: &HashMap<String, String>, name: &str) -> Result<bool, String> {
    match query.get(name).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(format!("{name} must be true or false (got {other:?})")),
    }
}

/// The repricing read's window: `?start_date=&end_date=` (YYYY-MM-DD, inclusive); `end_date`
/// defaults to today and `start_date` to 30 days before `end_date`.
pub fn parse_window_query(query: &HashMap<String, String>, today: NaiveDate) -> Result<(NaiveDate, NaiveDate), String> {
    for name in query.keys() {
        if !["start_date", "end_date"].contains(&name.as_str()) {
            return Err(format!("unknown query parameter {name:?}; use start_date and end_date"));
        }
    }
    let date = |name: &str| -> Result<Option<NaiveDate>, String> {
        query
            .get(name)
            .map(|text| {
                records::parse_date(text).ok_or_else(|| format!("{name} must be a date YYYY-MM-DD (got {text:?})"))
            })
            .transpose()
    };
    let end = date("end_date")?.unwrap_or(today);
    let start = date("start_date")?.unwrap_or(end - chrono::Duration::days(30));
    Ok((start, end))
}

/// The catalog import's query: `effective_from` (default today), `dry_run`, `force`, `provider`
/// (for a CSV without a provider column).
pub struct ImportQuery {
    pub effective_from: NaiveDate,
    pub dry_run: bool,
    pub force: bool,
    pub provider: Option<String>,
}

/// Reads the import's query; every problem is listed.
pub fn parse_import_query(query: &HashMap<String, String>, today: NaiveDate) -> Result<ImportQuery, String> {
    let mut problems = Vec::new();
    for name in query.keys() {
        if !["effective_from", "dry_run", "force", "provider"].contains(&name.as_str()) {
            problems.push(format!("unknown query parameter {name:?}; use effective_from, dry_run, force, provider"));
        }
    }
    let mut flag_of = |name: &str| {
        flag(query, name).unwrap_or_else(|e| {
            problems.push(e);
            false
        })
    };
    let (dry_run, force) = (flag_of("dry_run"), flag_of("force"));
    let effective_from = match query.get("effective_from") {
        None => today,
        Some(text) => records::parse_date(text).unwrap_or_else(|| {
            problems.push(format!("effective_from must be a date YYYY-MM-DD (got {text:?})"));
            today
        }),
    };
    if problems.is_empty() {
        Ok(ImportQuery { effective_from, dry_run, force, provider: query.get("provider").cloned() })
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> RawBody {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_repricing_window_defaults_to_the_last_31_days() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let d = |s: &str| records::parse_date(s).unwrap();
        assert_eq!(parse_window_query(&q(&[]), today), Ok((d("2026-11-01"), today)));
        assert_eq!(
            parse_window_query(&q(&[("start_date", "2026-10-01"), ("end_date", "2026-10-15")]), today),
            Ok((d("2026-10-01"), d("2026-10-15")))
        );
        assert!(parse_window_query(&q(&[("end_date", "2026-13-01")]), today).unwrap_err().contains("end_date"));
        assert!(parse_window_query(&q(&[("as_of", "2026-10-01")]), today).unwrap_err().contains("as_of"));
    }

    #[test]
    fn numbers_keep_their_exact_text() {
        let b = parse_body(body(r#"{"input_per_1m": 0.1, "output_per_1m": "2.50", "notes": null}"#)).ok().unwrap();
        assert_eq!(b.values["input_per_1m"], Input::Number("0.1".into()));
        assert_eq!(b.values["output_per_1m"], Input::Text("2.50".into()));
        assert_eq!(b.values["notes"], Input::Null);
    }

    #[test]
    fn bad_fields_are_named() {
        let Err(p) = parse_body(body(r#"{"effective_from": "2026-13-01", "input_per_1m": true}"#)) else {
            panic!("accepted")
        };
        let all = p.join("; ");
        assert!(all.contains("effective_from"), "{all}");
        assert!(all.contains("input_per_1m must be a string or a number"), "{all}");
    }

    #[test]
    fn query_filters() {
        let today = NaiveDate::from_ymd_opt(2026, 5, 1).unwrap();
        let q = |pairs: &[(&str, &str)]| {
            let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            parse_query(BookKind::Pricing, &m, today)
        };
        assert_eq!(q(&[]).unwrap().as_of, Some(today));
        assert_eq!(q(&[("history", "true")]).unwrap().as_of, None);
        assert!(q(&[("as_of", "yesterday")]).unwrap_err().contains("as_of"));
        assert!(q(&[("modle", "x")]).unwrap_err().contains("modle"));
        assert!(q(&[("model", "bad model")]).unwrap_err().contains("model"));
    }
}
