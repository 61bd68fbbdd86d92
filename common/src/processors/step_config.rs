//! Fields the processors' step settings share (`#[serde(deserialize_with = ...)]` and defaults):
//! page sizes within the providers' limits, exact decimals written as text, the reconciliation
//! tolerance of a cost step. Checked when the pipeline files are loaded at start-up.

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};

/// Buckets per page: 1 to 31 (the providers' maximum for daily buckets).
pub(crate) fn page_size<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if (1..=31).contains(&n) {
        Ok(n)
    } else {
        Err(serde::de::Error::custom(format!("page_size must be between 1 and 31, got {n}")))
    }
}

pub(crate) fn default_page_size() -> u32 {
    31
}

/// A decimal amount given as a string (`"0.01"`), so it is exact.
pub(crate) fn decimal_text<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    let text = String::deserialize(d)?;
    match crate::pricebook::records::parse_decimal(&text) {
        Some(v) if !v.is_sign_negative() => Ok(v),
        _ => Err(serde::de::Error::custom(format!("{text:?} is not a non-negative decimal such as \"0.01\""))),
    }
}

pub(crate) fn optional_decimal_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    decimal_text(d).map(Some)
}

/// The tolerance of a cost step's reconciliation when its file names none: one cent.
pub(crate) fn default_tolerance() -> Decimal {
    Decimal::new(1, 2)
}
