//! `POST /api/v1/pricing/catalog/import` (root key): new catalog versions from LiteLLM's
//! `model_prices_and_context_window.json` or from our catalog CSV. The body is read and mapped by
//! `common::configs::catalog_import`, compared with the catalog in force on `effective_from`, and
//! answered with the diff. Nothing is written on `dry_run=true`, nor when a change looks wrong
//! (422 naming each, unless `force=true`). Every price the import maps has a catalog column; a
//! field with none is listed in the report's `unmapped`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::NaiveDate;
use common::audit::AuditEvent;
use common::configs::catalog_import::{self, CatalogRow, CurrentCatalogPrice, ImportOptions};
use common::http::error::ApiResult;
use common::http::extract::RootCaller;
use common::http::ApiText;
use common::pricebook::{self, records, BookKind, Catalog, CatalogRead, CatalogWriteReport, Input};
use common::warehouse::Row;
use common::{ApiError, AppState};

use crate::input;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// A whole LiteLLM price file is about 1.6 MB; the import route alone takes bodies this large.
pub const MAX_IMPORT_BYTES: usize = 8 << 20;

/// The catalog's prices in force on `day`, for the diff.
fn current_prices(provider: &str, rows: &[Row]) -> Vec<CurrentCatalogPrice> {
    rows.iter()
        .filter_map(|row| {
            let model_id = row.get("model_id")?.as_str()?.to_string();
            let effective_from = row.get("effective_from").and_then(Value::as_str).and_then(records::parse_date)?;
            let values = BookKind::Pricing
                .columns()
                .iter()
                .filter(|c| c.kind.is_price())
                .filter_map(|c| {
                    let text = match row.get(c.name)? {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        _ => return None,
                    };
                    Some((c.name.to_string(), records::parse_decimal(&text)?))
                })
                .collect();
            Some(CurrentCatalogPrice { provider: provider.to_string(), model_id, values, effective_from })
        })
        .collect()
}

/// A planned row as a checked catalog entry.
fn entry_of(row: &CatalogRow) -> Result<pricebook::Entry, String> {
    let mut inputs: Vec<(&str, Input)> =
        vec![("model_id", Input::Text(row.model_id.clone())), ("currency", Input::Text(row.currency.clone()))];
    for (column, value) in &row.values {
        inputs.push((column.as_str(), Input::Number(value.normalize().to_string())));
    }
    if let Some(day) = row.deprecation_date {
        inputs.push(("deprecation_date", Input::Text(day.to_string())));
    }
    if let Some(notes) = &row.notes {
        inputs.push(("notes", Input::Text(notes.clone())));
    }
    let entry = records::check_entry(BookKind::Pricing, inputs)
        .map_err(|problems| format!("{}: {}", row.model_id, problems.join("; ")))?;
    Ok(entry)
}

/// `POST /api/v1/pricing/catalog/import?effective_from=&dry_run=&force=&provider=`.
#[utoipa::path(
    post,
    path = "/api/v1/pricing/catalog/import",
    tag = "pricing",
    summary = "Import LiteLLM's price file into the catalogs (root).",
    params(("effective_from" = Option<String>, Query, description = "The day the new versions take effect (default today)."), ("dry_run" = Option<bool>, Query, description = "Report without writing."), ("force" = Option<bool>, Query, description = "Write suspicious changes too."), ("provider" = Option<String>, Query, description = "Only this provider.")),
    request_body(
        content = LiteLlmPriceFile,
        content_type = "application/json",
        description = "LiteLLM's `model_prices_and_context_window.json` (model key → entry), or the catalog's own CSV \
                       (the seed's columns and `effective_from`/`effective_to`) sent as the same body.",
    ),
    responses(
        (status = 200, description = "What changed (a dry run: what would change).", body = ImportAnswer),
        (status = 201, description = "What changed.", body = ImportAnswer),
        (status = 404, description = "No catalog for the provider asked for.", body = common::http::openapi::ErrorBody),
        (status = 422, description = "Suspicious changes, not written without force.", body = common::http::openapi::ErrorBody),
    ),
    security(("root_key" = [])),
)]
pub async fn import_catalog(
    State(state): State<AppState>,
    RootCaller(caller): RootCaller,
    Query(query): Query<HashMap<String, String>>,
    ApiText(body): ApiText,
) -> ApiResult<(StatusCode, Json<ImportAnswer>)> {
    caller.require_root()?;
    let q = input::parse_import_query(&query, pricebook::today()).map_err(ApiError::bad_request)?;
    if let Some(provider) = &q.provider {
        pricebook::price_book_seed(&state.configs, provider)?;
    }
    let parsed =
        catalog_import::parse_import(&body, q.provider.as_deref()).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if parsed.rows.is_empty() {
        return Err(ApiError::bad_request(format!(
            "nothing to import: no OpenAI or Anthropic price in the body ({} entries of other providers, {} skipped)",
            parsed.other_provider_entries,
            parsed.skipped.len()
        )));
    }
    let providers: BTreeSet<&str> = parsed.rows.iter().map(|r| r.provider.as_str()).collect();
    let catalog = Catalog::new(state.warehouse.as_ref(), &state.configs);
    let mut current = Vec::new();
    for provider in &providers {
        pricebook::price_book_seed(&state.configs, provider)?;
        let rows = catalog.read(provider, CatalogRead::AsOf(q.effective_from, None)).await?;
        current.extend(current_prices(provider, &rows));
    }
    let options = ImportOptions { effective_from: q.effective_from, force: q.force };
    let plan = catalog_import::plan_import(&parsed, &current, options);

    // Every write checked before any is made: a row the catalog would refuse fails the import.
    let mut entries: BTreeMap<(String, NaiveDate), Vec<pricebook::Entry>> = BTreeMap::new();
    let mut problems = Vec::new();
    for row in &plan.writes {
        match entry_of(row) {
            Ok(entry) => {
                let from = row.effective_from.unwrap_or(q.effective_from);
                entries.entry((row.provider.clone(), from)).or_default().push(entry);
            }
            Err(problem) => problems.push(problem),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::bad_request(format!(
            "the import has prices the catalog refuses: {}",
            problems.join(" | ")
        )));
    }
    if !plan.can_apply() {
        let listed: Vec<String> =
            plan.report.suspicious.iter().map(|s| format!("{}/{}: {}", s.provider, s.model_id, s.detail)).collect();
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "import_refused",
            format!(
                "{} change(s) look wrong and nothing was written: {}; check them (dry_run=true shows the whole diff) and send force=true to apply them anyway",
                listed.len(),
                listed.join("; ")
            ),
        ));
    }
    let mut written = Vec::new();
    if !q.dry_run {
        let actor = caller.actor_name();
        let source = match plan.report.format {
            catalog_import::ImportFormat::Litellm => "litellm_import",
            catalog_import::ImportFormat::Csv => "csv_import",
        };
        for ((provider, from), batch) in &entries {
            written.push(catalog.write_versions(provider, batch, *from, source, &actor).await?);
        }
        state
            .audit(
                &caller,
                AuditEvent {
                    org_slug: None,
                    action: "pricing_catalog.import",
                    resource_type: "price_catalog",
                    resource_id: None,
                    success: true,
                    details: json!({"effective_from": q.effective_from, "forced": q.force, "written": written}),
                },
            )
            .await;
    }
    Ok((StatusCode::OK, Json(ImportAnswer { dry_run: q.dry_run, applied: !q.dry_run, report: plan.report, written })))
}

/// What an import did, or would do on a dry run.
#[derive(Serialize, ToSchema)]
pub struct ImportAnswer {
    dry_run: bool,
    /// Whether the versions were written (not on a dry run).
    applied: bool,
    report: catalog_import::ImportReport,
    /// What each write to a provider's catalog did (empty on a dry run).
    written: Vec<CatalogWriteReport>,
}

/// LiteLLM's price file: model key → entry (`sample_spec` documents the format).
pub struct LiteLlmPriceFile;

impl PartialSchema for LiteLlmPriceFile {
    fn schema() -> RefOr<Schema> {
        let number = || ObjectBuilder::new().schema_type(Type::Number);
        let mut entry = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "One model's entry. Fields the import does not know are kept and reported in the report's \
                 `unmapped`; the `*_above_{N}k_tokens` tiers map to the long-context columns.",
            ))
            .property(
                "litellm_provider",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("`openai`, `text-completion-openai` and `anthropic` are imported.")),
            )
            .property(
                "mode",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("`chat` (default), `completion`, `responses`, `realtime`, `embedding`.")),
            )
            .property(
                "provider_specific_entry",
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .additional_properties(Some(number()))
                    .description(Some("Rate multipliers: `fast`, `us`.")),
            );
        for field in catalog_import::litellm_price_fields() {
            entry = entry.property(field, number().description(Some("USD per token.")));
        }
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(entry))
            .description(Some("Model key → entry."))
            .into()
    }
}

impl ToSchema for LiteLlmPriceFile {}
