//! Everything under `configs/`, loaded and validated once at start-up. A broken file stops the
//! process with the file's path and the reason; every problem is reported, not only the first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

pub mod bq_etl;
pub mod catalog_import;
pub mod data_quality;
pub mod notify;
pub mod pipelines;
pub mod price_records;
pub mod schema;

use crate::settings::Environment;
use price_records::{self as records, BookKind, Entry};
use schema::TableSchema;

/// `configs/setup/bootstrap/config.yml`: the central dataset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapConfig {
    /// Name of the central dataset.
    pub dataset: String,
    pub description: String,
    /// Tables in creation order; each has `schemas/<table>.json`.
    pub tables: Vec<String>,
    /// Views in creation order; each has `views/<view>.sql`.
    pub views: Vec<String>,
    /// Columns that existing tables may still have and that bootstrap drops with their values
    /// (table → columns): data the system must no longer hold, such as a retired secret copy.
    #[serde(default)]
    pub retired_columns: BTreeMap<String, Vec<String>>,
}

/// `configs/setup/organizations/onboarding/config.yml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnboardingConfig {
    /// Per-organization dataset name, with `{org_slug}` and `{env}`.
    pub dataset_name_template: String,
    pub dataset_description: String,
    #[serde(default)]
    pub dataset_labels: BTreeMap<String, String>,
    /// Plan of a new organization when the request names none.
    pub default_plan: String,
    /// Length of the trial started at onboarding.
    pub trial_days: u32,
    pub default_currency: String,
    pub default_timezone: String,
}

/// `configs/system/dataset_types.yml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetTypesConfig {
    /// `ENVIRONMENT` value → dataset suffix.
    pub environments: BTreeMap<String, String>,
    pub dataset_types: BTreeMap<String, DatasetType>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetType {
    pub naming: String,
    pub description: String,
}

/// `configs/system/providers.yml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersConfig {
    pub providers: BTreeMap<String, Provider>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub display_name: String,
    /// `llm` or `cloud`.
    pub category: String,
    /// `admin_api_key` or `service_account_json`.
    pub credential_type: String,
    pub default_api_base: String,
    /// Environment variable that overrides `default_api_base`.
    pub api_base_env: String,
    pub description: String,
    /// The earliest day a run may cover: the provider serves no data before it.
    pub first_usable_day: chrono::NaiveDate,
    /// Recent days the scheduler pulls again each day, because the provider's data for a day
    /// settles late.
    pub settle_days: u32,
}

/// `configs/system/subscription_plans.yml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlansConfig {
    pub plans: BTreeMap<String, Plan>,
    /// Frontend billing status → backend subscription status.
    pub billing_status_map: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub display_name: String,
    pub max_pipeline_runs_per_day: u32,
    pub max_pipeline_runs_per_month: u32,
    pub max_concurrent_runs: u32,
    pub max_integrations: u32,
}

/// Backend subscription statuses (DESIGN §7).
pub const SUBSCRIPTION_STATUSES: [&str; 4] = ["TRIAL", "ACTIVE", "SUSPENDED", "CANCELLED"];

/// Everything under `configs/`, validated.
#[derive(Debug, Clone)]
pub struct Configs {
    pub root: PathBuf,
    pub bootstrap: BootstrapConfig,
    /// Central tables by name, in `bootstrap.tables` order.
    pub central_tables: Vec<TableSchema>,
    /// Central views: (name, SELECT with `{{table}}` placeholders).
    pub central_views: Vec<(String, String)>,
    pub onboarding: OnboardingConfig,
    pub dataset_types: DatasetTypesConfig,
    pub providers: ProvidersConfig,
    pub plans: PlansConfig,
    /// LLM provider → its price-book seed (`configs/{provider}/seed/`), checked row by row.
    pub price_books: BTreeMap<String, PriceBookSeed>,
    /// Provider → table → the schema of a table its processors read or write
    /// (`configs/{provider}/schemas/<table>.json`), checked; see [`Configs::table_schema`].
    pub table_schemas: BTreeMap<String, BTreeMap<String, TableSchema>>,
    /// Every pipeline file (`configs/{provider}/{domain}[/{pipeline}].yml`), steps checked
    /// against their processors.
    pub pipelines: pipelines::Catalog,
    /// How run notifications are delivered (`configs/notify_systems/`).
    pub notify: notify::NotifySystems,
    /// `configs/gcp/bq_etl/` (when the `gcp` provider is configured), checked.
    pub gcp_bq_etl: Option<bq_etl::BqEtlConfig>,
    /// Data-quality suites (`configs/data_quality/expectations/*.json`), checked against their
    /// tables' schemas; every validate step names one.
    pub dq_suites: data_quality::Suites,
}

/// `configs/{provider}/seed/`: an LLM provider's price-book tables (`schemas/<table>.json`), its
/// price catalog (`data/default_pricing.csv`: every version of every model's prices, loaded into
/// the central `price_catalog` at bootstrap) and default plans (`data/default_subscriptions.csv`,
/// copied into each organization's subscriptions book).
#[derive(Debug, Clone)]
pub struct PriceBookSeed {
    /// The organization's pricing book: its overrides of the catalog.
    pub pricing_schema: TableSchema,
    pub subscriptions_schema: TableSchema,
    /// The catalog's current version of each model (what the catalog charges from today on).
    pub pricing: Vec<Entry>,
    /// Every version in the catalog file, in file order.
    pub catalog: Vec<records::CatalogSeedRow>,
    pub subscriptions: Vec<Entry>,
}

impl PriceBookSeed {
    pub fn schema(&self, kind: BookKind) -> &TableSchema {
        match kind {
            BookKind::Pricing => &self.pricing_schema,
            BookKind::Subscriptions => &self.subscriptions_schema,
        }
    }

    pub fn defaults(&self, kind: BookKind) -> &[Entry] {
        match kind {
            BookKind::Pricing => &self.pricing,
            BookKind::Subscriptions => &self.subscriptions,
        }
    }
}

/// The central table holding every LLM provider's price catalog (DESIGN §9).
pub const PRICE_CATALOG_TABLE: &str = "price_catalog";

/// Every problem found, each prefixed with the file it is in.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "configs are invalid ({} problem(s)):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

struct Loader {
    root: PathBuf,
    problems: Vec<String>,
}

impl Loader {
    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn read(&mut self, rel: &str) -> Option<String> {
        match std::fs::read_to_string(self.path(rel)) {
            Ok(text) => Some(text),
            Err(e) => {
                self.problems.push(format!("{}: cannot read: {e}", self.path(rel).display()));
                None
            }
        }
    }

    fn yaml<T: DeserializeOwned>(&mut self, rel: &str) -> Option<T> {
        let text = self.read(rel)?;
        serde_yaml::from_str(&text).map_err(|e| self.problems.push(format!("{}: {e}", self.path(rel).display()))).ok()
    }

    fn json<T: DeserializeOwned>(&mut self, rel: &str) -> Option<T> {
        let text = self.read(rel)?;
        serde_json::from_str(&text).map_err(|e| self.problems.push(format!("{}: {e}", self.path(rel).display()))).ok()
    }

    fn problem(&mut self, rel: &str, message: impl std::fmt::Display) {
        self.problems.push(format!("{}: {message}", self.path(rel).display()));
    }
}

impl Configs {
    /// Loads and validates every config file under `root`; pipeline steps are checked against
    /// `step_types` (the processor registry).
    pub fn load(root: &Path, step_types: &dyn pipelines::StepTypes) -> Result<Configs, ConfigErrors> {
        let mut l = Loader { root: root.to_path_buf(), problems: Vec::new() };
        let bootstrap: Option<BootstrapConfig> = l.yaml("setup/bootstrap/config.yml");
        let onboarding: Option<OnboardingConfig> = l.yaml("setup/organizations/onboarding/config.yml");
        let dataset_types: Option<DatasetTypesConfig> = l.yaml("system/dataset_types.yml");
        let providers: Option<ProvidersConfig> = l.yaml("system/providers.yml");
        let plans: Option<PlansConfig> = l.yaml("system/subscription_plans.yml");
        let email: Option<notify::EmailNotificationConfig> = l.yaml(notify::EMAIL_CONFIG);
        let slack: Option<notify::SlackNotificationConfig> = l.yaml(notify::SLACK_CONFIG);
        for (file, problem) in notify::NotifySystems::problems(email.as_ref(), slack.as_ref()) {
            l.problem(file, problem);
        }

        let mut central_tables = Vec::new();
        let mut central_views = Vec::new();
        if let Some(b) = &bootstrap {
            let rel = "setup/bootstrap/config.yml";
            if !crate::domain::is_identifier(&b.dataset) {
                l.problem(rel, format!("dataset {:?} is not a valid identifier", b.dataset));
            }
            check_unique(&mut l, rel, "tables", &b.tables);
            check_unique(&mut l, rel, "views", &b.views);
            for table in &b.tables {
                let file = format!("setup/bootstrap/schemas/{table}.json");
                if let Some(mut schema) = l.json::<TableSchema>(&file) {
                    schema.name = table.clone();
                    let mut problems = schema.problems();
                    if table == PRICE_CATALOG_TABLE {
                        problems.extend(records::catalog_schema_problems(&schema));
                    }
                    for p in problems {
                        l.problem(&file, p);
                    }
                    central_tables.push(schema);
                }
            }
            for (table, columns) in &b.retired_columns {
                match central_tables.iter().find(|t| &t.name == table) {
                    None => l.problem(rel, format!("retired_columns names {table}, which is not in tables")),
                    Some(schema) => {
                        for column in columns {
                            if !crate::domain::is_identifier(column) {
                                l.problem(
                                    rel,
                                    format!("retired column {column:?} of {table} is not a valid identifier"),
                                );
                            } else if schema.fields.iter().any(|f| &f.name == column) {
                                l.problem(
                                    rel,
                                    format!("column {column} of {table} is retired and still in schemas/{table}.json"),
                                );
                            }
                        }
                    }
                }
            }
            // A view reads tables and the views created before it (views are created in order).
            let mut table_names: Vec<&str> = b.tables.iter().map(String::as_str).collect();
            for view in &b.views {
                let file = format!("setup/bootstrap/views/{view}.sql");
                if !crate::domain::is_identifier(view) {
                    l.problem(rel, format!("view name {view:?} is not a valid identifier"));
                }
                if let Some(sql) = l.read(&file) {
                    for name in placeholders(&sql) {
                        if !table_names.contains(&name.as_str()) {
                            l.problem(&file, format!("{{{{{name}}}}} is not a table or an earlier view in {rel}"));
                        }
                    }
                    if sql.trim().is_empty() {
                        l.problem(&file, "the view's SELECT is empty");
                    }
                    central_views.push((view.clone(), sql));
                }
                table_names.push(view.as_str());
            }
            // A schema file that no config lists is a mistake waiting to happen: say so.
            if let Ok(entries) = std::fs::read_dir(l.path("setup/bootstrap/schemas")) {
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().to_string();
                    if let Some(stem) = name.strip_suffix(".json") {
                        if !b.tables.iter().any(|t| t == stem) {
                            l.problem(
                                &format!("setup/bootstrap/schemas/{name}"),
                                format!("table {stem} is not listed in {rel}"),
                            );
                        }
                    }
                }
            }
        }
        if let Some(p) = &plans {
            let rel = "system/subscription_plans.yml";
            for (name, plan) in &p.plans {
                if !matches!(name.as_str(), "STARTER" | "PROFESSIONAL" | "SCALE") && name.to_ascii_uppercase() != *name
                {
                    l.problem(rel, format!("plan name {name:?} must be uppercase"));
                }
                for (field, value) in [
                    ("max_pipeline_runs_per_day", plan.max_pipeline_runs_per_day),
                    ("max_pipeline_runs_per_month", plan.max_pipeline_runs_per_month),
                    ("max_concurrent_runs", plan.max_concurrent_runs),
                    ("max_integrations", plan.max_integrations),
                ] {
                    if value == 0 {
                        l.problem(rel, format!("plan {name}: {field} must be at least 1"));
                    }
                }
                if plan.max_pipeline_runs_per_day > plan.max_pipeline_runs_per_month {
                    l.problem(rel, format!("plan {name}: more runs per day than per month"));
                }
            }
            for required in ["STARTER", "PROFESSIONAL", "SCALE"] {
                if !p.plans.contains_key(required) {
                    l.problem(rel, format!("plan {required} is missing"));
                }
            }
            for (from, to) in &p.billing_status_map {
                if !SUBSCRIPTION_STATUSES.contains(&to.as_str()) {
                    l.problem(
                        rel,
                        format!("billing status {from} maps to {to}, which is not one of {SUBSCRIPTION_STATUSES:?}"),
                    );
                }
            }
            if let Some(o) = &onboarding {
                if !p.plans.contains_key(&o.default_plan) {
                    l.problem(
                        "setup/organizations/onboarding/config.yml",
                        format!("default_plan {} is not a plan", o.default_plan),
                    );
                }
            }
        }
        if let Some(o) = &onboarding {
            let rel = "setup/organizations/onboarding/config.yml";
            let probe = o.dataset_name_template.replace("{org_slug}", "abc").replace("{env}", "dev");
            if !o.dataset_name_template.contains("{org_slug}") || !crate::domain::is_identifier(&probe) {
                l.problem(rel, "dataset_name_template must contain {org_slug} and produce an identifier");
            }
            if o.default_currency.len() != 3 || !o.default_currency.chars().all(|c| c.is_ascii_uppercase()) {
                l.problem(rel, "default_currency must be an ISO 4217 code such as USD");
            }
        }
        if let Some(d) = &dataset_types {
            for env in [Environment::Development, Environment::Staging, Environment::Production] {
                match d.environments.get(env.as_str()) {
                    Some(suffix) if crate::domain::is_identifier(suffix) => {}
                    _ => l.problem(
                        "system/dataset_types.yml",
                        format!("environments.{} needs an identifier suffix", env.as_str()),
                    ),
                }
            }
        }
        if let Some(p) = &providers {
            for (name, provider) in &p.providers {
                if !matches!(provider.category.as_str(), "llm" | "cloud") {
                    l.problem("system/providers.yml", format!("provider {name}: category must be llm or cloud"));
                }
                if !provider.default_api_base.starts_with("https://") {
                    l.problem("system/providers.yml", format!("provider {name}: default_api_base must be https"));
                }
            }
        }

        let mut price_books = BTreeMap::new();
        if let Some(b) = &bootstrap {
            let has_llm = providers.as_ref().is_some_and(|p| p.providers.values().any(|p| p.category == "llm"));
            if has_llm && !b.tables.iter().any(|t| t == PRICE_CATALOG_TABLE) {
                l.problem(
                    "setup/bootstrap/config.yml",
                    format!("tables must list {PRICE_CATALOG_TABLE}: the LLM providers' prices are read from it"),
                );
            }
        }
        if let Some(p) = &providers {
            for (name, provider) in &p.providers {
                if provider.category == "llm" {
                    if let Some(seed) = load_price_book(&mut l, name) {
                        price_books.insert(name.clone(), seed);
                    }
                }
            }
        }

        let provider_names: Vec<&str> =
            providers.as_ref().map(|p| p.providers.keys().map(String::as_str).collect()).unwrap_or_default();
        let table_schemas: BTreeMap<String, BTreeMap<String, TableSchema>> =
            provider_names.iter().map(|p| (p.to_string(), load_table_schemas(&mut l, p))).collect();
        let (pipelines, pipeline_problems) = pipelines::Catalog::load(root, &provider_names, step_types);
        for (file, problem) in pipeline_problems {
            l.problem(&file, problem);
        }
        check_step_tables(&mut l, &pipelines, &table_schemas, step_types);
        let (dq_suites, suite_problems) = data_quality::Suites::load(root, &table_schemas);
        for (file, problem) in suite_problems.into_iter().chain(dq_suites.check_steps(&pipelines)) {
            l.problem(&file, problem);
        }
        let gcp_bq_etl = provider_names.contains(&"gcp").then(|| load_bq_etl(&mut l)).flatten();

        match (bootstrap, onboarding, dataset_types, providers, plans, email, slack) {
            (
                Some(bootstrap),
                Some(onboarding),
                Some(dataset_types),
                Some(providers),
                Some(plans),
                Some(email),
                Some(slack),
            ) if l.problems.is_empty() => Ok(Configs {
                root: root.to_path_buf(),
                bootstrap,
                central_tables,
                central_views,
                onboarding,
                dataset_types,
                providers,
                plans,
                price_books,
                table_schemas,
                pipelines,
                notify: notify::NotifySystems { email, slack },
                gcp_bq_etl,
                dq_suites,
            }),
            _ => Err(ConfigErrors(l.problems)),
        }
    }

    pub fn central_dataset(&self) -> &str {
        &self.bootstrap.dataset
    }

    pub fn central_table(&self, name: &str) -> &TableSchema {
        // Callers name tables that `load` proved exist; a typo is a programming error.
        self.central_tables
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("central table {name} is not in configs/setup/bootstrap/config.yml"))
    }

    pub fn central_table_names(&self) -> Vec<&str> {
        self.bootstrap.tables.iter().map(String::as_str).collect()
    }

    /// The per-organization dataset for `org_slug` in `environment`, e.g. `acme_dev`.
    pub fn org_dataset(&self, org_slug: &str, environment: Environment) -> String {
        let suffix = self.dataset_types.environments.get(environment.as_str()).map(String::as_str).unwrap_or("dev");
        self.onboarding.dataset_name_template.replace("{org_slug}", org_slug).replace("{env}", suffix)
    }

    /// The schema of a provider table (`configs/{provider}/schemas/{table}.json`), loaded and
    /// checked at start-up; every table a pipeline's processors name has one.
    pub fn table_schema(&self, provider: &str, table: &str) -> Option<&TableSchema> {
        self.table_schemas.get(provider)?.get(table)
    }

    pub fn plan(&self, name: &str) -> Option<&Plan> {
        self.plans.plans.get(name)
    }

    pub fn plan_names(&self) -> Vec<&str> {
        self.plans.plans.keys().map(String::as_str).collect()
    }
}

/// Loads one LLM provider's seed: both table schemas (checked against the columns the price book
/// writes) and both CSVs (every row checked; problems name the file and line).
fn load_price_book(l: &mut Loader, provider: &str) -> Option<PriceBookSeed> {
    let schema = |l: &mut Loader, kind: BookKind| {
        let table = kind.table(provider);
        let file = format!("{provider}/seed/schemas/{table}.json");
        let mut schema = l.json::<TableSchema>(&file)?;
        schema.name = table;
        let problems: Vec<String> =
            schema.problems().into_iter().chain(records::schema_problems(kind, &schema)).collect();
        for p in &problems {
            l.problem(&file, p);
        }
        problems.is_empty().then_some(schema)
    };
    let pricing_schema = schema(l, BookKind::Pricing);
    let subscriptions_schema = schema(l, BookKind::Subscriptions);
    if let Ok(entries) = std::fs::read_dir(l.path(&format!("{provider}/seed/schemas"))) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let known = [BookKind::Pricing, BookKind::Subscriptions].map(|k| format!("{}.json", k.table(provider)));
            if !known.contains(&name) {
                l.problem(
                    &format!("{provider}/seed/schemas/{name}"),
                    format!("unexpected file: the seed tables are {}", known.join(" and ")),
                );
            }
        }
    }
    fn checked<T>(l: &mut Loader, file: &str, parsed: Result<Vec<T>, Vec<String>>) -> Option<Vec<T>> {
        match parsed {
            Ok(rows) if rows.is_empty() => {
                l.problem(file, "no rows: the defaults need at least one");
                None
            }
            Ok(rows) => Some(rows),
            Err(problems) => {
                for p in problems {
                    l.problem(file, p);
                }
                None
            }
        }
    }
    let catalog_file = format!("{provider}/seed/data/{}", BookKind::Pricing.csv_file());
    let catalog = l.read(&catalog_file).and_then(|text| checked(l, &catalog_file, records::parse_catalog_csv(&text)));
    let plans_file = format!("{provider}/seed/data/{}", BookKind::Subscriptions.csv_file());
    let subscriptions = l
        .read(&plans_file)
        .and_then(|text| checked(l, &plans_file, records::parse_seed_csv(BookKind::Subscriptions, &text)));
    let catalog = catalog?;
    let pricing = catalog.iter().filter(|r| r.effective_to.is_none()).map(|r| r.entry.clone()).collect();
    Some(PriceBookSeed {
        pricing_schema: pricing_schema?,
        subscriptions_schema: subscriptions_schema?,
        pricing,
        catalog,
        subscriptions: subscriptions?,
    })
}

/// `configs/gcp/bq_etl/`: the step's settings and the export table's template, both checked.
fn load_bq_etl(l: &mut Loader) -> Option<bq_etl::BqEtlConfig> {
    let settings: Option<bq_etl::BqEtlSettings> = l.yaml(bq_etl::CONFIG_FILE);
    if let Some(s) = &settings {
        for p in s.problems() {
            l.problem(bq_etl::CONFIG_FILE, p);
        }
    }
    let template = l.json::<TableSchema>(bq_etl::TEMPLATE_FILE).map(|mut t| {
        t.name = "gcp_billing_export_v1_template".into();
        t
    });
    if let Some(t) = &template {
        for p in t.problems().into_iter().chain(bq_etl::template_problems(t)) {
            l.problem(bq_etl::TEMPLATE_FILE, p);
        }
    }
    let settings = settings.filter(|s| s.problems().is_empty())?;
    let export_template = template.filter(|t| t.problems().is_empty() && bq_etl::template_problems(t).is_empty())?;
    Some(bq_etl::BqEtlConfig { settings, export_template })
}

/// Every `configs/{provider}/schemas/<table>.json` (the tables the provider's processors read or
/// write), each checked; a file with a problem is reported and left out.
fn load_table_schemas(l: &mut Loader, provider: &str) -> BTreeMap<String, TableSchema> {
    let mut schemas = BTreeMap::new();
    let dir = format!("{provider}/schemas");
    let Ok(entries) = std::fs::read_dir(l.path(&dir)) else { return schemas };
    let mut names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect();
    names.sort();
    for name in names {
        let file = format!("{dir}/{name}");
        let Some(table) = name.strip_suffix(".json") else {
            l.problem(&file, "unexpected file: this folder holds table schemas, <table>.json");
            continue;
        };
        if let Some(mut schema) = l.json::<TableSchema>(&file) {
            schema.name = table.to_string();
            let problems = schema.problems();
            for p in &problems {
                l.problem(&file, p);
            }
            if problems.is_empty() {
                schemas.insert(schema.name.clone(), schema);
            }
        }
    }
    schemas
}

/// Every table a pipeline step's processor reads or writes has a valid schema under its
/// provider (`ps_type` before the dot), so no step meets a missing one at run time.
fn check_step_tables(
    l: &mut Loader,
    catalog: &pipelines::Catalog,
    schemas: &BTreeMap<String, BTreeMap<String, TableSchema>>,
    step_types: &dyn pipelines::StepTypes,
) {
    for pipeline in catalog.iter() {
        for step in &pipeline.steps {
            let provider = step.ps_type.split('.').next().unwrap_or_default();
            for table in step_types.tables(&step.ps_type) {
                if schemas.get(provider).and_then(|s| s.get(*table)).is_none() {
                    l.problem(
                        &pipeline.file,
                        format!(
                            "step {} ({}): table {table} needs a valid schema in {provider}/schemas/{table}.json",
                            step.step_id, step.ps_type
                        ),
                    );
                }
            }
        }
    }
}

fn check_unique(l: &mut Loader, rel: &str, what: &str, names: &[String]) {
    let mut seen = std::collections::HashSet::new();
    for n in names {
        if !seen.insert(n) {
            l.problem(rel, format!("{what} lists {n} twice"));
        }
        if !crate::domain::is_identifier(n) {
            l.problem(rel, format!("{what} entry {n:?} is not a valid identifier"));
        }
    }
}

/// The `{{name}}` placeholders of a SQL template.
fn placeholders(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = sql;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                out.push(after[..end].trim().to_string());
                rest = &after[end + 2..];
            }
            None => {
                out.push(after.to_string());
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_configs() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs"))
    }

    #[test]
    fn shipped_configs_are_valid() {
        let c = Configs::load(&repo_configs(), &crate::processors::REGISTRY).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.central_tables.len(), 16);
        assert_eq!(c.central_views.len(), 6);
        assert_eq!(c.plan_names(), vec!["PROFESSIONAL", "SCALE", "STARTER"]);
        assert_eq!(c.org_dataset("acme", Environment::Production), "acme_prod");
        assert_eq!(c.org_dataset("acme", Environment::Development), "acme_dev");
    }

    #[test]
    fn shipped_price_books_are_valid() {
        let c = Configs::load(&repo_configs(), &crate::processors::REGISTRY).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.price_books.keys().collect::<Vec<_>>(), vec!["anthropic", "openai"]);
        let openai = &c.price_books["openai"];
        assert_eq!(openai.pricing_schema.name, "openai_model_pricing");
        assert_eq!(openai.subscriptions_schema.name, "openai_subscription_plans");
        let gpt4o = openai.pricing.iter().find(|r| r["model_id"] == "gpt-4o").expect("gpt-4o");
        assert_eq!(gpt4o["input_per_1m"], "2.50");
        assert_eq!(gpt4o["cached_input_per_1m"], "1.25");
        assert_eq!(gpt4o["batch_output_per_1m"], "5.00");
        assert!(openai
            .subscriptions
            .iter()
            .any(|r| r["plan_name"] == "tier_5" && r["monthly_usage_limit"] == "200000.00"));
        let anthropic = &c.price_books["anthropic"];
        let sonnet = anthropic.pricing.iter().find(|r| r["model_id"] == "claude-sonnet-4-5-20250929").expect("sonnet");
        assert_eq!(sonnet["cache_write_1h_per_1m"], "6.00");
        assert_eq!(sonnet["long_context_threshold_tokens"], 200000);
        assert_eq!(sonnet["long_context_output_per_1m"], "22.50");
        assert!(!anthropic.subscriptions.is_empty());
    }

    #[test]
    fn broken_price_book_csv_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo_configs(), dir.path());
        let csv = dir.path().join("openai/seed/data/default_pricing.csv");
        let mut text = std::fs::read_to_string(&csv).unwrap();
        text = text.replacen("gpt-4o-mini,USD,0.15", "gpt-4o-mini,USD,-0.15", 1);
        // The rows keep every column but the first seven empty.
        let empty = ",".repeat(crate::configs::price_records::BookKind::Pricing.columns().len() - 7);
        let line = text.lines().count();
        text.push_str(&format!("gpt-4o,USD,1,,,,2{empty},2025-01-01,\n"));
        text.push_str(&format!("gpt 4o!,EUX,1,,,,2{empty},1970-01-01,\n"));
        std::fs::write(&csv, text).unwrap();
        let plans = dir.path().join("anthropic/seed/data/default_subscriptions.csv");
        std::fs::write(&plans, "plan_name,plan_type\n").unwrap();
        let err = Configs::load(dir.path(), &crate::processors::REGISTRY).unwrap_err().to_string();
        assert!(
            err.contains("openai/seed/data/default_pricing.csv: line 4: input_per_1m must not be negative"),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "default_pricing.csv: line {}: this version of gpt-4o overlaps the one on line 2",
                line + 1
            )),
            "{err}"
        );
        assert!(
            err.contains(&format!("default_pricing.csv: line {}: model_id \"gpt 4o!\" is malformed", line + 2)),
            "{err}"
        );
        assert!(err.contains(&format!("default_pricing.csv: line {}: currency \"EUX\" is unknown", line + 2)), "{err}");
        assert!(
            err.contains("anthropic/seed/data/default_subscriptions.csv: line 1: column currency is missing"),
            "{err}"
        );
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }

    #[test]
    fn broken_files_are_all_named() {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo_configs(), dir.path());
        let schema = dir.path().join("setup/bootstrap/schemas/org_profiles.json");
        std::fs::write(&schema, r#"{"description":"x","fields":[{"name":"a","type":"GEOGRAPHY"}]}"#).unwrap();
        std::fs::write(dir.path().join("system/providers.yml"), "providers: {openai: {oops: 1}}\n").unwrap();
        let view = dir.path().join("setup/bootstrap/views/pipeline_logs_view.sql");
        std::fs::write(&view, "SELECT * FROM {{no_such_table}}").unwrap();
        // Retired columns: one still in its schema, one of a table bootstrap does not make.
        let bootstrap = dir.path().join("setup/bootstrap/config.yml");
        let text = std::fs::read_to_string(&bootstrap).unwrap();
        let retired = "org_api_keys: [encrypted_key]";
        assert!(text.contains(retired));
        std::fs::write(&bootstrap, text.replace(retired, "org_api_keys: [key_hash]\n  no_table: [x]")).unwrap();
        let err = Configs::load(dir.path(), &crate::processors::REGISTRY).unwrap_err().to_string();
        assert!(
            err.contains(
                "config.yml: column key_hash of org_api_keys is retired and still in schemas/org_api_keys.json"
            ),
            "{err}"
        );
        assert!(err.contains("config.yml: retired_columns names no_table, which is not in tables"), "{err}");
        assert!(err.contains("org_profiles.json"), "{err}");
        assert!(err.contains("GEOGRAPHY"), "{err}");
        assert!(err.contains("providers.yml"), "{err}");
        assert!(err.contains("no_such_table"), "{err}");
    }

    #[test]
    fn broken_table_schemas_and_retry_policies_are_named_with_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo_configs(), dir.path());
        let write = |rel: &str, text: &str| std::fs::write(dir.path().join(rel), text).unwrap();
        let edit = |rel: &str, from: &str, to: &str| {
            let text = std::fs::read_to_string(dir.path().join(rel)).unwrap();
            assert!(text.contains(from), "{rel} has no {from:?}");
            write(rel, &text.replacen(from, to, 1));
        };
        // A provider table's schema that is not JSON, one with a wrong field, one missing, and a
        // stray file among them.
        write("openai/schemas/openai_usage_daily_raw.json", r#"{"description": "raw", "fields": ["#);
        edit("anthropic/schemas/anthropic_cost_daily.json", r#""type": "DATE""#, r#""type": "DATE", "mode": "TWICE""#);
        std::fs::remove_file(dir.path().join("openai/schemas/openai_subscriptions_monthly.json")).unwrap();
        write("openai/schemas/notes.txt", "not a schema");
        // Retry policies the provider calls could not follow.
        let retry = "retry: {max_attempts: 5, initial_backoff_ms: 500, max_backoff_ms: 30000}";
        edit(
            "anthropic/usage_cost.yml",
            retry,
            "retry: {max_attempts: 0, initial_backoff_ms: 500, max_backoff_ms: 30000}",
        );
        edit(
            "anthropic/usage_cost.yml",
            retry,
            "retry: {max_attempts: 3, initial_backoff_ms: 9000, max_backoff_ms: 10}",
        );
        // And a problem of another kind, reported with them.
        write("setup/bootstrap/views/pipeline_logs_view.sql", "SELECT * FROM {{no_such_table}}");
        let err = Configs::load(dir.path(), &crate::processors::REGISTRY).unwrap_err().to_string();
        for expected in [
            "openai/schemas/openai_usage_daily_raw.json: EOF while parsing",
            "anthropic/schemas/anthropic_cost_daily.json: unknown variant `TWICE`",
            "openai/schemas/notes.txt: unexpected file: this folder holds table schemas, <table>.json",
            "openai/usage_cost.yml: step extract_usage (openai.usage): table openai_usage_daily_raw needs a valid \
             schema in openai/schemas/openai_usage_daily_raw.json",
            "openai/usage_cost.yml: step transform_cost (openai.cost): table openai_usage_daily_raw needs",
            "openai/subscriptions.yml: step transform_subscriptions (openai.subscriptions): table \
             openai_subscriptions_monthly needs a valid schema in openai/schemas/openai_subscriptions_monthly.json",
            "anthropic/usage_cost.yml: step extract_usage (anthropic.usage): retry.max_attempts must be between 1 and 20",
            "anthropic/usage_cost.yml: step transform_cost (anthropic.cost): \
             retry.initial_backoff_ms must not exceed retry.max_backoff_ms",
            "pipeline_logs_view.sql: {{no_such_table}}",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
        }
    }

    #[test]
    fn broken_notification_configs_are_named() {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo_configs(), dir.path());
        let email = dir.path().join(notify::EMAIL_CONFIG);
        let text = std::fs::read_to_string(&email).unwrap().replace("max_attempts: 3", "max_attempts: 9");
        std::fs::write(&email, text.replace("max_recipients: 20", "max_recipients: 0")).unwrap();
        std::fs::write(dir.path().join(notify::SLACK_CONFIG), "enabled: true\nwebhook: x\n").unwrap();
        let pipeline = dir.path().join("openai/subscriptions.yml");
        let text = std::fs::read_to_string(&pipeline).unwrap();
        std::fs::write(&pipeline, text.replace("on_failure: [email, slack]", "on_failure: [pager]")).unwrap();
        let err = Configs::load(dir.path(), &crate::processors::REGISTRY).unwrap_err().to_string();
        for expected in [
            "notify_systems/email_notification/config.yml: max_recipients must be from 1 to 50",
            "notify_systems/email_notification/config.yml: delivery.max_attempts must be from 1 to 5",
            "notify_systems/slack_notification/config.yml: unknown field `webhook`",
            "openai/subscriptions.yml",
            "unknown variant `pager`",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
        }
        let c = Configs::load(&repo_configs(), &crate::processors::REGISTRY).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.notify.email.enabled && c.notify.slack.enabled);
    }

    #[test]
    fn data_quality_suites_are_loaded_and_broken_ones_named_with_their_file() {
        let c = Configs::load(&repo_configs(), &crate::processors::REGISTRY).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.dq_suites.names(), vec!["anthropic_cost_suite", "billing_cost_suite", "openai_cost_suite"]);
        assert_eq!(c.dq_suites.get("billing_cost_suite").unwrap().table, "gcp_billing_daily_raw");

        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo_configs(), dir.path());
        let suite = dir.path().join("data_quality/expectations/billing_cost_suite.json");
        let text = std::fs::read_to_string(&suite).unwrap();
        let text = text
            .replacen(r#""type": "unique""#, r#""type": "distinct""#, 1)
            .replacen(r#""column": "credits_total""#, r#""column": "credit_total""#, 1)
            .replacen(r#""min": 1,"#, r#""min": 100,"#, 1)
            .replacen(r#""max": 50000000"#, r#""max": 10"#, 1);
        std::fs::write(&suite, text).unwrap();
        let yml = dir.path().join("anthropic/usage_cost.yml");
        let text =
            std::fs::read_to_string(&yml).unwrap().replace("suite: anthropic_cost_suite", "suite: openai_cost_suite");
        std::fs::write(&yml, text).unwrap();
        let yml = dir.path().join("openai/usage_cost.yml");
        let text = std::fs::read_to_string(&yml).unwrap().replace("suite: openai_cost_suite", "suite: nope");
        std::fs::write(&yml, text).unwrap();
        let err = Configs::load(dir.path(), &crate::processors::REGISTRY).unwrap_err().to_string();
        for expected in [
            "data_quality/expectations/billing_cost_suite.json: expectation one_row_per_export_row: unknown type \"distinct\"",
            "billing_cost_suite.json: expectation credits_reduce_cost (between): column \"credit_total\" is not in gcp_billing_daily_raw",
            "billing_cost_suite.json: expectation rows_every_day (row_count): min 100 is above max 10",
            "anthropic/usage_cost.yml: step validate_cost (data_quality.validate): suite openai_cost_suite checks openai_cost_daily (a openai table), not one of this anthropic pipeline's",
            "openai/usage_cost.yml: step validate_cost (data_quality.validate): suite \"nope\" is not in data_quality/expectations/",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
        }
    }

    #[test]
    fn provider_table_schemas_are_loaded_per_provider() {
        let c = Configs::load(&repo_configs(), &crate::processors::REGISTRY).unwrap_or_else(|e| panic!("{e}"));
        let raw = c.table_schema("anthropic", "anthropic_usage_daily_raw").expect("loaded at start-up");
        assert_eq!(raw.name, "anthropic_usage_daily_raw", "named after its file");
        assert!(c.table_schema("anthropic", "openai_usage_daily_raw").is_none(), "tables are per provider");
        assert_eq!(c.table_schemas["openai"].len(), 3);
    }
}
