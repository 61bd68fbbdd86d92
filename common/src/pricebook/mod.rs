//! LLM prices (DESIGN §9): the system-wide price catalog ([`catalog`], central, loaded at
//! bootstrap) and per-organization books, created when an LLM provider is set up
//! (integrations), read and edited through the pricing function.
//!
//! - The pricing book holds only the organization's **overrides** of the catalog
//!   ([`overrides`]): the price of a model on a day is the override in force that day, else the
//!   catalog's. Setting up a provider creates the empty book; books made before the catalog
//!   existed (copies of the defaults) are migrated when they are next read.
//! - The subscriptions book holds the organization's plans, seeded from
//!   `configs/{provider}/seed/data/default_subscriptions.csv` and reset to it on request.
//!
//! Every book is a table of versions in the organization's dataset. Effective dating:
//! - a version is in force on day D when `effective_from <= D` and (`effective_to` is NULL or
//!   `effective_to > D`): `effective_to` is exclusive; the version with a NULL `effective_to` is
//!   the entry's current one, and an entry has at most one;
//! - seeding writes version 1 of every default plan, in force since [`seed_effective_from`];
//! - an update closes the current version at E (its `effective_to` = E) and opens version n+1 from
//!   E, where E is today or a date the caller gives that is not before the current version's start;
//! - a delete closes the current version at today (or at its start, if it starts later);
//! - a reset closes every current version at E and (subscriptions) opens the defaults as new
//!   versions from E;
//! - nothing is ever deleted from the table: history is kept, and `as_of` reads it.
//!
//! A version change is one `replace_slice` (the current row is swapped for its closed copy plus
//! the new version), so readers never see an entry with no version or two current ones. Writers to
//! one book are serialised in this process; the API is an operator tool, not a hot path.

/// The rules of a price-book row, shared with the seed files that `configs` checks at start-up.
pub use crate::configs::price_records as records;

pub mod catalog;
mod overrides;

pub use catalog::{Catalog, CatalogRead, CatalogWriteReport, NewVersion};
pub use overrides::{catalog_view, migrate_legacy_book, override_view, pricing_between, pricing_view, PricingWindow};

use std::collections::BTreeMap;

use chrono::{NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::configs::{Configs, PriceBookSeed};
use crate::domain::OrgSlug;
use crate::settings::Environment;
use crate::warehouse::{format_timestamp, Params, Row, TableSchema, Warehouse, WarehouseError};

pub use records::{BookKind, Entry, Input};

/// Why a price-book read or change was refused or failed; the edge maps each to its status.
#[derive(Debug, thiserror::Error)]
pub enum PriceBookError {
    /// A request that cannot be applied as given (a date, an entry, a slug).
    #[error("{0}")]
    Invalid(String),
    /// The provider, the organization's dataset or the entry does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The book's table does not exist yet (the integration was not set up).
    #[error("{0}")]
    NoBook(String),
    /// The entry already has a current version.
    #[error("{0}")]
    Exists(String),
    /// The central price catalog's table does not exist (the environment was not bootstrapped
    /// since the catalog was added).
    #[error("{0}")]
    NoCatalog(String),
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
}

pub type PriceBookResult<T> = Result<T, PriceBookError>;

/// The parts price books read and write (DESIGN §1): the warehouse, the configs (seeds, dataset
/// naming) and the environment that names the organization's dataset.
#[derive(Clone, Copy)]
pub struct Books<'a> {
    pub warehouse: &'a dyn Warehouse,
    pub configs: &'a Configs,
    pub environment: Environment,
}

impl<'a> Books<'a> {
    fn org_dataset(&self, org_slug: &str) -> String {
        self.configs.org_dataset(org_slug, self.environment)
    }

    pub fn catalog(&self) -> Catalog<'a> {
        Catalog::new(self.warehouse, self.configs)
    }
}

/// What seeding did in the organization's dataset.
#[derive(Debug, Clone, Serialize, Default, utoipa::ToSchema)]
pub struct SeedReport {
    pub tables_created: Vec<String>,
    /// Always 0 since the catalog: the pricing book starts empty (no overrides).
    pub pricing_rows: u64,
    pub subscription_rows: u64,
    /// Rows of a pricing book made before the catalog that turned out equal to the catalog and
    /// were ended (see [`migrate_legacy_book`]).
    pub pricing_rows_migrated: u64,
}

/// What a reset did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ResetReport {
    /// Set when the book did not exist or was empty and was created (subscriptions: with the
    /// default plans as version 1).
    pub seeded: Option<SeedReport>,
    /// The day the reset took effect (YYYY-MM-DD).
    #[schema(format = Date)]
    pub effective_from: String,
    pub versions_closed: u64,
    pub versions_opened: u64,
}

/// Start of the default versions: the defaults price any past day until the organization edits
/// them (a backfill right after set-up must find prices).
pub fn seed_effective_from() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
}

/// Today (UTC), the default start of a new version.
pub fn today() -> NaiveDate {
    Utc::now().date_naive()
}

pub(crate) fn date_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// The provider's seed, or NotFound naming the providers that have a price book.
pub fn price_book_seed<'a>(configs: &'a Configs, provider: &str) -> PriceBookResult<&'a PriceBookSeed> {
    configs.price_books.get(provider).ok_or_else(|| {
        let known: Vec<&str> = configs.price_books.keys().map(String::as_str).collect();
        let msg = if configs.providers.providers.contains_key(provider) {
            format!("provider {provider} has no price book; price books exist for {}", known.join(", "))
        } else {
            format!("unknown provider {provider:?}; price books exist for {}", known.join(", "))
        };
        PriceBookError::NotFound(msg)
    })
}

/// Creates the provider's pricing and subscription tables in the organization's dataset (if
/// missing) and loads the default plans into an empty subscriptions book; the pricing book
/// starts empty (prices come from the catalog), and one made before the catalog is migrated.
/// Idempotent: a second call creates and loads nothing, and a book with history (even all
/// closed) is left as it is.
pub async fn seed<'a>(
    books: impl Into<Books<'a>>,
    org_slug: &str,
    provider: &str,
    actor: &str,
) -> PriceBookResult<SeedReport> {
    let books = books.into();
    let slug = OrgSlug::parse(org_slug).map_err(PriceBookError::Invalid)?;
    let seed = price_book_seed(books.configs, provider)?;
    let _guard = book_lock(&books.org_dataset(slug.as_str()), provider).await;
    seed_locked(books, slug.as_str(), provider, seed, actor).await
}

async fn seed_locked(
    books: Books<'_>,
    org_slug: &str,
    provider: &str,
    seed: &PriceBookSeed,
    actor: &str,
) -> PriceBookResult<SeedReport> {
    let dataset = books.org_dataset(org_slug);
    if !books.warehouse.dataset_exists(&dataset).await? {
        return Err(PriceBookError::NotFound(format!(
            "organization {org_slug} has no dataset {dataset}: onboard the organization first"
        )));
    }
    let mut report = SeedReport::default();
    for kind in [BookKind::Pricing, BookKind::Subscriptions] {
        let book = Book { books, org: org_slug, provider, kind, seed, dataset: dataset.clone() };
        if books.warehouse.create_table(&dataset, book.schema()).await? {
            report.tables_created.push(book.schema().name.clone());
        }
        if kind == BookKind::Pricing {
            report.pricing_rows_migrated =
                overrides::migrate_unlocked(books.warehouse, books.configs, &dataset, org_slug, provider, actor)
                    .await?;
            continue;
        }
        if book.row_count().await? == 0 {
            let rows: Vec<Row> = seed
                .defaults(kind)
                .iter()
                .map(|entry| book.new_version(entry, 1, seed_effective_from(), "default", actor))
                .collect();
            let n = books.warehouse.insert_rows(&dataset, book.schema(), &rows).await?;
            match kind {
                BookKind::Pricing => report.pricing_rows = n,
                BookKind::Subscriptions => report.subscription_rows = n,
            }
        }
    }
    if !report.tables_created.is_empty() || report.subscription_rows + report.pricing_rows_migrated > 0 {
        tracing::info!(
            org_slug,
            provider,
            tables_created = report.tables_created.len(),
            subscription_rows = report.subscription_rows,
            pricing_rows_migrated = report.pricing_rows_migrated,
            "price book seeded"
        );
    }
    Ok(report)
}

/// Serialises writers of one book in this process.
async fn book_lock(dataset: &str, provider: &str) -> tokio::sync::OwnedMutexGuard<()> {
    crate::locks::lock(&format!("pricebook:{dataset}/{provider}")).await
}

/// One book (pricing or subscriptions) of one provider in one organization's dataset.
pub struct Book<'a> {
    books: Books<'a>,
    org: &'a str,
    provider: &'a str,
    kind: BookKind,
    seed: &'a PriceBookSeed,
    dataset: String,
}

impl<'a> Book<'a> {
    /// The book, if the provider has one (NotFound naming the known providers otherwise). The
    /// org slug must already be validated.
    pub fn open(
        books: impl Into<Books<'a>>,
        org: &'a str,
        provider: &'a str,
        kind: BookKind,
    ) -> PriceBookResult<Book<'a>> {
        let books = books.into();
        let seed = price_book_seed(books.configs, provider)?;
        Ok(Book { books, org, provider, kind, seed, dataset: books.org_dataset(org) })
    }

    pub fn kind(&self) -> BookKind {
        self.kind
    }

    fn schema(&self) -> &TableSchema {
        self.seed.schema(self.kind)
    }

    fn table(&self) -> PriceBookResult<String> {
        Ok(self.books.warehouse.table_ref(&self.dataset, &self.schema().name)?)
    }

    fn key(&self) -> &'static str {
        self.kind.key_column()
    }

    fn select(&self) -> PriceBookResult<String> {
        let columns: Vec<&str> = self.schema().fields.iter().map(|f| f.name.as_str()).collect();
        Ok(format!("SELECT {} FROM {}", columns.join(", "), self.table()?))
    }

    /// Whether the book's table exists (the integration was set up, or a reset created it).
    pub async fn exists(&self) -> PriceBookResult<bool> {
        match self.books.warehouse.list_tables(&self.dataset).await {
            Ok(tables) => Ok(tables.iter().any(|t| *t == self.schema().name)),
            Err(WarehouseError::NotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// 404 until the book exists, saying how to create it. One metadata read: the table's
    /// columns say it exists, and which columns its schema gained since (added here).
    pub async fn require_exists(&self) -> PriceBookResult<()> {
        match self.add_new_columns().await {
            Err(PriceBookError::Warehouse(WarehouseError::NotFound(_))) => {}
            done => return done,
        }
        Err(PriceBookError::NoBook(format!(
            "organization {org} has no {provider} price book yet: set up the integration \
                 (POST /api/v1/integrations/{org}/{provider}/setup) or load the defaults with \
                 POST /api/v1/integrations/{org}/{provider}/{noun}/reset",
            org = self.org,
            provider = self.provider,
            noun = self.kind.noun()
        )))
    }

    /// A book made before its schema gained a column (e.g. the subscriptions' `seats`) gets it.
    async fn add_new_columns(&self) -> PriceBookResult<()> {
        crate::warehouse::add_missing_columns(self.books.warehouse, &self.dataset, self.schema()).await?;
        Ok(())
    }

    async fn row_count(&self) -> PriceBookResult<i64> {
        let sql = format!("SELECT COUNT(*) AS n FROM {} WHERE org_slug = @org_slug", self.table()?);
        let rows = self.books.warehouse.query(&sql, &Params::new().bind("org_slug", self.org)).await?;
        Ok(rows.first().and_then(|r| r.get("n")).and_then(Value::as_i64).unwrap_or(0))
    }

    /// Versions of the book, ordered by entry and version: those in force on `as_of`, or every
    /// version ever written when `as_of` is None (history). `key` narrows to one entry.
    pub async fn list(&self, key: Option<&str>, as_of: Option<NaiveDate>) -> PriceBookResult<Vec<Row>> {
        let mut sql = format!("{} WHERE org_slug = @org_slug", self.select()?);
        let mut params = Params::new().bind("org_slug", self.org);
        if let Some(key) = key {
            sql.push_str(&format!(" AND {} = @key", self.key()));
            params = params.bind("key", key);
        }
        if let Some(day) = as_of {
            sql.push_str(" AND effective_from <= @as_of AND (effective_to IS NULL OR effective_to > @as_of)");
            params = params.bind("as_of", day);
        }
        sql.push_str(&format!(" ORDER BY {}, version", self.key()));
        Ok(self.books.warehouse.query(&sql, &params).await?)
    }

    /// A version row for `entry`.
    fn new_version(&self, entry: &Entry, version: i64, from: NaiveDate, source: &str, actor: &str) -> Row {
        let mut row = entry.clone();
        row.insert("version_id".into(), Value::String(uuid::Uuid::new_v4().to_string()));
        row.insert("org_slug".into(), Value::String(self.org.to_string()));
        row.insert("provider".into(), Value::String(self.provider.to_string()));
        row.insert("version".into(), Value::from(version));
        row.insert("effective_from".into(), Value::String(date_text(from)));
        row.insert("effective_to".into(), Value::Null);
        row.insert("source".into(), Value::String(source.to_string()));
        row.insert("created_at".into(), Value::String(format_timestamp(&Utc::now())));
        row.insert("created_by".into(), Value::String(actor.to_string()));
        row.insert("closed_at".into(), Value::Null);
        row.insert("closed_by".into(), Value::Null);
        row
    }

    /// `row` closed at `to`.
    fn closed(row: &Row, to: NaiveDate, actor: &str) -> Row {
        let mut closed = row.clone();
        closed.insert("effective_to".into(), Value::String(date_text(to)));
        closed.insert("closed_at".into(), Value::String(format_timestamp(&Utc::now())));
        closed.insert("closed_by".into(), Value::String(actor.to_string()));
        closed
    }

    /// Swaps the rows whose `version_id` is in `replaced` for `rows`, in one statement.
    async fn swap(&self, replaced: &[&str], rows: &[Row]) -> PriceBookResult<()> {
        let mut params = Params::new().bind("org_slug", self.org);
        let mut names = Vec::new();
        for (i, id) in replaced.iter().enumerate() {
            let name = format!("v{i}");
            names.push(format!("@{name}"));
            params = params.bind(&name, *id);
        }
        let predicate = if names.is_empty() {
            "FALSE".to_string()
        } else {
            format!("org_slug = @org_slug AND version_id IN ({})", names.join(", "))
        };
        self.books.warehouse.replace_slice(&self.dataset, self.schema(), &predicate, &params, rows).await?;
        Ok(())
    }

    pub(crate) fn effective_date(row: &Row, column: &str) -> Option<NaiveDate> {
        row.get(column).and_then(Value::as_str).and_then(records::parse_date)
    }

    pub(crate) fn version_of(row: &Row) -> i64 {
        row.get("version").and_then(Value::as_i64).unwrap_or(0)
    }

    /// Adds an entry that has no current version (409 otherwise); in the pricing book, an
    /// override of the catalog (or a price for a model the catalog lacks). Its history, if any
    /// (an entry deleted earlier), is continued: the next version number, starting no earlier
    /// than the last version ended.
    pub async fn add(&self, entry: Entry, effective_from: Option<NaiveDate>, actor: &str) -> PriceBookResult<Row> {
        let key = entry.get(self.key()).and_then(Value::as_str).unwrap_or_default().to_string();
        let _guard = book_lock(&self.dataset, self.provider).await;
        self.require_exists().await?;
        self.migrate_locked(actor).await?;
        let history = self.list(Some(&key), None).await?;
        if history.iter().any(|r| r.get("effective_to").is_none_or(Value::is_null)) {
            let what = match self.kind {
                BookKind::Pricing => "has an override in",
                BookKind::Subscriptions => "is already in",
            };
            return Err(PriceBookError::Exists(format!(
                "{} {key} {what} the {} price book: change it with PUT .../{}/{key}",
                self.kind.entry(),
                self.provider,
                self.kind.noun()
            )));
        }
        let from = effective_from.unwrap_or_else(today);
        if let Some(last_end) = history.iter().filter_map(|r| Self::effective_date(r, "effective_to")).max() {
            if from < last_end {
                return Err(PriceBookError::Invalid(format!(
                    "effective_from must be on or after {} (when the previous version of {key} ended)",
                    date_text(last_end)
                )));
            }
        }
        let version = history.iter().map(Self::version_of).max().unwrap_or(0) + 1;
        let row = self.new_version(&entry, version, from, "custom", actor);
        self.books.warehouse.insert_rows(&self.dataset, self.schema(), std::slice::from_ref(&row)).await?;
        Ok(row)
    }

    /// Changes an entry: `changes` holds the columns to change (Null clears an optional one).
    /// Closes the current version at E and opens the next from E. Returns (previous, new).
    ///
    /// Pricing: with no override in force, the catalog's version in force on E is the base and
    /// the override opens from E (the previous row returned is that catalog version).
    pub async fn update(
        &self,
        key: &str,
        changes: &BTreeMap<String, Input>,
        effective_from: Option<NaiveDate>,
        actor: &str,
    ) -> PriceBookResult<(Row, Row)> {
        let _guard = book_lock(&self.dataset, self.provider).await;
        self.require_exists().await?;
        self.migrate_locked(actor).await?;
        let from = effective_from.unwrap_or_else(today);
        let current = match (self.current(key).await, self.kind) {
            (Ok(current), _) => current,
            (Err(PriceBookError::NotFound(_)), BookKind::Pricing) => {
                return self.override_catalog(key, changes, from, actor).await;
            }
            (Err(e), _) => return Err(e),
        };
        let start = Self::effective_date(&current, "effective_from").unwrap_or_else(seed_effective_from);
        if from < start {
            return Err(PriceBookError::Invalid(format!(
                "effective_from must be on or after {} (the start of the current version of {key})",
                date_text(start)
            )));
        }
        let entry = self.changed_entry(&current, changes)?;
        let closed = Self::closed(&current, from, actor);
        let new = self.new_version(&entry, Self::version_of(&current) + 1, from, "custom", actor);
        let id = current.get("version_id").and_then(Value::as_str).unwrap_or_default();
        self.swap(&[id], &[closed.clone(), new.clone()]).await?;
        Ok((closed, new))
    }

    /// `row`'s entry with `changes` applied, checked as a whole (required columns and
    /// cross-column rules).
    fn changed_entry(&self, row: &Row, changes: &BTreeMap<String, Input>) -> PriceBookResult<Entry> {
        let mut merged: BTreeMap<String, Input> =
            self.kind.columns().iter().map(|c| (c.name.to_string(), to_input(row.get(c.name)))).collect();
        for (name, input) in changes {
            merged.insert(name.clone(), input.clone());
        }
        records::check_entry(self.kind, merged.iter().map(|(k, v)| (k.as_str(), v.clone())))
            .map_err(|problems| PriceBookError::Invalid(problems.join("; ")))
    }

    /// Closes the entry's current version at today (or its start, when it starts later). In the
    /// pricing book this ends an override: the catalog's price applies again from then.
    pub async fn delete(&self, key: &str, actor: &str) -> PriceBookResult<Row> {
        let _guard = book_lock(&self.dataset, self.provider).await;
        self.require_exists().await?;
        self.migrate_locked(actor).await?;
        let current = self.current(key).await?;
        let start = Self::effective_date(&current, "effective_from").unwrap_or_else(seed_effective_from);
        let closed = Self::closed(&current, today().max(start), actor);
        let id = current.get("version_id").and_then(Value::as_str).unwrap_or_default();
        self.swap(&[id], std::slice::from_ref(&closed)).await?;
        Ok(closed)
    }

    async fn current(&self, key: &str) -> PriceBookResult<Row> {
        self.list(Some(key), None)
            .await?
            .into_iter()
            .find(|r| r.get("effective_to").is_none_or(Value::is_null))
            .ok_or_else(|| {
                PriceBookError::NotFound(match self.kind {
                    BookKind::Pricing => format!(
                        "model {key} has no override in the {} price book of {} (the catalog's price, if any, \
                         applies: GET .../pricing?model={key})",
                        self.provider, self.org
                    ),
                    BookKind::Subscriptions => {
                        format!("plan {key} is not in the {} price book of {}", self.provider, self.org)
                    }
                })
            })
    }

    /// Back to the defaults: every current version closed at E; subscriptions: every default
    /// opened from E as the entry's next version (custom entries not in the defaults end at E);
    /// pricing: nothing opened, so the catalog prices every model from E. When the book's tables
    /// do not exist (or the subscriptions book is empty), they are created (and the default
    /// plans loaded as version 1) instead: what setting up the integration does.
    pub async fn reset(&self, effective_from: Option<NaiveDate>, actor: &str) -> PriceBookResult<ResetReport> {
        let _guard = book_lock(&self.dataset, self.provider).await;
        let from = effective_from.unwrap_or_else(today);
        let empty_plans = self.kind == BookKind::Subscriptions && self.exists().await? && self.row_count().await? == 0;
        if !self.exists().await? || empty_plans {
            let report = seed_locked(self.books, self.org, self.provider, self.seed, actor).await?;
            let opened = match self.kind {
                BookKind::Pricing => report.pricing_rows,
                BookKind::Subscriptions => report.subscription_rows,
            };
            return Ok(ResetReport {
                seeded: Some(report),
                effective_from: date_text(seed_effective_from()),
                versions_closed: 0,
                versions_opened: opened,
            });
        }
        self.add_new_columns().await?;
        self.migrate_locked(actor).await?;
        let all = self.list(None, None).await?;
        let current: Vec<&Row> = all.iter().filter(|r| r.get("effective_to").is_none_or(Value::is_null)).collect();
        if let Some(latest) = current.iter().filter_map(|r| Self::effective_date(r, "effective_from")).max() {
            if from < latest {
                return Err(PriceBookError::Invalid(format!(
                    "effective_from must be on or after {} (the latest start of a current version)",
                    date_text(latest)
                )));
            }
        }
        let mut last_version: BTreeMap<String, i64> = BTreeMap::new();
        for r in &all {
            let key = r.get(self.key()).and_then(Value::as_str).unwrap_or_default().to_string();
            let v = last_version.entry(key).or_default();
            *v = (*v).max(Self::version_of(r));
        }
        let mut rows: Vec<Row> = current.iter().map(|r| Self::closed(r, from, actor)).collect();
        let defaults = match self.kind {
            BookKind::Pricing => &[][..],
            BookKind::Subscriptions => self.seed.defaults(self.kind),
        };
        for entry in defaults {
            let key = entry.get(self.key()).and_then(Value::as_str).unwrap_or_default();
            let version = last_version.get(key).copied().unwrap_or(0) + 1;
            rows.push(self.new_version(entry, version, from, "default", actor));
        }
        let ids: Vec<&str> =
            current.iter().map(|r| r.get("version_id").and_then(Value::as_str).unwrap_or_default()).collect();
        self.swap(&ids, &rows).await?;
        Ok(ResetReport {
            seeded: None,
            effective_from: date_text(from),
            versions_closed: current.len() as u64,
            versions_opened: defaults.len() as u64,
        })
    }
}

/// Every version of one of `provider`'s books in force on some day of `start..=end` (both
/// inclusive), ordered by entry and version: what a pipeline prices that window with, day by day.
/// `Ok(None)` when the provider has no such book or its table does not exist in `dataset` (the
/// integration was never set up).
#[allow(clippy::too_many_arguments)] // the parts it reads (DESIGN §1) and the book's coordinates
pub async fn versions_between(
    warehouse: &dyn Warehouse,
    configs: &Configs,
    dataset: &str,
    org_slug: &str,
    provider: &str,
    kind: BookKind,
    start: NaiveDate,
    end: NaiveDate,
) -> Result<Option<Vec<Row>>, WarehouseError> {
    let Some(seed) = configs.price_books.get(provider) else { return Ok(None) };
    let schema = seed.schema(kind);
    match warehouse.list_tables(dataset).await {
        Ok(tables) if tables.contains(&schema.name) => {}
        Ok(_) | Err(WarehouseError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    }
    let columns: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE org_slug = @org_slug AND effective_from <= @end_date \
         AND (effective_to IS NULL OR effective_to > @start_date) ORDER BY {}, version",
        columns.join(", "),
        warehouse.table_ref(dataset, &schema.name)?,
        kind.key_column()
    );
    let params = Params::new().bind("org_slug", org_slug).bind("start_date", start).bind("end_date", end);
    warehouse.query(&sql, &params).await.map(Some)
}

/// A stored value as input for a re-check (decimals stay text).
fn to_input(value: Option<&Value>) -> Input {
    match value {
        None | Some(Value::Null) => Input::Null,
        Some(Value::String(s)) => Input::Text(s.clone()),
        Some(Value::Number(n)) => Input::Number(n.to_string()),
        Some(other) => Input::Text(other.to_string()),
    }
}

/// A version row as the API shows it: amounts as decimal strings with at least two decimals,
/// the internal `org_slug` left out.
pub fn present(kind: BookKind, row: &Row) -> Value {
    let mut out = row.clone();
    out.remove("org_slug");
    for column in kind.columns() {
        if !matches!(column.kind, records::Kind::Money | records::Kind::Factor) {
            continue;
        }
        if let Some(Value::String(s)) = out.get(column.name) {
            if let Some(d) = records::parse_decimal(s) {
                out.insert(column.name.to_string(), Value::String(records::canonical_decimal(d)));
            }
        }
    }
    Value::Object(out)
}
