//! What every cost step shares: where it reads raw usage and writes cost, the price columns of a
//! cost record, the usage the price book could not price, and the step's end (the window swapped
//! in, the data-quality rows written, the outcome with its warnings).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::json;

use super::columns::{table_columns, TableColumns};
use super::quality::{reconciliation_warning, tally, write_dq, DqResult, DqStatus};
use super::values::{date_text, numeric};
use super::window::WindowWriter;
use crate::pipeline::{StepContext, StepError, StepOutcome};
use crate::warehouse::{Cell, Interner, Record, TableSchema};

/// Where a cost step reads raw usage (`R`) and writes cost (`C`, and the price columns every
/// cost table has), found once per step.
pub(crate) struct CostLayout<R, C> {
    pub raw: R,
    pub cost: C,
    pub price: PriceColumns,
}

impl<R: TableColumns, C: TableColumns> CostLayout<R, C> {
    pub fn new(raw: &TableSchema, cost: &TableSchema) -> Result<Self, StepError> {
        Ok(CostLayout { raw: R::new(raw)?, cost: C::new(cost)?, price: PriceColumns::new(cost)? })
    }
}

/// What a cost step priced over its window, for [`finish_cost_step`].
pub(crate) struct CostSummary<'a> {
    /// The cost table written.
    pub table: &'static str,
    /// The provider's id (`openai`) and display name (`OpenAI`).
    pub provider: &'static str,
    pub provider_name: &'static str,
    pub priced_rows: u64,
    pub unpriced: &'a Unpriced,
    pub total: Decimal,
    pub currency: &'a str,
    /// What the provider's own bill says for the window.
    pub reported_total: Decimal,
}

/// The end every cost step shares: swap in the staged window, write the data-quality rows, and
/// report the outcome (unpriced models and reconciliation beyond tolerance as warnings).
pub(crate) async fn finish_cost_step(
    ctx: &StepContext<'_>,
    writer: WindowWriter,
    dq: &[DqResult],
    summary: CostSummary<'_>,
) -> Result<StepOutcome, StepError> {
    let written = writer.commit().await?;
    write_dq(ctx, summary.table, dq).await?;
    let mut warnings = summary.unpriced.warnings(summary.provider, ctx.org_slug);
    warnings.extend(reconciliation_warning(summary.provider_name, dq));
    Ok(StepOutcome {
        rows_written: written,
        warnings,
        metrics: json!({
            "table": summary.table,
            "rows": written,
            "rows_priced": summary.priced_rows,
            "rows_unpriced": summary.unpriced.rows(),
            "models_missing": summary.unpriced.models(),
            "total_cost": numeric(summary.total),
            "currency": summary.currency,
            "reported_cost": numeric(summary.reported_total),
            "reconciliation": tally(dq),
        }),
    })
}

table_columns! {
    /// The columns every cost table has about how a row was priced.
    pub(crate) struct PriceColumns {
        price_model_id, matched_model, matched_exact, price_version_id, price_version, price_effective_from, currency,
        pricing_basis, cost_status,
    }
}

/// Writes the price version a cost record of `model` was priced with into it: the book id that
/// matched and whether it is the model itself (its text shared through `names`: a window uses a
/// handful of versions).
pub(crate) fn set_price_version(
    (record, cols): (&mut Record, &PriceColumns),
    names: &mut Interner,
    v: &crate::cost::PriceVersion,
    model: &str,
) {
    record[cols.price_model_id] = names.text(&v.model_id);
    record[cols.matched_model] = names.text(&v.model_id);
    record[cols.matched_exact] = Cell::Bool(v.model_id == model);
    record[cols.price_version_id] = names.text(&v.version_id);
    record[cols.price_version] = Cell::Int(v.version);
    record[cols.price_effective_from] = Cell::Date(v.effective_from);
    record[cols.currency] = names.text(&v.currency);
}

/// Marks a cost record priced: its basis and status.
pub(crate) fn mark_priced(record: &mut Record, cols: &PriceColumns, basis: &'static str) {
    record[cols.pricing_basis] = Cell::Static(basis);
    record[cols.cost_status] = Cell::Static("PRICED");
}

/// Marks a cost record unpriced (never priced as zero) and records why for the warnings and DQ
/// rows. `basis` is the pricing basis the row would have used.
pub(crate) fn mark_unpriced(
    (record, cols): (&mut Record, &PriceColumns),
    unpriced: &mut Unpriced,
    provider: &str,
    (model, day, tokens): (&str, NaiveDate, u64),
    why: crate::cost::Unpriced,
    basis: &'static str,
) {
    match why {
        crate::cost::Unpriced::ModelMissing => {
            record[cols.pricing_basis] = Cell::Static(basis);
            record[cols.cost_status] = Cell::Static("MODEL_NOT_IN_PRICE_BOOK");
            unpriced.add(model, format!("not in the {provider} price book on {}", date_text(day)), day, tokens);
        }
        crate::cost::Unpriced::RateMissing { basis, missing } => {
            record[cols.pricing_basis] = Cell::Static(basis);
            record[cols.cost_status] = Cell::Static("RATE_MISSING");
            let reason = format!("the price book has no {} (pricing basis {basis})", missing.join(", "));
            unpriced.add(model, reason, day, tokens);
        }
        crate::cost::Unpriced::TokenCounts(difference) => {
            record[cols.pricing_basis] = Cell::Static(basis);
            record[cols.cost_status] = Cell::Static("TOKEN_COUNTS_INCONSISTENT");
            unpriced.add(model, format!("{TOKEN_COUNTS} {difference}"), day, tokens);
        }
    }
}

/// How a reason about the provider's own counts starts (its DQ check is not the book's).
const TOKEN_COUNTS: &str = "the provider's token counts do not add up:";

/// Usage the book could not price, gathered per (day, model, reason) for warnings and DQ rows.
#[derive(Debug, Default)]
pub(crate) struct Unpriced {
    /// (model, reason) → day → (rows, tokens).
    by_model: BTreeMap<(String, String), BTreeMap<NaiveDate, (u64, u64)>>,
}

impl Unpriced {
    pub fn add(&mut self, model: &str, reason: String, day: NaiveDate, tokens: u64) {
        let e = self.by_model.entry((model.to_string(), reason)).or_default().entry(day).or_default();
        e.0 += 1;
        e.1 += tokens;
    }

    pub fn rows(&self) -> u64 {
        self.by_model.values().flat_map(|d| d.values()).map(|(r, _)| r).sum()
    }

    pub fn models(&self) -> Vec<String> {
        let mut m: Vec<String> = self.by_model.keys().map(|(m, _)| m.clone()).collect();
        m.dedup();
        m
    }

    /// One warning per model and reason.
    pub fn warnings(&self, provider: &str, org: &str) -> Vec<String> {
        self.by_model
            .iter()
            .map(|((model, reason), days)| {
                let rows: u64 = days.values().map(|(r, _)| r).sum();
                let tokens: u64 = days.values().map(|(_, t)| t).sum();
                let advice = if reason.starts_with(TOKEN_COUNTS) {
                    "the rows are kept as reported; rerun the window once the provider corrects them".to_string()
                } else {
                    format!("add or fix it with POST /api/v1/integrations/{org}/{provider}/pricing")
                };
                format!(
                    "{model}: {reason}; {rows} usage row(s), {tokens} tokens on {} day(s) left unpriced (not counted as zero): \
                     {advice}",
                    days.len()
                )
            })
            .collect()
    }

    /// One DQ row per model, reason and day.
    pub fn dq_results(&self) -> Vec<DqResult> {
        let mut out = Vec::new();
        for ((model, reason), days) in &self.by_model {
            for (day, (rows, tokens)) in days {
                let check_name = if reason.starts_with("not in") {
                    "price_book_model_missing"
                } else if reason.starts_with(TOKEN_COUNTS) {
                    "usage_token_counts_inconsistent"
                } else {
                    "price_book_rate_missing"
                };
                out.push(DqResult {
                    check_name,
                    usage_date: *day,
                    dimension: Some(format!("model={model}")),
                    status: DqStatus::Warn,
                    expected: None,
                    observed: None,
                    tolerance: None,
                    currency: None,
                    details: json!({"model": model, "reason": reason, "rows": rows, "tokens": tokens}),
                });
            }
        }
        out
    }
}
