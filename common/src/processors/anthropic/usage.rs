//! `anthropic.usage`: the messages usage report, daily buckets grouped by model, workspace, API
//! key, service tier, context window, speed (fast mode: the request carries the fast-mode beta
//! header) and inference geo (US-only inference), the dimensions Anthropic bills, paged to the end; each page is staged as it arrives and
//! the window lands in `anthropic_usage_daily_raw` in one replace once every page is in.

use async_trait::async_trait;
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::json;

use super::{client, PROVIDER};
use crate::pipeline::{Processor, StepContext, StepError, StepOutcome};
use crate::processors::llm::{credential, http, provider_failed};
use crate::processors::{default_page_size, page_size, table_columns, table_schema, WindowWriter};
use crate::providers::anthropic::{ReportQuery, UsageResult};
use crate::providers::retry::RetryPolicy;
use crate::warehouse::{Cell, Interner, Record};

pub const TABLE: &str = "anthropic_usage_daily_raw";

table_columns! {
    /// `anthropic_usage_daily_raw`: written here, read back by `anthropic.cost`.
    pub(crate) struct RawColumns {
        usage_date, org_slug, model, workspace_id, api_key_id, service_tier, context_window, speed, inference_geo,
        uncached_input_tokens, cache_read_input_tokens, cache_write_5m_input_tokens, cache_write_1h_input_tokens,
        output_tokens, web_search_requests,
    }
}

/// Every dimension the price depends on is grouped by, so no two prices share a row.
const GROUPS: [&str; 7] =
    ["model", "workspace_id", "api_key_id", "service_tier", "context_window", "speed", "inference_geo"];

/// Settings of an `anthropic.usage` step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Daily buckets per page, 1–31 (default 31: the fewest calls).
    #[serde(default = "default_page_size", deserialize_with = "page_size")]
    pub page_size: u32,
    /// Retries of provider calls (429 / 5xx / 529): attempts, backoff, per-call timeout.
    #[serde(default)]
    pub retry: RetryPolicy,
}

pub struct AnthropicUsage;

/// A usage-report result as a raw record (its text shared through `names`).
pub(crate) fn usage_row(
    (c, names): (&RawColumns, &mut Interner),
    org: &str,
    day: NaiveDate,
    r: &UsageResult,
) -> Record {
    let mut row = c.record();
    row[c.usage_date] = Cell::Date(day);
    row[c.org_slug] = names.text(org);
    row[c.model] = names.opt_text(r.model.as_deref());
    row[c.workspace_id] = names.opt_text(r.workspace_id.as_deref());
    row[c.api_key_id] = names.opt_text(r.api_key_id.as_deref());
    row[c.service_tier] = names.opt_text(r.service_tier.as_deref());
    row[c.context_window] = names.opt_text(r.context_window.as_deref());
    row[c.speed] = names.opt_text(r.speed.as_deref());
    row[c.inference_geo] = names.opt_text(r.inference_geo.as_deref());
    row[c.uncached_input_tokens] = Cell::count(r.uncached_input_tokens);
    row[c.cache_read_input_tokens] = Cell::count(r.cache_read_input_tokens);
    row[c.cache_write_5m_input_tokens] = Cell::count(r.cache_creation.ephemeral_5m_input_tokens);
    row[c.cache_write_1h_input_tokens] = Cell::count(r.cache_creation.ephemeral_1h_input_tokens);
    row[c.output_tokens] = Cell::count(r.output_tokens);
    row[c.web_search_requests] = Cell::count(r.server_tool_use.web_search_requests);
    row
}

#[async_trait]
impl Processor for AnthropicUsage {
    const TYPE: &'static str = "anthropic.usage";
    const TABLES: &'static [&'static str] = &[TABLE];
    type Config = Config;

    async fn run(config: &Config, ctx: &StepContext<'_>) -> Result<StepOutcome, StepError> {
        let key = credential(ctx, PROVIDER)?;
        let schema = table_schema(ctx.configs, PROVIDER, TABLE)?;
        let columns = RawColumns::new(schema)?;
        let mut names = Interner::default();
        let http = http(ctx)?;
        let api = client(ctx, &http);
        let (start, end) = (ctx.start_date, ctx.end_date);
        let q = ReportQuery { start, end, group_by: &GROUPS, limit: config.page_size };
        let (mut input, mut output) = (0u64, 0u64);
        let mut writer = WindowWriter::start(ctx, schema).await?;
        let mut report = api.usage_report(key, &config.retry, &q);
        // Each page is turned into rows and staged as it arrives; the window lands after the last.
        while let Some(buckets) = report.next().await.map_err(provider_failed)? {
            for b in &buckets {
                let Some(day) = b.day().filter(|d| *d >= start && *d <= end) else { continue };
                for r in &b.results {
                    input += r.uncached_input_tokens
                        + r.cache_read_input_tokens
                        + r.cache_creation.ephemeral_5m_input_tokens
                        + r.cache_creation.ephemeral_1h_input_tokens;
                    output += r.output_tokens;
                    writer.push(usage_row((&columns, &mut names), ctx.org_slug, day, r)).await?;
                }
            }
        }
        let pages = report.count();
        let written = writer.commit().await?;
        tracing::info!(step = ctx.step_id, org_slug = ctx.org_slug, rows = written, pages, "anthropic usage loaded");
        Ok(StepOutcome {
            rows_written: written,
            warnings: Vec::new(),
            metrics: json!({
                "table": TABLE, "pages": pages, "rows": written,
                "input_tokens": input, "output_tokens": output,
            }),
        })
    }
}
