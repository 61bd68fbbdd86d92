//! BigQuery over its v2 REST API: a dataset is a BigQuery dataset, queries are standard SQL
//! jobs with named parameters.
//!
//! - Every call goes through [`Rest`], our own HTTP client, with `gcp-bigquery-client`'s request
//!   and resource types (its models; not its API calls, which read answers whole). Every answer
//!   is read through [`read_capped_body`]: one longer than `BIGQUERY_MAX_RESPONSE_MB` fails the
//!   call, unread. A page of query results is the largest answer, and when an organization's own
//!   billing export is read ([`BigQueryWarehouse::connect_as`]) its size is theirs to choose.
//! - Rows are written with query jobs (`INSERT ... SELECT ... FROM UNNEST(@rows)`), never with
//!   streaming inserts: streamed rows sit in a buffer that DELETE and MERGE cannot touch for a
//!   while, and tables that reruns replace must be deletable at once (DESIGN §3).
//! - Every write is one statement, so it is atomic without a multi-statement transaction: an
//!   insert is one INSERT, a slice replace one `MERGE ... ON FALSE` that deletes the old slice and
//!   inserts the new rows together. (Scripts with parameters are also not supported by the
//!   emulator the tests use; see docs/bqemulator-notes.md.)
//! - A staged replace (a pipeline's window, written page by page) goes to the target's permanent
//!   staging table `{table}__staging` with those same INSERT jobs, its rows tagged with the
//!   staging's id, and moves in with one MERGE that reads that tag only; the tag's rows are then
//!   deleted. No table is created or dropped per run: BigQuery allows about 10 `tables.insert` a
//!   second per service account and 1,500 modifications per table a day (DESIGN §12).
//! - Query jobs may answer `jobComplete: false`: results are polled, and paged, to the end;
//!   `query_batches` hands each page over as it arrives.
//! - 429, 5xx and quota/rate errors are retried with exponential backoff and jitter; what is
//!   still failing after that is `Unavailable`.
//! - `BIGQUERY_API_BASE` points the calls at an emulator (with a dummy token); without it the
//!   real service is used with Application Default Credentials (google-cloud-auth).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;
pub use gcp_bigquery_client::auth::Authenticator;
pub use gcp_bigquery_client::error::BQError as ClientError;
use gcp_bigquery_client::error::ResponseError;
use gcp_bigquery_client::model::clustering::Clustering;
use gcp_bigquery_client::model::data_format_options::DataFormatOptions;
use gcp_bigquery_client::model::get_query_results_parameters::GetQueryResultsParameters;
use gcp_bigquery_client::model::get_query_results_response::GetQueryResultsResponse;
use gcp_bigquery_client::model::query_parameter::QueryParameter;
use gcp_bigquery_client::model::query_parameter_type::QueryParameterType;
use gcp_bigquery_client::model::query_parameter_type_struct_types::QueryParameterTypeStructTypes;
use gcp_bigquery_client::model::query_parameter_value::QueryParameterValue;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::query_response::QueryResponse;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_data_insert_all_request::TableDataInsertAllRequest;
use gcp_bigquery_client::model::table_data_insert_all_response::TableDataInsertAllResponse;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_list::TableList;
use gcp_bigquery_client::model::table_row::TableRow;
use gcp_bigquery_client::model::table_schema::TableSchema as BqTableSchema;
use gcp_bigquery_client::model::time_partitioning::TimePartitioning;
use reqwest::Method;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;

use super::record::{at_row, check_record};
use super::schema::Partitioning;
use super::{
    check_new_column, check_params_bound, check_rows, check_schema, format_timestamp, is_identifier, is_staging_table,
    scan_named_params, staging_table_name, to_keyed_row, Cell, DatasetOptions, Field, FieldType, Mode, Param, Params,
    Record, RecordBatches, Row, SqlPiece, Staging, TableSchema, Warehouse, WarehouseError, WarehouseResult,
};
use crate::domain::{read_capped_body, BodyError};
use crate::settings::DEFAULT_BIGQUERY_RESPONSE_MB;

/// Attempts per call before a retryable error becomes `Unavailable`.
const MAX_ATTEMPTS: u32 = 5;
/// How long one `jobs.query` / `getQueryResults` call may wait for the job server-side.
const JOB_WAIT_MS: i32 = 10_000;
/// The parameter that carries the rows of a write (a name callers' predicates will not use).
const ROWS_PARAM: &str = "convergence_rows";

#[derive(Clone)]
pub struct BigQueryWarehouse {
    project: String,
    location: String,
    rest: Rest,
}

/// The BigQuery v2 REST API over our own HTTP client: every answer is read through a size cap
/// before it is parsed, which `gcp-bigquery-client`'s calls do not do.
#[derive(Clone)]
struct Rest {
    http: reqwest::Client,
    /// `.../bigquery/v2`.
    base: String,
    identity: Identity,
    /// The largest answer read (`BIGQUERY_MAX_RESPONSE_MB`).
    max_response_bytes: usize,
}

/// Who the calls are made as.
#[derive(Clone)]
enum Identity {
    /// An emulator, which takes any token.
    Emulator,
    /// The service itself: Application Default Credentials.
    Service(google_cloud_auth::credentials::Credentials),
    /// Someone else: an organization's service account reading its billing export.
    Tokens(Arc<dyn Authenticator>),
}

/// A call that failed, before [`classify`] says what it means.
#[derive(Debug)]
enum CallError {
    /// BigQuery's own error answer.
    Response(ResponseError),
    /// An error status whose body is not BigQuery's error (a proxy, a load balancer).
    Status(u16),
    /// No answer, or one that broke off.
    Transport(reqwest::Error),
    /// An answer longer than the cap: not read.
    TooLarge { limit_bytes: usize },
    /// A success whose body is not the resource asked for (what serde found, never the body).
    Shape(String),
    /// No token to send.
    Auth(String),
}

/// BigQuery's job ids: letters, digits, `_` and `-`, at most 1,024.
fn is_job_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 1024 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A path segment as it goes into a URL: ids come from configs and from BigQuery's answers
/// (a job id), and none of them may change the path.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl Rest {
    fn new(api_base: Option<&str>, identity: Option<Identity>) -> WarehouseResult<Rest> {
        let identity = match (identity, api_base) {
            (Some(identity), _) => identity,
            (None, Some(_)) => Identity::Emulator,
            (None, None) => {
                // google-cloud-auth is built without its default TLS provider: install one
                // (already installed is fine).
                let _ = rustls::crypto::ring::default_provider().install_default();
                let credentials = google_cloud_auth::credentials::Builder::default()
                    .build()
                    .map_err(|e| WarehouseError::Unavailable(format!("BigQuery credentials: {e}")))?;
                Identity::Service(credentials)
            }
        };
        let base = match api_base {
            Some(base) => format!("{}/bigquery/v2", base.trim_end_matches('/')),
            None => "https://bigquery.googleapis.com/bigquery/v2".to_string(),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            // BigQuery never redirects these calls; following one could carry the token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| WarehouseError::Unavailable(format!("BigQuery HTTP client: {e}")))?;
        Ok(Rest { http, base, identity, max_response_bytes: DEFAULT_BIGQUERY_RESPONSE_MB << 20 })
    }

    /// The Authorization header for one call.
    async fn auth(&self) -> Result<reqwest::header::HeaderMap, CallError> {
        use google_cloud_auth::credentials::CacheableResource;
        use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
        match &self.identity {
            Identity::Emulator => {
                let mut headers = HeaderMap::new();
                headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer emulator"));
                Ok(headers)
            }
            Identity::Service(credentials) => match credentials.headers(axum::http::Extensions::new()).await {
                Ok(CacheableResource::New { data, .. }) => Ok(data),
                // Only answered to a caller that sent an entity tag; this one never does.
                Ok(CacheableResource::NotModified) => Ok(HeaderMap::new()),
                Err(e) => Err(CallError::Auth(format!("cannot get a Google access token for BigQuery: {e}"))),
            },
            Identity::Tokens(tokens) => {
                let token = tokens.access_token().await.map_err(|e| CallError::Auth(e.to_string()))?;
                let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| CallError::Auth("the access token is not a valid header value".into()))?;
                value.set_sensitive(true);
                let mut headers = HeaderMap::new();
                headers.insert(AUTHORIZATION, value);
                Ok(headers)
            }
        }
    }

    /// A request to the resource at `segments` under the v2 base (each segment escaped).
    fn request(&self, method: Method, segments: &[&str]) -> reqwest::RequestBuilder {
        let path: Vec<String> = segments.iter().map(|s| path_segment(s)).collect();
        self.http.request(method, format!("{}/{}", self.base, path.join("/")))
    }

    /// Sends `request` and parses the answer as `T`.
    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, CallError> {
        let body = self.send_raw(request).await?;
        // serde's message may quote a value of the body (rows): keep only where it broke.
        serde_json::from_slice(&body).map_err(|e| {
            CallError::Shape(format!("{:?} error at line {} column {}", e.classify(), e.line(), e.column()))
        })
    }

    /// Sends `request` with the identity's token; a success's body, read whole only when it is
    /// within the cap. BigQuery's error answers become `CallError::Response`, so `classify`
    /// applies.
    async fn send_raw(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, CallError> {
        let response = request.headers(self.auth().await?).send().await.map_err(CallError::Transport)?;
        let status = response.status();
        let mut body = Vec::new();
        match read_capped_body(response, &mut body, self.max_response_bytes).await {
            Ok(()) => {}
            Err(BodyError::Read(e)) => return Err(CallError::Transport(e)),
            Err(BodyError::TooLarge) => return Err(CallError::TooLarge { limit_bytes: self.max_response_bytes }),
        }
        if status.is_success() {
            return Ok(body);
        }
        Err(match serde_json::from_slice::<ResponseError>(&body) {
            Ok(error) => CallError::Response(error),
            Err(_) => CallError::Status(status.as_u16()),
        })
    }
}

/// The body of `datasets.insert` (the REST `Dataset` resource). With access entries, the
/// dataset's access list is the project's three special groups (what BigQuery grants by
/// default) plus the entries; the creator is owner only if listed (`DatasetOptions::access`).
fn dataset_resource(project: &str, dataset: &str, location: &str, options: &DatasetOptions) -> Value {
    let mut body = serde_json::json!({
        "datasetReference": { "projectId": project, "datasetId": dataset },
        "location": location,
    });
    if !options.description.is_empty() {
        body["description"] = Value::from(options.description.as_str());
    }
    if !options.labels.is_empty() {
        let labels: serde_json::Map<String, Value> =
            options.labels.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
        body["labels"] = Value::Object(labels);
    }
    if !options.access.is_empty() {
        let mut access = vec![
            serde_json::json!({ "role": "OWNER", "specialGroup": "projectOwners" }),
            serde_json::json!({ "role": "WRITER", "specialGroup": "projectWriters" }),
            serde_json::json!({ "role": "READER", "specialGroup": "projectReaders" }),
        ];
        access.extend(
            options.access.iter().map(|a| serde_json::json!({ "role": a.role.as_str(), "userByEmail": a.email })),
        );
        body["access"] = Value::Array(access);
    }
    body
}

/// What `tables.get` says about a table another project owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMetadata {
    /// Top-level column names, in table order.
    pub columns: Vec<String>,
    pub location: Option<String>,
    /// Partitioned by ingestion time: the `_PARTITIONTIME` pseudo-column exists.
    pub ingestion_time_partitioned: bool,
    /// Partitioned by this column instead.
    pub partition_field: Option<String>,
}

impl BigQueryWarehouse {
    /// A client for `project` in `location`; `api_base` (e.g. `http://127.0.0.1:9050`) selects an
    /// emulator, `None` the real service with Application Default Credentials.
    pub async fn connect(project: &str, location: &str, api_base: Option<&str>) -> WarehouseResult<BigQueryWarehouse> {
        if !is_project_id(project) {
            return Err(WarehouseError::Invalid(format!("{project:?} is not a valid GCP project id")));
        }
        let rest = Rest::new(api_base, None)?;
        Ok(BigQueryWarehouse { project: project.to_string(), location: location.to_string(), rest })
    }

    /// A client for `project` in `location` that authenticates with `auth` instead of the
    /// service's own credentials: an organization's service account reading its billing export
    /// (`api_base` as in [`BigQueryWarehouse::connect`]). Query jobs run, and are billed, in
    /// `project`.
    pub async fn connect_as(
        project: &str,
        location: &str,
        api_base: Option<&str>,
        auth: Arc<dyn Authenticator>,
    ) -> WarehouseResult<BigQueryWarehouse> {
        if !is_project_id(project) {
            return Err(WarehouseError::Invalid(format!("{project:?} is not a valid GCP project id")));
        }
        let rest = Rest::new(api_base, Some(Identity::Tokens(auth)))?;
        Ok(BigQueryWarehouse { project: project.to_string(), location: location.to_string(), rest })
    }

    /// The same client reading no answer longer than `bytes` (`BIGQUERY_MAX_RESPONSE_MB`; 64 MB
    /// unless set).
    pub fn with_max_response_bytes(mut self, bytes: usize) -> BigQueryWarehouse {
        self.rest.max_response_bytes = bytes.max(1);
        self
    }

    /// `tables.get` on a table of any project this client's credentials can read: its
    /// top-level columns, location and partitioning.
    pub async fn table_metadata(&self, project: &str, dataset: &str, table: &str) -> WarehouseResult<TableMetadata> {
        let found = self.get_table(project, dataset, table).await?;
        let partitioning = found.time_partitioning.as_ref();
        Ok(TableMetadata {
            columns: found.schema.fields.unwrap_or_default().into_iter().map(|f| f.name).collect(),
            location: found.location,
            ingestion_time_partitioned: partitioning.is_some_and(|p| p.field.is_none()),
            partition_field: partitioning.and_then(|p| p.field.clone()),
        })
    }

    /// `tables.get`.
    async fn get_table(&self, project: &str, dataset: &str, table: &str) -> WarehouseResult<Table> {
        let path = ["projects", project, "datasets", dataset, "tables", table];
        self.retry("tables.get", || self.rest.send(self.rest.request(Method::GET, &path))).await
    }

    /// `tables.patch` of one of this project's tables.
    async fn patch_table(&self, dataset: &str, table: &str, resource: &Table) -> WarehouseResult<()> {
        let path = ["projects", &self.project, "datasets", dataset, "tables", table];
        self.retry("tables.patch", || {
            self.rest.send::<IgnoredAny>(self.rest.request(Method::PATCH, &path).json(resource))
        })
        .await
        .map(|_| ())
    }

    /// Runs `call` until it succeeds, fails for good, or runs out of attempts.
    async fn retry<T, F, Fut>(&self, what: &str, call: F) -> WarehouseResult<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match call().await {
                Ok(value) => return Ok(value),
                Err(e) => {
                    let (error, retryable) = classify(&e, what);
                    if !retryable {
                        return Err(error);
                    }
                    if attempt >= MAX_ATTEMPTS {
                        return Err(WarehouseError::Unavailable(format!("{what}: {error} (after {attempt} attempts)")));
                    }
                    tracing::warn!(what, attempt, error = %error, "BigQuery call failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }

    fn quoted(&self, dataset: &str, table: &str) -> WarehouseResult<String> {
        for name in [dataset, table] {
            if !is_identifier(name) {
                return Err(WarehouseError::Invalid(format!("{name:?} is not a valid identifier")));
            }
        }
        Ok(format!("`{}.{dataset}.{table}`", self.project))
    }

    /// tables.insert for `schema`, its partitions expiring after `partition_expiry` when given.
    /// `Ok(false)`: it existed.
    async fn insert_table(
        &self,
        dataset: &str,
        schema: &TableSchema,
        partition_expiry: Option<Duration>,
    ) -> WarehouseResult<bool> {
        check_schema(schema)?;
        self.quoted(dataset, &schema.name)?;
        // The schema file is BigQuery's own table-schema JSON: it maps onto tables.insert as is.
        let fields: Vec<TableFieldSchema> = serde_json::to_value(&schema.fields)
            .and_then(serde_json::from_value)
            .map_err(|e| WarehouseError::Invalid(format!("table {}: {e}", schema.name)))?;
        let mut spec = Table::new(&self.project, dataset, &schema.name, BqTableSchema::new(fields))
            .location(&self.location)
            .description(&schema.description);
        if let Some(p) = &schema.partitioning {
            let mut partitioning = TimePartitioning::new(p.kind.clone()).field(&p.field);
            partitioning.expiration_ms = partition_expiry.map(|d| d.as_millis().to_string());
            spec = spec.time_partitioning(partitioning);
        }
        if !schema.clustering.is_empty() {
            spec = spec.clustering(Clustering { fields: Some(schema.clustering.clone()) });
        }
        let path = ["projects", &self.project, "datasets", dataset, "tables"];
        match self
            .retry("tables.insert", || self.rest.send::<IgnoredAny>(self.rest.request(Method::POST, &path).json(&spec)))
            .await
        {
            Ok(_) => Ok(true),
            Err(WarehouseError::AlreadyExists(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The permanent staging table of the table `schema` describes, created when missing and
    /// given the columns it lacks (the table gained some since). Two stagings creating it at
    /// once is fine: the loser's `tables.insert` answers "already exists".
    async fn ensure_staging_table(&self, dataset: &str, schema: &TableSchema) -> WarehouseResult<TableSchema> {
        let staging = staging_schema(schema)?;
        match self.get_table(&self.project, dataset, &staging.name).await {
            Ok(found) => {
                let present: Vec<String> =
                    found.schema.fields.unwrap_or_default().into_iter().map(|f| f.name).collect();
                for field in &staging.fields {
                    if !present.contains(&field.name) {
                        self.add_column(dataset, &staging.name, field).await?;
                    }
                }
            }
            Err(WarehouseError::NotFound(_)) => {
                self.insert_table(dataset, &staging, Some(STAGING_PARTITION_EXPIRY)).await?;
            }
            Err(e) => return Err(e),
        }
        Ok(staging)
    }

    /// Tables and views of a dataset with their kind (`TABLE`, `VIEW`, …), every page.
    async fn list_with_kinds(&self, dataset: &str) -> WarehouseResult<Vec<(String, String)>> {
        self.quoted(dataset, "t")?;
        let path = ["projects", &self.project, "datasets", dataset, "tables"];
        let mut names = Vec::new();
        let mut page_token: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        loop {
            let request = || {
                let request = self.rest.request(Method::GET, &path).query(&[("maxResults", "1000")]);
                match &page_token {
                    Some(token) => request.query(&[("pageToken", token)]),
                    None => request,
                }
            };
            let page: TableList = self.retry("tables.list", || self.rest.send(request())).await?;
            names.extend(
                page.tables
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| (t.table_reference.table_id, t.r#type.unwrap_or_default())),
            );
            page_token = page.next_page_token;
            match &page_token {
                None => break,
                // A token seen before: the listing loops, and would otherwise never end.
                Some(token) if !seen.insert(token.clone()) => {
                    return Err(WarehouseError::Backend(format!(
                        "BigQuery sent the page token of dataset {dataset}'s table list again: its paging loops"
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(names)
    }

    /// Runs a query job to completion and returns its schema and every row.
    async fn run_query(&self, sql: &str, params: Vec<QueryParameter>) -> WarehouseResult<QueryOutcome> {
        let mut pager = QueryPager::start(self, sql, params, None).await?;
        let mut outcome = QueryOutcome { fields: Vec::new(), rows: Vec::new(), affected: None };
        while let Some(page) = pager.next_page(self).await? {
            if outcome.fields.is_empty() {
                outcome.fields = page.fields;
            }
            outcome.affected = outcome.affected.or(page.affected);
            outcome.rows.extend(page.rows);
        }
        Ok(outcome)
    }

    /// The rows as one `ARRAY<STRUCT<...>>` parameter, and the SELECT list that reads them back
    /// from `UNNEST(@convergence_rows) AS r`, each column aliased `prefix + name`.
    ///
    /// BYTES columns travel as base64 STRING fields decoded with `FROM_BASE64`: the REST API
    /// takes base64 for BYTES parameters, but the emulator does not decode it, and this form
    /// means the same on both.
    /// `extra` items are added to the SELECT list as they are.
    fn rows_source(
        &self,
        schema: &TableSchema,
        rows: &[Row],
        prefix: &str,
        extra: &[&str],
    ) -> WarehouseResult<(String, QueryParameter)> {
        let select: Vec<String> = schema
            .fields
            .iter()
            .map(|f| match (f.field_type, f.mode) {
                (FieldType::Bytes, Mode::Nullable | Mode::Required) => {
                    format!("FROM_BASE64(r.{n}) AS {prefix}{n}", n = f.name)
                }
                (FieldType::Record, Mode::Nullable) => {
                    format!("IF(r.{NULL_FLAG}{n}, NULL, r.{n}) AS {prefix}{n}", n = f.name)
                }
                _ => format!("r.{n} AS {prefix}{n}", n = f.name),
            })
            .chain(extra.iter().map(|item| item.to_string()))
            .collect();
        let element_type = QueryParameterType {
            r#type: "STRUCT".to_string(),
            array_type: None,
            struct_types: Some(
                schema
                    .fields
                    .iter()
                    .map(|f| QueryParameterTypeStructTypes {
                        name: Some(f.name.clone()),
                        r#type: Some(if f.field_type == FieldType::Bytes && f.mode != Mode::Repeated {
                            QueryParameterType { r#type: "STRING".into(), array_type: None, struct_types: None }
                        } else {
                            field_param_type(f)
                        }),
                        description: None,
                    })
                    .chain(nullable_records(schema).map(|f| QueryParameterTypeStructTypes {
                        name: Some(format!("{NULL_FLAG}{}", f.name)),
                        r#type: Some(QueryParameterType {
                            r#type: "BOOL".into(),
                            array_type: None,
                            struct_types: None,
                        }),
                        description: None,
                    }))
                    .collect(),
            ),
        };
        let values = rows
            .iter()
            .map(|row| {
                let mut fields = HashMap::new();
                for f in &schema.fields {
                    fields.insert(f.name.clone(), field_param_value(f, row.get(&f.name))?);
                }
                for f in nullable_records(schema) {
                    let is_null = row.get(&f.name).is_none_or(Value::is_null);
                    fields.insert(
                        format!("{NULL_FLAG}{}", f.name),
                        QueryParameterValue {
                            value: Some(is_null.to_string()),
                            array_values: None,
                            struct_values: None,
                        },
                    );
                }
                Ok(QueryParameterValue { value: None, array_values: None, struct_values: Some(fields) })
            })
            .collect::<WarehouseResult<Vec<_>>>()?;
        let param = QueryParameter {
            name: Some(ROWS_PARAM.to_string()),
            parameter_type: Some(QueryParameterType {
                r#type: "ARRAY".to_string(),
                array_type: Some(Box::new(element_type)),
                struct_types: None,
            }),
            parameter_value: Some(QueryParameterValue { value: None, array_values: Some(values), struct_values: None }),
        };
        Ok((format!("SELECT {} FROM UNNEST(@{ROWS_PARAM}) AS r", select.join(", ")), param))
    }
}

/// Prefix of the flag that says a NULLABLE RECORD cell is NULL: a STRUCT parameter value cannot
/// say "NULL" unambiguously (the emulator reads an empty one as a struct of NULLs).
const NULL_FLAG: &str = "convergence_null_";

fn nullable_records(schema: &TableSchema) -> impl Iterator<Item = &Field> {
    schema.fields.iter().filter(|f| f.field_type == FieldType::Record && f.mode == Mode::Nullable)
}

struct QueryOutcome {
    fields: Vec<TableFieldSchema>,
    rows: Vec<TableRow>,
    affected: Option<u64>,
}

impl QueryOutcome {
    /// The rows as records: each cell decoded to the canonical form, then typed by the column.
    fn into_records(self) -> WarehouseResult<Vec<Record>> {
        let kinds: Vec<(FieldType, Mode)> = self.fields.iter().map(field_kind).collect();
        self.rows
            .into_iter()
            .map(|row| {
                let cells = row.columns.unwrap_or_default();
                let mut out = Vec::with_capacity(self.fields.len());
                for ((field, (ty, mode)), cell) in self.fields.iter().zip(&kinds).zip(cells) {
                    let value = decode_cell(field, cell.value.unwrap_or(Value::Null))?;
                    out.push(
                        Cell::from_json(*ty, *mode, &value)
                            .map_err(|e| WarehouseError::Backend(format!("column {}: {e}", field.name)))?,
                    );
                }
                Ok(out)
            })
            .collect()
    }

    fn into_rows(self) -> WarehouseResult<Vec<Row>> {
        self.rows
            .into_iter()
            .map(|row| {
                let cells = row.columns.unwrap_or_default();
                let mut out = Row::new();
                for (field, cell) in self.fields.iter().zip(cells) {
                    out.insert(field.name.clone(), decode_cell(field, cell.value.unwrap_or(Value::Null))?);
                }
                Ok(out)
            })
            .collect()
    }
}

/// A query job read page by page: `jobs.query`, then `getQueryResults` while the job runs and
/// for every further page.
struct QueryPager {
    /// The first page, when `jobs.query` already had it.
    pending: Option<QueryOutcome>,
    job_id: Option<String>,
    complete: bool,
    page_token: Option<String>,
    /// Every page token followed so far: one sent again means the paging loops (a token
    /// repeated, or a cycle through several), which would otherwise read the same rows forever.
    seen_tokens: std::collections::HashSet<String>,
    fields: Vec<TableFieldSchema>,
    max_results: Option<u32>,
}

impl QueryPager {
    async fn start(
        wh: &BigQueryWarehouse,
        sql: &str,
        params: Vec<QueryParameter>,
        max_results: Option<u32>,
    ) -> WarehouseResult<QueryPager> {
        let mut request = QueryRequest::new(sql);
        request.use_legacy_sql = false;
        request.parameter_mode = Some("NAMED".to_string());
        request.query_parameters = Some(params);
        request.location = Some(wh.location.clone());
        request.timeout_ms = Some(JOB_WAIT_MS);
        request.max_results = max_results.map(|n| n.min(i32::MAX as u32) as i32);
        request.format_options = Some(DataFormatOptions { use_int64_timestamp: Some(true) });
        // One id for every attempt of this statement: a retry after a lost answer (a timeout, a
        // 5xx after the job started) is then the same request to BigQuery, which runs a mutating
        // statement once within 15 minutes, so a retried INSERT or MERGE never writes twice.
        request.request_id = Some(uuid::Uuid::new_v4().to_string());
        let path = ["projects", wh.project.as_str(), "queries"];
        let first: QueryResponse =
            wh.retry("jobs.query", || wh.rest.send(wh.rest.request(Method::POST, &path).json(&request))).await?;
        if let Some(error) = job_error(first.errors.as_deref()) {
            return Err(error);
        }
        let job_id = first.job_reference.and_then(|r| r.job_id);
        // It goes into the next calls' path: a job id is letters, digits, `_` and `-`.
        if job_id.as_deref().is_some_and(|id| !is_job_id(id)) {
            return Err(WarehouseError::Backend("BigQuery jobs.query answered a job id that is not one".into()));
        }
        let complete = first.job_complete.unwrap_or(true);
        let fields = first.schema.and_then(|s| s.fields).unwrap_or_default();
        let mut pager = QueryPager {
            pending: complete.then(|| QueryOutcome {
                fields: fields.clone(),
                rows: first.rows.unwrap_or_default(),
                affected: first.num_dml_affected_rows.and_then(|n| n.parse().ok()),
            }),
            job_id,
            complete,
            page_token: None,
            seen_tokens: Default::default(),
            fields,
            max_results,
        };
        pager.follow(first.page_token)?;
        Ok(pager)
    }

    /// Takes `token` as the next page's, refusing one followed before.
    fn follow(&mut self, token: Option<String>) -> WarehouseResult<()> {
        if let Some(token) = &token {
            if !self.seen_tokens.insert(token.clone()) {
                let shown: String = token.chars().take(40).collect();
                return Err(WarehouseError::Backend(format!(
                    "BigQuery sent the page token {shown:?} of job {} again after {} page(s): its paging loops",
                    self.job_id.as_deref().unwrap_or("?"),
                    self.seen_tokens.len()
                )));
            }
        }
        self.page_token = token;
        Ok(())
    }

    /// The next page of rows, `None` after the last.
    async fn next_page(&mut self, wh: &BigQueryWarehouse) -> WarehouseResult<Option<QueryOutcome>> {
        if let Some(first) = self.pending.take() {
            return Ok(Some(first));
        }
        loop {
            if self.complete && self.page_token.is_none() {
                return Ok(None);
            }
            let Some(job_id) = self.job_id.as_deref() else {
                return Err(WarehouseError::Backend("query job has no id to poll".into()));
            };
            let parameters = GetQueryResultsParameters {
                // Not `formatOptions`: these go as a URL query, which cannot carry a nested
                // object (the request fails to build). Timestamps then come back as float
                // seconds, which `decode_timestamp` reads exactly.
                format_options: None,
                location: Some(wh.location.clone()),
                max_results: self.max_results.map(|n| n.min(i32::MAX as u32) as i32),
                page_token: if self.complete { self.page_token.clone() } else { None },
                start_index: None,
                timeout_ms: Some(JOB_WAIT_MS),
            };
            let path = ["projects", wh.project.as_str(), "queries", job_id];
            let page: GetQueryResultsResponse = wh
                .retry("jobs.getQueryResults", || wh.rest.send(wh.rest.request(Method::GET, &path).query(&parameters)))
                .await?;
            if let Some(error) = job_error(page.errors.as_deref()) {
                return Err(error);
            }
            if !page.job_complete.unwrap_or(true) {
                // Still running: the call above already waited server-side; ask again.
                continue;
            }
            // The first complete answer carries the first page (and the schema).
            self.complete = true;
            if let Some(fields) = page.schema.and_then(|s| s.fields) {
                self.fields = fields;
            }
            self.follow(page.page_token)?;
            return Ok(Some(QueryOutcome {
                fields: self.fields.clone(),
                rows: page.rows.unwrap_or_default(),
                affected: page.num_dml_affected_rows.and_then(|n| n.parse().ok()),
            }));
        }
    }
}

/// Column of a staging table naming the staging that wrote the row.
const STAGING_ID_COLUMN: &str = "convergence_staging_id";
/// Column of a staging table saying when the row was staged: the partitioning column, whose
/// partitions expire (see [`STAGING_PARTITION_EXPIRY`]).
const STAGED_AT_COLUMN: &str = "convergence_staged_at";
/// The parameter that carries a staging's id.
const STAGING_ID_PARAM: &str = "convergence_staging_id";

/// How long a day's partition of a staging table is kept after the day began: its rows live
/// between one and two days. Rows of a staging that never finished (its process was killed
/// between append and cleanup) go away this way, at no cost: no statement, no table
/// modification. A cleanup statement ("delete tags older than a day") was the alternative, but
/// it is one more mutating DML per run on a table that runs two of those at once (DESIGN §12).
/// One day is far longer than any run (Cloud Run ends a request within an hour), so a live
/// staging never loses rows; until they expire, leftovers are only ever read through their own
/// tag, which nothing else uses.
const STAGING_PARTITION_EXPIRY: Duration = Duration::from_secs(2 * 24 * 3600);

/// The permanent staging table of a table: the same columns, REQUIRED relaxed to NULLABLE (so a
/// column the table gains can be added to a staging table that has rows; records are checked
/// against the table's schema before they are staged, and the MERGE into the table enforces
/// REQUIRED again), plus the staging id and time; partitioned by day of staging, clustered by
/// staging id, so reading or deleting one staging's rows touches little else.
fn staging_schema(schema: &TableSchema) -> WarehouseResult<TableSchema> {
    let name = staging_table_name(&schema.name);
    if !is_identifier(&name) || is_staging_table(&schema.name) {
        return Err(WarehouseError::Invalid(format!(
            "table {} cannot be staged: its name is too long or reserved",
            schema.name
        )));
    }
    if let Some(f) = schema.fields.iter().find(|f| f.name == STAGING_ID_COLUMN || f.name == STAGED_AT_COLUMN) {
        return Err(WarehouseError::Invalid(format!("column {} of {} is reserved for staging", f.name, schema.name)));
    }
    let meta = |name: &str, field_type: FieldType, description: &str| Field {
        name: name.to_string(),
        field_type,
        mode: Mode::Required,
        description: description.to_string(),
        fields: Vec::new(),
    };
    let fields = schema
        .fields
        .iter()
        .map(|f| Field { mode: if f.mode == Mode::Required { Mode::Nullable } else { f.mode }, ..f.clone() })
        .chain([
            meta(STAGING_ID_COLUMN, FieldType::String, "The staging that wrote the row."),
            meta(STAGED_AT_COLUMN, FieldType::Timestamp, "When the row was staged; old partitions expire."),
        ])
        .collect();
    Ok(TableSchema {
        name,
        description: format!(
            "Rows staged for replaces of {}, tagged by staging; a staging's rows are deleted when it ends.",
            schema.name
        ),
        partitioning: Some(Partitioning { kind: "DAY".into(), field: STAGED_AT_COLUMN.into() }),
        clustering: vec![STAGING_ID_COLUMN.to_string()],
        fields,
    })
}

/// A staged replace: rows go into the target's permanent staging table, `{table}__staging`,
/// tagged with this staging's id, with the same INSERT jobs as `insert_rows` (not `insertAll`:
/// streamed rows cannot be deleted for about 30 minutes; not load jobs: each counts against the
/// 1,500 modifications a table may have a day, which DML does not). Commit is one MERGE that
/// deletes the slice and inserts the rows of this tag only, so stagings of one table can run at
/// once; then the tag's rows are deleted.
///
/// Appended rows are buffered up to [`STAGE_FLUSH_BYTES`] and go out as one INSERT: callers
/// append small batches (500 rows), and BigQuery allows 25 DML statements per table per 10 s
/// (DESIGN §12), which a window's worth of small INSERTs into one staging table would queue on.
struct BigQueryStaging {
    warehouse: BigQueryWarehouse,
    dataset: String,
    schema: TableSchema,
    staging: TableSchema,
    /// This staging's tag on its rows in the staging table.
    id: String,
    /// The slice the MERGE replaces.
    predicate: String,
    params: Params,
    /// Rows appended but not yet written, and their estimated size in the request.
    pending: Vec<Row>,
    pending_bytes: usize,
    /// Rows appended (written or pending).
    staged: u64,
    /// Whether rows may be in the staging table (an INSERT was sent, whatever it answered): the
    /// staging's rows must then be deleted when it ends.
    wrote: bool,
    /// Whether rows came from `append_select`, unchecked: the commit checks REQUIRED columns.
    selected: bool,
    /// Committed or discarded: nothing left to clean up.
    finished: bool,
}

/// Estimated request bytes of buffered rows that make an INSERT: a few MB, well under the 10 MB
/// a BigQuery API request may have, and a few thousand typical rows.
const STAGE_FLUSH_BYTES: usize = 2 * 1024 * 1024;

/// The rough size of a value as a query parameter value (each cell also carries its column name
/// and some JSON around it).
fn param_size(value: &Value) -> usize {
    const CELL: usize = 24;
    match value {
        Value::String(s) => s.len() + CELL,
        Value::Array(items) => items.iter().map(param_size).sum::<usize>() + CELL,
        Value::Object(fields) => fields.iter().map(|(k, v)| k.len() + param_size(v)).sum::<usize>() + CELL,
        _ => 32,
    }
}

impl BigQueryStaging {
    /// Refuses a commit while rows from `append_select` lack a REQUIRED value (the staging table
    /// relaxes REQUIRED; real BigQuery's MERGE would refuse them too, but not every BigQuery-API
    /// warehouse does, and this names the column). One query over this staging's rows only.
    async fn check_required(&self) -> WarehouseResult<()> {
        let required: Vec<&str> =
            self.schema.fields.iter().filter(|f| f.mode == Mode::Required).map(|f| f.name.as_str()).collect();
        if required.is_empty() {
            return Ok(());
        }
        let counts: Vec<String> =
            required.iter().map(|c| format!("SUM(CASE WHEN {c} IS NULL THEN 1 ELSE 0 END) AS {c}")).collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {STAGING_ID_COLUMN} = @{STAGING_ID_PARAM}",
            counts.join(", "),
            self.warehouse.quoted(&self.dataset, &self.staging.name)?
        );
        let rows = self.warehouse.run_query(&sql, vec![self.id_param()]).await?.into_rows()?;
        let Some(row) = rows.first() else { return Ok(()) };
        for column in required {
            let missing = row.get(column).and_then(Value::as_u64).unwrap_or(0);
            if missing > 0 {
                return Err(WarehouseError::Invalid(format!(
                    "{missing} staged row(s) of {} have no value in the REQUIRED column {column}",
                    self.schema.name
                )));
            }
        }
        Ok(())
    }

    fn id_param(&self) -> QueryParameter {
        query_parameter(STAGING_ID_PARAM, &Param::String(self.id.clone()))
    }

    /// Writes the buffered rows to the staging table with one INSERT job.
    async fn flush(&mut self) -> WarehouseResult<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let tag = format!("@{STAGING_ID_PARAM} AS {STAGING_ID_COLUMN}");
        let staged_at = format!("CURRENT_TIMESTAMP() AS {STAGED_AT_COLUMN}");
        let (source, rows_param) = self.warehouse.rows_source(&self.schema, &rows, "", &[&tag, &staged_at])?;
        let columns: Vec<&str> = self.schema.fields.iter().map(|f| f.name.as_str()).collect();
        let sql = format!(
            "INSERT INTO {} ({}, {STAGING_ID_COLUMN}, {STAGED_AT_COLUMN}) {source}",
            self.warehouse.quoted(&self.dataset, &self.staging.name)?,
            columns.join(", ")
        );
        // Marked before the answer: a failed INSERT may still have landed, and the cleanup must
        // then run.
        self.wrote = true;
        self.warehouse.run_query(&sql, vec![rows_param, self.id_param()]).await?;
        Ok(())
    }
}

/// Deletes a staging's rows from the staging table.
async fn delete_staged(
    warehouse: &BigQueryWarehouse,
    dataset: &str,
    staging_table: &str,
    id: QueryParameter,
) -> WarehouseResult<()> {
    let sql = format!(
        "DELETE FROM {} WHERE {STAGING_ID_COLUMN} = @{STAGING_ID_PARAM}",
        warehouse.quoted(dataset, staging_table)?
    );
    warehouse.run_query(&sql, vec![id]).await.map(|_| ())
}

#[async_trait]
impl Staging for BigQueryStaging {
    async fn append(&mut self, records: Vec<Record>) -> WarehouseResult<u64> {
        // Every record is checked before any is taken: a refused batch adds nothing.
        let mut rows = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            check_record(&self.schema, record).map_err(|e| at_row(i, e))?;
            rows.push(to_keyed_row(&self.schema, record));
        }
        let appended = rows.len() as u64;
        for row in rows {
            self.pending_bytes += row.iter().map(|(k, v)| k.len() + param_size(v)).sum::<usize>();
            self.pending.push(row);
        }
        self.staged += appended;
        if self.pending_bytes >= STAGE_FLUSH_BYTES {
            self.flush().await?;
        }
        Ok(appended)
    }

    async fn append_select(&mut self, select_sql: &str, params: &Params) -> WarehouseResult<u64> {
        check_params_bound(select_sql, params)?;
        if params.get(STAGING_ID_PARAM).is_some() {
            return Err(WarehouseError::Invalid(format!("@{STAGING_ID_PARAM} is reserved for the staging")));
        }
        // Buffered rows first, so the staging table holds rows in the order they were appended.
        self.flush().await?;
        let columns = self.schema.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "INSERT INTO {} ({columns}, {STAGING_ID_COLUMN}, {STAGED_AT_COLUMN}) \
             SELECT {columns}, @{STAGING_ID_PARAM}, CURRENT_TIMESTAMP() FROM ({select_sql})",
            self.warehouse.quoted(&self.dataset, &self.staging.name)?
        );
        let sql = decode_bytes_params(&sql, params)?;
        let mut all = query_parameters(params);
        all.push(self.id_param());
        self.wrote = true;
        self.selected = true;
        let inserted = self.warehouse.run_query(&sql, all).await?.affected.unwrap_or(0);
        self.staged += inserted;
        Ok(inserted)
    }

    fn staged(&self) -> u64 {
        self.staged
    }

    async fn commit(mut self: Box<Self>) -> WarehouseResult<(u64, u64)> {
        self.flush().await?;
        if self.selected {
            self.check_required().await?;
        }
        let source = self.schema.fields.iter().map(|f| format!("{n} AS {MERGE_SOURCE_PREFIX}{n}", n = f.name));
        let source = format!(
            "SELECT {} FROM {} WHERE {STAGING_ID_COLUMN} = @{STAGING_ID_PARAM}",
            source.collect::<Vec<_>>().join(", "),
            self.warehouse.quoted(&self.dataset, &self.staging.name)?
        );
        let sql = merge_replace_sql(
            &self.warehouse.quoted(&self.dataset, &self.schema.name)?,
            &self.schema,
            &source,
            &self.predicate,
        );
        let sql = decode_bytes_params(&sql, &self.params)?;
        let mut params = query_parameters(&self.params);
        params.push(self.id_param());
        let affected = self.warehouse.run_query(&sql, params).await?.affected.unwrap_or(0);
        self.finished = true;
        // The replace is done: a failed cleanup only leaves rows no one reads, which expire.
        if !self.wrote {
            return Ok((affected, 0));
        }
        if let Err(e) = delete_staged(&self.warehouse, &self.dataset, &self.staging.name, self.id_param()).await {
            tracing::warn!(dataset = self.dataset, table = self.staging.name, error = %e, "could not delete committed staged rows; they expire within two days");
        }
        Ok((affected.saturating_sub(self.staged), self.staged))
    }

    async fn discard(mut self: Box<Self>) -> WarehouseResult<()> {
        self.finished = true;
        if !self.wrote {
            return Ok(());
        }
        delete_staged(&self.warehouse, &self.dataset, &self.staging.name, self.id_param()).await
    }
}

impl Drop for BigQueryStaging {
    fn drop(&mut self) {
        if self.finished || !self.wrote {
            return;
        }
        // Not committed (an error or a panic on the way): delete the staged rows in the
        // background; partition expiry covers a process that is gone before this runs.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (warehouse, dataset, table, id) =
                (self.warehouse.clone(), self.dataset.clone(), self.staging.name.clone(), self.id_param());
            runtime.spawn(async move {
                if let Err(e) = delete_staged(&warehouse, &dataset, &table, id).await {
                    tracing::warn!(dataset, table, error = %e, "could not delete abandoned staged rows; they expire within two days");
                }
            });
        }
    }
}

/// Prefix of the MERGE source's columns: renamed so that the caller's predicate, written over
/// the table's column names, can only mean the target's columns.
const MERGE_SOURCE_PREFIX: &str = "convergence_src_";

/// One `MERGE … ON FALSE` that deletes the target's rows matching `predicate` and inserts every
/// row of `source` (whose columns are the table's, prefixed with `MERGE_SOURCE_PREFIX`).
fn merge_replace_sql(target: &str, schema: &TableSchema, source: &str, predicate: &str) -> String {
    let columns: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
    format!(
        "MERGE {target} AS convergence_target USING ({source}) AS convergence_source ON FALSE \
         WHEN NOT MATCHED BY SOURCE AND ({predicate}) THEN DELETE \
         WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({values})",
        cols = columns.join(", "),
        values = columns.iter().map(|c| format!("{MERGE_SOURCE_PREFIX}{c}")).collect::<Vec<_>>().join(", "),
    )
}

pub use crate::domain::is_project_id;

fn backoff(attempt: u32) -> Duration {
    let base = 200u64 << attempt.min(6);
    // Jitter from the clock's low bits: enough to spread retries of concurrent callers.
    let jitter = u64::from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos(),
    ) % base;
    Duration::from_millis(base / 2 + jitter / 2)
}

/// `bytes` as a person reads it: whole MB when it is (the setting is in MB), else bytes.
fn size_text(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// Maps a failed call (`what`, e.g. `jobs.getQueryResults`) to a warehouse error, and says
/// whether trying again may help.
fn classify(e: &CallError, what: &str) -> (WarehouseError, bool) {
    match e {
        CallError::Response(error) => {
            let nested = &error.error;
            let reasons: Vec<&str> = nested.errors.iter().filter_map(|e| e.get("reason").map(String::as_str)).collect();
            let message = nested.message.clone();
            let rate_limited =
                reasons.iter().any(|r| matches!(*r, "rateLimitExceeded" | "backendError" | "internalError"))
                    || (nested.code == 403 && reasons.contains(&"quotaExceeded"));
            match nested.code {
                429 | 500 | 502 | 503 | 504 => (WarehouseError::Unavailable(message), true),
                _ if rate_limited => (WarehouseError::Unavailable(message), true),
                404 => (WarehouseError::NotFound(message), false),
                409 => (WarehouseError::AlreadyExists(message), false),
                400 => (WarehouseError::Invalid(message), false),
                code => (WarehouseError::Backend(format!("BigQuery answered {code}: {message}")), false),
            }
        }
        CallError::Status(status) => {
            let message = format!("BigQuery {what} answered HTTP {status}");
            match status {
                404 => (WarehouseError::NotFound(message), false),
                409 => (WarehouseError::AlreadyExists(message), false),
                429 | 500..=599 => (WarehouseError::Unavailable(message), true),
                _ => (WarehouseError::Backend(message), false),
            }
        }
        CallError::Transport(r) if r.is_connect() || r.is_timeout() => {
            (WarehouseError::Unavailable(format!("BigQuery unreachable: {r}")), true)
        }
        CallError::Transport(r) => (WarehouseError::Backend(format!("BigQuery {what} failed: {r}")), false),
        // Not retried: the same answer would be as large again.
        CallError::TooLarge { limit_bytes } => (
            WarehouseError::Backend(format!(
                "BigQuery {what} answered more than {} (BIGQUERY_MAX_RESPONSE_MB); the answer was not read",
                size_text(*limit_bytes)
            )),
            false,
        ),
        CallError::Shape(found) => (
            WarehouseError::Backend(format!("BigQuery {what} answered with a body of the wrong shape ({found})")),
            false,
        ),
        // The identity already retried getting its token (an organization's key's renewals are
        // retried per the step's policy).
        CallError::Auth(message) => (WarehouseError::Unavailable(format!("BigQuery {what}: {message}")), false),
    }
}

/// A failed job reported inside a 200 answer (`errors` in the body).
fn job_error(errors: Option<&[gcp_bigquery_client::model::error_proto::ErrorProto]>) -> Option<WarehouseError> {
    let first = errors?.first()?;
    let message = first.message.clone().unwrap_or_else(|| "query failed".into());
    Some(match first.reason.as_deref() {
        Some("notFound") => WarehouseError::NotFound(message),
        Some("duplicate") => WarehouseError::AlreadyExists(message),
        Some("rateLimitExceeded" | "backendError" | "internalError" | "quotaExceeded") => {
            WarehouseError::Unavailable(message)
        }
        _ => WarehouseError::Invalid(message),
    })
}

/// The BigQuery type name of a scalar schema type.
fn type_name(t: FieldType) -> &'static str {
    match t {
        FieldType::String => "STRING",
        FieldType::Bytes => "BYTES",
        FieldType::Int64 => "INT64",
        FieldType::Float64 => "FLOAT64",
        FieldType::Numeric => "NUMERIC",
        FieldType::Bool => "BOOL",
        FieldType::Timestamp => "TIMESTAMP",
        FieldType::Date => "DATE",
        FieldType::Json => "JSON",
        FieldType::Record => "STRUCT",
    }
}

/// The DDL type of a field (`ARRAY<STRUCT<a INT64>>` …), for ALTER TABLE.
fn ddl_type(field: &Field) -> String {
    let base = match field.field_type {
        FieldType::Record => format!(
            "STRUCT<{}>",
            field.fields.iter().map(|f| format!("{} {}", f.name, ddl_type(f))).collect::<Vec<_>>().join(", ")
        ),
        t => type_name(t).to_string(),
    };
    if field.mode == Mode::Repeated {
        format!("ARRAY<{base}>")
    } else {
        base
    }
}

/// The parameter type of a column (arrays and structs included).
fn field_param_type(field: &Field) -> QueryParameterType {
    let scalar = if field.field_type == FieldType::Record {
        QueryParameterType {
            r#type: "STRUCT".to_string(),
            array_type: None,
            struct_types: Some(
                field
                    .fields
                    .iter()
                    .map(|f| QueryParameterTypeStructTypes {
                        name: Some(f.name.clone()),
                        r#type: Some(field_param_type(f)),
                        description: None,
                    })
                    .collect(),
            ),
        }
    } else {
        QueryParameterType { r#type: type_name(field.field_type).to_string(), array_type: None, struct_types: None }
    };
    if field.mode == Mode::Repeated {
        QueryParameterType { r#type: "ARRAY".to_string(), array_type: Some(Box::new(scalar)), struct_types: None }
    } else {
        scalar
    }
}

/// A row value (canonical JSON) as the parameter value of its column.
fn field_param_value(field: &Field, value: Option<&Value>) -> WarehouseResult<QueryParameterValue> {
    let invalid = || {
        WarehouseError::Invalid(format!(
            "column {:?}: value {} does not fit its type",
            field.name,
            value.unwrap_or(&Value::Null)
        ))
    };
    let null = QueryParameterValue { value: None, array_values: None, struct_values: None };
    let value = match value {
        None | Some(Value::Null) if field.mode == Mode::Repeated => {
            return Ok(QueryParameterValue { value: None, array_values: Some(Vec::new()), struct_values: None })
        }
        None | Some(Value::Null) => return Ok(null),
        Some(v) => v,
    };
    if field.mode == Mode::Repeated {
        let items = value.as_array().ok_or_else(invalid)?;
        let element = Field { mode: Mode::Nullable, ..field.clone() };
        let values =
            items.iter().map(|item| field_param_value(&element, Some(item))).collect::<WarehouseResult<Vec<_>>>()?;
        return Ok(QueryParameterValue { value: None, array_values: Some(values), struct_values: None });
    }
    if field.field_type == FieldType::Record {
        let object = value.as_object().ok_or_else(invalid)?;
        if let Some(unknown) = object.keys().find(|k| !field.fields.iter().any(|f| &f.name == *k)) {
            return Err(WarehouseError::Invalid(format!("column {:?} has no sub-field {unknown:?}", field.name)));
        }
        let mut fields = HashMap::new();
        for f in &field.fields {
            fields.insert(f.name.clone(), field_param_value(f, object.get(&f.name))?);
        }
        return Ok(QueryParameterValue { value: None, array_values: None, struct_values: Some(fields) });
    }
    let text = match (field.field_type, value) {
        (FieldType::Json, Value::String(s)) => s.clone(),
        (FieldType::Json, other) => other.to_string(),
        (FieldType::Bool, Value::Bool(b)) => b.to_string(),
        (FieldType::Int64, Value::Number(n)) if n.is_i64() => n.to_string(),
        (FieldType::Float64 | FieldType::Numeric, Value::Number(n)) => n.to_string(),
        (FieldType::Timestamp, Value::String(s)) => normalize_timestamp(s).ok_or_else(invalid)?,
        (
            FieldType::String
            | FieldType::Bytes
            | FieldType::Numeric
            | FieldType::Date
            | FieldType::Int64
            | FieldType::Float64,
            Value::String(s),
        ) => s.clone(),
        _ => return Err(invalid()),
    };
    Ok(QueryParameterValue { value: Some(text), array_values: None, struct_values: None })
}

/// RFC 3339 (any offset) → BigQuery's canonical `YYYY-MM-DD HH:MM:SS.ffffff+00:00`.
fn normalize_timestamp(text: &str) -> Option<String> {
    let parsed = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&chrono::Utc);
    Some(parsed.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string())
}

/// A typed parameter as BigQuery wants it.
fn query_parameter(name: &str, param: &Param) -> QueryParameter {
    let scalar = |t: &str, v: Option<String>| QueryParameter {
        name: Some(name.to_string()),
        parameter_type: Some(QueryParameterType { r#type: t.to_string(), array_type: None, struct_types: None }),
        parameter_value: Some(QueryParameterValue { value: v, array_values: None, struct_values: None }),
    };
    use base64::Engine;
    match param {
        Param::Null(t) => scalar(type_name(*t), None),
        Param::String(s) => scalar("STRING", Some(s.clone())),
        Param::Int64(i) => scalar("INT64", Some(i.to_string())),
        Param::Float64(f) => scalar("FLOAT64", Some(f.to_string())),
        Param::Bool(b) => scalar("BOOL", Some(b.to_string())),
        Param::Numeric(d) => scalar("NUMERIC", Some(d.to_string())),
        Param::Timestamp(ts) => scalar("TIMESTAMP", Some(ts.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string())),
        Param::Date(d) => scalar("DATE", Some(d.format("%Y-%m-%d").to_string())),
        Param::Json(v) => scalar("JSON", Some(v.to_string())),
        // Sent as base64 text and decoded in SQL by `decode_bytes_params`.
        Param::Bytes(b) => scalar("STRING", Some(base64::engine::general_purpose::STANDARD.encode(b))),
    }
}

/// Rewrites every `@p` of a BYTES parameter as `FROM_BASE64(@p)`: BYTES values travel as base64
/// STRING parameters, which BigQuery and the emulator read alike (the emulator does not decode
/// base64 in a BYTES parameter).
fn decode_bytes_params(sql: &str, params: &Params) -> WarehouseResult<String> {
    if !params.0.iter().any(|(_, p)| matches!(p, Param::Bytes(_))) {
        return Ok(sql.to_string());
    }
    let mut out = String::with_capacity(sql.len() + 32);
    for piece in scan_named_params(sql)? {
        match piece {
            SqlPiece::Text(t) => out.push_str(t),
            SqlPiece::Param(name) if matches!(params.get(name), Some(Param::Bytes(_))) => {
                out.push_str(&format!("FROM_BASE64(@{name})"));
            }
            SqlPiece::Param(name) => {
                out.push('@');
                out.push_str(name);
            }
        }
    }
    Ok(out)
}

fn query_parameters(params: &Params) -> Vec<QueryParameter> {
    params.0.iter().map(|(name, p)| query_parameter(name, p)).collect()
}

/// A result cell in the canonical row form, driven by the result schema.
fn decode_cell(field: &TableFieldSchema, value: Value) -> WarehouseResult<Value> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    if field.mode.as_deref() == Some("REPEATED") {
        let items = match value {
            Value::Array(items) => items,
            other => return Err(WarehouseError::Backend(format!("REPEATED {} came back as {other}", field.name))),
        };
        let element = TableFieldSchema { mode: Some("NULLABLE".into()), ..field.clone() };
        return items
            .into_iter()
            .map(|item| decode_cell(&element, item.get("v").cloned().unwrap_or(item)))
            .collect::<WarehouseResult<Vec<_>>>()
            .map(Value::Array);
    }
    use gcp_bigquery_client::model::field_type::FieldType as BqType;
    if matches!(field.r#type, BqType::Record | BqType::Struct) {
        let cells = value.get("f").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut out = Row::new();
        for (sub, cell) in field.fields.as_deref().unwrap_or_default().iter().zip(cells) {
            out.insert(sub.name.clone(), decode_cell(sub, cell.get("v").cloned().unwrap_or(Value::Null))?);
        }
        return Ok(Value::Object(out));
    }
    let text = match &value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let bad = || WarehouseError::Backend(format!("{} value {text:?} could not be read", field.name));
    Ok(match field.r#type {
        BqType::Integer | BqType::Int64 => text.parse::<i64>().map(Value::from).map_err(|_| bad())?,
        BqType::Float | BqType::Float64 => {
            let f: f64 = text.parse().map_err(|_| bad())?;
            serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
        BqType::Boolean | BqType::Bool => Value::Bool(text.eq_ignore_ascii_case("true")),
        BqType::Numeric | BqType::Bignumeric => Value::String(normalize_decimal(&text)),
        BqType::Timestamp => Value::String(decode_timestamp(&text).ok_or_else(bad)?),
        _ => Value::String(text),
    })
}

/// The column type and mode a result field's canonical value is read as (types this service
/// never declares read as text).
fn field_kind(field: &TableFieldSchema) -> (FieldType, Mode) {
    use gcp_bigquery_client::model::field_type::FieldType as BqType;
    let mode = match field.mode.as_deref() {
        Some("REPEATED") => Mode::Repeated,
        _ => Mode::Nullable,
    };
    let ty = match field.r#type {
        BqType::Bytes => FieldType::Bytes,
        BqType::Integer | BqType::Int64 => FieldType::Int64,
        BqType::Float | BqType::Float64 => FieldType::Float64,
        BqType::Numeric | BqType::Bignumeric => FieldType::Numeric,
        BqType::Boolean | BqType::Bool => FieldType::Bool,
        BqType::Timestamp => FieldType::Timestamp,
        BqType::Date => FieldType::Date,
        BqType::Record | BqType::Struct => FieldType::Record,
        BqType::Json => FieldType::Json,
        _ => FieldType::String,
    };
    (ty, mode)
}

/// Timestamps arrive as microseconds (we ask for `useInt64Timestamp`) or, from services that
/// ignore that option, as float seconds.
fn decode_timestamp(text: &str) -> Option<String> {
    let micros = match text.parse::<i64>() {
        Ok(micros) => micros,
        Err(_) => {
            let seconds: rust_decimal::Decimal =
                text.parse().ok().or_else(|| rust_decimal::Decimal::from_scientific(text).ok())?;
            let micros = (seconds * rust_decimal::Decimal::from(1_000_000)).round();
            i64::try_from(micros).ok()?
        }
    };
    DateTime::from_timestamp_micros(micros).map(|ts| format_timestamp(&ts))
}

fn normalize_decimal(text: &str) -> String {
    match text.parse::<rust_decimal::Decimal>().or_else(|_| rust_decimal::Decimal::from_scientific(text)) {
        Ok(d) => {
            let n = d.normalize();
            if n.is_zero() {
                "0".to_string()
            } else {
                n.to_string()
            }
        }
        Err(_) => text.to_string(),
    }
}

#[async_trait]
impl Warehouse for BigQueryWarehouse {
    fn backend_name(&self) -> &'static str {
        "bigquery"
    }

    fn table_ref(&self, dataset: &str, table: &str) -> WarehouseResult<String> {
        self.quoted(dataset, table)
    }

    async fn ping(&self) -> WarehouseResult<()> {
        self.run_query("SELECT 1 AS one", Vec::new()).await.map(|_| ())
    }

    async fn dataset_exists(&self, dataset: &str) -> WarehouseResult<bool> {
        self.quoted(dataset, "t")?;
        let path = ["projects", &self.project, "datasets", dataset];
        match self.retry("datasets.get", || self.rest.send::<IgnoredAny>(self.rest.request(Method::GET, &path))).await {
            Ok(_) => Ok(true),
            Err(WarehouseError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn create_dataset(&self, dataset: &str, options: &DatasetOptions) -> WarehouseResult<bool> {
        self.quoted(dataset, "t")?;
        // A plain JSON body: the client's Dataset model has no description or access list.
        let body = dataset_resource(&self.project, dataset, &self.location, options);
        let path = ["projects", &self.project, "datasets"];
        match self
            .retry("datasets.insert", || {
                self.rest.send::<IgnoredAny>(self.rest.request(Method::POST, &path).json(&body))
            })
            .await
        {
            Ok(_) => Ok(true),
            Err(WarehouseError::AlreadyExists(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn drop_dataset(&self, dataset: &str) -> WarehouseResult<()> {
        self.quoted(dataset, "t")?;
        let path = ["projects", &self.project, "datasets", dataset];
        let delete =
            || self.rest.send_raw(self.rest.request(Method::DELETE, &path).query(&[("deleteContents", "true")]));
        match self.retry("datasets.delete", delete).await {
            Ok(_) | Err(WarehouseError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn list_tables(&self, dataset: &str) -> WarehouseResult<Vec<String>> {
        let mut names: Vec<String> = self
            .list_with_kinds(dataset)
            .await?
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| !is_staging_table(name))
            .collect();
        names.sort();
        Ok(names)
    }

    async fn list_all_tables(&self, dataset: &str) -> WarehouseResult<Vec<String>> {
        let mut names: Vec<String> = self.list_with_kinds(dataset).await?.into_iter().map(|(name, _)| name).collect();
        names.sort();
        Ok(names)
    }

    async fn create_table(&self, dataset: &str, schema: &TableSchema) -> WarehouseResult<bool> {
        self.insert_table(dataset, schema, None).await
    }

    async fn drop_table(&self, dataset: &str, table: &str) -> WarehouseResult<()> {
        self.quoted(dataset, table)?;
        // A table's staging table goes with it: a table created again under that name, perhaps
        // with other columns, starts with a staging table of its own.
        let staging = (!is_staging_table(table)).then(|| staging_table_name(table));
        let present = self.list_with_kinds(dataset).await?;
        for (name, kind) in present {
            if name != table && Some(&name) != staging.as_ref() {
                continue;
            }
            // DDL rather than tables.delete, which the emulator cannot do for views.
            let kind = if kind == "VIEW" { "VIEW" } else { "TABLE" };
            match self.run_query(&format!("DROP {kind} IF EXISTS {}", self.quoted(dataset, &name)?), Vec::new()).await {
                Ok(_) | Err(WarehouseError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn table_columns(&self, dataset: &str, table: &str) -> WarehouseResult<Vec<String>> {
        self.quoted(dataset, table)?;
        let found = self.get_table(&self.project, dataset, table).await?;
        Ok(found.schema.fields.unwrap_or_default().into_iter().map(|f| f.name).collect())
    }

    async fn add_column(&self, dataset: &str, table: &str, field: &Field) -> WarehouseResult<()> {
        check_new_column(dataset, table, field)?;
        // tables.patch with the longer schema is the documented way; the ALTER that follows is a
        // no-op on BigQuery and what makes the emulator's storage match its catalog.
        let mut current = self.get_table(&self.project, dataset, table).await?;
        let mut fields = current.schema.fields.take().unwrap_or_default();
        if !fields.iter().any(|f| f.name == field.name) {
            let added: TableFieldSchema = serde_json::to_value(field)
                .and_then(serde_json::from_value)
                .map_err(|e| WarehouseError::Invalid(format!("column {}: {e}", field.name)))?;
            fields.push(added);
            current.schema = BqTableSchema::new(fields);
            self.patch_table(dataset, table, &current).await?;
        }
        let sql = format!(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}",
            self.quoted(dataset, table)?,
            field.name,
            ddl_type(field)
        );
        self.run_query(&sql, Vec::new()).await.map(|_| ())
    }

    async fn drop_column(&self, dataset: &str, table: &str, column: &str) -> WarehouseResult<()> {
        if !is_identifier(column) {
            return Err(WarehouseError::Invalid(format!("{column:?} is not a valid identifier")));
        }
        // The DDL is how BigQuery drops a column with its values (tables.patch cannot remove a
        // field). An absent table must be NotFound, which `IF EXISTS` on the column would hide.
        self.table_columns(dataset, table).await?;
        let sql = format!("ALTER TABLE {} DROP COLUMN IF EXISTS {column}", self.quoted(dataset, table)?);
        self.run_query(&sql, Vec::new()).await?;
        // BigQuery's catalog follows the DDL; the emulator's does not, and takes the shorter
        // schema through tables.patch (which real BigQuery never reaches here).
        let mut current = self.get_table(&self.project, dataset, table).await?;
        let mut fields = current.schema.fields.take().unwrap_or_default();
        if fields.iter().any(|f| f.name == column) {
            fields.retain(|f| f.name != column);
            current.schema = BqTableSchema::new(fields);
            self.patch_table(dataset, table, &current).await?;
        }
        Ok(())
    }

    async fn create_view(&self, dataset: &str, view: &str, select_sql: &str) -> WarehouseResult<()> {
        let sql = format!("CREATE OR REPLACE VIEW {} AS\n{select_sql}", self.quoted(dataset, view)?);
        self.run_query(&sql, Vec::new()).await.map(|_| ())
    }

    async fn query(&self, sql: &str, params: &Params) -> WarehouseResult<Vec<Row>> {
        let sql = decode_bytes_params(sql, params)?;
        self.run_query(&sql, query_parameters(params)).await?.into_rows()
    }

    async fn execute(&self, sql: &str, params: &Params) -> WarehouseResult<u64> {
        let sql = decode_bytes_params(sql, params)?;
        Ok(self.run_query(&sql, query_parameters(params)).await?.affected.unwrap_or(0))
    }

    async fn insert_rows(&self, dataset: &str, schema: &TableSchema, rows: &[Row]) -> WarehouseResult<u64> {
        check_schema(schema)?;
        check_rows(schema, rows)?;
        if rows.is_empty() {
            return Ok(0);
        }
        let (source, param) = self.rows_source(schema, rows, "", &[])?;
        let columns: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
        let sql = format!("INSERT INTO {} ({}) {source}", self.quoted(dataset, &schema.name)?, columns.join(", "));
        self.run_query(&sql, vec![param]).await?;
        Ok(rows.len() as u64)
    }

    async fn append_rows(
        &self,
        dataset: &str,
        schema: &TableSchema,
        id_column: &str,
        rows: &[Row],
    ) -> WarehouseResult<u64> {
        check_schema(schema)?;
        check_rows(schema, rows)?;
        self.quoted(dataset, &schema.name)?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut request = TableDataInsertAllRequest::new();
        for row in rows {
            let insert_id = row.get(id_column).and_then(Value::as_str).map(str::to_string);
            if insert_id.is_none() {
                return Err(WarehouseError::Invalid(format!(
                    "{}: every appended row needs its insert id in column {id_column}",
                    schema.name
                )));
            }
            request.add_row(insert_id, row).map_err(|e| WarehouseError::Invalid(format!("{}: {e}", schema.name)))?;
        }
        let path = ["projects", &self.project, "datasets", dataset, "tables", &schema.name, "insertAll"];
        let response: TableDataInsertAllResponse = self
            .retry("tabledata.insertAll", || self.rest.send(self.rest.request(Method::POST, &path).json(&request)))
            .await?;
        // insertAll answers 200 with per-row errors; every row of ours is checked above, so any
        // error is the table's (schema drift): refuse the whole append loudly.
        if let Some(errors) = response.insert_errors.filter(|e| !e.is_empty()) {
            let first = errors
                .first()
                .and_then(|e| e.errors.as_ref())
                .and_then(|e| e.first())
                .and_then(|e| e.message.clone())
                .unwrap_or_default();
            return Err(WarehouseError::Invalid(format!(
                "{}: {} row(s) refused by insertAll: {first}",
                schema.name,
                errors.len()
            )));
        }
        Ok(rows.len() as u64)
    }

    async fn query_batches(&self, sql: &str, params: &Params, batch_rows: usize) -> WarehouseResult<RecordBatches> {
        let sql = decode_bytes_params(sql, params)?;
        let batch_rows = u32::try_from(batch_rows.max(1)).unwrap_or(u32::MAX);
        let mut pager = QueryPager::start(self, &sql, query_parameters(params), Some(batch_rows)).await?;
        let (sender, batches) = RecordBatches::channel();
        let warehouse = self.clone();
        tokio::spawn(async move {
            loop {
                let rows =
                    match pager.next_page(&warehouse).await.and_then(|p| p.map(QueryOutcome::into_records).transpose())
                    {
                        Ok(Some(rows)) => rows,
                        Ok(None) => return,
                        Err(e) => {
                            let _ = sender.send(Err(e)).await;
                            return;
                        }
                    };
                // Pages are at most `maxResults` rows, but a server may send more: cut them to size.
                let mut rows = rows.into_iter().peekable();
                while rows.peek().is_some() {
                    let batch: Vec<Record> = rows.by_ref().take(batch_rows as usize).collect();
                    // A send fails only when the reader went away: stop paging then.
                    if sender.send(Ok(batch)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(batches)
    }

    async fn stage(
        &self,
        dataset: &str,
        schema: &TableSchema,
        predicate: &str,
        params: &Params,
    ) -> WarehouseResult<Box<dyn Staging>> {
        check_schema(schema)?;
        // The slice is deleted by the MERGE at commit: refuse a predicate that cannot run now,
        // before anything is staged.
        check_params_bound(predicate, params)?;
        if params.get(STAGING_ID_PARAM).is_some() {
            return Err(WarehouseError::Invalid(format!("@{STAGING_ID_PARAM} is reserved for the staging")));
        }
        self.get_table(&self.project, dataset, &schema.name).await.map_err(|e| match e {
            WarehouseError::NotFound(_) => WarehouseError::NotFound(format!("table {dataset}.{}", schema.name)),
            e => e,
        })?;
        let staging = self.ensure_staging_table(dataset, schema).await?;
        Ok(Box::new(BigQueryStaging {
            warehouse: self.clone(),
            dataset: dataset.to_string(),
            schema: schema.clone(),
            staging,
            // Unique per staging, not per run: two executions of one run (a redelivery while the
            // first still runs) must not commit each other's rows either.
            id: uuid::Uuid::new_v4().simple().to_string(),
            predicate: predicate.to_string(),
            params: params.clone(),
            pending: Vec::new(),
            pending_bytes: 0,
            staged: 0,
            wrote: false,
            selected: false,
            finished: false,
        }))
    }

    async fn replace_slice(
        &self,
        dataset: &str,
        schema: &TableSchema,
        predicate: &str,
        params: &Params,
        rows: &[Row],
    ) -> WarehouseResult<(u64, u64)> {
        check_schema(schema)?;
        check_rows(schema, rows)?;
        if params.get(ROWS_PARAM).is_some() {
            return Err(WarehouseError::Invalid(format!("@{ROWS_PARAM} is reserved for the rows")));
        }
        let (source, rows_param) = self.rows_source(schema, rows, MERGE_SOURCE_PREFIX, &[])?;
        let sql = merge_replace_sql(&self.quoted(dataset, &schema.name)?, schema, &source, predicate);
        let sql = decode_bytes_params(&sql, params)?;
        let mut all = query_parameters(params);
        all.push(rows_param);
        let affected = self.run_query(&sql, all).await?.affected.unwrap_or(0);
        let inserted = rows.len() as u64;
        Ok((affected.saturating_sub(inserted), inserted))
    }
    async fn replace_slice_from_select(
        &self,
        dataset: &str,
        schema: &TableSchema,
        predicate: &str,
        params: &Params,
        select_sql: &str,
    ) -> WarehouseResult<(u64, u64)> {
        check_schema(schema)?;
        check_params_bound(predicate, params)?;
        check_params_bound(select_sql, params)?;
        let source = schema.fields.iter().map(|f| format!("{n} AS {MERGE_SOURCE_PREFIX}{n}", n = f.name));
        let source = format!("SELECT {} FROM ({select_sql})", source.collect::<Vec<_>>().join(", "));
        let sql = merge_replace_sql(&self.quoted(dataset, &schema.name)?, schema, &source, predicate);
        let sql = decode_bytes_params(&sql, params)?;
        // A MERGE reports deleted and inserted rows together: count the slice first (a read of
        // our own table's slice, not of the source) to tell them apart.
        let target = self.quoted(dataset, &schema.name)?;
        let counted = decode_bytes_params(&format!("SELECT COUNT(*) AS n FROM {target} WHERE {predicate}"), params)?;
        let rows = self.run_query(&counted, query_parameters(params)).await?.into_rows()?;
        let before = rows.first().and_then(|r| r.get("n")).and_then(Value::as_u64).unwrap_or(0);
        let affected = self.run_query(&sql, query_parameters(params)).await?.affected.unwrap_or(0);
        let deleted = before.min(affected);
        Ok((deleted, affected - deleted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_ids() {
        assert!(is_project_id("my-project-123"));
        assert!(is_project_id("example.com:my-project"));
        for bad in ["short", "Upper-case-1", "ends-with-", "1starts-digit", "has_underscore", "a`b; DROP"] {
            assert!(!is_project_id(bad), "{bad}");
        }
    }

    #[test]
    fn ddl_types_nest() {
        let f: Field = serde_json::from_str(
            r#"{"name":"r","type":"RECORD","mode":"REPEATED","fields":[{"name":"a","type":"NUMERIC"},{"name":"b","type":"STRING","mode":"REPEATED"}]}"#,
        )
        .unwrap();
        assert_eq!(ddl_type(&f), "ARRAY<STRUCT<a NUMERIC, b ARRAY<STRING>>>");
    }

    #[test]
    fn timestamps_decode_from_micros_and_seconds() {
        assert_eq!(decode_timestamp("1700000000123456").unwrap(), "2023-11-14T22:13:20.123456Z");
        assert_eq!(decode_timestamp("1.700000000123456E9").unwrap(), "2023-11-14T22:13:20.123456Z");
        assert_eq!(decode_timestamp("1700000000.5").unwrap(), "2023-11-14T22:13:20.500000Z");
        assert_eq!(normalize_timestamp("2026-01-01T01:00:00+01:00").unwrap(), "2026-01-01 00:00:00.000000+00:00");
    }

    #[test]
    fn path_segments_cannot_change_the_path() {
        assert_eq!(path_segment("job_1-a.b~c"), "job_1-a.b~c");
        assert_eq!(path_segment("../x/y?z#w"), "..%2Fx%2Fy%3Fz%23w");
        assert_eq!(path_segment("é "), "%C3%A9%20");
        assert!(is_job_id("job_AbC-123") && !is_job_id("..") && !is_job_id("") && !is_job_id("a/b"));
    }

    #[test]
    fn sizes_read_in_the_setting_s_unit() {
        assert_eq!(size_text(64 << 20), "64 MB");
        assert_eq!(size_text(1000), "1000 bytes");
    }

    #[test]
    fn decimals_normalize() {
        assert_eq!(normalize_decimal("19.990"), "19.99");
        assert_eq!(normalize_decimal("0E-9"), "0");
        assert_eq!(normalize_decimal("3"), "3");
    }
}
