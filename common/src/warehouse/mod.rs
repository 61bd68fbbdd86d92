//! The warehouse: datasets, tables from schema JSON, views, parameterized queries and DML, batch
//! insert and atomic slice replace. One trait, an embedded DuckDB implementation (local, tests)
//! and BigQuery in production; one conformance suite holds both to the same behaviour.
//!
//! Large writes are staged: [`Warehouse::stage`] starts replacing a slice of a table and takes
//! its new rows batch by batch out of readers' sight (DuckDB: an open transaction; BigQuery: rows
//! tagged with the staging in the table's permanent staging table), and `commit` makes the replacement visible at once, so a pipeline never holds
//! a whole window in memory and a failed run never leaves half a window.
//! [`Warehouse::query_batches`] reads large results the same way, a batch at a time. Both move
//! [`Record`]s (positional, typed cells) rather than keyed rows: no column names or value text
//! per row on the hot path.
//!
//! Values never enter SQL text: queries name parameters as `@name` (BigQuery's syntax) and each
//! backend binds them. Identifiers (datasets, tables, columns) are validated and quoted.

pub mod record;
/// Table schemas are config files (`configs/.../schemas/*.json`); the warehouse creates tables from them.
pub use crate::configs::schema;

pub mod bigquery;
pub mod counting;
#[cfg(feature = "duckdb")]
pub mod duckdb;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

pub use record::{numeric_text, to_keyed_row, to_record, to_records, Cell, Interner, Record};
pub use schema::{is_identifier, Field, FieldType, Mode, TableSchema};

/// One result row, column name → value in the canonical JSON form shared by every backend:
/// INT64 a number, NUMERIC a decimal string (exact), TIMESTAMP an RFC 3339 UTC string with
/// microseconds, DATE `YYYY-MM-DD`, BYTES base64, JSON a string holding the document, RECORD an
/// object, REPEATED an array.
pub type Row = Map<String, Value>;

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("warehouse unavailable: {0}")]
    Unavailable(String),
    #[error("warehouse error: {0}")]
    Backend(String),
}

pub type WarehouseResult<T> = Result<T, WarehouseError>;

/// A query parameter with its type, so every backend binds it exactly (BigQuery needs the type;
/// DuckDB casts to it).
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Null(FieldType),
    String(String),
    Int64(i64),
    Float64(f64),
    Bool(bool),
    Numeric(Decimal),
    Timestamp(DateTime<Utc>),
    Date(NaiveDate),
    Json(Value),
    Bytes(Vec<u8>),
}

impl Param {
    pub fn field_type(&self) -> FieldType {
        match self {
            Param::Null(t) => *t,
            Param::String(_) => FieldType::String,
            Param::Int64(_) => FieldType::Int64,
            Param::Float64(_) => FieldType::Float64,
            Param::Bool(_) => FieldType::Bool,
            Param::Numeric(_) => FieldType::Numeric,
            Param::Timestamp(_) => FieldType::Timestamp,
            Param::Date(_) => FieldType::Date,
            Param::Json(_) => FieldType::Json,
            Param::Bytes(_) => FieldType::Bytes,
        }
    }
}

impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Param::String(v.to_string())
    }
}
impl From<String> for Param {
    fn from(v: String) -> Self {
        Param::String(v)
    }
}
impl From<&String> for Param {
    fn from(v: &String) -> Self {
        Param::String(v.clone())
    }
}
impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Param::Int64(v)
    }
}
impl From<bool> for Param {
    fn from(v: bool) -> Self {
        Param::Bool(v)
    }
}
impl From<Decimal> for Param {
    fn from(v: Decimal) -> Self {
        Param::Numeric(v)
    }
}
impl From<DateTime<Utc>> for Param {
    fn from(v: DateTime<Utc>) -> Self {
        Param::Timestamp(v)
    }
}
impl From<NaiveDate> for Param {
    fn from(v: NaiveDate) -> Self {
        Param::Date(v)
    }
}
impl From<Vec<u8>> for Param {
    fn from(v: Vec<u8>) -> Self {
        Param::Bytes(v)
    }
}
impl From<Option<DateTime<Utc>>> for Param {
    fn from(v: Option<DateTime<Utc>>) -> Self {
        v.map_or(Param::Null(FieldType::Timestamp), Param::Timestamp)
    }
}
impl From<Option<String>> for Param {
    fn from(v: Option<String>) -> Self {
        v.map_or(Param::Null(FieldType::String), Param::String)
    }
}

/// Named query parameters, in the order they were bound.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params(pub Vec<(String, Param)>);

impl Params {
    pub fn new() -> Params {
        Params::default()
    }

    /// Adds `@name`.
    pub fn bind(mut self, name: &str, value: impl Into<Param>) -> Params {
        self.0.push((name.to_string(), value.into()));
        self
    }

    pub fn get(&self, name: &str) -> Option<&Param> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, p)| p)
    }
}

/// What `create_dataset` should attach to a new dataset.
#[derive(Debug, Clone, Default)]
pub struct DatasetOptions {
    pub description: String,
    pub labels: Vec<(String, String)>,
    /// Service accounts given a role on the new dataset. Empty: the backend's default access
    /// (BigQuery: the project's owners, writers and readers, and the creator as owner). Not
    /// empty (BigQuery): exactly the project's three special groups and these entries, so the
    /// creator must be among them to keep owning the dataset. DuckDB has no access control and
    /// ignores them.
    pub access: Vec<DatasetAccess>,
}

/// A dataset role (BigQuery's basic dataset roles: dataOwner, dataEditor, dataViewer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetRole {
    Owner,
    Writer,
    Reader,
}

impl DatasetRole {
    /// The name BigQuery's dataset `access` list uses.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetRole::Owner => "OWNER",
            DatasetRole::Writer => "WRITER",
            DatasetRole::Reader => "READER",
        }
    }
}

/// One service account's role on a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetAccess {
    pub role: DatasetRole,
    pub email: String,
}

impl DatasetAccess {
    /// Owners, then writers, then readers; an account listed twice keeps its first (strongest) role.
    pub fn list(owners: &[String], writers: &[String], readers: &[String]) -> Vec<DatasetAccess> {
        let mut out: Vec<DatasetAccess> = Vec::new();
        for (role, emails) in
            [(DatasetRole::Owner, owners), (DatasetRole::Writer, writers), (DatasetRole::Reader, readers)]
        {
            for email in emails {
                if !out.iter().any(|a| &a.email == email) {
                    out.push(DatasetAccess { role, email: email.clone() });
                }
            }
        }
        out
    }
}

#[async_trait]
pub trait Warehouse: Send + Sync + 'static {
    /// `duckdb` or `bigquery`, for logs and health.
    fn backend_name(&self) -> &'static str;

    /// A fully quoted reference to `dataset.table` for this backend's SQL (DuckDB
    /// `"dataset"."table"`, BigQuery `` `project.dataset.table` ``). Both names must be
    /// identifiers; callers pass names from configs or validated slugs.
    fn table_ref(&self, dataset: &str, table: &str) -> WarehouseResult<String>;

    /// A cheap round trip proving the warehouse answers.
    async fn ping(&self) -> WarehouseResult<()>;

    async fn dataset_exists(&self, dataset: &str) -> WarehouseResult<bool>;
    /// Creates the dataset; `Ok(false)` when it already existed (and was left as it was).
    async fn create_dataset(&self, dataset: &str, options: &DatasetOptions) -> WarehouseResult<bool>;
    /// Drops the dataset with everything in it; absent is not an error.
    async fn drop_dataset(&self, dataset: &str) -> WarehouseResult<()>;

    /// Tables and views of a dataset, sorted by name (the backend's staging tables left out).
    async fn list_tables(&self, dataset: &str) -> WarehouseResult<Vec<String>>;
    /// Every table and view the dataset really holds, the backend's own staging tables included,
    /// sorted by name: for tests and operations (does staging create tables?). Callers that
    /// want the dataset's tables use `list_tables`.
    async fn list_all_tables(&self, dataset: &str) -> WarehouseResult<Vec<String>>;
    /// Creates the table; `Ok(false)` when a table of that name already existed.
    async fn create_table(&self, dataset: &str, schema: &TableSchema) -> WarehouseResult<bool>;
    /// Drops a table or view; absent is not an error.
    async fn drop_table(&self, dataset: &str, table: &str) -> WarehouseResult<()>;
    /// The top-level column names of a table, in table order (NotFound when absent).
    async fn table_columns(&self, dataset: &str, table: &str) -> WarehouseResult<Vec<String>>;
    /// Adds a column to an existing table. Only NULLABLE or REPEATED columns can be added to a
    /// table that has rows (BigQuery's rule, kept on every backend); REQUIRED is Invalid.
    async fn add_column(&self, dataset: &str, table: &str, field: &Field) -> WarehouseResult<()>;
    /// Drops a column and its values from an existing table: for a retired column whose data must
    /// not outlive it. An absent column is not an error (idempotent); an absent table is
    /// NotFound. (On BigQuery the dropped values stay in the table's time-travel window, 7 days by
    /// default, as any deleted data does.)
    async fn drop_column(&self, dataset: &str, table: &str, column: &str) -> WarehouseResult<()>;
    /// Creates or replaces a view from a SELECT whose table references are already rendered.
    async fn create_view(&self, dataset: &str, view: &str, select_sql: &str) -> WarehouseResult<()>;

    /// Runs a SELECT with `@name` parameters and returns every row.
    async fn query(&self, sql: &str, params: &Params) -> WarehouseResult<Vec<Row>>;
    /// Runs DML with `@name` parameters; returns the number of rows affected.
    async fn execute(&self, sql: &str, params: &Params) -> WarehouseResult<u64>;
    /// Inserts rows (canonical JSON form, keyed by column) into a table described by `schema`.
    /// Missing columns are NULL; unknown columns are refused. All rows land or none do.
    async fn insert_rows(&self, dataset: &str, schema: &TableSchema, rows: &[Row]) -> WarehouseResult<u64>;
    /// Appends rows to an insert-only table (run and step events, data-quality results, audit):
    /// rows are never updated or deleted afterwards, so on BigQuery they are streamed
    /// (`tabledata.insertAll`: no DML statement spent against the per-table DML limits, readable
    /// at once) with `id_column`'s value as each row's insert id, which makes a retried append
    /// land once. Other backends insert them as [`Warehouse::insert_rows`] does.
    async fn append_rows(
        &self,
        dataset: &str,
        schema: &TableSchema,
        id_column: &str,
        rows: &[Row],
    ) -> WarehouseResult<u64> {
        let _ = id_column;
        self.insert_rows(dataset, schema, rows).await
    }
    /// Deletes the rows matching `predicate` (a boolean SQL expression over the table's columns
    /// with `@name` parameters) and inserts `rows`, atomically: readers see the old slice or the
    /// new one, never neither. Returns (deleted, inserted).
    async fn replace_slice(
        &self,
        dataset: &str,
        schema: &TableSchema,
        predicate: &str,
        params: &Params,
        rows: &[Row],
    ) -> WarehouseResult<(u64, u64)>;

    /// As [`Warehouse::replace_slice`], with the new rows coming from `select_sql` (its columns
    /// are the table's, in the schema's order and named like them) run inside the warehouse:
    /// no row passes through this process, however many there are. `params` serve both the
    /// predicate and the SELECT. Atomic (DuckDB: one transaction; BigQuery: one `MERGE … ON
    /// FALSE` with the SELECT as its source). The new rows' order in the table is not the
    /// SELECT's (no reader may count on a table's row order anyway). Returns (deleted, inserted).
    async fn replace_slice_from_select(
        &self,
        dataset: &str,
        schema: &TableSchema,
        predicate: &str,
        params: &Params,
        select_sql: &str,
    ) -> WarehouseResult<(u64, u64)>;

    /// Runs a SELECT and hands its rows over as records (one cell per selected column, in the
    /// SELECT's order) in batches of at most `batch_rows` as they are read, so a large result
    /// never sits in memory whole. The producer waits while a batch is not yet taken; dropping
    /// the [`RecordBatches`] stops the query.
    async fn query_batches(&self, sql: &str, params: &Params, batch_rows: usize) -> WarehouseResult<RecordBatches>;

    /// Starts replacing the rows of the table `schema` describes (which must exist) that match
    /// `predicate` (as in `replace_slice`): rows are then appended in batches out of readers'
    /// sight, and [`Staging::commit`] makes the whole replacement visible at once. Readers see the
    /// old slice until then. Stagings of one table may run at once; none sees another's rows.
    /// Two of one slice at once (a failed run's staging still ending when the rerun starts) do
    /// not fail: on DuckDB, where they would conflict, the second waits for the first to end (a
    /// few seconds at most, then it fails). A
    /// staging area that is neither committed nor discarded changes nothing (DuckDB: its
    /// transaction rolls back with its connection; BigQuery: its rows in the table's permanent
    /// staging table are deleted in the background, and expire within two days in any case).
    async fn stage(
        &self,
        dataset: &str,
        schema: &TableSchema,
        predicate: &str,
        params: &Params,
    ) -> WarehouseResult<Box<dyn Staging>>;
}

/// One staged replace of a slice of a table (see [`Warehouse::stage`]).
#[async_trait]
pub trait Staging: Send {
    /// Adds records of the schema the staging started with, each checked (width, REQUIRED
    /// cells, cell kinds against column types) before it is written. Nothing is visible in the
    /// table until `commit`. After an error the staging area is unusable: discard it.
    async fn append(&mut self, records: Vec<Record>) -> WarehouseResult<u64>;

    /// Adds the rows of `select_sql` (its columns are the table's, named like them; `@name`
    /// parameters from `params`), run inside the warehouse: no row passes through this process,
    /// so a staging can gather a slice from several large reads and still replace it at once.
    /// Returns the rows added. Top-level REQUIRED columns are enforced by the time of `commit`
    /// (DuckDB: as the rows go in; BigQuery: the commit counts this staging's missing values
    /// first). After an error the staging area is unusable: discard it.
    async fn append_select(&mut self, select_sql: &str, params: &Params) -> WarehouseResult<u64>;

    /// Rows appended so far.
    fn staged(&self) -> u64;

    /// Makes the replacement visible: the slice's old rows are gone and every staged row is in,
    /// atomically. Rows are stored in the order they were appended where a backend keeps an
    /// order. Returns (deleted, inserted).
    async fn commit(self: Box<Self>) -> WarehouseResult<(u64, u64)>;

    /// Abandons the replacement; the table is untouched.
    async fn discard(self: Box<Self>) -> WarehouseResult<()>;
}

/// Batches of records from [`Warehouse::query_batches`], in query order.
pub struct RecordBatches {
    receiver: tokio::sync::mpsc::Receiver<WarehouseResult<Vec<Record>>>,
}

impl RecordBatches {
    /// A channel whose sender a backend fills from its reader. One batch in flight bounds the
    /// memory to two batches (the one being read and the one being used).
    pub(crate) fn channel() -> (tokio::sync::mpsc::Sender<WarehouseResult<Vec<Record>>>, RecordBatches) {
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        (sender, RecordBatches { receiver })
    }

    /// The next batch; `None` once every row was handed over. An error ends the stream.
    pub async fn next(&mut self) -> Option<WarehouseResult<Vec<Record>>> {
        self.receiver.recv().await
    }
}

/// Creates the table when it is missing, else adds the NULLABLE columns its schema gained since
/// it was created (an organization's tables are made once, when first written, so a column added
/// to configs would otherwise never reach them). Returns the columns added.
pub async fn create_or_extend_table(
    warehouse: &dyn Warehouse,
    dataset: &str,
    schema: &TableSchema,
) -> WarehouseResult<Vec<String>> {
    if warehouse.create_table(dataset, schema).await? {
        return Ok(Vec::new());
    }
    add_missing_columns(warehouse, dataset, schema).await
}

/// Adds to an existing table the columns of `schema` it lacks (one metadata read when it lacks
/// none). A missing REQUIRED column is Invalid: rows already in the table could not hold it.
pub async fn add_missing_columns(
    warehouse: &dyn Warehouse,
    dataset: &str,
    schema: &TableSchema,
) -> WarehouseResult<Vec<String>> {
    let present = warehouse.table_columns(dataset, &schema.name).await?;
    let mut added = Vec::new();
    for field in schema.fields.iter().filter(|f| !present.contains(&f.name)) {
        if field.mode == Mode::Required {
            return Err(WarehouseError::Invalid(format!(
                "table {dataset}.{} lacks the REQUIRED column {}: only NULLABLE columns can be added",
                schema.name, field.name
            )));
        }
        warehouse.add_column(dataset, &schema.name, field).await?;
        added.push(field.name.clone());
    }
    Ok(added)
}

/// Suffix of a table's permanent staging table (BigQuery): `{table}__staging`.
const STAGING_SUFFIX: &str = "__staging";
/// Mark of the per-use staging tables earlier versions created (`{table}__staging_{id}`); any
/// left behind expire within a day of their creation, and are hidden like the permanent ones.
const LEGACY_STAGING_MARK: &str = "__staging_";

/// The name of the permanent staging table of `table`, recognisable in a listing.
pub(crate) fn staging_table_name(table: &str) -> String {
    format!("{table}{STAGING_SUFFIX}")
}

/// Whether a table is a staging table (which `list_tables` leaves out: it is not the dataset's).
pub(crate) fn is_staging_table(name: &str) -> bool {
    name.ends_with(STAGING_SUFFIX) || name.contains(LEGACY_STAGING_MARK)
}

/// Replaces `{{table}}` placeholders in a view or query template with this backend's quoted
/// references into `dataset`. An unknown or malformed placeholder is an error, not left in place.
pub fn render_table_refs(
    warehouse: &dyn Warehouse,
    dataset: &str,
    template: &str,
    known_tables: &[&str],
) -> WarehouseResult<String> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| WarehouseError::Invalid("unclosed {{ in SQL template".into()))?;
        let name = after[..end].trim();
        if !known_tables.contains(&name) {
            return Err(WarehouseError::Invalid(format!("SQL template names unknown table {{{{{name}}}}}")));
        }
        out.push_str(&warehouse.table_ref(dataset, name)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits SQL with `@name` parameters into text pieces around each parameter occurrence, skipping
/// string literals, quoted identifiers and comments. DuckDB binds positionally from it; BigQuery
/// uses it to wrap BYTES parameters.
pub(crate) fn scan_named_params(sql: &str) -> WarehouseResult<Vec<SqlPiece<'_>>> {
    let bytes = sql.as_bytes();
    let mut pieces = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'@' => {
                let name_start = i + 1;
                let mut j = name_start;
                while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                    j += 1;
                }
                if j == name_start {
                    return Err(WarehouseError::Invalid(format!("stray @ at byte {i} of the query")));
                }
                pieces.push(SqlPiece::Text(&sql[text_start..i]));
                pieces.push(SqlPiece::Param(&sql[name_start..j]));
                i = j;
                text_start = j;
            }
            _ => i += 1,
        }
    }
    pieces.push(SqlPiece::Text(&sql[text_start.min(sql.len())..]));
    Ok(pieces)
}

/// Refuses SQL naming a parameter `params` does not bind.
pub(crate) fn check_params_bound(sql: &str, params: &Params) -> WarehouseResult<()> {
    for piece in scan_named_params(sql)? {
        if let SqlPiece::Param(name) = piece {
            if params.get(name).is_none() {
                return Err(WarehouseError::Invalid(format!("query parameter @{name} is not bound")));
            }
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SqlPiece<'a> {
    Text(&'a str),
    Param(&'a str),
}

/// Formats a timestamp in the canonical row form.
pub fn format_timestamp(ts: &DateTime<Utc>) -> String {
    ts.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Refuses a schema with problems. Field names (also of RECORD sub-fields) are spliced into SQL
/// quoted, so every statement built from a caller's schema passes this first, not only CREATE
/// TABLE: insert and replace take the schema from the caller too.
pub(crate) fn check_schema(schema: &TableSchema) -> WarehouseResult<()> {
    let problems = schema.problems();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(WarehouseError::Invalid(format!("table {}: {}", schema.name, problems.join("; "))))
    }
}

/// A column that may be added to an existing table: a valid field, and not REQUIRED (existing
/// rows would have no value; BigQuery's rule, kept on every backend).
pub(crate) fn check_new_column(dataset: &str, table: &str, field: &Field) -> WarehouseResult<()> {
    if field.mode == Mode::Required {
        return Err(WarehouseError::Invalid(format!(
            "column {} of {dataset}.{table} is REQUIRED and cannot be added to an existing table",
            field.name
        )));
    }
    check_schema(&TableSchema {
        name: table.to_string(),
        description: String::new(),
        partitioning: None,
        clustering: Vec::new(),
        fields: vec![field.clone()],
    })
}

/// Checks rows against a schema before anything is written: unknown columns and missing REQUIRED
/// values are refused with the row number and column.
pub(crate) fn check_rows(schema: &TableSchema, rows: &[Row]) -> WarehouseResult<()> {
    let index = FieldIndex::new(schema);
    for (i, row) in rows.iter().enumerate() {
        let mut missing: Option<usize> = None;
        index
            .walk(row, |pos, value| {
                let f = &schema.fields[pos];
                if missing.is_none() && f.mode == Mode::Required && value.is_none_or(Value::is_null) {
                    missing = Some(pos);
                }
            })
            .map_err(|unknown| {
                WarehouseError::Invalid(format!("row {i}: column {unknown:?} is not in table {}", schema.name))
            })?;
        if let Some(pos) = missing {
            return Err(WarehouseError::Invalid(format!(
                "row {i}: column {:?} of table {} is REQUIRED",
                schema.fields[pos].name, schema.name
            )));
        }
    }
    Ok(())
}

/// A schema's columns sorted by name, to walk a row in one pass: a row is a `BTreeMap`, so its
/// keys come sorted too, and a merge of the two replaces a map lookup per column (this runs for
/// every row of every write).
pub(crate) struct FieldIndex<'a> {
    /// (name, position in the schema), by name.
    sorted: Vec<(&'a str, usize)>,
}

impl<'a> FieldIndex<'a> {
    pub fn new(schema: &'a TableSchema) -> FieldIndex<'a> {
        let mut sorted: Vec<(&str, usize)> =
            schema.fields.iter().enumerate().map(|(i, f)| (f.name.as_str(), i)).collect();
        sorted.sort_unstable();
        FieldIndex { sorted }
    }

    /// Calls `each(position, value)` for every column, with `None` where the row has no value;
    /// `Err(key)` names a key of the row that is not a column.
    pub fn walk<'r>(&self, row: &'r Row, mut each: impl FnMut(usize, Option<&'r Value>)) -> Result<(), &'r str> {
        let mut entries = row.iter().peekable();
        for &(name, pos) in &self.sorted {
            match entries.peek() {
                Some((key, _)) if key.as_str() < name => return Err(key.as_str()),
                Some((key, value)) if key.as_str() == name => {
                    each(pos, Some(*value));
                    entries.next();
                }
                _ => each(pos, None),
            }
        }
        match entries.next() {
            Some((key, _)) => Err(key.as_str()),
            None => Ok(()),
        }
    }
}

/// A JSON object as a row (anything else is an empty row, which `check_rows` then refuses if
/// the table has REQUIRED columns).
pub fn to_row(value: Value) -> Row {
    match value {
        Value::Object(map) => map,
        _ => Row::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_walk_in_column_order_with_unknown_keys_named() {
        // The merge in FieldIndex::walk needs a row's keys sorted: true of serde_json's Map
        // unless its `preserve_order` feature is on, which this test would catch.
        let row = to_row(serde_json::json!({"b": 2, "a": 1, "c": 3}));
        assert_eq!(row.keys().collect::<Vec<_>>(), vec!["a", "b", "c"]);
        let schema: TableSchema = serde_json::from_value(serde_json::json!({"description": "",
            "fields": [{"name": "c", "type": "INT64"}, {"name": "a", "type": "INT64"}, {"name": "z", "type": "INT64"}]}))
        .unwrap();
        let index = FieldIndex::new(&schema);
        let mut seen = Vec::new();
        let partial = to_row(serde_json::json!({"a": 1, "c": 3}));
        let r = index.walk(&partial, |pos, v| seen.push((pos, v.cloned())));
        assert_eq!(r, Ok(()));
        seen.sort_by_key(|(pos, _)| *pos);
        assert_eq!(seen, vec![(0, Some(3.into())), (1, Some(1.into())), (2, None)]);
        assert_eq!(index.walk(&row, |_, _| {}), Err("b"));
        assert_eq!(index.walk(&to_row(serde_json::json!({"zz": 1})), |_, _| {}), Err("zz"));
        assert_eq!(index.walk(&to_row(serde_json::json!({"0": 1})), |_, _| {}), Err("0"));
    }

    #[test]
    fn named_params_outside_literals_only() {
        let pieces =
            scan_named_params("SELECT '@not' AS \"@nor\", x -- @comment\nFROM t WHERE a = @a AND b = @b_2 /* @c */")
                .unwrap();
        let params: Vec<_> = pieces
            .iter()
            .filter_map(|p| match p {
                SqlPiece::Param(n) => Some(*n),
                _ => None,
            })
            .collect();
        assert_eq!(params, vec!["a", "b_2"]);
    }
}
