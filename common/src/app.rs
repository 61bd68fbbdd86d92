//! Application state shared by every function's handlers: the composition root that builds the
//! configs and backends from settings (the listener and `main`'s start-up are in
//! [`crate::http::server`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::auth::oidc::{OidcConfig, OidcVerifier};
use crate::auth::Authenticator;
use crate::configs::Configs;
use crate::kms::{CloudKms, Kms, LocalKms};
use crate::notify::Notifier;
use crate::orgs::OrgDirectory;
use crate::pipeline::{Delivery, Pipelines};
use crate::queue::local::LocalRunQueue;
use crate::queue::pubsub::PubSubRunQueue;
use crate::queue::RunQueue;
use crate::settings::{KmsBackend, QueueBackend, Settings, WarehouseBackend};
use crate::warehouse::Warehouse;

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub configs: Arc<Configs>,
    pub warehouse: Arc<dyn Warehouse>,
    pub kms: Arc<dyn Kms>,
    pub auth: Arc<Authenticator>,
    pub orgs: Arc<OrgDirectory>,
    /// Where accepted pipeline runs go (DESIGN §8); started with the state.
    pub queue: Arc<dyn RunQueue>,
    /// Verifies the Google OIDC tokens internal endpoints accept; present when `OIDC_AUDIENCE` is set.
    pub oidc: Option<Arc<OidcVerifier>>,
    /// The pipeline layer: submit, execute, tick (built from the parts above).
    pub pipelines: Pipelines,
}

/// The parts of the state price books use.
impl<'a> From<&'a AppState> for crate::pricebook::Books<'a> {
    fn from(state: &'a AppState) -> Self {
        crate::pricebook::Books {
            warehouse: state.warehouse.as_ref(),
            configs: &state.configs,
            environment: state.settings.environment,
        }
    }
}

impl AppState {
    /// Loads configs and opens the backends the settings select.
    pub async fn build(settings: Settings) -> anyhow::Result<AppState> {
        AppState::build_with_warehouse(settings, |warehouse| warehouse).await
    }

    /// As `build`, with the warehouse the settings select passed through `wrap` before anything
    /// uses it (the run workers included): tests and the benchmark count its statements with
    /// `warehouse::counting::CountingWarehouse::wrap`.
    pub async fn build_with_warehouse(
        settings: Settings,
        wrap: impl FnOnce(Arc<dyn Warehouse>) -> Arc<dyn Warehouse>,
    ) -> anyhow::Result<AppState> {
        let t = std::time::Instant::now();
        let configs = Configs::load(&settings.configs_dir, &crate::processors::REGISTRY)?;
        let configs_ms = t.elapsed().as_secs_f64() * 1000.0;
        let warehouse = wrap(open_warehouse(&settings).await?);
        let warehouse_ms = t.elapsed().as_secs_f64() * 1000.0 - configs_ms;
        let kms: Arc<dyn Kms> = match settings.kms_backend {
            KmsBackend::Local => Arc::new(LocalKms::open_or_create(&settings.data_dir.join("kms.key"))?),
            KmsBackend::Gcp => {
                // Settings guarantee the name when KMS_BACKEND=gcp.
                let key_name =
                    settings.kms_key_name.as_deref().context("KMS_KEY_NAME is required when KMS_BACKEND=gcp")?;
                Arc::new(CloudKms::new(key_name, settings.kms_api_base.as_deref()).await?)
            }
        };
        let cache_ttl = Duration::from_secs(settings.cache_ttl_secs);
        let auth = Authenticator::new(settings.root_api_key.as_ref(), settings.disable_auth, cache_ttl)
            .with_failure_budget(settings.auth_failures_per_minute, settings.auth_failure_burst);
        tracing::debug!(configs_ms, warehouse_ms, total_ms = t.elapsed().as_secs_f64() * 1000.0, "state built");
        let oidc = match &settings.oidc_audience {
            Some(audience) => Some(Arc::new(OidcVerifier::new(OidcConfig {
                audience: audience.clone(),
                invokers: settings.oidc_invokers.clone(),
                jwks_url: settings.oidc_jwks_url.clone().unwrap_or_else(|| crate::auth::oidc::GOOGLE_JWKS_URL.into()),
            })?)),
            None => None,
        };
        let local_queue = (settings.queue_backend == QueueBackend::Local)
            .then(|| Arc::new(LocalRunQueue::new(settings.run_workers, settings.run_workers_per_org)));
        let queue: Arc<dyn RunQueue> = match &local_queue {
            Some(q) => q.clone(),
            // Runs are executed by the push endpoint the topic's subscription calls, not here.
            None => {
                // Settings guarantee the topic when QUEUE_BACKEND=pubsub.
                let topic =
                    settings.pubsub_topic.as_deref().context("PUBSUB_TOPIC is required when QUEUE_BACKEND=pubsub")?;
                Arc::new(PubSubRunQueue::new(topic, settings.pubsub_api_base.as_deref())?)
            }
        };
        let settings = Arc::new(settings);
        let configs = Arc::new(configs);
        let orgs = Arc::new(OrgDirectory::new(cache_ttl));
        let notifier = Notifier::new(settings.clone(), configs.clone(), warehouse.clone(), kms.clone(), orgs.clone())
            .map_err(|e| anyhow::anyhow!("notifications: {e}"))?;
        let pipelines = Pipelines {
            settings: settings.clone(),
            configs: configs.clone(),
            warehouse: warehouse.clone(),
            kms: kms.clone(),
            orgs: orgs.clone(),
            queue: queue.clone(),
            registry: &crate::processors::REGISTRY,
            notifier: Some(Arc::new(notifier)),
        };
        let state = AppState { settings, configs, warehouse, kms, auth: Arc::new(auth), orgs, queue, oidc, pipelines };
        if let Some(q) = local_queue {
            // The process owns every run of its data directory: workers execute them, runs a
            // previous process left behind are recovered, and its own scheduler ticks.
            let workers = state.pipelines.clone();
            q.start(Arc::new(move |request| {
                let workers = workers.clone();
                Box::pin(async move {
                    let (org, run_id) = (request.org_slug.as_str(), request.run_id.as_str());
                    if let Err(e) = workers.execute(org, run_id, Delivery::InProcess).await {
                        tracing::error!(org, run_id, error = %e, "run could not be recorded");
                    }
                })
            }));
            crate::pipeline::local::start(state.pipelines.clone(), chrono::Utc::now());
        }
        Ok(state)
    }

    /// Forgets every cached key and organization (after the central tables were recreated).
    pub fn clear_caches(&self) {
        self.auth.clear();
        self.orgs.clear();
    }

    /// The per-organization dataset name for this environment.
    pub fn org_dataset(&self, org_slug: &str) -> String {
        self.configs.org_dataset(org_slug, self.settings.environment)
    }

    /// A table reference in the central dataset.
    pub fn central_table(&self, table: &str) -> Result<String, crate::warehouse::WarehouseError> {
        self.warehouse.table_ref(self.configs.central_dataset(), table)
    }
}

async fn open_warehouse(settings: &Settings) -> anyhow::Result<Arc<dyn Warehouse>> {
    match settings.warehouse_backend {
        #[cfg(feature = "duckdb")]
        WarehouseBackend::DuckDb => {
            let path = settings.data_dir.join("warehouse.duckdb");
            let limit = settings.duckdb_memory_limit.as_deref();
            Ok(Arc::new(crate::warehouse::duckdb::DuckDbWarehouse::open_with_limit(&path, limit)?))
        }
        #[cfg(not(feature = "duckdb"))]
        WarehouseBackend::DuckDb => {
            anyhow::bail!("WAREHOUSE_BACKEND=duckdb needs a build with the `duckdb` feature (convergence-local has it)")
        }
        WarehouseBackend::BigQuery => {
            // Settings guarantee the project id when WAREHOUSE_BACKEND=bigquery.
            let project = settings.gcp_project_id.as_deref().context("GCP_PROJECT_ID is required for BigQuery")?;
            let warehouse = crate::warehouse::bigquery::BigQueryWarehouse::connect(
                project,
                &settings.bigquery_location,
                settings.bigquery_api_base.as_deref(),
            )
            .await?
            .with_max_response_bytes(settings.bigquery_max_response_mb << 20);
            Ok(Arc::new(warehouse))
        }
    }
}
