//! The pricing book as overrides of the catalog: the merged view the API lists, the override
//! the first edit of a catalog price opens, what the cost steps price a window with, and the
//! migration of books made before the catalog.
//!
//! Merging: on day D, a model's price is the organization's override in force on D, else the
//! catalog's version in force on D. An override is a whole price row (every column), so a later
//! catalog change does not reach a model while the organization overrides it.
//!
//! Migration. Before the catalog, setting up a provider copied the default prices into the book
//! (`source = 'default'`, in force since 1970). Such a book is migrated the first time it is
//! read after the change (lazily, not at bootstrap: bootstrap would have to visit every
//! organization's dataset in one request, and a book is never read unmigrated either way):
//! - a copied row (`default`) whose prices equal a live catalog version of its model is a
//!   catalog price: it is ended at its own start (in force on no day, kept as history), so the
//!   catalog, with its real history, prices those days;
//! - an edited row (`custom`) is ended the same way only when the catalog charges the same on
//!   every day of its range; otherwise it stays, as an override;
//! - any other row stays, as an override.
//!
//! Those rows predate the billed-dimension columns (batch with cache, flex, priority, audio,
//! image, web search, multipliers): a row holding none of them is compared on the columns it
//! could hold (`same_prices_as_copied`), so the catalog's rates for the new dimensions reach it.
//!
//! A book needs migrating while it holds a `default` row in force on some day; that is checked
//! with the rows a reader already has (the cost step's window: no extra query) or one small
//! query (the API, an operator tool). Migration is one `replace_slice` under the book's lock and
//! is idempotent: two instances migrating at once write the same rows.

use chrono::{NaiveDate, Utc};
use serde_json::Value;

use super::catalog::{date_of, model_of, CatalogRead};
use super::{book_lock, date_text, present, Book, BookKind, Input, PriceBookError, PriceBookResult};
use crate::configs::price_records as records;
use crate::configs::Configs;
use crate::warehouse::{format_timestamp, Params, Row, Warehouse, WarehouseError};

/// Who ends the rows migration turns into catalog prices.
const MIGRATION_ACTOR: &str = "catalog-migration";

/// A book row copied from the defaults before the catalog, still in force on some day.
fn is_legacy(row: &Row) -> bool {
    let from = date_of(row, "effective_from");
    row.get("source").and_then(Value::as_str) == Some("default")
        && date_of(row, "effective_to").is_none_or(|to| from.is_none_or(|f| to > f))
}

fn in_force_on_some_day(row: &Row) -> bool {
    let from = date_of(row, "effective_from");
    date_of(row, "effective_to").is_none_or(|to| from.is_none_or(|f| to > f))
}

/// Whether the catalog charges what `row` charges on every day of the row's range.
fn catalog_covers(row: &Row, catalog: &[&Row]) -> bool {
    let Some(from) = date_of(row, "effective_from") else { return false };
    let to = date_of(row, "effective_to");
    let mut versions: Vec<&Row> = catalog
        .iter()
        .copied()
        .filter(|c| {
            date_of(c, "effective_from").is_some_and(|cf| to.is_none_or(|t| cf < t))
                && date_of(c, "effective_to").is_none_or(|ct| ct > from)
        })
        .collect();
    versions.sort_by_key(|c| date_of(c, "effective_from"));
    let mut day = from;
    for c in versions {
        let Some(cf) = date_of(c, "effective_from") else { return false };
        if cf > day || !records::same_prices_as_copied(row, c) {
            return false;
        }
        match date_of(c, "effective_to") {
            None => return true,
            Some(ct) if to.is_some_and(|t| ct >= t) => return true,
            Some(ct) => day = ct,
        }
    }
    false
}

/// Migrates the organization's pricing book if it was made before the catalog (see the module
/// docs); returns how many rows became catalog prices. The caller holds the book's lock.
pub(super) async fn migrate_unlocked(
    warehouse: &dyn Warehouse,
    configs: &Configs,
    dataset: &str,
    org_slug: &str,
    provider: &str,
    actor: &str,
) -> PriceBookResult<u64> {
    let Some(seed) = configs.price_books.get(provider) else { return Ok(0) };
    let schema = seed.schema(BookKind::Pricing);
    let table = warehouse.table_ref(dataset, &schema.name)?;
    let params = Params::new().bind("org_slug", org_slug);
    // A migrated book has no copied row in force on any day: one small read says so.
    let probe = format!(
        "SELECT version_id FROM {table} WHERE org_slug = @org_slug AND source = 'default' \
         AND (effective_to IS NULL OR effective_to > effective_from) LIMIT 1"
    );
    match warehouse.query(&probe, &params).await {
        Ok(rows) if rows.is_empty() => return Ok(0),
        Ok(_) => {}
        Err(WarehouseError::NotFound(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    }
    let columns: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
    let rows = warehouse
        .query(&format!("SELECT {} FROM {table} WHERE org_slug = @org_slug", columns.join(", ")), &params)
        .await?;
    let catalog = super::Catalog::new(warehouse, configs).read(provider, CatalogRead::History(None)).await?;
    let now = format_timestamp(&Utc::now());
    let mut ended: Vec<Row> = Vec::new();
    for row in rows.iter().filter(|r| in_force_on_some_day(r)) {
        let model = model_of(row);
        let versions: Vec<&Row> = catalog.iter().filter(|c| model_of(c) == model).collect();
        let is_catalog_price = match row.get("source").and_then(Value::as_str) {
            Some("default") => versions.iter().any(|c| records::same_prices_as_copied(row, c)),
            _ => catalog_covers(row, &versions),
        };
        if is_catalog_price {
            let mut closed = row.clone();
            closed.insert("effective_to".into(), row.get("effective_from").cloned().unwrap_or(Value::Null));
            closed.insert("closed_at".into(), Value::String(now.clone()));
            closed.insert("closed_by".into(), Value::String(format!("{MIGRATION_ACTOR} ({actor})")));
            ended.push(closed);
        }
    }
    // Legacy rows that stay overrides lose their `default` mark, so the book is not checked again.
    for row in rows.iter().filter(|r| is_legacy(r)) {
        let id = row.get("version_id");
        if !ended.iter().any(|e| e.get("version_id") == id) {
            let mut kept = row.clone();
            kept.insert("source".into(), Value::String("custom".into()));
            ended.push(kept);
        }
    }
    let mut params = Params::new().bind("org_slug", org_slug);
    let mut names = Vec::new();
    for (i, row) in ended.iter().enumerate() {
        let name = format!("v{i}");
        names.push(format!("@{name}"));
        params = params.bind(&name, row.get("version_id").and_then(Value::as_str).unwrap_or_default());
    }
    let predicate = format!("org_slug = @org_slug AND version_id IN ({})", names.join(", "));
    warehouse.replace_slice(dataset, schema, &predicate, &params, &ended).await?;
    let migrated =
        ended.iter().filter(|r| r.get("closed_at").and_then(Value::as_str) == Some(now.as_str())).count() as u64;
    tracing::info!(org_slug, provider, rows_migrated = migrated, "pricing book migrated to catalog overrides");
    Ok(migrated)
}

/// Migrates the organization's pricing book if it was made before the catalog, under the
/// book's lock. Returns how many rows became catalog prices.
pub async fn migrate_legacy_book(
    warehouse: &dyn Warehouse,
    configs: &Configs,
    dataset: &str,
    org_slug: &str,
    provider: &str,
    actor: &str,
) -> PriceBookResult<u64> {
    let _guard = book_lock(dataset, provider).await;
    migrate_unlocked(warehouse, configs, dataset, org_slug, provider, actor).await
}

/// What a cost step prices a window with: the organization's overrides and the catalog's
/// versions, each in force on some day of the window.
#[derive(Debug, Clone, Default)]
pub struct PricingWindow {
    pub overrides: Vec<Row>,
    pub catalog: Vec<Row>,
}

/// The overrides and catalog versions in force on some day of `start..=end`. `Ok(None)` when the
/// provider has no price book or its table does not exist in `dataset` (the integration was
/// never set up). A book made before the catalog is migrated first when the window shows it.
#[allow(clippy::too_many_arguments)] // the parts it reads (DESIGN §1) and the window's coordinates
pub async fn pricing_between(
    warehouse: &dyn Warehouse,
    configs: &Configs,
    dataset: &str,
    org_slug: &str,
    provider: &str,
    start: NaiveDate,
    end: NaiveDate,
) -> PriceBookResult<Option<PricingWindow>> {
    let read =
        || super::versions_between(warehouse, configs, dataset, org_slug, provider, BookKind::Pricing, start, end);
    let Some(mut overrides) = read().await? else { return Ok(None) };
    if overrides.iter().any(is_legacy) {
        migrate_legacy_book(warehouse, configs, dataset, org_slug, provider, "pipeline").await?;
        overrides = read().await?.unwrap_or_default();
    }
    let catalog = super::Catalog::new(warehouse, configs).read(provider, CatalogRead::Between(start, end)).await?;
    Ok(Some(PricingWindow { overrides, catalog }))
}

/// A catalog row as the pricing routes show it: `source: catalog` (where the catalog got it in
/// `catalog_source`), without the catalog's bookkeeping.
pub fn catalog_view(row: &Row) -> Value {
    let mut out = row.clone();
    let origin = out.remove("source").unwrap_or(Value::Null);
    out.insert("catalog_source".into(), origin);
    out.insert("source".into(), Value::String("catalog".into()));
    out.remove("superseded_at");
    out.remove("superseded_by");
    present(BookKind::Pricing, &out)
}

/// A pricing row as the routes show it: a catalog version or an override (a book row: it always
/// has its organization, the catalog's never do).
pub fn pricing_view(row: &Row) -> Value {
    if row.get("org_slug").is_none_or(Value::is_null) {
        catalog_view(row)
    } else {
        override_view(row)
    }
}

/// An override row as the pricing routes show it: `source: override`.
pub fn override_view(row: &Row) -> Value {
    let mut out = row.clone();
    out.insert("source".into(), Value::String("override".into()));
    present(BookKind::Pricing, &out)
}

impl Book<'_> {
    /// Migrates this pricing book if it was made before the catalog (no-op for subscriptions).
    /// The caller holds the book's lock.
    pub(super) async fn migrate_locked(&self, actor: &str) -> PriceBookResult<u64> {
        if self.kind != BookKind::Pricing {
            return Ok(0);
        }
        migrate_unlocked(self.books.warehouse, self.books.configs, &self.dataset, self.org, self.provider, actor).await
    }

    /// The book as the list route shows it. Subscriptions: its versions. Pricing: the merged
    /// view, each row with `source` `catalog` or `override` and its version: on `as_of`, the
    /// price of every model that day; with no `as_of` (history), every override version and
    /// every live catalog version.
    pub async fn view(&self, key: Option<&str>, as_of: Option<NaiveDate>) -> PriceBookResult<Vec<Value>> {
        if self.kind != BookKind::Pricing {
            return Ok(self.list(key, as_of).await?.iter().map(|r| present(self.kind, r)).collect());
        }
        {
            let _guard = book_lock(&self.dataset, self.provider).await;
            self.migrate_locked("api").await?;
        }
        let overrides = self.list(key, as_of).await?;
        let what = match as_of {
            Some(day) => CatalogRead::AsOf(day, key),
            None => CatalogRead::History(key),
        };
        let catalog = self.books.catalog().read(self.provider, what).await?;
        let overridden: Vec<&str> = overrides.iter().map(model_of).collect();
        let mut rows: Vec<(String, Option<NaiveDate>, u8, Value)> = overrides
            .iter()
            .map(|r| (model_of(r).to_string(), date_of(r, "effective_from"), 1, override_view(r)))
            .collect();
        rows.extend(
            catalog
                .iter()
                .filter(|c| as_of.is_none() || !overridden.contains(&model_of(c)))
                .map(|c| (model_of(c).to_string(), date_of(c, "effective_from"), 0, catalog_view(c))),
        );
        rows.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
        Ok(rows.into_iter().map(|(.., v)| v).collect())
    }

    /// The first override of a catalog price: the catalog's version in force on `from` with
    /// `changes` applied, opened from `from`. Returns (the catalog version, the override).
    pub(super) async fn override_catalog(
        &self,
        key: &str,
        changes: &std::collections::BTreeMap<String, Input>,
        from: NaiveDate,
        actor: &str,
    ) -> PriceBookResult<(Row, Row)> {
        let base = self.books.catalog().read(self.provider, CatalogRead::AsOf(from, Some(key))).await?;
        let Some(base) = base.into_iter().next() else {
            return Err(PriceBookError::NotFound(format!(
                "model {key} is neither in the {} price catalog on {} nor overridden in the price book of {}: \
                 add a price for it with POST .../pricing",
                self.provider,
                date_text(from),
                self.org
            )));
        };
        let history = self.list(Some(key), None).await?;
        if let Some(last_end) = history.iter().filter_map(|r| Self::effective_date(r, "effective_to")).max() {
            if from < last_end {
                return Err(PriceBookError::Invalid(format!(
                    "effective_from must be on or after {} (when the previous override of {key} ended)",
                    date_text(last_end)
                )));
            }
        }
        let entry = self.changed_entry(&base, changes)?;
        let version = history.iter().map(Self::version_of).max().unwrap_or(0) + 1;
        let row = self.new_version(&entry, version, from, "custom", actor);
        self.books.warehouse.insert_rows(&self.dataset, self.schema(), std::slice::from_ref(&row)).await?;
        Ok((base, row))
    }
}
