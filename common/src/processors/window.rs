//! Window I/O: a step's window of an organization table, replaced atomically (built whole, or
//! streamed through a [`WindowWriter`]), and read back in batches by the step that transforms it.

use chrono::NaiveDate;

use crate::pipeline::{StepContext, StepError};
use crate::warehouse::{Params, Record, RecordBatches, Row, Staging, TableSchema};

/// Creates the table in the organization's dataset when missing, else gives it the NULLABLE
/// columns its schema gained since it was made (a table is made once, when first written: a
/// column added to configs, e.g. a new billed dimension, would otherwise never reach it, and the
/// window's rows would not fit it).
pub(crate) async fn ensure_table(ctx: &StepContext<'_>, schema: &TableSchema) -> Result<(), StepError> {
    crate::warehouse::create_or_extend_table(ctx.warehouse, ctx.dataset, schema).await?;
    Ok(())
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
    // Rows written before a column was added read it as NULL (e.g. usage pulled before a
    // dimension was grouped by, priced again by a cost-only run).
    crate::warehouse::add_missing_columns(ctx.warehouse, ctx.dataset, schema).await?;
    let columns: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE {WINDOW_PREDICATE}",
        columns.join(", "),
        ctx.warehouse.table_ref(ctx.dataset, &schema.name)?
    );
    let params = window_params(ctx, ctx.start_date, ctx.end_date);
    Ok(ctx.warehouse.query_batches(&sql, &params, READ_BATCH_ROWS).await?)
}
