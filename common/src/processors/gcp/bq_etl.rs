//! `gcp.bq_etl`: the organization's Cloud Billing export → `gcp_billing_daily_raw`, read one
//! usage day at a time and replaced as one window. For day D the export is read where
//! `usage_start_time` falls on D (UTC) and the row's partition (`_PARTITIONTIME`) lies in
//! [D, D + late_arrival_days] (`configs/gcp/bq_etl/config.yml`). Every day of the window is
//! staged (`Warehouse::stage`), and one commit swaps the organization's rows of the whole window
//! for what was read: a rerun picks up rows that arrived late and never duplicates one (each row
//! carries a `source_key` derived from its identifying columns and export time), and a failure
//! on any day leaves every day of the window as it was.
//!
//! How rows travel (`transfer` in the config):
//! - server-side: one `INSERT … SELECT` inside the warehouse per day (`Staging::append_select`),
//!   no rows through this process. The sandbox export (local mode) always goes this way; on
//!   BigQuery it needs the warehouse's own service account to read the export, in the
//!   warehouse's location.
//! - paged: a query job per day run as the organization's service account (its key from the
//!   integration), its result read page by page (`jobs.getQueryResults`) and staged as it
//!   arrives; memory holds a page or two whatever the day's size.
//!
//! `auto` tries server-side on BigQuery and falls back to paged (once per step, the window
//! staged again from its first day) when the warehouse cannot read the export.

use async_trait::async_trait;
use chrono::{Duration, NaiveDate};
use rust_decimal::Decimal;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Value};

use super::export_query::{day_select, missing_required, partition_time_expr, Dialect, ExportSource};
use super::reader::{self, ServiceAccountTokens};
use super::PROVIDER;
use crate::configs::bq_etl::{BqEtlConfig, BqEtlSettings, Transfer};
use crate::pipeline::{Processor, StepContext, StepError, StepOutcome};
use crate::processors::table_schema;
use crate::processors::window::ensure_table;
use crate::providers::gcp::{BillingExportTable, ServiceAccountKey, SANDBOX_PROJECT};
use crate::providers::gcp_sandbox::{midnight, SandboxExport};
use crate::providers::retry::RetryPolicy;
use crate::providers::ProviderHttp;
use crate::warehouse::bigquery::BigQueryWarehouse;
use crate::warehouse::{Params, Staging, TableSchema, Warehouse, WarehouseError};

pub const TABLE: &str = "gcp_billing_daily_raw";

/// The organization's rows of the window: what the step's one commit swaps.
const WINDOW_PREDICATE: &str = "org_slug = @org_slug AND usage_date BETWEEN @start_date AND @end_date";

/// Settings of a `gcp.bq_etl` step (the export's reading is set in `configs/gcp/bq_etl/`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Retries of the token requests to Google (query jobs are retried by the BigQuery client).
    #[serde(default)]
    pub retry: RetryPolicy,
}

pub struct GcpBqEtl;

/// Where the day's rows come from: the export table, its top-level columns and its rows'
/// partition time, read by the warehouse itself (`paged_with` None: the sandbox, or a BigQuery
/// export the warehouse's own service account may read) or by the organization's service
/// account, whose query results are paged in.
struct Reader {
    table_ref: String,
    columns: Vec<String>,
    partition_time: String,
    paged_with: Option<Box<BigQueryWarehouse>>,
}

/// The integration's service account and export table.
async fn integration(ctx: &StepContext<'_>) -> Result<(ServiceAccountKey, BillingExportTable), StepError> {
    let no_key = || StepError::Failed("no gcp credential for this run: set up the gcp integration first".into());
    let json: Value = ctx
        .credential
        .map(|c| serde_json::from_str(c.expose_secret()))
        .transpose()
        .map_err(|_| {
            StepError::Failed("the stored gcp credential is not a service-account key; set it up again".into())
        })?
        .ok_or_else(no_key)?;
    let key = ServiceAccountKey::parse(&json, ctx.settings.is_development())
        .map_err(|e| StepError::Failed(format!("the stored gcp service-account key: {e}; set it up again")))?;
    let stored = crate::credentials::find_secret(ctx.warehouse, ctx.configs, ctx.org_slug, PROVIDER)
        .await
        .map_err(|e| StepError::Failed(format!("the gcp integration cannot be read: {e}")))?
        .ok_or_else(no_key)?;
    let table = stored.metadata["billing_export_table"]
        .as_str()
        .ok_or_else(|| StepError::Failed("the gcp integration names no billing_export_table; set it up again".into()))
        .and_then(|t| BillingExportTable::parse(t).map_err(StepError::Failed))?;
    Ok((key, table))
}

fn etl_config<'a>(ctx: &StepContext<'a>) -> Result<&'a BqEtlConfig, StepError> {
    ctx.configs.gcp_bq_etl.as_ref().ok_or_else(|| StepError::Failed("configs/gcp/bq_etl/ is not loaded".into()))
}

/// The day's parameters: the window of usage and of partitions.
fn day_params(ctx: &StepContext<'_>, day: NaiveDate, late_days: u32) -> Params {
    Params::new()
        .bind("org_slug", ctx.org_slug)
        .bind("usage_date", day)
        .bind("day_start", midnight(day))
        .bind("next_day", midnight(day + Duration::days(1)))
        .bind("partition_start", midnight(day))
        .bind("partition_end", midnight(day + Duration::days(i64::from(late_days) + 1)))
}

/// The step's totals: rows, and money per (currency, cost type), read back from the window.
async fn window_totals(ctx: &StepContext<'_>, schema: &TableSchema) -> Result<Value, StepError> {
    let sql = format!(
        "SELECT currency, cost_type, COUNT(*) AS row_count, SUM(cost) AS cost, SUM(credits_total) AS credits, \
         SUM(net_cost) AS net_cost FROM {} WHERE org_slug = @org_slug AND usage_date BETWEEN @start_date AND @end_date \
         GROUP BY currency, cost_type ORDER BY currency, cost_type",
        ctx.warehouse.table_ref(ctx.dataset, &schema.name)?
    );
    let params =
        Params::new().bind("org_slug", ctx.org_slug).bind("start_date", ctx.start_date).bind("end_date", ctx.end_date);
    let rows = ctx.warehouse.query(&sql, &params).await?;
    let money = |v: Option<&Value>| {
        v.and_then(Value::as_str).and_then(|s| s.parse::<Decimal>().ok()).unwrap_or_default().normalize().to_string()
    };
    let totals: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "currency": r.get("currency"),
                "cost_type": r.get("cost_type"),
                "rows": r.get("row_count"),
                "cost": money(r.get("cost")),
                "credits": money(r.get("credits")),
                "net_cost": money(r.get("net_cost")),
            })
        })
        .collect();
    Ok(Value::Array(totals))
}

impl GcpBqEtl {
    /// The reader of the export, and whether it is the sandbox.
    async fn reader(
        ctx: &StepContext<'_>,
        config: &Config,
        etl: &BqEtlConfig,
        key: ServiceAccountKey,
        table: &BillingExportTable,
    ) -> Result<(Reader, Option<u64>), StepError> {
        if key.project_id == SANDBOX_PROJECT && ctx.settings.is_development() {
            if !ctx.settings.sandbox_providers {
                return Err(StepError::Failed(
                    "a sandbox gcp key reads the sandbox export, which needs SANDBOX_PROVIDERS=true".into(),
                ));
            }
            let sandbox = SandboxExport::resolve(table, &etl.settings).map_err(StepError::Failed)?;
            let today = chrono::Utc::now().date_naive();
            let generated =
                sandbox.ensure_days(ctx.warehouse, &etl.export_template, ctx.start_date, ctx.end_date, today).await?;
            let columns = ctx.warehouse.table_columns(&sandbox.dataset, &sandbox.table).await?;
            let partition_time = partition_time_expr(&columns, false, None);
            let table_ref = ctx.warehouse.table_ref(&sandbox.dataset, &sandbox.table)?;
            return Ok((Reader { table_ref, columns, partition_time, paged_with: None }, Some(generated)));
        }
        let http = ProviderHttp::from_settings(ctx.settings).map_err(StepError::Failed)?;
        let base = reader::api_base(ctx.settings).to_string();
        let token_url = ctx.settings.google_token_url.clone();
        let tokens = ServiceAccountTokens::new(key, http, &base, token_url, config.retry.clone());
        // The first token now: a refused key fails the step with Google's reason.
        tokens.token().await?;
        let api = reader::ExportApi::of(ctx.settings);
        let metadata = reader::export_metadata(&tokens, api, table).await?;
        let columns = metadata.columns.clone();
        let partition_time =
            partition_time_expr(&columns, metadata.ingestion_time_partitioned, metadata.partition_field.as_deref());
        // Validated by BillingExportTable::parse: a project id and identifiers, safe to quote.
        let table_ref = format!("`{}.{}.{}`", table.project, table.dataset, table.table);
        let location = metadata.location.clone().unwrap_or_else(|| ctx.settings.bigquery_location.clone());
        let same_location = location.eq_ignore_ascii_case(&ctx.settings.bigquery_location);
        let server_side = ctx.warehouse.backend_name() == "bigquery"
            && match etl.settings.transfer {
                Transfer::ServerSide => true,
                Transfer::Auto => same_location,
                Transfer::Paged => false,
            };
        if server_side {
            return Ok((Reader { table_ref, columns, partition_time, paged_with: None }, None));
        }
        if etl.settings.transfer == Transfer::ServerSide {
            return Err(StepError::Failed(
                "transfer: server_side needs the BigQuery warehouse (WAREHOUSE_BACKEND=bigquery)".into(),
            ));
        }
        let client = reader::client(&tokens, api, &location).await?;
        Ok((Reader { table_ref, columns, partition_time, paged_with: Some(Box::new(client)) }, None))
    }

    /// The day read as the organization's service account, page by page, into the staging.
    async fn paged_day(
        staging: &mut dyn Staging,
        client: &BigQueryWarehouse,
        sql: &str,
        params: &Params,
        page_rows: usize,
    ) -> Result<u64, StepError> {
        let mut pages = client.query_batches(sql, params, page_rows).await.map_err(export_read_failed)?;
        let mut rows = 0;
        while let Some(page) = pages.next().await {
            rows += staging.append(page.map_err(export_read_failed)?).await?;
        }
        Ok(rows)
    }

    /// Every day of the window read into `staging`: the rows of each day, in order.
    async fn stage_days(
        ctx: &StepContext<'_>,
        schema: &TableSchema,
        etl: &BqEtlConfig,
        reader: &Reader,
        export: &BillingExportTable,
        staging: &mut dyn Staging,
    ) -> Result<Vec<(NaiveDate, u64)>, DayFailure> {
        check_columns(&reader.columns, export)?;
        let source = ExportSource {
            table_ref: &reader.table_ref,
            columns: &reader.columns,
            partition_time: &reader.partition_time,
        };
        // One SELECT for every day (only its parameters change), in the dialect of where it runs.
        let dialect = match reader.paged_with {
            Some(_) => Dialect::BigQuery,
            None => Dialect::of_backend(ctx.warehouse.backend_name()),
        };
        let sql = day_select(dialect, &source, schema)?;
        let late_days = etl.settings.late_arrival_days;
        let mut days = Vec::new();
        let mut day = ctx.start_date;
        while day <= ctx.end_date {
            let params = day_params(ctx, day, late_days);
            let rows = if let Some(client) = &reader.paged_with {
                Self::paged_day(staging, client, &sql, &params, etl.settings.page_rows as usize).await?
            } else {
                staging.append_select(&sql, &params).await.map_err(DayFailure::ServerSide)?
            };
            days.push((day, rows));
            day += Duration::days(1);
        }
        Ok(days)
    }
}

/// Why staging the window stopped: the warehouse could not read the export server-side (which
/// `auto` may answer by paging it in), or anything else, which fails the step.
enum DayFailure {
    ServerSide(WarehouseError),
    Step(StepError),
}

impl From<StepError> for DayFailure {
    fn from(e: StepError) -> Self {
        DayFailure::Step(e)
    }
}

#[async_trait]
impl Processor for GcpBqEtl {
    const TYPE: &'static str = "gcp.bq_etl";
    const TABLES: &'static [&'static str] = &[TABLE];
    type Config = Config;

    async fn run(config: &Config, ctx: &StepContext<'_>) -> Result<StepOutcome, StepError> {
        let etl = etl_config(ctx)?;
        let schema = table_schema(ctx.configs, PROVIDER, TABLE)?;
        let (key, export) = integration(ctx).await?;
        let (mut reader, generated) = Self::reader(ctx, config, etl, key, &export).await?;
        ensure_table(ctx, schema).await?;
        let window = Params::new()
            .bind("org_slug", ctx.org_slug)
            .bind("start_date", ctx.start_date)
            .bind("end_date", ctx.end_date);
        let mut fell_back: Option<String> = None;
        let (days, written) = loop {
            let mut staging = ctx.warehouse.stage(ctx.dataset, schema, WINDOW_PREDICATE, &window).await?;
            let staged = Self::stage_days(ctx, schema, etl, &reader, &export, staging.as_mut()).await;
            let failure = match staged {
                Ok(days) => {
                    let (_, inserted) = staging.commit().await?;
                    break (days, inserted);
                }
                Err(failure) => failure,
            };
            // The window stays as it was; the step fails with the day's error (or starts over).
            if let Err(discard) = staging.discard().await {
                tracing::warn!(step = ctx.step_id, error = %discard, "discarding a failed window's staging failed");
            }
            match failure {
                // Auto on BigQuery: the warehouse's own account cannot read the export (not
                // granted, or not there for it): page it in as the organization, from the first day.
                DayFailure::ServerSide(
                    e @ (WarehouseError::NotFound(_) | WarehouseError::Invalid(_) | WarehouseError::Backend(_)),
                ) if fell_back.is_none()
                    && etl.settings.transfer == Transfer::Auto
                    && ctx.warehouse.backend_name() == "bigquery" =>
                {
                    tracing::warn!(step = ctx.step_id, org_slug = ctx.org_slug, error = %e, "server-side read of the billing export refused; paging it in with the organization's service account");
                    fell_back = Some(e.to_string());
                    let (key, export) = integration(ctx).await?;
                    let settings = BqEtlSettings { transfer: Transfer::Paged, ..etl.settings.clone() };
                    let paged = BqEtlConfig { settings, export_template: etl.export_template.clone() };
                    reader = Self::reader(ctx, config, &paged, key, &export).await?.0;
                }
                DayFailure::ServerSide(e) => return Err(e.into()),
                DayFailure::Step(e) => return Err(e),
            }
        };
        let late_days = etl.settings.late_arrival_days;
        let days: Vec<Value> =
            days.iter().map(|(day, rows)| json!({"usage_date": day.to_string(), "rows": rows})).collect();
        let transfer = if reader.paged_with.is_some() { "paged" } else { "server_side" };
        let totals = window_totals(ctx, schema).await?;
        tracing::info!(
            step = ctx.step_id,
            org_slug = ctx.org_slug,
            rows = written,
            transfer,
            "gcp billing export loaded"
        );
        let mut warnings = Vec::new();
        if let Some(reason) = &fell_back {
            warnings.push(format!(
                "the billing export was paged in with the organization's service account: the warehouse cannot read it \
                 server-side ({reason})"
            ));
        }
        Ok(StepOutcome {
            rows_written: written,
            warnings,
            metrics: json!({
                "table": TABLE,
                "billing_export_table": export.to_string(),
                "transfer": transfer,
                "late_arrival_days": late_days,
                "rows": written,
                "days": days,
                "totals": totals,
                "sandbox_rows_generated": generated,
            }),
        })
    }
}

/// A failed read of the organization's billing export (its BigQuery, as its service account):
/// Google Cloud's failure, named so, with what it said (the warehouse's own failures say only
/// their kind), and an HTTP-like status for whether trying again later may help.
fn export_read_failed(e: WarehouseError) -> StepError {
    // The error's own text without the kind's prefix ("warehouse error: …"): this is the
    // organization's BigQuery, not the warehouse.
    let (status, what) = match e {
        WarehouseError::Unavailable(m) => (503, m),
        WarehouseError::NotFound(m) => (404, m),
        WarehouseError::Invalid(m) => (400, m),
        WarehouseError::AlreadyExists(m) => (409, m),
        WarehouseError::Backend(m) => (502, m),
    };
    StepError::Provider {
        provider: crate::providers::gcp::NAME.to_string(),
        status,
        message: format!("reading the billing export failed: {what}"),
    }
}

/// The export must have the columns the step cannot do without.
fn check_columns(columns: &[String], export: &BillingExportTable) -> Result<(), StepError> {
    let missing = missing_required(columns);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(StepError::Failed(format!(
            "{export} is not a Cloud Billing export table: it has no {} column",
            missing.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_refusals() {
        let c: Config = serde_yaml::from_str("{}").unwrap();
        assert_eq!(c.retry.max_attempts, 5);
        assert!(serde_yaml::from_str::<Config>("late_days: 3").is_err(), "unknown keys are refused");
    }
}
