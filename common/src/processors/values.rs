//! Values in keyed-row form (the rows of small windows and of the data-quality table): dates as
//! `YYYY-MM-DD`, NUMERIC as exact decimal text, and columns read back from a row.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::warehouse::{numeric_text, Row};

/// `YYYY-MM-DD` (chrono's `Display` of a date: the same text as `%Y-%m-%d` without parsing a
/// format string per row).
pub(crate) fn date_text(d: NaiveDate) -> String {
    d.to_string()
}

/// A NUMERIC value in row form: the exact decimal without trailing zeros.
pub(crate) fn numeric(d: Decimal) -> Value {
    Value::String(numeric_text(d))
}

pub(crate) fn opt_numeric(d: Option<Decimal>) -> Value {
    d.map_or(Value::Null, numeric)
}

/// Reads a column of a row as text / u64 / date.
pub(crate) fn col_str<'a>(row: &'a Row, name: &str) -> Option<&'a str> {
    row.get(name).and_then(Value::as_str)
}

pub(crate) fn col_date(row: &Row, name: &str) -> Option<NaiveDate> {
    col_str(row, name).and_then(crate::pricebook::records::parse_date)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_text_is_canonical() {
        assert_eq!(numeric("1.2300".parse().unwrap()), Value::String("1.23".into()));
        assert_eq!(numeric("0.000".parse().unwrap()), Value::String("0".into()));
    }
}
