//! Reading an organization's billing export with its own service account: access tokens from
//! Google's token endpoint (the key's `token_uri`, JWT-bearer grant, like the integration's
//! validation), renewed before they expire, handed to a BigQuery client that runs the query jobs
//! in the service account's project.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::pipeline::StepError;
use crate::providers::gcp::{Gcp, ServiceAccountKey, DEFAULT_BIGQUERY_BASE};
use crate::providers::retry::RetryPolicy;
use crate::providers::{ProviderHttp, Validation};
use crate::warehouse::bigquery::{Authenticator, BigQueryWarehouse, ClientError, TableMetadata};

/// What the step asks Google for: running query jobs and reading the export (the service
/// account's IAM roles are what limit it: `roles/bigquery.jobUser` on its project,
/// `roles/bigquery.dataViewer` on the export's dataset).
pub const ETL_SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

/// Google's access tokens live an hour; one is renewed when less than this is left.
const RENEW_BEFORE: Duration = Duration::from_secs(10 * 60);
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The organization's service account as a BigQuery client's credentials.
#[derive(Clone)]
pub(crate) struct ServiceAccountTokens {
    key: ServiceAccountKey,
    http: ProviderHttp,
    bigquery_base: String,
    /// `GOOGLE_TOKEN_URL` (development only).
    token_url: Option<String>,
    retry: RetryPolicy,
    cached: Arc<tokio::sync::Mutex<Option<(String, Instant)>>>,
}

impl ServiceAccountTokens {
    pub fn new(
        key: ServiceAccountKey,
        http: ProviderHttp,
        bigquery_base: &str,
        token_url: Option<String>,
        retry: RetryPolicy,
    ) -> Self {
        ServiceAccountTokens {
            key,
            http,
            bigquery_base: bigquery_base.to_string(),
            token_url,
            retry,
            cached: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// A current token: the cached one, or a new one (throttling and outages retried per the
    /// step's policy; a refusal says what Google said, never the key).
    pub async fn token(&self) -> Result<String, StepError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, at)) = cached.as_ref() {
            if at.elapsed() + RENEW_BEFORE < TOKEN_LIFETIME {
                return Ok(token.clone());
            }
        }
        let gcp = Gcp { http: &self.http, bigquery_base: &self.bigquery_base, token_url: self.token_url.as_deref() };
        let mut attempt = 0;
        let token = loop {
            attempt += 1;
            match gcp.access_token(&self.key, ETL_SCOPE).await {
                Ok(token) => break token,
                Err(outcome) => {
                    let retryable = matches!(outcome, Validation::Throttled { .. } | Validation::Unreachable { .. });
                    if !retryable || attempt >= self.retry.max_attempts {
                        return Err(token_failure(outcome));
                    }
                    tokio::time::sleep(self.retry.backoff(attempt, jitter())).await;
                }
            }
        };
        *cached = Some((token.clone(), Instant::now()));
        Ok(token)
    }
}

fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    f64::from(nanos % 1000) / 1000.0
}

fn token_failure(outcome: Validation) -> StepError {
    let provider = crate::providers::gcp::NAME.to_string();
    match outcome {
        Validation::Rejected { provider_status, reason } => {
            StepError::Provider { provider, status: provider_status, message: reason }
        }
        Validation::Throttled { message, .. } => StepError::Provider { provider, status: 429, message },
        Validation::Unreachable { status, message } => StepError::Provider { provider, status, message },
        Validation::Valid { .. } => StepError::Failed("token request answered without a token".into()),
    }
}

#[async_trait]
impl Authenticator for ServiceAccountTokens {
    async fn access_token(&self) -> Result<String, ClientError> {
        // The step fetched a token before its first call, so a failure here is a renewal that
        // failed: the call fails with the reason (no key material in it).
        self.token()
            .await
            .map_err(|e| ClientError::InvalidServiceAccountAuthenticator(std::io::Error::other(e.to_string())))
    }
}

/// Where the organization's BigQuery is reached (`BIGQUERY_API_BASE` in development, else
/// Google's) and the largest answer read from it (`BIGQUERY_MAX_RESPONSE_MB`): the export is the
/// organization's data, and nothing else bounds the size of its rows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExportApi<'a> {
    pub api_base: Option<&'a str>,
    pub max_response_bytes: usize,
}

impl<'a> ExportApi<'a> {
    pub fn of(settings: &'a crate::settings::Settings) -> ExportApi<'a> {
        ExportApi {
            api_base: settings.bigquery_api_base.as_deref(),
            max_response_bytes: settings.bigquery_max_response_mb.max(1) << 20,
        }
    }
}

/// A BigQuery client acting as the organization's service account, for `location`: query jobs
/// run (and are billed) in the service account's project.
pub(crate) async fn client(
    tokens: &ServiceAccountTokens,
    api: ExportApi<'_>,
    location: &str,
) -> Result<BigQueryWarehouse, StepError> {
    let project = tokens.key.project_id.clone();
    let client = BigQueryWarehouse::connect_as(&project, location, api.api_base, Arc::new(tokens.clone()))
        .await
        .map_err(|e| StepError::Failed(format!("BigQuery client for {}: {e}", tokens.key.client_email)))?;
    Ok(client.with_max_response_bytes(api.max_response_bytes))
}

/// `tables.get` on the export as the organization's service account.
pub(crate) async fn export_metadata(
    tokens: &ServiceAccountTokens,
    api: ExportApi<'_>,
    table: &crate::providers::gcp::BillingExportTable,
) -> Result<TableMetadata, StepError> {
    let probe = client(tokens, api, "US").await?;
    probe.table_metadata(&table.project, &table.dataset, &table.table).await.map_err(|e| {
        StepError::Failed(format!(
            "{} cannot read the billing export {table} ({e}); grant it roles/bigquery.dataViewer on the export's \
             dataset and roles/bigquery.jobUser on its project",
            tokens.key.client_email
        ))
    })
}

/// The base the BigQuery calls go to: `BIGQUERY_API_BASE` or Google's.
pub(crate) fn api_base(settings: &crate::settings::Settings) -> &str {
    settings.bigquery_api_base.as_deref().unwrap_or(DEFAULT_BIGQUERY_BASE)
}
