//! `openai.usage`: the Usage API's completions and embeddings, daily buckets grouped by model,
//! project, API key (and, for completions, batch and service tier; each completions row keeps its
//! cache-write, audio and image counts, which are priced at their own rates), paged to the end; each page
//! is staged as it arrives and the window lands in `openai_usage_daily_raw` in one replace once
//! every page is in.

use async_trait::async_trait;
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::json;

use super::{client, PROVIDER};
use crate::pipeline::{Processor, StepContext, StepError, StepOutcome};
use crate::processors::llm::{credential, http, provider_failed};
use crate::processors::{default_page_size, page_size, table_columns, table_schema, WindowWriter};
use crate::providers::openai::{Bucket, CompletionsResult, EmbeddingsResult, ReportQuery};
use crate::providers::retry::RetryPolicy;
use crate::warehouse::{Cell, Interner, Record};

pub const TABLE: &str = "openai_usage_daily_raw";

table_columns! {
    /// `openai_usage_daily_raw`: written here, read back by `openai.cost`.
    pub(crate) struct RawColumns {
        usage_date, org_slug, usage_type, model, project_id, api_key_id, batch, service_tier, input_tokens,
        input_cached_tokens, input_uncached_tokens, input_cache_write_tokens, input_audio_tokens,
        input_cached_audio_tokens, input_image_tokens, input_cached_image_tokens, output_tokens, output_audio_tokens,
        output_image_tokens, num_model_requests,
    }
}

const COMPLETIONS_GROUPS: [&str; 5] = ["model", "project_id", "api_key_id", "batch", "service_tier"];
const EMBEDDINGS_GROUPS: [&str; 3] = ["model", "project_id", "api_key_id"];

/// A Usage API endpoint this step reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    Completions,
    Embeddings,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
        }
    }
}

/// Settings of an `openai.usage` step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Usage endpoints to read: `completions`, `embeddings` (default: both).
    #[serde(default = "default_endpoints")]
    pub endpoints: Vec<Endpoint>,
    /// Daily buckets per page, 1–31 (default 31: the fewest calls).
    #[serde(default = "default_page_size", deserialize_with = "page_size")]
    pub page_size: u32,
    /// Retries of provider calls (429 / 5xx): attempts, backoff, per-call timeout.
    #[serde(default)]
    pub retry: RetryPolicy,
}

fn default_endpoints() -> Vec<Endpoint> {
    vec![Endpoint::Completions, Endpoint::Embeddings]
}

pub struct OpenAiUsage;

/// Token and request totals of what was read, for the step's metrics.
#[derive(Debug, Default)]
struct Totals {
    input: u64,
    cached: u64,
    output: u64,
    requests: u64,
}

fn in_window<R>(b: &Bucket<R>, start: NaiveDate, end: NaiveDate) -> Option<NaiveDate> {
    b.day().filter(|d| *d >= start && *d <= end)
}

/// A completions result as a raw record (its text shared through `names`).
pub(crate) fn completions_row(
    (c, names): (&RawColumns, &mut Interner),
    org: &str,
    day: NaiveDate,
    r: &CompletionsResult,
) -> Record {
    let cached = r.input_cached_tokens.unwrap_or(0);
    let mut row = c.record();
    row[c.usage_date] = Cell::Date(day);
    row[c.org_slug] = names.text(org);
    row[c.usage_type] = Cell::Static(Endpoint::Completions.as_str());
    row[c.model] = names.opt_text(r.model.as_deref());
    row[c.project_id] = names.opt_text(r.project_id.as_deref());
    row[c.api_key_id] = names.opt_text(r.api_key_id.as_deref());
    row[c.batch] = Cell::opt_bool(r.batch);
    row[c.service_tier] = names.opt_text(r.service_tier.as_deref());
    row[c.input_tokens] = Cell::count(r.input_tokens);
    row[c.input_cached_tokens] = Cell::count(cached);
    // Cached tokens are a subset of input (never more, in a sane report).
    row[c.input_uncached_tokens] = Cell::count(r.input_tokens.saturating_sub(cached));
    row[c.input_cache_write_tokens] = Cell::opt_count(r.input_cache_write_tokens);
    row[c.input_audio_tokens] = Cell::opt_count(r.input_audio_tokens);
    row[c.input_cached_audio_tokens] = Cell::opt_count(r.input_cached_audio_tokens);
    row[c.input_image_tokens] = Cell::opt_count(r.input_image_tokens);
    row[c.input_cached_image_tokens] = Cell::opt_count(r.input_cached_image_tokens);
    row[c.output_tokens] = Cell::count(r.output_tokens);
    row[c.output_audio_tokens] = Cell::opt_count(r.output_audio_tokens);
    row[c.output_image_tokens] = Cell::opt_count(r.output_image_tokens);
    row[c.num_model_requests] = Cell::count(r.num_model_requests);
    row
}

/// An embeddings result as a raw record (no cached or output tokens).
pub(crate) fn embeddings_row(
    (c, names): (&RawColumns, &mut Interner),
    org: &str,
    day: NaiveDate,
    r: &EmbeddingsResult,
) -> Record {
    let mut row = c.record();
    row[c.usage_date] = Cell::Date(day);
    row[c.org_slug] = names.text(org);
    row[c.usage_type] = Cell::Static(Endpoint::Embeddings.as_str());
    row[c.model] = names.opt_text(r.model.as_deref());
    row[c.project_id] = names.opt_text(r.project_id.as_deref());
    row[c.api_key_id] = names.opt_text(r.api_key_id.as_deref());
    row[c.input_tokens] = Cell::count(r.input_tokens);
    row[c.input_cached_tokens] = Cell::Int(0);
    row[c.input_uncached_tokens] = Cell::count(r.input_tokens);
    row[c.output_tokens] = Cell::Int(0);
    row[c.num_model_requests] = Cell::count(r.num_model_requests);
    row
}

#[async_trait]
impl Processor for OpenAiUsage {
    const TYPE: &'static str = "openai.usage";
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
        let mut totals = Totals::default();
        let mut pages = 0;
        let mut endpoints = config.endpoints.clone();
        endpoints.dedup();
        let mut writer = WindowWriter::start(ctx, schema).await?;
        for endpoint in endpoints {
            // Each page is turned into rows and staged as it arrives; the window lands after the last.
            match endpoint {
                Endpoint::Completions => {
                    let q = ReportQuery { start, end, group_by: &COMPLETIONS_GROUPS, limit: config.page_size };
                    let mut report = api.completions_usage(key, &config.retry, &q);
                    while let Some(buckets) = report.next().await.map_err(provider_failed)? {
                        for b in &buckets {
                            let Some(day) = in_window(b, start, end) else { continue };
                            for r in &b.results {
                                totals.input += r.input_tokens;
                                totals.cached += r.input_cached_tokens.unwrap_or(0);
                                totals.output += r.output_tokens;
                                totals.requests += r.num_model_requests;
                                writer.push(completions_row((&columns, &mut names), ctx.org_slug, day, r)).await?;
                            }
                        }
                    }
                    pages += report.count();
                }
                Endpoint::Embeddings => {
                    let q = ReportQuery { start, end, group_by: &EMBEDDINGS_GROUPS, limit: config.page_size };
                    let mut report = api.embeddings_usage(key, &config.retry, &q);
                    while let Some(buckets) = report.next().await.map_err(provider_failed)? {
                        for b in &buckets {
                            let Some(day) = in_window(b, start, end) else { continue };
                            for r in &b.results {
                                totals.input += r.input_tokens;
                                totals.requests += r.num_model_requests;
                                writer.push(embeddings_row((&columns, &mut names), ctx.org_slug, day, r)).await?;
                            }
                        }
                    }
                    pages += report.count();
                }
            }
        }
        let written = writer.commit().await?;
        tracing::info!(step = ctx.step_id, org_slug = ctx.org_slug, rows = written, pages, "openai usage loaded");
        Ok(StepOutcome {
            rows_written: written,
            warnings: Vec::new(),
            metrics: json!({
                "table": TABLE,
                "pages": pages,
                "rows": written,
                "input_tokens": totals.input,
                "input_cached_tokens": totals.cached,
                "output_tokens": totals.output,
                "num_model_requests": totals.requests,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_refusals() {
        let c: Config = serde_yaml::from_str("{}").unwrap();
        assert_eq!((c.endpoints.len(), c.page_size), (2, 31));
        assert!(serde_yaml::from_str::<Config>("page_size: 32").is_err());
        assert!(serde_yaml::from_str::<Config>("endpoints: [images]").is_err());
        assert!(serde_yaml::from_str::<Config>("pagesize: 3").is_err(), "unknown keys are refused");
        let c: Config = serde_yaml::from_str("endpoints: [completions]\nretry: {max_attempts: 2}").unwrap();
        assert_eq!(c.retry.max_attempts, 2);
    }

    #[test]
    fn raw_rows_keep_cached_as_a_subset() {
        let r: CompletionsResult = serde_json::from_value(json!({
            "input_tokens": 182340, "input_cached_tokens": 64000, "output_tokens": 20311,
            "num_model_requests": 412, "project_id": "proj_abc123", "model": "gpt-4o-mini-2024-07-18"
        }))
        .unwrap();
        let schema = crate::processors::shipped_schema(PROVIDER, TABLE);
        let columns = (&RawColumns::new(&schema).unwrap(), &mut Interner::default());
        let record = completions_row(columns, "acme", NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(), &r);
        let row = crate::warehouse::to_keyed_row(&schema, &record);
        assert_eq!(row["input_uncached_tokens"], 118_340);
        assert_eq!(row["usage_date"], "2026-11-01");
        assert!(row["batch"].is_null());
    }
}
