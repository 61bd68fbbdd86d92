//! The system-wide price catalog (DESIGN §9): every LLM provider's per-model prices with their
//! history, in the central table `price_catalog` (one table with a `provider` column; why one:
//! docs/ARCHITECTURE.md). Organizations' pricing books hold only their overrides of it.
//!
//! - A version of a model's prices is in force on day D when `effective_from <= D` and
//!   (`effective_to` is NULL or `D < effective_to`); a model's live versions never overlap.
//! - Versions are written, never edited: a correction marks the old version superseded
//!   (`superseded_at`, read by no one afterwards, kept for the cost rows that name it) and writes
//!   the new one with the model's next version number. Version ids are `{provider}/{model}/v{n}`.
//! - [`Catalog::load_seed`] (bootstrap) makes every model listed in
//!   `configs/{provider}/seed/data/default_pricing.csv` read exactly as the file says (its rows
//!   are the model's whole history); models the file does not list (imported ones) are left as
//!   they are. Running it again with the same file writes nothing.
//! - [`Catalog::write_versions`] (the catalog import) opens new versions from a date.
//!
//! Writers of one provider's catalog are serialised in this process; each change is one
//! `replace_slice`, so readers never see a model with a version missing or two in force.

use std::collections::BTreeMap;

use chrono::{NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{date_text, price_book_seed, PriceBookError, PriceBookResult};
use crate::configs::price_records::{self as records, CatalogSeedRow, Entry};
use crate::configs::{Configs, PRICE_CATALOG_TABLE};
use crate::warehouse::{format_timestamp, Params, Row, TableSchema, Warehouse, WarehouseError};

/// The parts the catalog reads and writes: the warehouse and the configs (its table, the seeds).
#[derive(Clone, Copy)]
pub struct Catalog<'a> {
    pub warehouse: &'a dyn Warehouse,
    pub configs: &'a Configs,
}

/// One version to write: the pricing columns (checked) and the days it is in force.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVersion {
    pub entry: Entry,
    pub effective_from: NaiveDate,
    /// Exclusive; None while current.
    pub effective_to: Option<NaiveDate>,
}

impl From<&CatalogSeedRow> for NewVersion {
    fn from(row: &CatalogSeedRow) -> NewVersion {
        NewVersion { entry: row.entry.clone(), effective_from: row.effective_from, effective_to: row.effective_to }
    }
}

/// What a catalog write did.
#[derive(Debug, Clone, Serialize, Default, PartialEq, utoipa::ToSchema)]
pub struct CatalogWriteReport {
    pub provider: String,
    /// Models that had no live version before.
    pub models_added: Vec<String>,
    /// Models whose live versions changed.
    pub models_changed: Vec<String>,
    pub models_unchanged: u64,
    pub versions_written: u64,
    pub versions_superseded: u64,
}

/// Which live versions a read returns.
#[derive(Debug, Clone, Copy)]
pub enum CatalogRead<'k> {
    /// Those in force on a day.
    AsOf(NaiveDate, Option<&'k str>),
    /// Every live version (the price history).
    History(Option<&'k str>),
    /// Those in force on some day of `start..=end`.
    Between(NaiveDate, NaiveDate),
}

/// The model a catalog or book row prices.
pub(crate) fn model_of(row: &Row) -> &str {
    row.get("model_id").and_then(Value::as_str).unwrap_or_default()
}

pub(crate) fn date_of(row: &Row, column: &str) -> Option<NaiveDate> {
    row.get(column).and_then(Value::as_str).and_then(records::parse_date)
}

/// Whether two rows hold the same version: the same days and the same values in every pricing
/// column (notes and deprecation dates included: a changed note is a new version too).
fn same_version(row: &Row, v: &NewVersion) -> bool {
    let text = |m: &serde_json::Map<String, Value>, c: &str| {
        m.get(c).filter(|v| !v.is_null()).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
    };
    date_of(row, "effective_from") == Some(v.effective_from)
        && date_of(row, "effective_to") == v.effective_to
        && records::same_prices(row, &v.entry)
        && ["notes", "deprecation_date"].iter().all(|c| text(row, c) == text(&v.entry, c))
}

impl<'a> Catalog<'a> {
    pub fn new(warehouse: &'a dyn Warehouse, configs: &'a Configs) -> Catalog<'a> {
        Catalog { warehouse, configs }
    }

    fn schema(&self) -> &TableSchema {
        self.configs.central_table(PRICE_CATALOG_TABLE)
    }

    fn table(&self) -> PriceBookResult<String> {
        Ok(self.warehouse.table_ref(self.configs.central_dataset(), PRICE_CATALOG_TABLE)?)
    }

    /// Live versions of `provider`'s catalog, ordered by model and version. A provider without
    /// a price book is NotFound; a catalog table that does not exist yet says to run bootstrap.
    pub async fn read(&self, provider: &str, what: CatalogRead<'_>) -> PriceBookResult<Vec<Row>> {
        price_book_seed(self.configs, provider)?;
        let columns: Vec<&str> = self.schema().fields.iter().map(|f| f.name.as_str()).collect();
        let mut sql = format!(
            "SELECT {} FROM {} WHERE provider = @provider AND superseded_at IS NULL",
            columns.join(", "),
            self.table()?
        );
        let mut params = Params::new().bind("provider", provider);
        let model = match what {
            CatalogRead::AsOf(day, model) => {
                sql.push_str(" AND effective_from <= @as_of AND (effective_to IS NULL OR effective_to > @as_of)");
                params = params.bind("as_of", day);
                model
            }
            CatalogRead::History(model) => model,
            CatalogRead::Between(start, end) => {
                sql.push_str(
                    " AND effective_from <= @end_date AND (effective_to IS NULL OR effective_to > @start_date)",
                );
                params = params.bind("start_date", start).bind("end_date", end);
                None
            }
        };
        if let Some(model) = model {
            sql.push_str(" AND model_id = @model");
            params = params.bind("model", model);
        }
        sql.push_str(" ORDER BY model_id, version");
        match self.warehouse.query(&sql, &params).await {
            Ok(rows) => Ok(rows),
            Err(WarehouseError::NotFound(_)) => Err(PriceBookError::NoCatalog(format!(
                "the price catalog ({}.{PRICE_CATALOG_TABLE}) does not exist yet: run the bootstrap \
                 (POST /api/v1/admin/bootstrap)",
                self.configs.central_dataset()
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Every version ever written for `provider` (superseded ones too): version numbers are
    /// never reused.
    async fn all_versions(&self, provider: &str) -> PriceBookResult<Vec<Row>> {
        let columns: Vec<&str> = self.schema().fields.iter().map(|f| f.name.as_str()).collect();
        let sql = format!("SELECT {} FROM {} WHERE provider = @provider", columns.join(", "), self.table()?);
        Ok(self.warehouse.query(&sql, &Params::new().bind("provider", provider)).await?)
    }

    /// Brings every model of the provider's seed file in line with it (bootstrap). Idempotent.
    pub async fn load_seed(&self, provider: &str, actor: &str) -> PriceBookResult<CatalogWriteReport> {
        let seed = price_book_seed(self.configs, provider)?;
        let mut desired: BTreeMap<String, Vec<NewVersion>> = BTreeMap::new();
        for row in &seed.catalog {
            desired.entry(row.model_id().to_string()).or_default().push(row.into());
        }
        let _guard = catalog_lock(provider).await;
        let all = self.all_versions(provider).await?;
        self.apply(provider, &all, desired, "seed", actor).await
    }

    /// Opens a new version from `from` for every entry whose prices differ from the version in
    /// force that day (the catalog import). The version in force on `from` ends there; the new
    /// one lasts until the model's next live version starts (or stays current). Entries equal
    /// to the version in force are left alone. `entries` are checked pricing entries
    /// ([`records::check_entry`]), one per model.
    pub async fn write_versions(
        &self,
        provider: &str,
        entries: &[Entry],
        from: NaiveDate,
        source: &str,
        actor: &str,
    ) -> PriceBookResult<CatalogWriteReport> {
        price_book_seed(self.configs, provider)?;
        let _guard = catalog_lock(provider).await;
        let all = self.all_versions(provider).await?;
        let mut desired: BTreeMap<String, Vec<NewVersion>> = BTreeMap::new();
        for entry in entries {
            let model = entry.get("model_id").and_then(Value::as_str).unwrap_or_default().to_string();
            let mut live: Vec<NewVersion> = all
                .iter()
                .filter(|r| model_of(r) == model && r.get("superseded_at").is_none_or(Value::is_null))
                .filter_map(|r| {
                    Some(NewVersion {
                        entry: entry_of(r),
                        effective_from: date_of(r, "effective_from")?,
                        effective_to: date_of(r, "effective_to"),
                    })
                })
                .collect();
            live.sort_by_key(|v| v.effective_from);
            let in_force =
                live.iter().position(|v| v.effective_from <= from && v.effective_to.is_none_or(|to| from < to));
            if let Some(i) = in_force {
                if records::same_prices(&live[i].entry, entry) {
                    continue;
                }
            }
            let next_start = live.iter().map(|v| v.effective_from).filter(|d| *d > from).min();
            let mut versions: Vec<NewVersion> = Vec::new();
            for (i, v) in live.into_iter().enumerate() {
                if Some(i) == in_force {
                    if v.effective_from < from {
                        versions.push(NewVersion { effective_to: Some(from), ..v });
                    }
                } else {
                    versions.push(v);
                }
            }
            versions.push(NewVersion { entry: entry.clone(), effective_from: from, effective_to: next_start });
            desired.insert(model, versions);
        }
        let mut report = self.apply(provider, &all, desired, source, actor).await?;
        let touched = (report.models_added.len() + report.models_changed.len()) as u64;
        report.models_unchanged = (entries.len() as u64).saturating_sub(touched);
        Ok(report)
    }

    /// Makes each model of `desired` have exactly those live versions: live versions not among
    /// them are superseded, the missing ones written with the model's next version numbers, all
    /// in one statement. Models not in `desired` are not touched.
    async fn apply(
        &self,
        provider: &str,
        all: &[Row],
        desired: BTreeMap<String, Vec<NewVersion>>,
        source: &str,
        actor: &str,
    ) -> PriceBookResult<CatalogWriteReport> {
        let mut report = CatalogWriteReport { provider: provider.to_string(), ..CatalogWriteReport::default() };
        let now = format_timestamp(&Utc::now());
        let mut superseded_ids: Vec<String> = Vec::new();
        let mut rows: Vec<Row> = Vec::new();
        for (model, mut versions) in desired {
            versions.sort_by_key(|v| v.effective_from);
            let history: Vec<&Row> = all.iter().filter(|r| model_of(r) == model).collect();
            let live: Vec<&Row> =
                history.iter().copied().filter(|r| r.get("superseded_at").is_none_or(Value::is_null)).collect();
            let stale: Vec<&Row> =
                live.iter().copied().filter(|r| !versions.iter().any(|v| same_version(r, v))).collect();
            let missing: Vec<&NewVersion> =
                versions.iter().filter(|v| !live.iter().any(|r| same_version(r, v))).collect();
            if stale.is_empty() && missing.is_empty() {
                report.models_unchanged += 1;
                continue;
            }
            if live.is_empty() {
                report.models_added.push(model.clone());
            } else {
                report.models_changed.push(model.clone());
            }
            for r in stale {
                let mut closed = r.clone();
                closed.insert("superseded_at".into(), Value::String(now.clone()));
                closed.insert("superseded_by".into(), Value::String(actor.to_string()));
                superseded_ids.push(r.get("version_id").and_then(Value::as_str).unwrap_or_default().to_string());
                rows.push(closed);
                report.versions_superseded += 1;
            }
            let mut next = history.iter().filter_map(|r| r.get("version").and_then(Value::as_i64)).max().unwrap_or(0);
            for v in missing {
                next += 1;
                let mut row = v.entry.clone();
                row.insert("version_id".into(), Value::String(format!("{provider}/{model}/v{next}")));
                row.insert("provider".into(), Value::String(provider.to_string()));
                row.insert("version".into(), Value::from(next));
                row.insert("effective_from".into(), Value::String(date_text(v.effective_from)));
                row.insert("effective_to".into(), v.effective_to.map_or(Value::Null, |d| Value::String(date_text(d))));
                row.insert("source".into(), Value::String(source.to_string()));
                row.insert("created_at".into(), Value::String(now.clone()));
                row.insert("created_by".into(), Value::String(actor.to_string()));
                row.insert("superseded_at".into(), Value::Null);
                row.insert("superseded_by".into(), Value::Null);
                rows.push(row);
                report.versions_written += 1;
            }
        }
        if rows.is_empty() {
            return Ok(report);
        }
        let mut params = Params::new().bind("provider", provider);
        let mut names = Vec::new();
        for (i, id) in superseded_ids.iter().enumerate() {
            let name = format!("v{i}");
            names.push(format!("@{name}"));
            params = params.bind(&name, id.as_str());
        }
        let predicate = if names.is_empty() {
            "FALSE".to_string()
        } else {
            format!("provider = @provider AND version_id IN ({})", names.join(", "))
        };
        self.warehouse.replace_slice(self.configs.central_dataset(), self.schema(), &predicate, &params, &rows).await?;
        tracing::info!(
            provider,
            models_added = report.models_added.len(),
            models_changed = report.models_changed.len(),
            versions_written = report.versions_written,
            versions_superseded = report.versions_superseded,
            "price catalog written"
        );
        Ok(report)
    }
}

/// The pricing columns of a stored row.
pub(crate) fn entry_of(row: &Row) -> Entry {
    records::BookKind::Pricing
        .columns()
        .iter()
        .filter_map(|c| row.get(c.name).map(|v| (c.name.to_string(), v.clone())))
        .collect()
}

/// Serialises writers of one provider's catalog in this process.
async fn catalog_lock(provider: &str) -> tokio::sync::OwnedMutexGuard<()> {
    crate::locks::lock(&format!("price_catalog:{provider}")).await
}
