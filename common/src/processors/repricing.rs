//! Repricing (issue 14 §5): which cost rows of an organization were priced with a version that
//! is no longer the one in force on their day, after a catalog or override version changed with
//! a past effective date. The cost-only `reprice` pipelines (`configs/{provider}/reprice.yml`)
//! then price such a window again from the raw usage already stored.
//!
//! One grouped read of the cost table ((usage_date, model, price_version_id) → rows), the merged
//! prices of the window (the organization's overrides over the catalog, as a cost step reads
//! them) and, only for the versions found out of date, one read of those versions' prices: the
//! comparison is done here, so it runs the same on DuckDB and BigQuery and never scans a price
//! table per cost row.
//!
//! A group is out of date when the version the merged prices give its model on its day is not the
//! one the rows name (or the rows were left unpriced and a price now exists, or the reverse):
//! - **stale**: the prices differ, so the cost would change;
//! - **relabelled**: the named version was superseded by one with the same prices (the catalog
//!   rewrites a model's version in force when a later version is cut from it), so only the row's
//!   version id would change. Any reprice covering those days renames them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::Value;

use crate::configs::price_records as records;
use crate::configs::{Configs, PRICE_CATALOG_TABLE};
use crate::cost::{PriceBook, PriceSource};
use crate::pricebook::catalog::date_of;
use crate::pricebook::{price_book_seed, pricing_between, BookKind, PriceBookError, PriceBookResult, PricingWindow};
use crate::warehouse::{Params, Row, Warehouse, WarehouseError};

/// The longest window one repricing read covers (a year of days).
pub const MAX_REPRICING_DAYS: i64 = 366;

/// The cost table a provider's cost step writes, for the providers with a cost step.
pub fn cost_table(provider: &str) -> Option<&'static str> {
    match provider {
        super::openai::PROVIDER => Some(super::openai::cost::TABLE),
        super::anthropic::PROVIDER => Some(super::anthropic::cost::TABLE),
        _ => None,
    }
}

fn date_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// What the repricing read found over a window.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RepricingReport {
    pub org_slug: String,
    pub provider: String,
    /// The organization's cost table read.
    pub cost_table: String,
    #[schema(format = Date)]
    pub start_date: String,
    #[schema(format = Date)]
    pub end_date: String,
    /// Cost rows in the window.
    pub rows: u64,
    /// Rows whose cost would change if priced again now.
    pub stale_rows: u64,
    /// Rows naming a superseded version whose successor has the same prices.
    pub relabelled_rows: u64,
    /// Only the days with stale or relabelled rows, in order.
    pub days: Vec<RepricingDay>,
    /// The smallest window covering every day with stale rows, and the run that reprices it;
    /// null when nothing is stale.
    pub reprice: Option<RepriceWindow>,
}

/// One day's out-of-date rows.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RepricingDay {
    #[schema(format = Date)]
    pub usage_date: String,
    /// Cost rows of the day.
    pub rows: u64,
    pub stale_rows: u64,
    pub relabelled_rows: u64,
    pub changes: Vec<VersionChange>,
}

/// Rows of one model on one day priced with one version that is no longer in force for them.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct VersionChange {
    /// The model as the provider reported it.
    pub model: String,
    pub rows: u64,
    /// The version the rows name (null: they were left unpriced).
    pub priced_with: Option<String>,
    /// The version in force for them now (null: no price now).
    pub in_force: Option<String>,
    /// `catalog` or `override`.
    #[schema(value_type = Option<String>, pattern = "^(catalog|override)$")]
    pub in_force_source: Option<&'static str>,
    /// The price entry the model matches now (a family or the exact snapshot).
    pub in_force_model: Option<String>,
    /// False when only the version id would change.
    pub prices_changed: bool,
}

/// The reprice run that brings the stale rows up to date.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RepriceWindow {
    #[schema(format = Date)]
    pub start_date: String,
    #[schema(format = Date)]
    pub end_date: String,
    /// `POST` it with `{"start_date", "end_date"}`.
    pub run: String,
}

/// One (day, model, version) group of the cost table.
struct Group {
    day: NaiveDate,
    model: String,
    version_id: Option<String>,
    rows: u64,
}

fn text(row: &Row, column: &str) -> Option<String> {
    row.get(column).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
}

fn count(row: &Row) -> u64 {
    match row.get("n") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// Cost rows of the window grouped by (day, model, version). A cost table that does not exist
/// yet (no cost run) has none.
async fn cost_groups(
    warehouse: &dyn Warehouse,
    dataset: &str,
    table: &str,
    org_slug: &str,
    (start, end): (NaiveDate, NaiveDate),
) -> PriceBookResult<Vec<Group>> {
    let sql = format!(
        "SELECT usage_date, model, price_version_id, COUNT(*) AS n FROM {} \
         WHERE org_slug = @org_slug AND usage_date >= @start_date AND usage_date <= @end_date \
         GROUP BY usage_date, model, price_version_id",
        warehouse.table_ref(dataset, table)?
    );
    let params = Params::new().bind("org_slug", org_slug).bind("start_date", start).bind("end_date", end);
    let rows = match warehouse.query(&sql, &params).await {
        Ok(rows) => rows,
        Err(WarehouseError::NotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some(Group {
                day: date_of(r, "usage_date")?,
                model: text(r, "model").unwrap_or_default(),
                version_id: text(r, "price_version_id"),
                rows: count(r),
            })
        })
        .collect())
}

/// The prices of the versions named by `ids` (superseded catalog versions and ended overrides
/// included), by version id.
async fn versions_by_id(
    warehouse: &dyn Warehouse,
    configs: &Configs,
    (dataset, org_slug, provider): (&str, &str, &str),
    ids: &BTreeSet<String>,
) -> PriceBookResult<BTreeMap<String, Row>> {
    let mut found = BTreeMap::new();
    if ids.is_empty() {
        return Ok(found);
    }
    let mut params = Params::new().bind("provider", provider).bind("org_slug", org_slug);
    let mut names = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        names.push(format!("@v{i}"));
        params = params.bind(&format!("v{i}"), id.as_str());
    }
    let names = names.join(", ");
    let seed = price_book_seed(configs, provider)?;
    let book = seed.schema(BookKind::Pricing);
    let columns = |fields: &[crate::warehouse::Field]| -> String {
        fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
    };
    let catalog = configs.central_table(PRICE_CATALOG_TABLE);
    let reads = [
        format!(
            "SELECT {} FROM {} WHERE provider = @provider AND version_id IN ({names})",
            columns(&catalog.fields),
            warehouse.table_ref(configs.central_dataset(), PRICE_CATALOG_TABLE)?
        ),
        format!(
            "SELECT {} FROM {} WHERE org_slug = @org_slug AND version_id IN ({names})",
            columns(&book.fields),
            warehouse.table_ref(dataset, &book.name)?
        ),
    ];
    for sql in reads {
        match warehouse.query(&sql, &params).await {
            Ok(rows) => found.extend(rows.into_iter().filter_map(|r| Some((text(&r, "version_id")?, r)))),
            Err(WarehouseError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(found)
}

/// The out-of-date cost rows of `org_slug` for `provider` over `start..=end` (see the module
/// docs). The caller checked the organization and that its pricing book exists.
#[allow(clippy::too_many_arguments)] // the parts it reads (DESIGN §1) and the window's coordinates
pub async fn repricing_report(
    warehouse: &dyn Warehouse,
    configs: &Configs,
    dataset: &str,
    org_slug: &str,
    provider: &str,
    start: NaiveDate,
    end: NaiveDate,
) -> PriceBookResult<RepricingReport> {
    price_book_seed(configs, provider)?;
    if end < start {
        return Err(PriceBookError::Invalid(format!(
            "end_date ({}) must not be before start_date ({})",
            date_text(end),
            date_text(start)
        )));
    }
    if (end - start).num_days() + 1 > MAX_REPRICING_DAYS {
        return Err(PriceBookError::Invalid(format!(
            "the window {} to {} is longer than {MAX_REPRICING_DAYS} days: ask for a shorter one",
            date_text(start),
            date_text(end)
        )));
    }
    let Some(table) = cost_table(provider) else {
        return Err(PriceBookError::NotFound(format!("provider {provider} has no cost step")));
    };
    let groups = cost_groups(warehouse, dataset, table, org_slug, (start, end)).await?;
    let PricingWindow { overrides, catalog } =
        pricing_between(warehouse, configs, dataset, org_slug, provider, start, end).await?.unwrap_or_default();
    let mut book = PriceBook::merged(&overrides, &catalog)
        .map_err(|e| PriceBookError::Warehouse(WarehouseError::Backend(format!("stored {provider} prices: {e}"))))?;

    // (group, the version in force now) for every group whose version is not the one in force.
    let mut changed = Vec::new();
    let mut rows_per_day: BTreeMap<NaiveDate, u64> = BTreeMap::new();
    for g in &groups {
        *rows_per_day.entry(g.day).or_default() += g.rows;
        let now = book.lookup(&g.model, g.day).map(|v| (v.version_id.clone(), v.source, v.model_id.clone()));
        if now.as_ref().map(|(id, ..)| id) != g.version_id.as_ref() {
            changed.push((g, now));
        }
    }
    let named: BTreeSet<String> = changed.iter().filter_map(|(g, _)| g.version_id.clone()).collect();
    let old = versions_by_id(warehouse, configs, (dataset, org_slug, provider), &named).await?;
    let current: BTreeMap<&str, &Row> =
        overrides.iter().chain(&catalog).filter_map(|r| Some((r.get("version_id")?.as_str()?, r))).collect();

    let mut days: BTreeMap<NaiveDate, RepricingDay> = BTreeMap::new();
    for (g, now) in changed {
        let before = g.version_id.as_deref().and_then(|id| old.get(id));
        let after = now.as_ref().and_then(|(id, ..)| current.get(id.as_str()).copied());
        let prices_changed = match (before, after) {
            (Some(b), Some(a)) => !records::same_prices(b, a),
            _ => true,
        };
        let day = days.entry(g.day).or_insert_with(|| RepricingDay {
            usage_date: date_text(g.day),
            rows: rows_per_day.get(&g.day).copied().unwrap_or_default(),
            stale_rows: 0,
            relabelled_rows: 0,
            changes: Vec::new(),
        });
        if prices_changed {
            day.stale_rows += g.rows;
        } else {
            day.relabelled_rows += g.rows;
        }
        day.changes.push(VersionChange {
            model: g.model.clone(),
            rows: g.rows,
            priced_with: g.version_id.clone(),
            in_force_source: now.as_ref().map(|(_, source, _)| match source {
                PriceSource::Catalog => "catalog",
                PriceSource::Override => "override",
            }),
            in_force_model: now.as_ref().map(|(.., model)| model.clone()),
            in_force: now.map(|(id, ..)| id),
            prices_changed,
        });
    }
    for day in days.values_mut() {
        day.changes.sort_by(|a, b| (&a.model, &a.priced_with).cmp(&(&b.model, &b.priced_with)));
    }
    let stale_days: Vec<NaiveDate> = days.iter().filter(|(_, d)| d.stale_rows > 0).map(|(day, _)| *day).collect();
    let reprice = match (stale_days.first(), stale_days.last()) {
        (Some(first), Some(last)) => Some(RepriceWindow {
            start_date: date_text(*first),
            end_date: date_text(*last),
            run: format!("/api/v1/pipelines/run/{org_slug}/{provider}/reprice"),
        }),
        _ => None,
    };
    let days: Vec<RepricingDay> = days.into_values().collect();
    Ok(RepricingReport {
        org_slug: org_slug.to_string(),
        provider: provider.to_string(),
        cost_table: table.to_string(),
        start_date: date_text(start),
        end_date: date_text(end),
        rows: groups.iter().map(|g| g.rows).sum(),
        stale_rows: days.iter().map(|d| d.stale_rows).sum(),
        relabelled_rows: days.iter().map(|d| d.relabelled_rows).sum(),
        days,
        reprice,
    })
}
