//! The bootstrap function: `POST /api/v1/admin/bootstrap` creates the central dataset, its tables
//! and views from `configs/setup/bootstrap/`, and loads every LLM provider's price catalog from
//! `configs/{provider}/seed/data/default_pricing.csv` into `price_catalog`. Idempotent: a second
//! call creates nothing and keeps every row; a changed catalog file writes new versions of the
//! models it changes (`common::pricebook::catalog`).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use common::audit::AuditEvent;
use common::http::error::ApiResult;
use common::http::extract::RootCaller;
use common::http::{health_router, with_plumbing, OptionalJson};
use common::settings::Environment;
use common::warehouse::{render_table_refs, DatasetOptions};
use common::{ApiError, AppState};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Mutex;

pub const SERVICE: &str = "convergence-bootstrap";

/// The function's routes, without the shared plumbing (`convergence-local` merges them).
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/admin/bootstrap", post(bootstrap))
}

/// This function's part of the API contract: its routes' `#[utoipa::path]` annotations.
#[derive(utoipa::OpenApi)]
#[openapi(paths(bootstrap))]
pub struct ApiDoc;

/// The function as a complete app: routes, `/health`, its spec at `/openapi.json` and the
/// shared plumbing.
pub fn router(state: AppState) -> Router {
    let spec = common::http::openapi::finish(SERVICE, <ApiDoc as utoipa::OpenApi>::openapi());
    with_plumbing(routes().merge(health_router(SERVICE)).merge(common::http::openapi::spec_router(spec)), state)
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BootstrapRequest {
    /// Drop everything in the central dataset (every table and view, every row, also of tables
    /// the configs no longer name) and create it again. The dataset itself, and the access
    /// Terraform gave it, stay.
    #[serde(default)]
    pub force_recreate_dataset: bool,
    /// Drop and re-create every central table and view (their rows are lost).
    #[serde(default)]
    pub force_recreate_tables: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BootstrapReport {
    pub dataset: String,
    pub dataset_created: bool,
    pub tables_created: Vec<String>,
    pub tables_existing: Vec<String>,
    /// Columns that configs gained since a table was created, added in place: table → columns.
    pub columns_added: BTreeMap<String, Vec<String>>,
    /// Retired columns (config's `retired_columns`) found and dropped with their values.
    pub columns_dropped: BTreeMap<String, Vec<String>>,
    pub views_created: Vec<String>,
    pub views_existing: Vec<String>,
    /// What loading each provider's catalog file changed in `price_catalog`.
    pub catalog: Vec<common::pricebook::CatalogWriteReport>,
}

/// Two bootstraps at once in one process would race on "exists? create"; serialize them.
static BOOTSTRAP_LOCK: LazyLock<Mutex<()>> = LazyLock::new(|| Mutex::new(()));

#[utoipa::path(
    post,
    path = "/api/v1/admin/bootstrap",
    tag = "bootstrap",
    summary = "Create the central dataset, its tables and views, and load the price catalogs (idempotent).",
    request_body = Option<BootstrapRequest>,
    responses(
        (status = 200, description = "What was created and what existed.", body = BootstrapReport),
        (status = 403, description = "A destructive flag outside development, or not the root key.", body = common::http::openapi::ErrorBody),
        (status = 409, description = "Configs add a REQUIRED column to an existing table.", body = common::http::openapi::ErrorBody),
    ),
    security(("root_key" = [])),
)]
async fn bootstrap(
    State(state): State<AppState>,
    RootCaller(caller): RootCaller,
    OptionalJson(request): OptionalJson<BootstrapRequest>,
) -> ApiResult<Json<BootstrapReport>> {
    caller.require_root()?;
    if let Some(refusal) = destructive_refusal(&request, state.settings.environment) {
        // Recorded: someone holding the root key tried to drop the central tables.
        state
            .audit(
                &caller,
                AuditEvent {
                    org_slug: None,
                    action: "bootstrap",
                    resource_type: "dataset",
                    resource_id: Some(state.configs.central_dataset()),
                    success: false,
                    details: json!({
                        "force_recreate_dataset": request.force_recreate_dataset,
                        "force_recreate_tables": request.force_recreate_tables,
                        "refused": refusal,
                    }),
                },
            )
            .await;
        return Err(ApiError::forbidden(refusal));
    }
    let _guard = BOOTSTRAP_LOCK.lock().await;
    let report = run(&state, &request).await;
    if request.force_recreate_dataset || request.force_recreate_tables {
        // Keys and organizations cached from the old tables no longer exist.
        state.clear_caches();
    }
    let report = report?;
    state
        .audit(
            &caller,
            AuditEvent {
                org_slug: None,
                action: "bootstrap",
                resource_type: "dataset",
                resource_id: Some(&report.dataset),
                success: true,
                details: json!({
                    "force_recreate_dataset": request.force_recreate_dataset,
                    "force_recreate_tables": request.force_recreate_tables,
                    "dataset_created": report.dataset_created,
                    "tables_created": report.tables_created,
                    "columns_added": report.columns_added,
                    "columns_dropped": report.columns_dropped,
                    "views_created": report.views_created,
                    "catalog": report.catalog,
                }),
            },
        )
        .await;
    tracing::info!(
        dataset = %report.dataset,
        tables_created = report.tables_created.len(),
        views_created = report.views_created.len(),
        "bootstrap finished"
    );
    Ok(Json(report))
}

/// Why a destructive bootstrap is refused here, if it is: dropping the central tables loses every
/// organization, key and the audit log itself, so only development may ask for it.
fn destructive_refusal(request: &BootstrapRequest, environment: Environment) -> Option<String> {
    let flag = if request.force_recreate_dataset {
        "force_recreate_dataset"
    } else if request.force_recreate_tables {
        "force_recreate_tables"
    } else {
        return None;
    };
    (environment != Environment::Development).then(|| {
        format!(
            "{flag} is refused in {}: it drops every central table (organizations, keys, the audit log); \
             it is allowed only in development. A plain bootstrap adds what is missing and keeps every row",
            environment.as_str()
        )
    })
}

/// Columns in configs that existing tables lack. Checked before anything changes, so a column
/// that cannot be added (REQUIRED, on a table that may hold rows) stops the bootstrap untouched.
async fn plan_new_columns(
    state: &AppState,
    dataset: &str,
    existing: &[String],
) -> ApiResult<BTreeMap<String, Vec<common::warehouse::Field>>> {
    let mut plan = BTreeMap::new();
    for table in &state.configs.central_tables {
        if !existing.contains(&table.name) {
            continue;
        }
        let present = state.warehouse.table_columns(dataset, &table.name).await?;
        let missing: Vec<_> = table.fields.iter().filter(|f| !present.contains(&f.name)).cloned().collect();
        if let Some(required) = missing.iter().find(|f| f.mode == common::warehouse::Mode::Required) {
            return Err(ApiError::conflict(format!(
                "configs add REQUIRED column {} to existing table {}; make it NULLABLE, or recreate the tables with force_recreate_tables (their rows are lost)",
                required.name, table.name
            )));
        }
        if !missing.is_empty() {
            plan.insert(table.name.clone(), missing);
        }
    }
    Ok(plan)
}

/// Creates what is missing (or everything, when forced) and reports what was there already.
pub async fn run(state: &AppState, request: &BootstrapRequest) -> ApiResult<BootstrapReport> {
    let warehouse = state.warehouse.as_ref();
    let configs = &state.configs;
    let dataset = configs.central_dataset().to_string();
    // In production Terraform creates the central dataset (with the services' access to it) and
    // bootstrap may not create datasets: BigQuery answers such a datasets.insert 403, even for
    // a dataset that exists, so it is only attempted when the dataset is missing.
    let dataset_created = if warehouse.dataset_exists(&dataset).await? {
        false
    } else {
        let options = DatasetOptions {
            description: configs.bootstrap.description.clone(),
            labels: vec![("managed_by".into(), "convergence".into())],
            access: Vec::new(),
        };
        warehouse.create_dataset(&dataset, &options).await?
    };

    let existing = warehouse.list_tables(&dataset).await?;
    if request.force_recreate_dataset {
        // Everything in the dataset goes, the dataset itself stays: dropping it would also drop
        // the access Terraform gave the services, and bootstrap could not create it again.
        // Views first (later views read earlier ones), then every other table and view.
        for (view, _) in configs.central_views.iter().rev() {
            warehouse.drop_table(&dataset, view).await?;
        }
        for name in warehouse.list_all_tables(&dataset).await? {
            warehouse.drop_table(&dataset, &name).await?;
        }
    } else if request.force_recreate_tables {
        // Views first: they depend on the tables.
        for (view, _) in &configs.central_views {
            warehouse.drop_table(&dataset, view).await?;
        }
        for table in &configs.central_tables {
            warehouse.drop_table(&dataset, &table.name).await?;
        }
    }
    let emptied = request.force_recreate_dataset || request.force_recreate_tables;
    let existing: Vec<String> = if emptied { Vec::new() } else { existing };

    let mut report = BootstrapReport {
        dataset: dataset.clone(),
        dataset_created,
        tables_created: Vec::new(),
        tables_existing: Vec::new(),
        columns_added: BTreeMap::new(),
        columns_dropped: BTreeMap::new(),
        views_created: Vec::new(),
        views_existing: Vec::new(),
        catalog: Vec::new(),
    };
    let evolution = plan_new_columns(state, &dataset, &existing).await?;
    for table in &configs.central_tables {
        if warehouse.create_table(&dataset, table).await? {
            report.tables_created.push(table.name.clone());
        } else {
            report.tables_existing.push(table.name.clone());
        }
    }
    for (table, fields) in evolution {
        for field in &fields {
            warehouse.add_column(&dataset, &table, field).await?;
        }
        report.columns_added.insert(table, fields.into_iter().map(|f| f.name).collect());
    }
    // Retired columns go with their values wherever an older deployment still has them.
    for (table, columns) in &configs.bootstrap.retired_columns {
        if !existing.contains(table) {
            continue;
        }
        let present = warehouse.table_columns(&dataset, table).await?;
        for column in columns.iter().filter(|c| present.contains(c)) {
            warehouse.drop_column(&dataset, table, column).await?;
            report.columns_dropped.entry(table.clone()).or_default().push(column.clone());
        }
    }
    // A view reads the tables and the views before it. Views hold no data, so every bootstrap
    // replaces them: a changed view file reaches an existing deployment.
    let mut known = configs.central_table_names();
    for (view, template) in &configs.central_views {
        let sql = render_table_refs(warehouse, &dataset, template, &known)?;
        warehouse.create_view(&dataset, view, &sql).await?;
        if existing.contains(view) {
            report.views_existing.push(view.clone());
        } else {
            report.views_created.push(view.clone());
        }
        known.push(view.as_str());
    }
    let catalog = common::pricebook::Catalog::new(warehouse, configs);
    for provider in configs.price_books.keys() {
        report.catalog.push(catalog.load_seed(provider, "bootstrap").await?);
    }
    Ok(report)
}
