//! The processors: one [`Processor`](crate::pipeline::Processor) per `ps_type`, the module path
//! mirroring it (`openai.usage` is [`openai::usage::OpenAiUsage`]). This module holds what they
//! share: their table schemas (`configs/{provider}/schemas/<table>.json`), the idempotent window
//! write, the provider credential, and the data-quality rows of reconciliation and unpriced usage.
//!
//! Invariants every processor keeps:
//! - a window is streamed, never held whole: each page (or batch of rows read back) is priced
//!   or converted and staged as it arrives ([`WindowWriter`]), then the window is swapped in with
//!   one atomic replace of `usage_date BETWEEN @start_date AND @end_date`. A failed provider call
//!   leaves the table as it was, and a rerun replaces the window (no run ids or timestamps in
//!   data rows, and rows stored in the order they are produced, so five reruns leave
//!   byte-identical tables);
//! - money is `rust_decimal` in Rust and NUMERIC in the warehouse (a `Cell::Numeric` in the
//!   records pipelines stage, a decimal string in keyed rows).

pub mod anthropic;
pub mod openai;

use std::collections::BTreeMap;

use chrono::{NaiveDate, Utc};
use rust_decimal::Decimal;
use secrecy::ExposeSecret;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use crate::configs::Configs;
use crate::pipeline::registry::{Registry, Typed};
use crate::pipeline::{StepContext, StepError, StepOutcome};
use crate::providers::retry::{ProviderError, RetryPolicy};
use crate::warehouse::{
    format_timestamp, numeric_text, Cell, Interner, Params, Record, RecordBatches, Row, Staging, TableSchema,
};

/// Declares where the columns a processor writes or reads sit in a table: a struct with one
/// position per column, named like the column, found in the table's schema once per step by
/// `new` (a schema without one of them is a clear step error, not a misplaced cell). Records are
/// then built and read by position (`record[cols.model]`), with no name lookup per row.
macro_rules! table_columns {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($column:ident),+ $(,)? }) => {
        $(#[$meta])*
        $vis struct $name {
            /// Columns of the whole table (a record's length).
            #[allow(dead_code, reason = "a set of columns that is only read or only part of a record builds none")]
            width: usize,
            $(pub $column: usize,)+
        }

        impl $name {
            pub fn new(schema: &$crate::warehouse::TableSchema) -> Result<Self, $crate::pipeline::StepError> {
                Ok($name {
                    width: schema.fields.len(),
                    $($column: $crate::processors::column_at(schema, stringify!($column))?,)+
                })
            }

            /// A record of the table with every cell NULL.
            #[allow(dead_code, reason = "a set of columns that is only read or only part of a record builds none")]
            pub fn record(&self) -> $crate::warehouse::Record {
                vec![$crate::warehouse::Cell::Null; self.width]
            }
        }

        impl $crate::processors::TableColumns for $name {
            fn new(schema: &$crate::warehouse::TableSchema) -> Result<Self, $crate::pipeline::StepError> {
                $name::new(schema)
            }
        }
    };
}
pub(crate) use table_columns;

/// A set of column positions declared with [`table_columns!`].
pub(crate) trait TableColumns: Sized {
    /// Finds every column in `schema`, or names the one it lacks.
    fn new(schema: &TableSchema) -> Result<Self, StepError>;
}

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

/// The position of a column in a table's schema, or the step error naming what is missing.
pub(crate) fn column_at(schema: &TableSchema, column: &str) -> Result<usize, StepError> {
    schema.fields.iter().position(|f| f.name == column).ok_or_else(|| {
        StepError::Failed(format!(
            "table {} has no column {column}: its schema file (configs/*/schemas/{}.json) must define it",
            schema.name, schema.name
        ))
    })
}

/// The central table data-quality results go to.
pub const DQ_TABLE: &str = "org_meta_dq_results";

/// `configs/{provider}/schemas/{table}.json`, checked.
pub fn table_schema(configs: &Configs, provider: &str, table: &str) -> Result<TableSchema, StepError> {
    load_schema(&configs.root, provider, table).map_err(StepError::Failed)
}

fn load_schema(root: &std::path::Path, provider: &str, table: &str) -> Result<TableSchema, String> {
    let path = root.join(provider).join("schemas").join(format!("{table}.json"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let mut schema: TableSchema = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    schema.name = table.to_string();
    let problems = schema.problems();
    if problems.is_empty() {
        Ok(schema)
    } else {
        Err(format!("{}: {}", path.display(), problems.join("; ")))
    }
}

/// The step's provider credential.
pub(crate) fn credential<'a>(ctx: &'a StepContext<'_>, provider: &str) -> Result<&'a str, StepError> {
    ctx.credential.map(|c| c.expose_secret()).filter(|k| !k.is_empty()).ok_or_else(|| {
        StepError::Failed(format!("no {provider} credential for this run: set up the {provider} integration first"))
    })
}

/// A provider call that failed for good, as the step's error.
pub(crate) fn provider_failed(e: ProviderError) -> StepError {
    StepError::Provider { provider: e.provider, status: e.status, message: e.message }
}

/// Checks a step's retry settings.
pub(crate) fn check_retry(policy: &RetryPolicy) -> Result<(), StepError> {
    let problems = policy.problems();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StepError::Failed(format!("step settings: {}", problems.join("; "))))
    }
}

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

/// Creates the table in the organization's dataset when missing.
pub(crate) async fn ensure_table(ctx: &StepContext<'_>, schema: &TableSchema) -> Result<(), StepError> {
    ctx.warehouse.create_table(ctx.dataset, schema).await?;
    Ok(())
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

/// The organization's rows of a window: what every processor's window write replaces.
const WINDOW_PREDICATE: &str = "org_slug = @org_slug AND usage_date BETWEEN @start_date AND @end_date";

fn window_params(ctx: &StepContext<'_>, start: NaiveDate, end: NaiveDate) -> Params {
    Params::new().bind("org_slug", ctx.org_slug).bind("start_date", start).bind("end_date", end)
}

/// Replaces the organization's rows of `usage_date` in `start..=end` with `rows`, atomically
/// (small windows that are built whole; large ones stream through a [`WindowWriter`]).
pub(crate) async fn write_window(
    ctx: &StepContext<'_>,
    schema: &TableSchema,
    start: NaiveDate,
    end: NaiveDate,
    rows: &[Row],
) -> Result<u64, StepError> {
    ensure_table(ctx, schema).await?;
    let params = window_params(ctx, start, end);
    let (_, inserted) = ctx.warehouse.replace_slice(ctx.dataset, schema, WINDOW_PREDICATE, &params, rows).await?;
    Ok(inserted)
}

/// The step's window of a table, written as it is produced: batches are staged out of sight and
/// `commit` replaces the organization's rows of the window with them in one atomic swap. Dropped
/// without `commit` (a step that failed), it leaves the table as it was.
///
/// Staging runs on a task of its own, one batch behind the producer, so fetching or pricing the
/// next batch overlaps with writing the last (at most three batches exist at once: the one being
/// written, one waiting, the one being built). Rows [`push`](WindowWriter::push)ed one at a time
/// go out in batches of [`STAGE_BATCH_ROWS`], so a provider page of any size is never held as
/// rows whole.
pub(crate) struct WindowWriter {
    batches: tokio::sync::mpsc::Sender<Vec<Record>>,
    stager: tokio::task::JoinHandle<Result<Box<dyn Staging>, StepError>>,
    /// Records pushed since the last batch went out.
    pending: Vec<Record>,
}

/// Records per staged batch of pushed records. About 8 batches are in flight in a cost step
/// (read, priced, staged), so this bounds a pipeline's own heap; a batch's fixed cost is a
/// channel hop (the warehouse keeps one appender per staging).
const STAGE_BATCH_ROWS: usize = 500;

impl WindowWriter {
    pub async fn start(ctx: &StepContext<'_>, schema: &TableSchema) -> Result<WindowWriter, StepError> {
        ensure_table(ctx, schema).await?;
        let params = window_params(ctx, ctx.start_date, ctx.end_date);
        let mut staging = ctx.warehouse.stage(ctx.dataset, schema, WINDOW_PREDICATE, &params).await?;
        let (batches, mut incoming) = tokio::sync::mpsc::channel::<Vec<Record>>(1);
        let stager = tokio::spawn(async move {
            while let Some(rows) = incoming.recv().await {
                staging.append(rows).await?;
            }
            Ok(staging)
        });
        Ok(WindowWriter { batches, stager, pending: Vec::new() })
    }

    /// Queues a batch for staging; an earlier batch's failure comes back here (or at `commit`).
    pub async fn append(&mut self, rows: Vec<Record>) -> Result<(), StepError> {
        if rows.is_empty() {
            return Ok(());
        }
        if self.batches.send(rows).await.is_err() {
            // The stager stopped: it failed on an earlier batch; say why.
            return Err(match (&mut self.stager).await {
                Ok(Err(e)) => e,
                Ok(Ok(_)) => StepError::Failed("staging stopped early".into()),
                Err(e) => StepError::Failed(format!("staging task failed: {e}")),
            });
        }
        Ok(())
    }

    /// Adds one row; a full batch is queued for staging (see `append`).
    pub async fn push(&mut self, row: Record) -> Result<(), StepError> {
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(STAGE_BATCH_ROWS);
        }
        self.pending.push(row);
        if self.pending.len() >= STAGE_BATCH_ROWS {
            let batch = std::mem::take(&mut self.pending);
            self.append(batch).await?;
        }
        Ok(())
    }

    /// Waits for the last batch, then swaps the staged rows in; returns how many the window has.
    pub async fn commit(mut self) -> Result<u64, StepError> {
        let rest = std::mem::take(&mut self.pending);
        self.append(rest).await?;
        drop(self.batches);
        let staging = self.stager.await.map_err(|e| StepError::Failed(format!("staging task failed: {e}")))??;
        let (_, inserted) = staging.commit().await?;
        Ok(inserted)
    }
}

/// Rows read back per batch by the steps that transform another step's table (see
/// `STAGE_BATCH_ROWS` for the size).
const READ_BATCH_ROWS: usize = 500;

/// The organization's rows of the window from a table another step wrote, in batches (a clear
/// error when that step never ran).
pub(crate) async fn read_window(
    ctx: &StepContext<'_>,
    schema: &TableSchema,
    written_by: &str,
) -> Result<RecordBatches, StepError> {
    let tables = ctx.warehouse.list_tables(ctx.dataset).await?;
    if !tables.contains(&schema.name) {
        return Err(StepError::Failed(format!(
            "table {}.{} does not exist: run the {written_by} step first",
            ctx.dataset, schema.name
        )));
    }
    let columns: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE {WINDOW_PREDICATE}",
        columns.join(", "),
        ctx.warehouse.table_ref(ctx.dataset, &schema.name)?
    );
    let params = window_params(ctx, ctx.start_date, ctx.end_date);
    Ok(ctx.warehouse.query_batches(&sql, &params, READ_BATCH_ROWS).await?)
}

/// A data-quality outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DqStatus {
    Pass,
    Warn,
    Fail,
}

impl DqStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DqStatus::Pass => "PASS",
            DqStatus::Warn => "WARN",
            DqStatus::Fail => "FAIL",
        }
    }
}

/// One row of `org_meta_dq_results`.
#[derive(Debug, Clone)]
pub struct DqResult {
    pub check_name: &'static str,
    pub usage_date: NaiveDate,
    pub dimension: Option<String>,
    pub status: DqStatus,
    pub expected: Option<Decimal>,
    pub observed: Option<Decimal>,
    pub tolerance: Option<Decimal>,
    pub currency: Option<String>,
    pub details: Value,
}

/// Records this run's data-quality results about `table` for the step's window.
pub(crate) async fn write_dq(ctx: &StepContext<'_>, table: &str, results: &[DqResult]) -> Result<u64, StepError> {
    let central = ctx.configs.central_dataset();
    let schema = ctx.configs.central_table(DQ_TABLE);
    let now = format_timestamp(&Utc::now());
    let rows: Vec<Row> = results
        .iter()
        .map(|r| {
            let diff = match (r.observed, r.expected) {
                (Some(o), Some(e)) => Some(o - e),
                _ => None,
            };
            let v = json!({
                "dq_id": uuid::Uuid::new_v4().to_string(),
                "run_id": ctx.run_id,
                "org_slug": ctx.org_slug,
                "pipeline_id": ctx.pipeline_id,
                "check_name": r.check_name,
                "table_name": table,
                "usage_date": date_text(r.usage_date),
                "dimension": r.dimension,
                "status": r.status.as_str(),
                "expected_value": opt_numeric(r.expected),
                "observed_value": opt_numeric(r.observed),
                "difference": opt_numeric(diff),
                "tolerance": opt_numeric(r.tolerance),
                "currency": r.currency,
                "details": r.details.to_string(),
                "created_at": now,
            });
            crate::warehouse::to_row(v)
        })
        .collect();
    // Appended, never replaced: org_meta_dq_results is a central table, and central tables take
    // no mutating DML (DESIGN §12). `dq_results_current` reads each day's results of the latest
    // run that checked it.
    Ok(ctx.warehouse.append_rows(central, schema, "dq_id", &rows).await?)
}

/// How computed cost is held against what the provider billed.
#[derive(Debug, Clone)]
pub(crate) struct Tolerance {
    /// Beyond this absolute difference: WARN.
    pub warn: Decimal,
    /// Beyond this one (when set): FAIL.
    pub fail: Option<Decimal>,
}

impl Tolerance {
    pub fn status(&self, difference: Decimal) -> DqStatus {
        let d = difference.abs();
        match self.fail {
            Some(fail) if d > fail => DqStatus::Fail,
            _ if d > self.warn => DqStatus::Warn,
            _ => DqStatus::Pass,
        }
    }
}

/// Amounts per (day, dimension); the dimension is None for the day's total.
pub(crate) type Amounts = BTreeMap<(NaiveDate, Option<String>), Decimal>;

/// Amounts per day and value of one dimension (a project, a model), added to once per priced
/// row: a value seen before costs a lookup, not an allocated key.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct DimensionAmounts {
    by_day: BTreeMap<NaiveDate, std::collections::HashMap<String, Decimal>>,
}

impl DimensionAmounts {
    pub fn add(&mut self, day: NaiveDate, value: &str, amount: Decimal) {
        let values = self.by_day.entry(day).or_default();
        match values.get_mut(value) {
            Some(total) => *total += amount,
            None => {
                values.insert(value.to_string(), amount);
            }
        }
    }

    /// As reconciliation amounts, the dimension written `{name}={value}`.
    pub fn amounts(&self, name: &str) -> Amounts {
        let mut out = Amounts::new();
        for (day, values) in &self.by_day {
            for (value, amount) in values {
                out.insert((*day, Some(format!("{name}={value}"))), *amount);
            }
        }
        out
    }
}

/// Computed vs reported, one result per key either side has: expected = reported, observed =
/// computed. A key one side lacks counts as zero there.
pub(crate) fn reconcile(
    check_name: &'static str,
    computed: &Amounts,
    reported: &Amounts,
    tolerance: &Tolerance,
    currency: &str,
    details: impl Fn(&(NaiveDate, Option<String>)) -> Value,
) -> Vec<DqResult> {
    let mut keys: Vec<&(NaiveDate, Option<String>)> = computed.keys().chain(reported.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|key| {
            let observed = computed.get(key).copied().unwrap_or_default();
            let expected = reported.get(key).copied().unwrap_or_default();
            DqResult {
                check_name,
                usage_date: key.0,
                dimension: key.1.clone(),
                status: tolerance.status(observed - expected),
                expected: Some(expected),
                observed: Some(observed),
                tolerance: Some(tolerance.warn),
                currency: Some(currency.to_string()),
                details: details(key),
            }
        })
        .collect()
}

/// Counts of PASS / WARN / FAIL.
pub(crate) fn tally(results: &[DqResult]) -> Value {
    let count = |s: DqStatus| results.iter().filter(|r| r.status == s).count();
    json!({"checks": results.len(), "pass": count(DqStatus::Pass), "warn": count(DqStatus::Warn), "fail": count(DqStatus::Fail)})
}

/// The warning for reconciliation results beyond tolerance (None when all passed).
pub(crate) fn reconciliation_warning(provider: &str, results: &[DqResult]) -> Option<String> {
    let checks: Vec<&DqResult> = results.iter().filter(|r| r.check_name.starts_with("cost_reconciliation")).collect();
    let off: Vec<&DqResult> = checks.iter().copied().filter(|r| r.status != DqStatus::Pass).collect();
    let worst = off.iter().max_by_key(|r| (r.observed.unwrap_or_default() - r.expected.unwrap_or_default()).abs())?;
    Some(format!(
        "reconciliation: {} of {} computed-vs-{provider} cost checks beyond tolerance {} {}; largest on {}{}: computed {} vs reported {}",
        off.len(),
        checks.len(),
        worst.tolerance.unwrap_or_default(),
        worst.currency.as_deref().unwrap_or(""),
        date_text(worst.usage_date),
        worst.dimension.as_deref().map(|d| format!(" ({d})")).unwrap_or_default(),
        worst.observed.unwrap_or_default(),
        worst.expected.unwrap_or_default(),
    ))
}

table_columns! {
    /// The columns every cost table has about how a row was priced.
    pub(crate) struct PriceColumns {
        price_model_id, price_version_id, price_version, price_effective_from, currency, pricing_basis, cost_status,
    }
}

/// Writes the price version a cost record was priced with into it (its text shared through
/// `names`: a window uses a handful of versions).
pub(crate) fn set_price_version(
    (record, cols): (&mut Record, &PriceColumns),
    names: &mut Interner,
    v: &crate::cost::PriceVersion,
) {
    record[cols.price_model_id] = names.text(&v.model_id);
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
        crate::cost::Unpriced::RateMissing { basis, token_types } => {
            record[cols.pricing_basis] = Cell::Static(basis);
            record[cols.cost_status] = Cell::Static("RATE_MISSING");
            let what: Vec<&str> = token_types.iter().map(|t| t.book_stem()).collect();
            unpriced.add(model, format!("the price book has no {basis} rate for {}", what.join(", ")), day, tokens);
        }
    }
}

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
                format!(
                    "{model}: {reason}; {rows} usage row(s), {tokens} tokens on {} day(s) left unpriced (not counted as zero): \
                     add or fix it with POST /api/v1/integrations/{org}/{provider}/pricing",
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
                let check_name =
                    if reason.starts_with("not in") { "price_book_model_missing" } else { "price_book_rate_missing" };
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

/// Every processor, by type: the registry handed to the pipeline engine and to config loading.
/// Adding a processor is adding a line here.
pub static REGISTRY: Registry = Registry::new(&[
    &Typed::<openai::usage::OpenAiUsage>::NEW,
    &Typed::<openai::cost::OpenAiCost>::NEW,
    &Typed::<openai::subscriptions::OpenAiSubscriptions>::NEW,
    &Typed::<anthropic::usage::AnthropicUsage>::NEW,
    &Typed::<anthropic::cost::AnthropicCost>::NEW,
]);

#[cfg(test)]
mod tests {
    #[test]
    fn registered_types_are_unique_and_dotted() {
        let types = REGISTRY.types();
        let mut unique = types.clone();
        unique.dedup();
        assert_eq!(types, unique, "a ps_type is registered twice");
        for t in types {
            let (provider, domain) = t.split_once('.').unwrap_or_else(|| panic!("{t} is not provider.domain"));
            assert!(crate::domain::is_identifier(provider) && crate::domain::is_identifier(domain), "{t}");
        }
    }

    use super::*;

    fn configs_root() -> std::path::PathBuf {
        std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs"))
    }

    #[test]
    fn shipped_schemas_are_valid() {
        for (provider, table) in [
            ("openai", openai::usage::TABLE),
            ("openai", openai::cost::TABLE),
            ("openai", openai::subscriptions::TABLE),
            ("anthropic", anthropic::usage::TABLE),
            ("anthropic", anthropic::cost::TABLE),
        ] {
            let s = load_schema(&configs_root(), provider, table).unwrap();
            assert_eq!(s.field("usage_date").map(|f| f.field_type), Some(crate::warehouse::FieldType::Date), "{table}");
            assert!(s.field("org_slug").is_some(), "{table}");
        }
    }

    /// Every shipped pipeline file's steps parse into their processor's Config.
    #[test]
    fn shipped_pipelines_match_the_processor_configs() {
        use crate::pipeline::Processor;
        fn check<P: Processor>(config: &serde_yaml::Value) -> Result<(), String> {
            serde_yaml::from_value::<P::Config>(config.clone()).map(|_| ()).map_err(|e| e.to_string())
        }
        let mut seen = Vec::new();
        for file in ["openai/usage_cost.yml", "openai/subscriptions.yml", "anthropic/usage_cost.yml"] {
            let text = std::fs::read_to_string(configs_root().join(file)).unwrap();
            let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
            for step in doc["steps"].as_sequence().unwrap() {
                let mut config = step.as_mapping().unwrap().clone();
                config.remove("step_id");
                let ps_type = config.remove("ps_type").and_then(|v| v.as_str().map(str::to_string)).unwrap();
                let config = serde_yaml::Value::Mapping(config);
                let checked = match ps_type.as_str() {
                    "openai.usage" => check::<openai::usage::OpenAiUsage>(&config),
                    "openai.cost" => check::<openai::cost::OpenAiCost>(&config),
                    "openai.subscriptions" => check::<openai::subscriptions::OpenAiSubscriptions>(&config),
                    "anthropic.usage" => check::<anthropic::usage::AnthropicUsage>(&config),
                    "anthropic.cost" => check::<anthropic::cost::AnthropicCost>(&config),
                    other => Err(format!("unknown ps_type {other}")),
                };
                checked.unwrap_or_else(|e| panic!("{file} {ps_type}: {e}"));
                seen.push(ps_type);
            }
        }
        assert_eq!(seen.len(), 5);
        // The YAML text is read as a decimal, quoted or not: exact either way.
        let c: openai::cost::Config = serde_yaml::from_str("tolerance: 0.10").unwrap();
        assert_eq!(c.tolerance.to_string(), "0.10");
        assert!(serde_yaml::from_str::<openai::cost::Config>("tolerance: \"-1\"").is_err());
    }

    #[test]
    fn tolerance_and_reconciliation() {
        let t = Tolerance { warn: "0.01".parse().unwrap(), fail: Some("1".parse().unwrap()) };
        assert_eq!(t.status("0.01".parse().unwrap()), DqStatus::Pass);
        assert_eq!(t.status("-0.011".parse().unwrap()), DqStatus::Warn);
        assert_eq!(t.status("1.5".parse().unwrap()), DqStatus::Fail);
        let d = |s: &str| crate::pricebook::records::parse_date(s).unwrap();
        let computed: Amounts = [((d("2026-01-01"), None), "1.00".parse().unwrap())].into();
        let reported: Amounts =
            [((d("2026-01-01"), None), "1.005".parse().unwrap()), ((d("2026-01-02"), None), "0.5".parse().unwrap())]
                .into();
        let r = reconcile("cost_reconciliation_daily", &computed, &reported, &t, "USD", |_| Value::Null);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].status, DqStatus::Pass);
        assert_eq!((r[1].status, r[1].observed), (DqStatus::Warn, Some(Decimal::ZERO)), "a day only the provider has");
        assert!(reconciliation_warning("OpenAI", &r).unwrap().contains("1 of 2"));
    }

    #[test]
    fn columns_are_found_once_or_named_missing() {
        let schema = load_schema(&configs_root(), "openai", openai::usage::TABLE).unwrap();
        let columns = openai::usage::RawColumns::new(&schema).unwrap();
        assert_eq!(schema.fields[columns.model].name, "model");
        assert_eq!(columns.record().len(), schema.fields.len());
        let mut lacking = schema.clone();
        lacking.fields.retain(|f| f.name != "service_tier");
        let e = openai::usage::RawColumns::new(&lacking).err().expect("a schema without service_tier is refused");
        assert!(e.to_string().contains("has no column service_tier"), "{e}");
    }

    #[test]
    fn numeric_text_is_canonical() {
        assert_eq!(numeric("1.2300".parse().unwrap()), Value::String("1.23".into()));
        assert_eq!(numeric("0.000".parse().unwrap()), Value::String("0".into()));
    }
}
