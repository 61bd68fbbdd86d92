//! A warehouse that fails on cue: every call passes to the real one (DuckDB or the BigQuery
//! emulator) until a test arms a fault, then the armed calls answer `Unavailable` without
//! reaching it, as an outage would:
//!
//! - [`Faults::fail_commits`]: the next commits of stagings of a table (the staged rows are then
//!   dropped uncommitted, as a failed commit leaves them);
//! - [`Faults::fail_appends`]: appends to an insert-only table (the run log's events), after a
//!   number that pass;
//! - [`Faults::fail_event_appends`]: appends of one kind of run-log event (`finished`), whatever
//!   other events (heartbeats) are written meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::warehouse::{
    DatasetOptions, Field, Params, Record, RecordBatches, Row, Staging, TableSchema, Warehouse, WarehouseError,
    WarehouseResult,
};

/// The faults armed, by table name: how many more calls of that kind pass, then how many fail.
#[derive(Default)]
pub struct Faults {
    commits: Mutex<HashMap<String, (usize, usize)>>,
    appends: Mutex<HashMap<String, (usize, usize)>>,
}

/// What the failing calls say.
pub const FAULT: &str = "injected outage (faulty_warehouse)";

impl Faults {
    /// The next `times` commits of a staging of `table` fail.
    pub fn fail_commits(&self, table: &str, times: usize) {
        self.commits.lock().unwrap().insert(table.to_string(), (0, times));
    }

    /// After `skip` more appends (`append_rows`) to `table` pass, the next `times` fail.
    pub fn fail_appends(&self, table: &str, skip: usize, times: usize) {
        self.appends.lock().unwrap().insert(table.to_string(), (skip, times));
    }

    /// The next `times` appends to `table` of rows whose `event` is `event` fail; other appends
    /// pass.
    pub fn fail_event_appends(&self, table: &str, event: &str, times: usize) {
        self.appends.lock().unwrap().insert(event_key(table, event), (0, times));
    }

    /// Faults armed but not yet hit.
    pub fn pending(&self) -> usize {
        let left =
            |m: &Mutex<HashMap<String, (usize, usize)>>| m.lock().unwrap().values().map(|(_, t)| t).sum::<usize>();
        left(&self.commits) + left(&self.appends)
    }

    fn take(map: &Mutex<HashMap<String, (usize, usize)>>, table: &str) -> WarehouseResult<()> {
        match map.lock().unwrap().get_mut(table) {
            Some((skip, _)) if *skip > 0 => {
                *skip -= 1;
                Ok(())
            }
            Some((_, left)) if *left > 0 => {
                *left -= 1;
                Err(WarehouseError::Unavailable(format!("{FAULT} on {table}")))
            }
            _ => Ok(()),
        }
    }
}

fn event_key(table: &str, event: &str) -> String {
    format!("{table}#{event}")
}

pub struct FaultyWarehouse {
    inner: Arc<dyn Warehouse>,
    faults: Arc<Faults>,
}

impl FaultyWarehouse {
    /// `inner` behind faults a test arms through the returned handle.
    pub fn wrap(inner: Arc<dyn Warehouse>, faults: Arc<Faults>) -> Arc<dyn Warehouse> {
        Arc::new(FaultyWarehouse { inner, faults })
    }
}

#[async_trait]
impl Warehouse for FaultyWarehouse {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    fn table_ref(&self, dataset: &str, table: &str) -> WarehouseResult<String> {
        self.inner.table_ref(dataset, table)
    }
    async fn ping(&self) -> WarehouseResult<()> {
        self.inner.ping().await
    }
    async fn dataset_exists(&self, dataset: &str) -> WarehouseResult<bool> {
        self.inner.dataset_exists(dataset).await
    }
    async fn create_dataset(&self, dataset: &str, options: &DatasetOptions) -> WarehouseResult<bool> {
        self.inner.create_dataset(dataset, options).await
    }
    async fn drop_dataset(&self, dataset: &str) -> WarehouseResult<()> {
        self.inner.drop_dataset(dataset).await
    }
    async fn list_tables(&self, dataset: &str) -> WarehouseResult<Vec<String>> {
        self.inner.list_tables(dataset).await
    }
    async fn list_all_tables(&self, dataset: &str) -> WarehouseResult<Vec<String>> {
        self.inner.list_all_tables(dataset).await
    }
    async fn create_table(&self, dataset: &str, schema: &TableSchema) -> WarehouseResult<bool> {
        self.inner.create_table(dataset, schema).await
    }
    async fn drop_table(&self, dataset: &str, table: &str) -> WarehouseResult<()> {
        self.inner.drop_table(dataset, table).await
    }
    async fn table_columns(&self, dataset: &str, table: &str) -> WarehouseResult<Vec<String>> {
        self.inner.table_columns(dataset, table).await
    }
    async fn add_column(&self, dataset: &str, table: &str, field: &Field) -> WarehouseResult<()> {
        self.inner.add_column(dataset, table, field).await
    }
    async fn drop_column(&self, dataset: &str, table: &str, column: &str) -> WarehouseResult<()> {
        self.inner.drop_column(dataset, table, column).await
    }
    async fn create_view(&self, dataset: &str, view: &str, select_sql: &str) -> WarehouseResult<()> {
        self.inner.create_view(dataset, view, select_sql).await
    }
    async fn query(&self, sql: &str, params: &Params) -> WarehouseResult<Vec<Row>> {
        self.inner.query(sql, params).await
    }
    async fn execute(&self, sql: &str, params: &Params) -> WarehouseResult<u64> {
        self.inner.execute(sql, params).await
    }
    async fn insert_rows(&self, dataset: &str, schema: &TableSchema, rows: &[Row]) -> WarehouseResult<u64> {
        self.inner.insert_rows(dataset, schema, rows).await
    }
    async fn append_rows(
        &self,
        dataset: &str,
        schema: &TableSchema,
        id_column: &str,
        rows: &[Row],
    ) -> WarehouseResult<u64> {
        if let Some(event) = rows.first().and_then(|r| r.get("event")).and_then(serde_json::Value::as_str) {
            Faults::take(&self.faults.appends, &event_key(&schema.name, event))?;
        }
        Faults::take(&self.faults.appends, &schema.name)?;
        self.inner.append_rows(dataset, schema, id_column, rows).await
    }
    async fn replace_slice(
        &self,
        dataset: &str,
        schema: &TableSchema,
        predicate: &str,
        params: &Params,
        rows: &[Row],
    ) -> WarehouseResult<(u64, u64)> {
        self.inner.replace_slice(dataset, schema, predicate, params, rows).await
    }
    async fn replace_slice_from_select(
        &self,
        dataset: &str,
        schema: &TableSchema,
        predicate: &str,
        params: &Params,
        select_sql: &str,
    ) -> WarehouseResult<(u64, u64)> {
        self.inner.replace_slice_from_select(dataset, schema, predicate, params, select_sql).await
    }
    async fn query_batches(&self, sql: &str, params: &Params, batch_rows: usize) -> WarehouseResult<RecordBatches> {
        self.inner.query_batches(sql, params, batch_rows).await
    }
    async fn stage(
        &self,
        dataset: &str,
        schema: &TableSchema,
        predicate: &str,
        params: &Params,
    ) -> WarehouseResult<Box<dyn Staging>> {
        let inner = self.inner.stage(dataset, schema, predicate, params).await?;
        Ok(Box::new(FaultyStaging { inner, table: schema.name.clone(), faults: self.faults.clone() }))
    }
}

struct FaultyStaging {
    inner: Box<dyn Staging>,
    table: String,
    faults: Arc<Faults>,
}

#[async_trait]
impl Staging for FaultyStaging {
    async fn append(&mut self, records: Vec<Record>) -> WarehouseResult<u64> {
        self.inner.append(records).await
    }
    async fn append_select(&mut self, select_sql: &str, params: &Params) -> WarehouseResult<u64> {
        self.inner.append_select(select_sql, params).await
    }
    fn staged(&self) -> u64 {
        self.inner.staged()
    }
    async fn commit(self: Box<Self>) -> WarehouseResult<(u64, u64)> {
        // A failed commit: the inner staging is dropped uncommitted, which is what a commit
        // that never happened leaves behind on either backend.
        Faults::take(&self.faults.commits, &self.table)?;
        self.inner.commit().await
    }
    async fn discard(self: Box<Self>) -> WarehouseResult<()> {
        self.inner.discard().await
    }
}
