//! The warehouse conformance suite: one set of cases over the `Warehouse` trait, run on every
//! backend (DuckDB always; BigQuery against an emulator). It uses nothing but the trait and SQL in
//! the common subset of BigQuery and DuckDB: `@name` parameters, table references from
//! `table_ref`, standard SQL (no `::` casts, no dialect-only functions).
//!
//! Every case takes the warehouse and a dataset name, creates that dataset itself (dropping any
//! leftover of an earlier run first), and drops it at the end, so cases are independent and can
//! run in parallel on one warehouse. `run_all` runs them in turn with names derived from a prefix.

use common::warehouse::{
    render_table_refs, to_keyed_row, to_record, to_records, to_row, Cell, DatasetAccess, DatasetOptions, Field,
    FieldType, Param, Params, Record, Row, TableSchema, Warehouse, WarehouseError, WarehouseResult,
};
use serde_json::{json, Value};

/// Runs every case, each in its own dataset `<prefix>_<case>`.
pub async fn run_all(warehouse: &dyn Warehouse, prefix: &str) {
    let ds = |case: &str| format!("{prefix}_{case}");
    ping(warehouse, &ds("ping")).await;
    datasets(warehouse, &ds("datasets")).await;
    hostile_identifiers(warehouse, &ds("hostile")).await;
    tables(warehouse, &ds("tables")).await;
    insert_and_query(warehouse, &ds("insert")).await;
    large_batch(warehouse, &ds("batch")).await;
    large_inserts_match_small_ones(warehouse, &ds("large_insert")).await;
    insert_refusals(warehouse, &ds("refusals")).await;
    parameters(warehouse, &ds("params")).await;
    execute_counts(warehouse, &ds("execute")).await;
    views(warehouse, &ds("views")).await;
    replace_slice(warehouse, &ds("replace")).await;
    staged_replace(warehouse, &ds("staged")).await;
    staged_from_select(warehouse, &ds("staged_select")).await;
    staged_types(warehouse, &ds("staged_types")).await;
    concurrent_stagings(warehouse, &ds("staged_concurrent")).await;
    abandoned_stagings(warehouse, &ds("staged_abandoned")).await;
    a_staging_waits_for_one_of_its_slice(warehouse, &ds("staged_wait")).await;
    no_table_per_staging(warehouse, &ds("staged_tables")).await;
    query_batches(warehouse, &ds("batches")).await;
    render_refs(warehouse, &ds("render")).await;
    evolve_columns(warehouse, &ds("evolve")).await;
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A schema from BigQuery table-schema JSON, named `name`.
pub fn schema(name: &str, json: &str) -> TableSchema {
    let mut s: TableSchema = serde_json::from_str(json).unwrap_or_else(|e| panic!("schema {name} does not parse: {e}"));
    s.name = name.to_string();
    assert!(s.problems().is_empty(), "schema {name} has problems: {:?}", s.problems());
    s
}

/// A row from a JSON object literal.
pub fn row(value: Value) -> Row {
    assert!(value.is_object(), "a row must be a JSON object: {value}");
    to_row(value)
}

/// A table with every field type and mode.
pub fn all_types_schema(name: &str) -> TableSchema {
    schema(
        name,
        r#"{
          "description": "every field type and mode",
          "fields": [
            {"name": "id", "type": "INT64", "mode": "REQUIRED"},
            {"name": "name", "type": "STRING", "mode": "REQUIRED"},
            {"name": "raw", "type": "BYTES"},
            {"name": "qty", "type": "INTEGER"},
            {"name": "ratio", "type": "FLOAT64"},
            {"name": "amount", "type": "NUMERIC"},
            {"name": "flag", "type": "BOOL"},
            {"name": "happened_at", "type": "TIMESTAMP"},
            {"name": "day", "type": "DATE"},
            {"name": "doc", "type": "JSON"},
            {"name": "rec", "type": "RECORD", "fields": [
              {"name": "label", "type": "STRING"},
              {"name": "n", "type": "INT64"},
              {"name": "price", "type": "NUMERIC"},
              {"name": "seen", "type": "TIMESTAMP"},
              {"name": "tags", "type": "STRING", "mode": "REPEATED"}
            ]},
            {"name": "tags", "type": "STRING", "mode": "REPEATED"},
            {"name": "items", "type": "RECORD", "mode": "REPEATED", "fields": [
              {"name": "sku", "type": "STRING", "mode": "REQUIRED"},
              {"name": "units", "type": "INT64"},
              {"name": "price", "type": "NUMERIC"}
            ]}
          ]
        }"#,
    )
}

/// A small table: `id INT64 REQUIRED, name STRING, qty INT64, day DATE`.
pub fn simple_schema(name: &str) -> TableSchema {
    schema(
        name,
        r#"{"description": "simple", "fields": [
            {"name": "id", "type": "INT64", "mode": "REQUIRED"},
            {"name": "name", "type": "STRING"},
            {"name": "qty", "type": "INT64"},
            {"name": "day", "type": "DATE"}
        ]}"#,
    )
}

/// Drops any leftover of `dataset` and creates it afresh.
async fn fresh_dataset(w: &dyn Warehouse, dataset: &str) {
    w.drop_dataset(dataset).await.unwrap_or_else(|e| panic!("dropping leftover dataset {dataset}: {e}"));
    let created = w
        .create_dataset(dataset, &DatasetOptions::default())
        .await
        .unwrap_or_else(|e| panic!("create_dataset({dataset}): {e}"));
    assert!(created, "create_dataset({dataset}) after dropping it should return true");
}

async fn cleanup(w: &dyn Warehouse, dataset: &str) {
    w.drop_dataset(dataset).await.unwrap_or_else(|e| panic!("drop_dataset({dataset}) at the end of the case: {e}"));
}

fn tref(w: &dyn Warehouse, dataset: &str, table: &str) -> String {
    w.table_ref(dataset, table).unwrap_or_else(|e| panic!("table_ref({dataset}, {table}): {e}"))
}

async fn create(w: &dyn Warehouse, dataset: &str, s: &TableSchema) {
    let created =
        w.create_table(dataset, s).await.unwrap_or_else(|e| panic!("create_table({dataset}.{}): {e}", s.name));
    assert!(created, "create_table({dataset}.{}) on a new table should return true", s.name);
}

async fn insert(w: &dyn Warehouse, dataset: &str, s: &TableSchema, rows: &[Row]) {
    let n =
        w.insert_rows(dataset, s, rows).await.unwrap_or_else(|e| panic!("insert_rows into {dataset}.{}: {e}", s.name));
    assert_eq!(n, rows.len() as u64, "insert_rows into {dataset}.{} reported", s.name);
}

async fn query(w: &dyn Warehouse, sql: &str, params: &Params) -> Vec<Row> {
    w.query(sql, params).await.unwrap_or_else(|e| panic!("query failed: {e}\nSQL: {sql}\nparams: {params:?}"))
}

/// `SELECT COUNT(*)` of a table.
async fn count(w: &dyn Warehouse, dataset: &str, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) AS n FROM {}", tref(w, dataset, table));
    let rows = query(w, &sql, &Params::new()).await;
    assert_eq!(rows.len(), 1, "COUNT(*) returns one row: {rows:?}");
    rows[0]["n"].as_i64().unwrap_or_else(|| panic!("COUNT(*) should be an INT64 number, got {}", rows[0]["n"]))
}

/// Every row of a table, ordered by `order_by`.
async fn all_rows(w: &dyn Warehouse, dataset: &str, table: &str, order_by: &str) -> Vec<Row> {
    let sql = format!("SELECT * FROM {} ORDER BY {order_by}", tref(w, dataset, table));
    query(w, &sql, &Params::new()).await
}

/// Fails unless `result` is `WarehouseError::Invalid`.
#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: WarehouseResult<T>, what: &str) {
    match result {
        Err(WarehouseError::Invalid(_)) => {}
        other => panic!("{what}: expected WarehouseError::Invalid, got {other:?}"),
    }
}

/// Parses the canonical JSON column form (a string holding the document).
#[track_caller]
fn parse_json_column(value: &Value, what: &str) -> Value {
    let text = value.as_str().unwrap_or_else(|| panic!("{what}: a JSON column reads back as a string, got {value}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: {text:?} is not JSON: {e}"))
}

/// A typed parameter value from its JSON form (so this crate needs no chrono/rust_decimal).
fn numeric(text: &str) -> Param {
    Param::Numeric(serde_json::from_value(json!(text)).expect("decimal"))
}
fn timestamp(text: &str) -> Param {
    Param::Timestamp(serde_json::from_value(json!(text)).expect("RFC 3339 timestamp"))
}
fn date(text: &str) -> Param {
    Param::Date(serde_json::from_value(json!(text)).expect("YYYY-MM-DD date"))
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

/// `ping` answers.
pub async fn ping(w: &dyn Warehouse, _dataset: &str) {
    w.ping().await.expect("ping");
    assert!(matches!(w.backend_name(), "duckdb" | "bigquery"), "backend_name is {:?}", w.backend_name());
}

/// Dataset lifecycle: exists / create (true, then false) / drop (also when absent).
pub async fn datasets(w: &dyn Warehouse, ds: &str) {
    w.drop_dataset(ds).await.expect("dropping a leftover (or absent) dataset");
    assert!(!w.dataset_exists(ds).await.expect("dataset_exists"), "{ds} should not exist yet");

    // Access entries as onboard sends them (BigQuery grants them; DuckDB has no access control).
    let access = DatasetAccess::list(
        &["owner@acme-prod-1.iam.gserviceaccount.com".into()],
        &["writer@acme-prod-1.iam.gserviceaccount.com".into()],
        &["reader@acme-prod-1.iam.gserviceaccount.com".into()],
    );
    let options = DatasetOptions {
        description: "conformance".into(),
        labels: vec![("suite".into(), "conformance".into())],
        access,
    };
    assert!(
        w.create_dataset(ds, &options).await.expect("create_dataset"),
        "create_dataset of a new dataset returns true"
    );
    assert!(w.dataset_exists(ds).await.expect("dataset_exists"), "{ds} exists after create");
    assert_eq!(w.list_tables(ds).await.expect("list_tables"), Vec::<String>::new(), "a new dataset has no tables");

    // A table in it, to prove the second create leaves the dataset as it was.
    let s = simple_schema("keep");
    create(w, ds, &s).await;
    assert!(
        !w.create_dataset(ds, &options).await.expect("second create_dataset"),
        "create_dataset of an existing dataset returns false"
    );
    assert_eq!(w.list_tables(ds).await.expect("list_tables"), vec!["keep".to_string()]);

    // A dataset with a similar name is a different dataset.
    let other = format!("{ds}_other");
    assert!(!w.dataset_exists(&other).await.expect("dataset_exists"), "{other} should not exist");

    w.drop_dataset(ds).await.expect("drop_dataset (with a table in it)");
    assert!(!w.dataset_exists(ds).await.expect("dataset_exists"), "{ds} gone after drop");
    w.drop_dataset(ds).await.expect("dropping an absent dataset is Ok");
    assert!(!w.dataset_exists(ds).await.expect("dataset_exists"), "{ds} still absent");

    // Created again after a drop, it is empty.
    assert!(w.create_dataset(ds, &options).await.expect("re-create"), "re-create returns true");
    assert_eq!(w.list_tables(ds).await.expect("list_tables"), Vec::<String>::new());
    cleanup(w, ds).await;
}

/// Names that are not identifiers are refused with `Invalid` by every operation, and nothing
/// they smuggle in is executed (canary datasets and tables survive).
pub async fn hostile_identifiers(w: &dyn Warehouse, ds: &str) {
    fresh_dataset(w, ds).await;
    let aux = format!("{ds}_aux");
    fresh_dataset(w, &aux).await;
    let canary = schema("t", r#"{"description": "canary", "fields": [{"name": "x", "type": "INT64"}]}"#);
    create(w, ds, &canary).await;
    create(w, &aux, &canary).await;
    insert(w, ds, &canary, &[row(json!({"x": 1}))]).await;

    let hostile: Vec<String> = vec![
        "a;DROP".into(),
        "x\"y".into(),
        "`x`".into(),
        "a b".into(),
        String::new(),
        "a.b".into(),
        "a-b".into(),
        "a'b".into(),
        "1abc".into(),
        "a\nb".into(),
        "x".repeat(1100),
        format!("{ds}\"; DROP SCHEMA \"{ds}\" CASCADE; --"),
        format!("{ds}`; DROP SCHEMA `{ds}` CASCADE; --"),
        format!("{ds}.t"),
    ];
    let options = DatasetOptions::default();
    let good = simple_schema("good");
    for name in &hostile {
        let n = name.as_str();
        assert_invalid(w.table_ref(n, "t"), &format!("table_ref({n:?}, t)"));
        assert_invalid(w.table_ref(ds, n), &format!("table_ref({ds}, {n:?})"));
        assert_invalid(w.dataset_exists(n).await, &format!("dataset_exists({n:?})"));
        assert_invalid(w.create_dataset(n, &options).await, &format!("create_dataset({n:?})"));
        assert_invalid(w.drop_dataset(n).await, &format!("drop_dataset({n:?})"));
        assert_invalid(w.list_tables(n).await, &format!("list_tables({n:?})"));
        assert_invalid(w.create_table(n, &good).await, &format!("create_table({n:?}, good)"));
        let mut bad_table = good.clone();
        bad_table.name = name.clone();
        assert_invalid(w.create_table(ds, &bad_table).await, &format!("create_table named {n:?}"));
        assert_invalid(w.drop_table(n, "t").await, &format!("drop_table({n:?}, t)"));
        assert_invalid(w.drop_table(ds, n).await, &format!("drop_table({ds}, {n:?})"));
        assert_invalid(w.create_view(n, "v", "SELECT 1 AS x").await, &format!("create_view({n:?}, v)"));
        assert_invalid(w.create_view(ds, n, "SELECT 1 AS x").await, &format!("create_view({ds}, {n:?})"));
        let rows = [row(json!({"id": 1}))];
        assert_invalid(w.insert_rows(n, &good, &rows).await, &format!("insert_rows into {n:?}"));
        assert_invalid(w.insert_rows(ds, &bad_table, &rows).await, &format!("insert_rows into table named {n:?}"));
        assert_invalid(
            w.replace_slice(n, &good, "id = @id", &Params::new().bind("id", 1i64), &rows).await,
            &format!("replace_slice in {n:?}"),
        );
        assert_invalid(
            w.replace_slice(ds, &bad_table, "id = @id", &Params::new().bind("id", 1i64), &rows).await,
            &format!("replace_slice in table named {n:?}"),
        );
    }

    // A column name is an identifier too, also when the schema was never created through
    // create_table: insert_rows must refuse it rather than splice it into SQL. These names would
    // drop the canary dataset if they reached the SQL text unquoted.
    let injections = [
        format!("x\") VALUES (1); DROP SCHEMA \"{ds}\" CASCADE; INSERT INTO \"{aux}\".\"t\" (\"x"),
        format!("x`) VALUES (1); DROP SCHEMA `{ds}` CASCADE; INSERT INTO `{aux}`.`t` (`x"),
        "a\"b".to_string(),
        "a b".to_string(),
    ];
    for column in &injections {
        let mut bad_columns = canary.clone();
        bad_columns.fields[0].name = column.clone();
        assert_invalid(
            w.insert_rows(ds, &bad_columns, &[Row::new()]).await,
            &format!("insert_rows with column {column:?}"),
        );
        assert_invalid(
            w.replace_slice(ds, &bad_columns, "1 = 0", &Params::new(), &[Row::new()]).await,
            &format!("replace_slice with column {column:?}"),
        );
        assert_invalid(w.create_table(ds, &bad_columns).await, &format!("create_table with column {column:?}"));
        // A RECORD sub-field name too.
        let nested = schema(
            "t",
            r#"{"description": "nested", "fields": [{"name": "x", "type": "INT64"},
                {"name": "r", "type": "RECORD", "fields": [{"name": "y", "type": "STRING"}]}]}"#,
        );
        let mut bad_nested = nested.clone();
        bad_nested.fields[1].fields[0].name = column.clone();
        assert_invalid(
            w.insert_rows(ds, &bad_nested, &[row(json!({"x": 2}))]).await,
            &format!("insert_rows with sub-field {column:?}"),
        );
    }

    // Nothing was executed: both canaries are intact and nothing new appeared.
    assert!(w.dataset_exists(ds).await.expect("dataset_exists"), "canary dataset {ds} was dropped");
    assert!(w.dataset_exists(&aux).await.expect("dataset_exists"), "canary dataset {aux} was dropped");
    assert_eq!(w.list_tables(ds).await.expect("list_tables"), vec!["t".to_string()]);
    assert_eq!(w.list_tables(&aux).await.expect("list_tables"), vec!["t".to_string()]);
    assert_eq!(count(w, ds, "t").await, 1, "canary table {ds}.t changed");
    assert_eq!(count(w, &aux, "t").await, 0, "canary table {aux}.t changed");
    cleanup(w, ds).await;
    cleanup(w, &aux).await;
}

/// Tables from schema JSON: create (true, then false), list (sorted), drop (also absent).
pub async fn tables(w: &dyn Warehouse, ds: &str) {
    fresh_dataset(w, ds).await;
    let s = all_types_schema("all_types");
    create(w, ds, &s).await;
    insert(w, ds, &s, &[row(json!({"id": 1, "name": "kept"}))]).await;
    assert!(
        !w.create_table(ds, &s).await.expect("second create_table"),
        "create_table of an existing table returns false"
    );
    assert_eq!(count(w, ds, "all_types").await, 1, "second create_table must not touch the table");

    // A different schema under an existing name still reports false and changes nothing.
    let mut other = simple_schema("all_types");
    other.description = "other".into();
    assert!(!w.create_table(ds, &other).await.expect("create_table over an existing name"));
    assert_eq!(count(w, ds, "all_types").await, 1);

    create(w, ds, &simple_schema("z_last")).await;
    create(w, ds, &simple_schema("a_first")).await;
    create(w, ds, &simple_schema("m_middle")).await;
    assert_eq!(
        w.list_tables(ds).await.expect("list_tables"),
        vec!["a_first", "all_types", "m_middle", "z_last"],
        "list_tables is sorted by name"
    );

    // A schema with problems is refused and creates nothing.
    let broken: TableSchema = serde_json::from_str(
        r#"{"description": "record without sub-fields", "fields": [{"name": "r", "type": "RECORD"}]}"#,
    )
    .expect("parses");
    let mut broken = broken;
    broken.name = "broken".into();
    assert_invalid(w.create_table(ds, &broken).await, "create_table with a RECORD without fields");
    let mut empty = simple_schema("empty");
    empty.fields.clear();
    assert_invalid(w.create_table(ds, &empty).await, "create_table with no fields");

    // Tables in another dataset are not listed.
    let other_ds = format!("{ds}_b");
    fresh_dataset(w, &other_ds).await;
    create(w, &other_ds, &simple_schema("elsewhere")).await;
    assert!(!w.list_tables(ds).await.unwrap().contains(&"elsewhere".to_string()));

    w.drop_table(ds, "m_middle").await.expect("drop_table");
    assert_eq!(
        w.list_tables(ds).await.expect("list_tables"),
        vec!["a_first", "all_types", "z_last"],
        "drop_table removes exactly that table"
    );
    w.drop_table(ds, "m_middle").await.expect("dropping an absent table is Ok");
    w.drop_table(ds, "never_existed").await.expect("dropping an absent table is Ok");
    assert_eq!(count(w, ds, "all_types").await, 1, "other tables untouched");

    // Re-created after a drop, a table starts empty.
    create(w, ds, &simple_schema("m_middle")).await;
    assert_eq!(count(w, ds, "m_middle").await, 0);
    assert_eq!(w.list_tables(&other_ds).await.unwrap(), vec!["elsewhere"]);
    cleanup(w, &other_ds).await;
    cleanup(w, ds).await;
}

/// Rows round-trip in the canonical row form.
pub async fn insert_and_query(w: &dyn Warehouse, ds: &str) {
    fresh_dataset(w, ds).await;
    let s = all_types_schema("all_types");
    create(w, ds, &s).await;

    let doc = json!({"k": [1, 2, {"z": null}], "s": "v", "n": 1.5, "nested": {"t": true}});
    let full = row(json!({
        "id": 1,
        "name": "alpha",
        "raw": "AAEC/v8=",
        "qty": 42,
        "ratio": 0.25,
        "amount": "12345678901234567890.123456789",
        "flag": true,
        "happened_at": "2024-03-05T06:07:08.123456Z",
        "day": "2024-03-05",
        "doc": doc.to_string(),
        "rec": {"label": "r1", "n": 7, "price": "19.990", "seen": "2023-12-31T23:59:59.5Z", "tags": ["x", "y"]},
        "tags": ["red", "green", "blue"],
        "items": [
            {"sku": "A-1", "units": 2, "price": "0.1"},
            {"sku": "B-2", "units": null, "price": "100"}
        ]
    }));
    // Only the REQUIRED columns; every nullable column missing.
    let minimal = row(json!({"id": 2, "name": "beta"}));
    // Edge values: negative/zero numbers, offsets normalized to UTC, empty arrays, unicode.
    let edges = row(json!({
        "id": 3,
        "name": "gämma ✓ 'quoted' \"double\"",
        "raw": "",
        "qty": -9007199254740993_i64,
        "ratio": -1.5e-7,
        "amount": "-0.5",
        "flag": false,
        "happened_at": "2024-03-05T08:07:08+02:00",
        "day": "1999-12-31",
        "doc": "[]",
        "rec": {"label": null, "n": null, "price": "99999999999999999999999999999.999999999", "seen": null, "tags": []},
        "tags": [],
        "items": []
    }));
    let more = row(json!({
        "id": 4,
        "name": "delta",
        "qty": 9223372036854775807_i64,
        "amount": 3,
        "happened_at": "2024-03-05T06:07:08Z",
        "doc": "\"just a string\""
    }));
    insert(w, ds, &s, &[full, minimal, edges, more]).await;
    assert_eq!(count(w, ds, "all_types").await, 4);

    let mut rows = all_rows(w, ds, "all_types", "id").await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    // JSON columns hold the document as a string: compare parsed.
    let docs: Vec<Value> = rows
        .iter_mut()
        .map(|r| {
            let v = r.remove("doc").expect("doc column present");
            if v.is_null() {
                Value::Null
            } else {
                parse_json_column(&v, "doc")
            }
        })
        .collect();
    assert_eq!(docs, vec![doc, Value::Null, json!([]), json!("just a string")], "JSON column");

    let expected = [
        json!({
            "id": 1,
            "name": "alpha",
            "raw": "AAEC/v8=",
            "qty": 42,
            "ratio": 0.25,
            "amount": "12345678901234567890.123456789",
            "flag": true,
            "happened_at": "2024-03-05T06:07:08.123456Z",
            "day": "2024-03-05",
            "rec": {"label": "r1", "n": 7, "price": "19.99", "seen": "2023-12-31T23:59:59.500000Z", "tags": ["x", "y"]},
            "tags": ["red", "green", "blue"],
            "items": [
                {"sku": "A-1", "units": 2, "price": "0.1"},
                {"sku": "B-2", "units": null, "price": "100"}
            ]
        }),
        // Missing nullable columns read back NULL; a missing REPEATED column is an empty array
        // (BigQuery has no NULL arrays, and the canonical form says REPEATED is an array).
        json!({
            "id": 2,
            "name": "beta",
            "raw": null,
            "qty": null,
            "ratio": null,
            "amount": null,
            "flag": null,
            "happened_at": null,
            "day": null,
            "rec": null,
            "tags": [],
            "items": []
        }),
        json!({
            "id": 3,
            "name": "gämma ✓ 'quoted' \"double\"",
            "raw": "",
            "qty": -9007199254740993_i64,
            "ratio": -1.5e-7,
            "amount": "-0.5",
            "flag": false,
            "happened_at": "2024-03-05T06:07:08.000000Z",
            "day": "1999-12-31",
            "rec": {"label": null, "n": null, "price": "99999999999999999999999999999.999999999", "seen": null, "tags": []},
            "tags": [],
            "items": []
        }),
        json!({
            "id": 4,
            "name": "delta",
            "raw": null,
            "qty": 9223372036854775807_i64,
            "ratio": null,
            "amount": "3",
            "flag": null,
            "happened_at": "2024-03-05T06:07:08.000000Z",
            "day": null,
            "rec": null,
            "tags": [],
            "items": []
        }),
    ];
    for (actual, expected) in rows.iter().zip(expected.iter()) {
        let expected = expected.as_object().unwrap();
        for (column, want) in expected {
            assert_eq!(
                actual.get(column),
                Some(want),
                "row id={} column {column}: canonical form differs\nfull row: {}",
                expected["id"],
                Value::Object(actual.clone())
            );
        }
        let extra: Vec<_> = actual.keys().filter(|k| !expected.contains_key(*k)).collect();
        assert!(extra.is_empty(), "SELECT * returned columns not in the schema: {extra:?}");
    }

    // Selecting individual columns and nested fields with standard SQL.
    let sql = format!(
        "SELECT id, rec.label AS label, rec.price AS price, amount + amount AS twice \
         FROM {} WHERE id = @id",
        tref(w, ds, "all_types")
    );
    let got = query(w, &sql, &Params::new().bind("id", 1i64)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["label"], json!("r1"));
    assert_eq!(got[0]["price"], json!("19.99"));
    assert_eq!(got[0]["twice"], json!("24691357802469135780.246913578"), "NUMERIC arithmetic is exact");
    cleanup(w, ds).await;
}

/// A batch larger than any internal chunk lands completely.
pub async fn large_batch(w: &dyn Warehouse, ds: &str) {
    fresh_dataset(w, ds).await;
    let s = simple_schema("batch");
    create(w, ds, &s).await;
    let rows: Vec<Row> = (1..=1200)
        .map(|i| row(json!({"id": i, "name": format!("row {i}"), "qty": i % 7, "day": "2024-01-01"})))
        .collect();
    insert(w, ds, &s, &rows).await;
    assert_eq!(count(w, ds, "batch").await, 1200);
    let sql = format!(
        "SELECT COUNT(DISTINCT id) AS ids, SUM(id) AS total, MIN(id) AS lo, MAX(id) AS hi FROM {}",
        tref(w, ds, "batch")
    );
    let got = query(w, &sql, &Params::new()).await;
    assert_eq!(got[0]["ids"], json!(1200), "every id exactly once: {got:?}");
    assert_eq!(got[0]["total"], json!(1200 * 1201 / 2), "{got:?}");
    assert_eq!((got[0]["lo"].clone(), got[0]["hi"].clone()), (json!(1), json!(1200)));
    let got = query(
        w,
        &format!("SELECT name FROM {} WHERE id = @id", tref(w, ds, "batch")),
        &Params::new().bind("id", 777i64),
    )
    .await;
    assert_eq!(got, vec![row(json!({"name": "row 777"}))]);

    // An empty insert is a no-op.
    assert_eq!(w.insert_rows(ds, &s, &[]).await.expect("empty insert"), 0);
    assert_eq!(count(w, ds, "batch").await, 1200);
    cleanup(w, ds).await;
}

/// Refused inserts write nothing at all.
pub async fn insert_refusals(w: &dyn Warehouse, ds: &str) {
    fresh_dataset(w, ds).await;
    let s = simple_schema("t");
    create(w, ds, &s).await;
    let good = |i: i64| row(json!({"id": i, "name": format!("n{i}")}));

    // Unknown column in the last row.
    let rows = vec![good(1), good(2), row(json!({"id": 3, "nope": 1}))];
    assert_invalid(w.insert_rows(ds, &s, &rows).await, "insert with an unknown column");
    assert_eq!(count(w, ds, "t").await, 0, "a refused insert must insert nothing");

    // Missing REQUIRED, and REQUIRED given as null.
    let rows = vec![good(1), row(json!({"name": "no id"})), good(3)];
    assert!(w.insert_rows(ds, &s, &rows).await.is_err(), "missing REQUIRED must be refused");
    assert_eq!(count(w, ds, "t").await, 0, "missing REQUIRED: nothing inserted");
    let rows = vec![good(1), row(json!({"id": null, "name": "null id"}))];
    assert!(w.insert_rows(ds, &s, &rows).await.is_err(), "null REQUIRED must be refused");
    assert_eq!(count(w, ds, "t").await, 0, "null REQUIRED: nothing inserted");

    // A value of the wrong type deep in a batch (past the first chunk): still all-or-nothing.
    let mut rows: Vec<Row> = (1..=800).map(good).collect();
    rows[700] = row(json!({"id": 701, "qty": "not a number"}));
    assert!(w.insert_rows(ds, &s, &rows).await.is_err(), "a non-integer INT64 must be refused");
    assert_eq!(count(w, ds, "t").await, 0, "a failing row 701 of 800 must roll back rows 1..700");

    // Wrong shapes: an array for a scalar, an object for a date, a number for a date.
    for bad in
        [json!({"id": 1, "name": ["a"]}), json!({"id": 1, "day": {"y": 1}}), json!({"id": 1, "day": "not a date"})]
    {
        assert!(w.insert_rows(ds, &s, &[good(9), row(bad.clone())]).await.is_err(), "{bad} must be refused");
        assert_eq!(count(w, ds, "t").await, 0, "{bad}: nothing inserted");
    }

    // The table still works afterwards.
    insert(w, ds, &s, &[good(1), good(2)]).await;
    assert_eq!(count(w, ds, "t").await, 2);
    cleanup(w, ds).await;
}

/// Every `Param` variant binds; parameters are values, never SQL.
pub async fn parameters(w: &dyn Warehouse, ds: &str) {
    fresh_dataset(w, ds).await;

    // Every variant selected back in canonical form.
    let params = Params::new()
        .bind("s", "text with 'quotes' and @at")
        .bind("i", i64::MAX)
        .bind("neg", -42i64)
        .bind("f", Param::Float64(2.5))
        .bind("b", true)
        .bind("n", numeric("12345678901234567890.123456789"))
        .bind("tenth", numeric("0.1"))
        .bind("ts", timestamp("2024-03-05T06:07:08.123456Z"))
        .bind("d", date("2024-02-29"))
        .bind("j", Param::Json(json!({"a": [1, "two", null], "b": {"c": false}})))
        .bind("raw", Param::Bytes(vec![0, 1, 2, 254, 255]))
        .bind("null_i", Param::Null(FieldType::Int64))
        .bind("null_s", Param::Null(FieldType::String));
    let got = query(
        w,
        "SELECT @s AS s, @i AS i, @neg AS neg, @f AS f, @b AS b, @n AS n, @tenth AS tenth, \
         @ts AS ts, @d AS d, @j AS j, @raw AS raw, @null_i AS null_i, @null_s AS null_s",
        &params,
    )
    .await;
    assert_eq!(got.len(), 1, "{got:?}");
    let r = &got[0];
    assert_eq!(r["s"], json!("text with 'quotes' and @at"), "STRING param");
    assert_eq!(r["i"], json!(i64::MAX), "INT64 param is exact");
    assert_eq!(r["neg"], json!(-42), "negative INT64 param");
    assert_eq!(r["f"], json!(2.5), "FLOAT64 param");
    assert_eq!(r["b"], json!(true), "BOOL param");
    assert_eq!(r["n"], json!("12345678901234567890.123456789"), "NUMERIC param is exact");
    assert_eq!(r["tenth"], json!("0.1"), "NUMERIC 0.1 stays 0.1");
    assert_eq!(r["ts"], json!("2024-03-05T06:07:08.123456Z"), "TIMESTAMP param");
    assert_eq!(r["d"], json!("2024-02-29"), "DATE param");
    assert_eq!(
        parse_json_column(&r["j"], "JSON param"),
        json!({"a": [1, "two", null], "b": {"c": false}}),
        "JSON param"
    );
    assert_eq!(r["raw"], json!("AAEC/v8="), "BYTES param as base64");
    assert_eq!(r["null_i"], Value::Null, "typed NULL (INT64)");
    assert_eq!(r["null_s"], Value::Null, "typed NULL (STRING)");

    // Typed parameters take part in expressions with their type.
    let got = query(
        w,
        "SELECT @i2 + 1 AS i, @n + @n AS n, COALESCE(@null_i, 5) AS c, @d < @d2 AS is_before",
        &Params::new()
            .bind("i2", 41i64)
            .bind("n", numeric("0.1"))
            .bind("null_i", Param::Null(FieldType::Int64))
            .bind("d", date("2024-01-31"))
            .bind("d2", date("2024-02-01")),
    )
    .await;
    assert_eq!(got[0]["i"], json!(42));
    assert_eq!(got[0]["n"], json!("0.2"), "NUMERIC addition is exact (not 0.2000000001)");
    assert_eq!(got[0]["c"], json!(5));
    assert_eq!(got[0]["is_before"], json!(true), "DATE params compare as dates, not text");

    // Every variant compared in a WHERE clause against stored values.
    let s = all_types_schema("t");
    create(w, ds, &s).await;
    insert(
        w,
        ds,
        &s,
        &[
            row(json!({
                "id": 1, "name": "one", "raw": "AAEC/v8=", "qty": 10, "ratio": 2.5,
                "amount": "0.1", "flag": true, "happened_at": "2024-03-05T06:07:08.123456Z", "day": "2024-02-29"
            })),
            row(json!({
                "id": 2, "name": "two", "raw": "AQ==", "qty": 20, "ratio": 3.5,
                "amount": "0.2", "flag": false, "happened_at": "2024-03-05T06:07:09Z", "day": "2024-03-01"
            })),
        ],
    )
    .await;
    let t = tref(w, ds, "t");
    let where_ids = |column: &str, op: &str| format!("SELECT id FROM {t} WHERE {column} {op} @v ORDER BY id");
    let cases: Vec<(&str, Param, Vec<i64>)> = vec![
        ("name", "one".into(), vec![1]),
        ("qty", 20i64.into(), vec![2]),
        ("ratio", Param::Float64(2.5), vec![1]),
        ("flag", false.into(), vec![2]),
        ("amount", numeric("0.1"), vec![1]),
        ("amount", numeric("0.10000"), vec![1]),
        ("happened_at", timestamp("2024-03-05T06:07:08.123456Z"), vec![1]),
        ("happened_at", timestamp("2024-03-05T06:07:08.123457Z"), vec![]),
        ("day", date("2024-03-01"), vec![2]),
        ("raw", Param::Bytes(vec![1]), vec![2]),
        ("raw", Param::Bytes(vec![0, 1, 2, 254, 255]), vec![1]),
    ];
    for (column, value, want) in cases {
        let got = query(w, &where_ids(column, "="), &Params::new().bind("v", value.clone())).await;
        let ids: Vec<i64> = got.iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, want, "WHERE {column} = {value:?}");
    }
    let got =
        query(w, &where_ids("happened_at", ">"), &Params::new().bind("v", timestamp("2024-03-05T06:07:08.5Z"))).await;
    assert_eq!(got, vec![row(json!({"id": 2}))], "TIMESTAMP ordering");
    let got = query(
        w,
        &format!("SELECT id FROM {t} WHERE @v IS NULL AND id = 1"),
        &Params::new().bind("v", Param::Null(FieldType::Timestamp)),
    )
    .await;
    assert_eq!(got.len(), 1, "a NULL param IS NULL");

    // The same parameter used twice (and bound once).
    let got = query(
        w,
        &format!("SELECT id FROM {t} WHERE qty = @q OR id * 10 = @q ORDER BY id"),
        &Params::new().bind("q", 20i64),
    )
    .await;
    assert_eq!(got, vec![row(json!({"id": 2}))]);
    let got = query(w, "SELECT @x + @x AS v, @x AS x", &Params::new().bind("x", 21i64)).await;
    assert_eq!(got[0]["v"], json!(42), "same param twice");
    assert_eq!(got[0]["x"], json!(21));

    // An unbound parameter is an error, not NULL.
    let unbound = w.query("SELECT @missing AS v", &Params::new()).await;
    assert!(unbound.is_err(), "an unbound @missing must be an error, got {unbound:?}");
    let unbound =
        w.query(&format!("SELECT id FROM {t} WHERE id = @id AND name = @nm"), &Params::new().bind("id", 1i64)).await;
    assert!(unbound.is_err(), "one unbound parameter among bound ones must be an error, got {unbound:?}");

    let got = query(w, "SELECT 'mail@example.com' AS v, @p AS p", &Params::new().bind("p", "bound")).await;
    assert_eq!(got[0]["v"], json!("mail@example.com"), "a literal @ is text");
    assert_eq!(got[0]["p"], json!("bound"));

    // Hostile values are stored and read back literally, through execute and insert_rows.
    let nasty = "'; DROP TABLE x; -- and @other \"; DROP TABLE t; -- `t` \\ ' )";
    let n = w
        .execute(
            &format!("INSERT INTO {t} (id, name) VALUES (@id, @name)"),
            &Params::new().bind("id", 10i64).bind("name", nasty).bind("other", "SUBSTITUTED"),
        )
        .await
        .expect("INSERT with a hostile string parameter");
    assert_eq!(n, 1, "INSERT reports one row");
    // REPEATED columns left out of a DML INSERT are empty arrays (BigQuery has no NULL arrays).
    let got =
        query(w, &format!("SELECT tags, items, rec FROM {t} WHERE id = @id"), &Params::new().bind("id", 10i64)).await;
    assert_eq!(got, vec![row(json!({"tags": [], "items": [], "rec": null}))], "omitted columns after DML INSERT");
    insert(w, ds, &s, &[row(json!({"id": 11, "name": nasty}))]).await;
    let got = query(
        w,
        &format!("SELECT id, name FROM {t} WHERE name = @name ORDER BY id"),
        &Params::new().bind("name", nasty).bind("other", "SUBSTITUTED"),
    )
    .await;
    assert_eq!(
        got,
        vec![row(json!({"id": 10, "name": nasty})), row(json!({"id": 11, "name": nasty}))],
        "hostile strings round-trip literally"
    );
    assert!(w.list_tables(ds).await.unwrap().contains(&"t".to_string()), "table t still exists");
    assert_eq!(count(w, ds, "t").await, 4, "table t still has every row");
    cleanup(w, ds).await;
}

/// `execute` returns the number of affected rows.
pub async fn execute_counts(w: &dyn Warehouse, ds: &str) {
    fresh_dataset(w, ds).await;
    let s = simple_schema("t");
    create(w, ds, &s).await;
    let rows: Vec<Row> = (1..=5)
        .map(|i| {
            let day = if i <= 3 { "2024-01-01" } else { "2024-01-02" };
            row(json!({"id": i, "name": format!("n{i}"), "qty": i * 10, "day": day}))
        })
        .collect();
    insert(w, ds, &s, &rows).await;
    let t = tref(w, ds, "t");

    let n = w
        .execute(
            &format!("UPDATE {t} SET qty = qty + @inc, name = @name WHERE day = @day"),
            &Params::new().bind("inc", 1i64).bind("name", "updated").bind("day", date("2024-01-01")),
        )
        .await
        .expect("UPDATE");
    assert_eq!(n, 3, "UPDATE affected rows");
    let got = query(w, &format!("SELECT id, qty, name FROM {t} ORDER BY id"), &Params::new()).await;
    let got: Vec<(i64, i64, String)> = got
        .iter()
        .map(|r| (r["id"].as_i64().unwrap(), r["qty"].as_i64().unwrap(), r["name"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, 11, "updated".into()),
            (2, 21, "updated".into()),
            (3, 31, "updated".into()),
            (4, 40, "n4".into()),
            (5, 50, "n5".into())
        ]
    );

    let n = w
        .execute(&format!("UPDATE {t} SET qty = 0 WHERE id = @id"), &Params::new().bind("id", 99i64))
        .await
        .expect("UPDATE matching nothing");
    assert_eq!(n, 0, "UPDATE matching nothing affects 0 rows");

    let n = w
        .execute(&format!("DELETE FROM {t} WHERE id >= @from"), &Params::new().bind("from", 4i64))
        .await
        .expect("DELETE");
    assert_eq!(n, 2, "DELETE affected rows");
    assert_eq!(count(w, ds, "t").await, 3);
    let n = w
        .execute(&format!("DELETE FROM {t} WHERE id >= @from"), &Params::new().bind("from", 4i64))
        .await
        .expect("DELETE again");
    assert_eq!(n, 0, "deleting again affects nothing");

    let n = w
        .execute(
            &format!("INSERT INTO {t} (id, name) SELECT id + 100, name FROM {t} WHERE id <= @n"),
            &Params::new().bind("n", 2i64),
        )
        .await
        .expect("INSERT ... SELECT");
    assert_eq!(n, 2, "INSERT ... SELECT affected rows");
    assert_eq!(count(w, ds, "t").await, 5);

    let n = w.execute(&format!("DELETE FROM {t} WHERE TRUE"), &Params::new()).await.expect("DELETE everything");
    assert_eq!(n, 5);
    assert_eq!(count(w, ds, "t").await, 0);

    let bad = w.execute(&format!("UPDATE {t} SET nope = 1 WHERE TRUE"), &Params::new()).await;
    assert!(bad.is_err(), "UPDATE of an unknown column is an error, got {bad:?}");
    cleanup(w, ds).await;
}

/// Views: create, query, replace, list, drop.
pub async fn views(w: &dyn Warehouse, ds: &str) {
    fresh_dataset(w, ds).await;
    let s = simple_schema("t");
    create(w, ds, &s).await;
    insert(
        w,
        ds,
        &s,
        &[
            row(json!({"id": 1, "name": "a", "qty": 1})),
            row(json!({"id": 2, "name": "b", "qty": 5})),
            row(json!({"id": 3, "name": "c", "qty": 9})),
        ],
    )
    .await;
    let t = tref(w, ds, "t");
    let v = tref(w, ds, "v");

    w.create_view(ds, "v", &format!("SELECT id, name FROM {t} WHERE qty > 1")).await.expect("create_view");
    let got = query(w, &format!("SELECT * FROM {v} ORDER BY id"), &Params::new()).await;
    assert_eq!(got, vec![row(json!({"id": 2, "name": "b"})), row(json!({"id": 3, "name": "c"}))]);
    let got = query(w, &format!("SELECT name FROM {v} WHERE id = @id"), &Params::new().bind("id", 3i64)).await;
    assert_eq!(got, vec![row(json!({"name": "c"}))], "a view takes parameters like a table");

    // A view is live: new rows show up.
    insert(w, ds, &s, &[row(json!({"id": 4, "name": "d", "qty": 2}))]).await;
    let got = query(w, &format!("SELECT COUNT(*) AS n FROM {v}"), &Params::new()).await;
    assert_eq!(got[0]["n"], json!(3), "the view sees rows inserted after it was created");

    // Replacing with a different SELECT (different columns) works and takes effect.
    w.create_view(ds, "v", &format!("SELECT id, qty * 2 AS double_qty FROM {t} WHERE qty < 5"))
        .await
        .expect("create_view replacing an existing view");
    let got = query(w, &format!("SELECT * FROM {v} ORDER BY id"), &Params::new()).await;
    assert_eq!(
        got,
        vec![row(json!({"id": 1, "double_qty": 2})), row(json!({"id": 4, "double_qty": 4}))],
        "the replaced view has the new definition"
    );

    // A second view over the first.
    w.create_view(ds, "v2", &format!("SELECT SUM(double_qty) AS total FROM {v}")).await.expect("a view over a view");
    let got = query(w, &format!("SELECT total FROM {}", tref(w, ds, "v2")), &Params::new()).await;
    assert_eq!(got, vec![row(json!({"total": 6}))]);

    assert_eq!(
        w.list_tables(ds).await.expect("list_tables"),
        vec!["t", "v", "v2"],
        "list_tables includes views, sorted"
    );

    // A view over a missing table is an error.
    let bad = w.create_view(ds, "broken", &format!("SELECT * FROM {}", tref(w, ds, "missing_table"))).await;
    assert!(bad.is_err(), "a view over a missing table must be refused, got {bad:?}");

    w.drop_table(ds, "v2").await.expect("drop_table on a view");
    w.drop_table(ds, "v").await.expect("drop_table on a view");
    assert_eq!(w.list_tables(ds).await.expect("list_tables"), vec!["t"], "views gone, table kept");
    assert!(w.query(&format!("SELECT * FROM {v}"), &Params::new()).await.is_err(), "dropped view is gone");
    assert_eq!(count(w, ds, "t").await, 4, "dropping a view keeps the table's rows");
    w.drop_table(ds, "v").await.expect("dropping an absent view is Ok");
    cleanup(w, ds).await;
}

/// `replace_slice`: correct counts, other slices untouched, idempotent, atomic.
pub async fn replace_slice(w: &dyn Warehouse, ds: &str) {
    fresh_dataset(w, ds).await;
    let s = schema(
        "facts",
        r#"{"description": "daily facts", "fields": [
            {"name": "day", "type": "DATE", "mode": "REQUIRED"},
            {"name": "id", "type": "INT64", "mode": "REQUIRED"},
            {"name": "amount", "type": "NUMERIC"},
            {"name": "label", "type": "STRING"},
            {"name": "tags", "type": "STRING", "mode": "REPEATED"}
        ]}"#,
    );
    create(w, ds, &s).await;
    let (d1, d2) = ("2024-05-01", "2024-05-02");
    let fact = |day: &str, id: i64, amount: &str, label: &str| {
        row(json!({"day": day, "id": id, "amount": amount, "label": label, "tags": [label]}))
    };
    insert(
        w,
        ds,
        &s,
        &[
            fact(d1, 1, "1.10", "old"),
            fact(d1, 2, "2.20", "old"),
            fact(d1, 3, "3.30", "old"),
            fact(d2, 1, "10", "d2"),
            fact(d2, 2, "20", "d2"),
        ],
    )
    .await;
    let d2_before = query(
        w,
        &format!("SELECT * FROM {} WHERE day = @day ORDER BY id", tref(w, ds, "facts")),
        &Params::new().bind("day", date(d2)),
    )
    .await;
    assert_eq!(d2_before.len(), 2);

    let slice = Params::new().bind("day", date(d1));
    let new_rows = vec![fact(d1, 1, "5.5", "new"), fact(d1, 4, "0.1", "new")];
    let (deleted, inserted) = w.replace_slice(ds, &s, "day = @day", &slice, &new_rows).await.expect("replace_slice");
    assert_eq!((deleted, inserted), (3, 2), "replace_slice returns (deleted, inserted)");

    let after = all_rows(w, ds, "facts", "day, id").await;
    let expected = vec![
        row(json!({"day": d1, "id": 1, "amount": "5.5", "label": "new", "tags": ["new"]})),
        row(json!({"day": d1, "id": 4, "amount": "0.1", "label": "new", "tags": ["new"]})),
        row(json!({"day": d2, "id": 1, "amount": "10", "label": "d2", "tags": ["d2"]})),
        row(json!({"day": d2, "id": 2, "amount": "20", "label": "d2", "tags": ["d2"]})),
    ];
    assert_eq!(after, expected, "D1 replaced, D2 untouched");
    let d2_after = query(
        w,
        &format!("SELECT * FROM {} WHERE day = @day ORDER BY id", tref(w, ds, "facts")),
        &Params::new().bind("day", date(d2)),
    )
    .await;
    assert_eq!(d2_after, d2_before, "the D2 slice is untouched");

    // Idempotent: the same replace five more times leaves identical content.
    for run in 1..=5 {
        let (deleted, inserted) = w
            .replace_slice(ds, &s, "day = @day", &slice, &new_rows)
            .await
            .unwrap_or_else(|e| panic!("replace_slice rerun {run}: {e}"));
        assert_eq!((deleted, inserted), (2, 2), "rerun {run} counts");
        assert_eq!(all_rows(w, ds, "facts", "day, id").await, expected, "content after rerun {run}");
    }

    // Atomic: a replace with invalid new rows fails and leaves the old slice.
    let missing_required = vec![fact(d1, 7, "1", "bad"), row(json!({"day": d1, "label": "no id"}))];
    let r = w.replace_slice(ds, &s, "day = @day", &slice, &missing_required).await;
    assert!(r.is_err(), "a replace with a missing REQUIRED value must fail, got {r:?}");
    assert_eq!(all_rows(w, ds, "facts", "day, id").await, expected, "failed replace (REQUIRED) changed the table");

    // ... also when the bad row is only found while writing (after the delete ran).
    let mut late_failure: Vec<Row> = (1..=600).map(|i| fact(d1, 100 + i, "1", "bulk")).collect();
    late_failure.push(row(json!({"day": d1, "id": 9999, "amount": "not a number"})));
    let r = w.replace_slice(ds, &s, "day = @day", &slice, &late_failure).await;
    assert!(r.is_err(), "a replace with an invalid NUMERIC must fail, got {r:?}");
    assert_eq!(count(w, ds, "facts").await, 4, "failed replace (late error) must roll back its delete and inserts");
    assert_eq!(all_rows(w, ds, "facts", "day, id").await, expected, "failed replace (late error) changed the table");

    let r = w.replace_slice(ds, &s, "day = @day", &slice, &[row(json!({"day": d1, "id": 1, "nope": 1}))]).await;
    assert_invalid(r, "replace_slice with an unknown column");
    let r = w.replace_slice(ds, &s, "day = @unbound", &slice, &new_rows).await;
    assert!(r.is_err(), "a predicate with an unbound parameter must fail, got {r:?}");
    assert_eq!(all_rows(w, ds, "facts", "day, id").await, expected, "failed replaces changed the table");

    // Replacing with no rows empties the slice; replacing an empty slice inserts.
    let (deleted, inserted) =
        w.replace_slice(ds, &s, "day = @day", &slice, &[]).await.expect("replace_slice with no rows");
    assert_eq!((deleted, inserted), (2, 0));
    let (deleted, inserted) =
        w.replace_slice(ds, &s, "day = @day", &slice, &new_rows).await.expect("replace_slice into an empty slice");
    assert_eq!((deleted, inserted), (0, 2));
    assert_eq!(all_rows(w, ds, "facts", "day, id").await, expected);

    // A predicate over several columns and parameters.
    let (deleted, inserted) = w
        .replace_slice(
            ds,
            &s,
            "day = @day AND id >= @min_id",
            &Params::new().bind("day", date(d2)).bind("min_id", 2i64),
            &[fact(d2, 2, "22", "d2b"), fact(d2, 3, "33", "d2b")],
        )
        .await
        .expect("replace_slice with a compound predicate");
    assert_eq!((deleted, inserted), (1, 2));
    assert_eq!(count(w, ds, "facts").await, 5);
    cleanup(w, ds).await;
}

/// Staged replace: batches of records appended out of sight, the slice replaced at once at
/// `commit`; `discard`, a refused record and a dropped staging area all leave the table as it was.
pub async fn staged_replace(w: &dyn Warehouse, ds: &str) {
    fresh_dataset(w, ds).await;
    let s = schema(
        "facts",
        r#"{"description": "daily facts", "fields": [
            {"name": "day", "type": "DATE", "mode": "REQUIRED"},
            {"name": "id", "type": "INT64", "mode": "REQUIRED"},
            {"name": "amount", "type": "NUMERIC"},
            {"name": "label", "type": "STRING"}
        ]}"#,
    );
    let everything = Params::new();
    match w.stage(ds, &s, "TRUE", &everything).await {
        Err(WarehouseError::NotFound(_)) => {}
        Err(e) => panic!("stage on a missing table: expected NotFound, got {e}"),
        Ok(_) => panic!("stage on a missing table: expected NotFound, got a staging area"),
    }
    create(w, ds, &s).await;
    let (d1, d2) = ("2024-05-01", "2024-05-02");
    let fact = |day: &str, id: i64, amount: &str| row(json!({"day": day, "id": id, "amount": amount, "label": day}));
    insert(w, ds, &s, &[fact(d1, 1, "1"), fact(d1, 2, "2"), fact(d1, 3, "3"), fact(d2, 1, "10"), fact(d2, 2, "20")])
        .await;
    let fact = |day: &str, id: i64, amount: &str| to_record(&s, &fact(day, id, amount)).expect("a record");
    let before = all_rows(w, ds, "facts", "day, id").await;
    let slice = Params::new().bind("day", date(d1));

    // Two batches, in reverse id order; nothing shows until commit.
    let mut staging = w.stage(ds, &s, "day = @day", &slice).await.expect("stage");
    let first: Vec<Record> = (0..700).rev().map(|i| fact(d1, 1000 + i, "0.5")).collect();
    assert_eq!(staging.append(first).await.expect("append 700"), 700);
    assert_eq!(staging.append(vec![fact(d1, 7, "7.25"), fact(d1, 8, "8")]).await.expect("append 2"), 2);
    assert_eq!(staging.append(Vec::new()).await.expect("append nothing"), 0);
    assert_eq!(staging.staged(), 702);
    assert_eq!(all_rows(w, ds, "facts", "day, id").await, before, "staged rows are not visible before commit");
    assert_eq!(w.list_tables(ds).await.unwrap(), vec!["facts".to_string()], "staging is not a table of the dataset");
    let (deleted, inserted) = staging.commit().await.expect("commit");
    assert_eq!((deleted, inserted), (3, 702));
    let after = all_rows(w, ds, "facts", "day, id").await;
    assert_eq!(after.len(), 704);
    assert_eq!(after[0], row(json!({"day": d1, "id": 7, "amount": "7.25", "label": d1})));
    assert_eq!(after[701]["id"], 1699);
    assert_eq!(&after[702..], &before[3..], "the other day is untouched");
    assert_eq!(w.list_tables(ds).await.unwrap(), vec!["facts".to_string()], "commit leaves no staging table");

    // Discard: the table is as it was, nothing left behind.
    let mut staging = w.stage(ds, &s, "day = @day", &slice).await.expect("stage");
    staging.append(vec![fact(d1, 1, "99")]).await.expect("append");
    staging.discard().await.expect("discard");
    assert_eq!(all_rows(w, ds, "facts", "day, id").await, after, "discard changed the table");
    assert_eq!(w.list_tables(ds).await.unwrap(), vec!["facts".to_string()], "discard leaves no staging table");

    // Refused records: a missing REQUIRED value, the wrong number of cells, cells a column cannot
    // hold. The table never changes.
    let day1 = Cell::Date(d1.parse().expect("a date"));
    for (bad, what) in [
        (vec![day1.clone(), Cell::Null, Cell::Null, Cell::Null], "a missing REQUIRED id"),
        (vec![day1.clone(), Cell::Int(5), Cell::Null], "a record with a cell missing"),
        (vec![day1.clone(), Cell::Int(5), Cell::Text("1".into()), Cell::Null], "text in a NUMERIC column"),
        (vec![Cell::Text(d1.into()), Cell::Int(5), Cell::Null, Cell::Null], "text in a DATE column"),
        (vec![day1.clone(), Cell::Float(5.0), Cell::Null, Cell::Null], "a FLOAT64 in an INT64 column"),
    ] {
        let mut staging = w.stage(ds, &s, "day = @day", &slice).await.expect("stage");
        staging.append(vec![fact(d1, 1, "1")]).await.expect("a good batch");
        let r = staging.append(vec![fact(d1, 2, "2"), bad]).await;
        assert!(matches!(r, Err(WarehouseError::Invalid(_))), "append with {what}: expected Invalid, got {r:?}");
        assert!(r.is_err(), "append with {what} must fail, got {r:?}");
        staging.discard().await.unwrap_or_else(|e| panic!("discard after {what}: {e}"));
        assert_eq!(all_rows(w, ds, "facts", "day, id").await, after, "a staging with {what} changed the table");
    }

    // A staging area dropped without commit or discard (a failed run) changes nothing either.
    let d2_slice = Params::new().bind("day", date(d2));
    let mut staging = w.stage(ds, &s, "day = @day", &d2_slice).await.expect("stage");
    staging.append(vec![fact(d2, 3, "30")]).await.expect("append");
    drop(staging);
    assert_eq!(all_rows(w, ds, "facts", "day, id").await, after, "a dropped staging area changed the table");

    // A predicate that cannot run is refused before anything is staged; an empty staging
    // replaces the slice with nothing.
    let r = w.stage(ds, &s, "day = @unbound", &slice).await;
    assert!(matches!(r, Err(WarehouseError::Invalid(_))), "a predicate with an unbound parameter must be refused");
    assert_eq!(all_rows(w, ds, "facts", "day, id").await, after);
    let staging = w.stage(ds, &s, "day = @day", &slice).await.expect("stage");
    assert_eq!(staging.commit().await.expect("empty commit"), (702, 0));
    assert_eq!(all_rows(w, ds, "facts", "day, id").await, &after[702..]);
    cleanup(w, ds).await;
}

/// A staging gathered from several SELECTs run inside the warehouse (and records between them)
/// replaces its whole slice at once: what a multi-day window read day by day needs. A SELECT that
/// fails, or rows the table refuses, leave the table as it was once the staging is discarded.
pub async fn staged_from_select(w: &dyn Warehouse, ds: &str) {
    fresh_dataset(w, ds).await;
    let s = facts_schema();
    create(w, ds, &s).await;
    let source = TableSchema { name: "source_facts".into(), ..facts_schema() };
    create(w, ds, &source).await;
    let (d1, d2, d3) = ("2024-05-01", "2024-05-02", "2024-05-03");
    let keyed = |day: &str, id: i64, label: &str| row(json!({"day": day, "id": id, "amount": "1.5", "label": label}));
    insert(w, ds, &s, &[keyed(d1, 1, "old"), keyed(d1, 2, "old"), keyed(d2, 1, "old"), keyed(d3, 1, "kept")]).await;
    let new_rows: Vec<Row> = (1..=30).flat_map(|i| [keyed(d1, 100 + i, "new"), keyed(d2, 100 + i, "new")]).collect();
    insert(w, ds, &source, &new_rows).await;
    let before = all_rows(w, ds, "facts", "day, id").await;
    let window = Params::new().bind("first", date(d1)).bind("last", date(d2));
    let predicate = "day BETWEEN @first AND @last";
    let select = format!("SELECT day, id, amount, label FROM {} WHERE day = @day", tref(w, ds, "source_facts"));
    let one_day = |day: &str| Params::new().bind("day", date(day));

    let mut staging = w.stage(ds, &s, predicate, &window).await.expect("stage the window");
    assert_eq!(staging.append_select(&select, &one_day(d1)).await.expect("day one from a SELECT"), 30);
    staging.append(vec![fact(&s, d2, 7, "record")]).await.expect("a record between the SELECTs");
    assert_eq!(staging.append_select(&select, &one_day(d2)).await.expect("day two from a SELECT"), 30);
    assert_eq!(staging.staged(), 61);
    assert_eq!(all_rows(w, ds, "facts", "day, id").await, before, "nothing shows before the commit");
    assert_eq!(staging.commit().await.expect("commit"), (3, 61));
    let mut expected_d2 = vec![(7, "record".to_string())];
    expected_d2.extend(labelled(101..131, "new"));
    assert_eq!(day_rows(w, ds, d1).await, labelled(101..131, "new"));
    assert_eq!(day_rows(w, ds, d2).await, expected_d2);
    assert_eq!(day_rows(w, ds, d3).await, labelled(1..2, "kept"), "outside the slice, untouched");
    assert_eq!(w.list_tables(ds).await.unwrap(), vec!["facts".to_string(), "source_facts".to_string()]);
    let after = all_rows(w, ds, "facts", "day, id").await;

    // Day one staged, then day two's SELECT fails (a table that is not there): the window stays
    // as it was, day one included.
    let mut staging = w.stage(ds, &s, predicate, &window).await.expect("stage");
    staging.append_select(&select, &one_day(d1)).await.expect("day one");
    let missing = format!("SELECT day, id, amount, label FROM {} WHERE day = @day", tref(w, ds, "no_such_table"));
    assert!(staging.append_select(&missing, &one_day(d2)).await.is_err(), "a SELECT of a missing table");
    staging.discard().await.expect("discard after a failed SELECT");
    assert_eq!(all_rows(w, ds, "facts", "day, id").await, after, "a failed SELECT changed the table");

    // A SELECT naming a parameter it is not given is refused; so are rows without a REQUIRED
    // value, by the SELECT (DuckDB) or at the latest by the commit (BigQuery).
    let mut staging = w.stage(ds, &s, predicate, &window).await.expect("stage");
    assert!(staging.append_select(&select, &Params::new()).await.is_err(), "an unbound @day");
    staging.discard().await.expect("discard");
    let no_id = format!(
        "SELECT day, CAST(NULL AS BIGINT) AS id, amount, label FROM {} WHERE day = @day",
        tref(w, ds, "source_facts")
    );
    let mut staging = w.stage(ds, &s, predicate, &window).await.expect("stage");
    match staging.append_select(&no_id, &one_day(d1)).await {
        Ok(_) => assert!(staging.commit().await.is_err(), "a commit of rows without their REQUIRED id"),
        Err(_) => staging.discard().await.expect("discard"),
    }
    assert_eq!(all_rows(w, ds, "facts", "day, id").await, after, "rows without a REQUIRED id changed the table");

    // A staging dropped after a SELECT (a run that died) changes nothing either.
    let mut staging = w.stage(ds, &s, predicate, &window).await.expect("stage");
    staging.append_select(&select, &one_day(d2)).await.expect("day two");
    drop(staging);
    assert_eq!(all_rows(w, ds, "facts", "day, id").await, after, "a dropped staging changed the table");
    cleanup(w, ds).await;
}

/// The table the staging cases write: one day's facts per slice.
fn facts_schema() -> TableSchema {
    schema(
        "facts",
        r#"{"description": "daily facts", "fields": [
            {"name": "day", "type": "DATE", "mode": "REQUIRED"},
            {"name": "id", "type": "INT64", "mode": "REQUIRED"},
            {"name": "amount", "type": "NUMERIC"},
            {"name": "label", "type": "STRING"}
        ]}"#,
    )
}

fn fact(s: &TableSchema, day: &str, id: i64, label: &str) -> Record {
    to_record(s, &row(json!({"day": day, "id": id, "amount": "1.5", "label": label}))).expect("a record")
}

/// (id, label) of a day's rows, by id.
async fn day_rows(w: &dyn Warehouse, ds: &str, day: &str) -> Vec<(i64, String)> {
    let sql = format!("SELECT id, label FROM {} WHERE day = @day ORDER BY id", tref(w, ds, "facts"));
    query(w, &sql, &Params::new().bind("day", date(day)))
        .await
        .iter()
        .map(|r| (r["id"].as_i64().expect("id"), r["label"].as_str().unwrap_or_default().to_string()))
        .collect()
}

fn labelled(ids: std::ops::Range<i64>, label: &str) -> Vec<(i64, String)> {
    ids.map(|i| (i, label.to_string())).collect()
}

/// Two stagings of one table at once (two runs of one organization, different windows), their
/// batches interleaved and their commits concurrent: each slice ends with exactly its own
/// staging's rows, and neither staging's rows show before its commit.
pub async fn concurrent_stagings(w: &dyn Warehouse, ds: &str) {
    fresh_dataset(w, ds).await;
    let s = facts_schema();
    create(w, ds, &s).await;
    let (d1, d2, d3) = ("2024-05-01", "2024-05-02", "2024-05-03");
    let old: Vec<Record> = [d1, d2, d3].iter().flat_map(|d| (1..3).map(|i| fact(&s, d, i, "old"))).collect();
    insert(w, ds, &s, &old.iter().map(|r| to_keyed_row(&s, r)).collect::<Vec<_>>()).await;

    let mut a = w.stage(ds, &s, "day = @day", &Params::new().bind("day", date(d1))).await.expect("stage a");
    let mut b = w.stage(ds, &s, "day = @day", &Params::new().bind("day", date(d2))).await.expect("stage b");
    assert_eq!(a.append((10..15).map(|i| fact(&s, d1, i, "a")).collect()).await.expect("append a"), 5);
    assert_eq!(b.append((20..23).map(|i| fact(&s, d2, i, "b")).collect()).await.expect("append b"), 3);
    assert_eq!(a.append((15..17).map(|i| fact(&s, d1, i, "a")).collect()).await.expect("append a again"), 2);
    for d in [d1, d2, d3] {
        assert_eq!(day_rows(w, ds, d).await, labelled(1..3, "old"), "{d} before any commit");
    }
    let (a_done, b_done) = tokio::join!(a.commit(), b.commit());
    assert_eq!(a_done.expect("commit a"), (2, 7));
    assert_eq!(b_done.expect("commit b"), (2, 3));
    assert_eq!(day_rows(w, ds, d1).await, labelled(10..17, "a"), "slice a holds a's rows only");
    assert_eq!(day_rows(w, ds, d2).await, labelled(20..23, "b"), "slice b holds b's rows only");
    assert_eq!(day_rows(w, ds, d3).await, labelled(1..3, "old"), "the other slice is untouched");

    // A staging opened while another is open and committed after it: each commit holds exactly
    // its own rows. (Two stagings of one slice at once: `a_staging_waits_for_one_of_its_slice`.)
    let slice = Params::new().bind("day", date(d3));
    let mut first = w.stage(ds, &s, "day = @day", &slice).await.expect("stage first");
    first.append((30..32).map(|i| fact(&s, d3, i, "first")).collect()).await.expect("append first");
    let mut second = w.stage(ds, &s, "day = @day", &Params::new().bind("day", date(d2))).await.expect("stage second");
    second.append(vec![fact(&s, d2, 40, "second")]).await.expect("append second");
    assert_eq!(first.commit().await.expect("commit first"), (2, 2));
    assert_eq!(day_rows(w, ds, d3).await, labelled(30..32, "first"));
    assert_eq!(day_rows(w, ds, d2).await, labelled(20..23, "b"), "an open staging's rows stay out of sight");
    assert_eq!(second.commit().await.expect("commit second"), (3, 1));
    assert_eq!(day_rows(w, ds, d2).await, labelled(40..41, "second"));
    assert_eq!(day_rows(w, ds, d3).await, labelled(30..32, "first"));
    cleanup(w, ds).await;
}

/// Stagings that end without a commit (discarded, or dropped as a failed run drops them) leave
/// nothing visible, and a later staging of the same slice never takes their rows.
pub async fn abandoned_stagings(w: &dyn Warehouse, ds: &str) {
    fresh_dataset(w, ds).await;
    let s = facts_schema();
    create(w, ds, &s).await;
    let d1 = "2024-06-01";
    let slice = Params::new().bind("day", date(d1));
    let mut kept = w.stage(ds, &s, "day = @day", &slice).await.expect("stage");
    kept.append((1..4).map(|i| fact(&s, d1, i, "kept")).collect()).await.expect("append");
    kept.commit().await.expect("commit");
    let tables = w.list_tables(ds).await.expect("list_tables");

    let mut discarded = w.stage(ds, &s, "day = @day", &slice).await.expect("stage");
    discarded.append((10..20).map(|i| fact(&s, d1, i, "discarded")).collect()).await.expect("append");
    discarded.discard().await.expect("discard");
    // Dropped on another slice (DuckDB rolls a dropped staging back in the background; a staging
    // of its slice meanwhile waits for that: `a_staging_waits_for_one_of_its_slice`).
    let d2 = "2024-06-02";
    let mut dropped = w.stage(ds, &s, "day = @day", &Params::new().bind("day", date(d2))).await.expect("stage");
    dropped.append((20..30).map(|i| fact(&s, d2, i, "dropped")).collect()).await.expect("append");
    drop(dropped);
    assert_eq!(day_rows(w, ds, d1).await, labelled(1..4, "kept"), "abandoned stagings changed the table");
    assert_eq!(day_rows(w, ds, d2).await, Vec::new(), "a dropped staging changed the table");
    assert_eq!(w.list_tables(ds).await.expect("list_tables"), tables, "abandoned stagings left tables behind");

    // The next staging of the slice commits its own rows, none of the abandoned ones.
    let mut next = w.stage(ds, &s, "day = @day", &slice).await.expect("stage");
    next.append(vec![fact(&s, d1, 50, "next")]).await.expect("append");
    assert_eq!(next.commit().await.expect("commit"), (3, 1));
    assert_eq!(day_rows(w, ds, d1).await, labelled(50..51, "next"));
    let everything = query(w, &format!("SELECT COUNT(*) AS n FROM {}", tref(w, ds, "facts")), &Params::new()).await;
    assert_eq!(everything[0]["n"], json!(1), "no abandoned row reached the table");
    cleanup(w, ds).await;
}

/// A staging of a slice another open staging holds (a run that failed mid-window, whose
/// staging is still being rolled back, then rerun at once) waits for that one to end instead of
/// failing: here the first is discarded 300 ms after the second started, and the second commits
/// its own rows.
pub async fn a_staging_waits_for_one_of_its_slice(w: &dyn Warehouse, ds: &str) {
    fresh_dataset(w, ds).await;
    let s = facts_schema();
    create(w, ds, &s).await;
    let d1 = "2024-07-01";
    insert(w, ds, &s, &[to_keyed_row(&s, &fact(&s, d1, 1, "old"))]).await;
    let slice = Params::new().bind("day", date(d1));
    let mut open = w.stage(ds, &s, "day = @day", &slice).await.expect("stage");
    open.append((10..12).map(|i| fact(&s, d1, i, "abandoned")).collect()).await.expect("append");

    let rerun = async {
        let mut rerun = w.stage(ds, &s, "day = @day", &slice).await.expect("a second staging of the slice");
        rerun.append(vec![fact(&s, d1, 20, "rerun")]).await.expect("append");
        rerun.commit().await.expect("commit the rerun")
    };
    let abandon = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        open.discard().await.expect("discard");
    };
    let (committed, ()) = tokio::join!(rerun, abandon);
    assert_eq!(committed, (1, 1), "the rerun replaced the slice's committed row");
    assert_eq!(day_rows(w, ds, d1).await, labelled(20..21, "rerun"));
    cleanup(w, ds).await;
}

/// Staging creates no table per use: what the dataset holds (staging tables included) is the
/// same while a second staging is open and after it as after the first.
pub async fn no_table_per_staging(w: &dyn Warehouse, ds: &str) {
    fresh_dataset(w, ds).await;
    let s = facts_schema();
    create(w, ds, &s).await;
    let d1 = "2024-07-01";
    let slice = Params::new().bind("day", date(d1));
    let mut first = w.stage(ds, &s, "day = @day", &slice).await.expect("stage");
    first.append(vec![fact(&s, d1, 1, "first")]).await.expect("append");
    first.commit().await.expect("commit");
    let after_first = w.list_all_tables(ds).await.expect("list_all_tables");
    assert!(after_first.contains(&"facts".to_string()), "{after_first:?}");

    for round in 0..2 {
        let mut staging = w.stage(ds, &s, "day = @day", &slice).await.expect("stage");
        assert_eq!(w.list_all_tables(ds).await.expect("list"), after_first, "round {round}: a table per staging");
        staging.append(vec![fact(&s, d1, 2, "again")]).await.expect("append");
        assert_eq!(w.list_all_tables(ds).await.expect("list"), after_first, "round {round}: a table per append");
        if round == 0 {
            staging.commit().await.expect("commit");
        } else {
            staging.discard().await.expect("discard");
        }
        assert_eq!(w.list_all_tables(ds).await.expect("list"), after_first, "round {round}: tables changed");
    }
    assert_eq!(w.list_tables(ds).await.expect("list_tables"), vec!["facts".to_string()], "staging tables are hidden");
    assert_eq!(day_rows(w, ds, d1).await, labelled(2..3, "again"));
    cleanup(w, ds).await;
}

/// Every column type goes through staging unchanged: a flat table (DuckDB's appender path) and
/// one with nested columns, staged as records, read back exactly as `insert_rows` writes the
/// same rows.
pub async fn staged_types(w: &dyn Warehouse, ds: &str) {
    fresh_dataset(w, ds).await;
    let flat = schema(
        "flat",
        r#"{"description": "every scalar type", "fields": [
            {"name": "id", "type": "INT64", "mode": "REQUIRED"},
            {"name": "name", "type": "STRING"},
            {"name": "raw", "type": "BYTES"},
            {"name": "ratio", "type": "FLOAT64"},
            {"name": "amount", "type": "NUMERIC"},
            {"name": "flag", "type": "BOOL"},
            {"name": "happened_at", "type": "TIMESTAMP"},
            {"name": "day", "type": "DATE"},
            {"name": "doc", "type": "JSON"}
        ]}"#,
    );
    let rows = vec![
        row(json!({
            "id": 1, "name": "gämma ✓ 'q'", "raw": "AAEC/v8=", "ratio": 0.25,
            "amount": "12345678901234567890.123456789", "flag": true,
            "happened_at": "2024-03-05T06:07:08.123456Z", "day": "2024-03-05", "doc": "{\"k\":[1,2]}"
        })),
        row(json!({"id": 2, "amount": "-0.000000001", "flag": false, "ratio": -1.5, "name": ""})),
        row(json!({"id": 3, "name": "n3", "amount": 7, "happened_at": "2024-03-05T08:07:08+02:00"})),
    ];
    let mut nested_rows = rows.clone();
    nested_rows[0].extend(row(json!({
        "rec": {"label": "r1", "n": 7, "price": "19.990", "seen": "2023-12-31T23:59:59.5Z", "tags": ["x"]},
        "tags": ["red", "green"],
        "items": [{"sku": "A-1", "units": 2, "price": "0.1"}, {"sku": "B-2", "units": null, "price": "100"}]
    })));
    for (s, rows) in [(flat, rows), (all_types_schema("nested"), nested_rows)] {
        let mut direct = s.clone();
        direct.name = format!("{}_direct", s.name);
        create(w, ds, &s).await;
        create(w, ds, &direct).await;
        insert(w, ds, &direct, &rows).await;
        let mut staging = w.stage(ds, &s, "TRUE", &Params::new()).await.expect("stage");
        let records = to_records(&s, &rows).unwrap_or_else(|e| panic!("records of {}: {e}", s.name));
        staging.append(records).await.unwrap_or_else(|e| panic!("append to {}: {e}", s.name));
        staging.commit().await.expect("commit");
        let staged = all_rows(w, ds, &s.name, "id").await;
        assert_eq!(staged.len(), 3);
        assert_eq!(staged, all_rows(w, ds, &direct.name, "id").await, "{}: staged rows differ from inserted", s.name);
    }
    cleanup(w, ds).await;
}

/// A large insert (which a backend may take another way, e.g. DuckDB's appender) stores every
/// type, nested columns and JSON included, exactly as small inserts of the same rows do.
pub async fn large_inserts_match_small_ones(w: &dyn Warehouse, ds: &str) {
    fresh_dataset(w, ds).await;
    let base = row(json!({
        "name": "gämma ✓ 'q'", "raw": "AAEC/v8=", "qty": 42, "ratio": 0.25,
        "amount": "12345678901234567890.123456789", "flag": true,
        "happened_at": "2024-03-05T08:07:08.123456+02:00", "day": "2024-03-05", "doc": "{\"k\":[1,{\"z\":null}]}",
        "rec": {"label": "r1", "n": 7, "price": "19.990", "seen": "2023-12-31T23:59:59.5Z", "tags": ["x"]},
        "tags": ["red", "green"],
        "items": [{"sku": "A-1", "units": 2, "price": "0.1"}, {"sku": "B-2", "units": null, "price": "100"}]
    }));
    let rows: Vec<Row> = (1..=150)
        .map(|i| {
            let mut r = if i % 3 == 0 { row(json!({"name": "minimal"})) } else { base.clone() };
            r.insert("id".into(), json!(i));
            if i % 5 == 0 {
                r.insert("tags".into(), json!([]));
                r.insert("doc".into(), json!("[]"));
            }
            r
        })
        .collect();
    let large = all_types_schema("large_insert");
    let mut small = all_types_schema("small_inserts");
    small.name = "small_inserts".into();
    create(w, ds, &large).await;
    create(w, ds, &small).await;
    insert(w, ds, &large, &rows).await;
    for chunk in rows.chunks(3) {
        insert(w, ds, &small, chunk).await;
    }
    let got = all_rows(w, ds, "large_insert", "id").await;
    assert_eq!(got.len(), 150);
    assert_eq!(got, all_rows(w, ds, "small_inserts", "id").await, "a large insert stored rows differently");
    cleanup(w, ds).await;
}

/// `query_batches` hands over every row as a record, in query order, in batches no larger than
/// asked; a failing query is an error, not an empty result.
pub async fn query_batches(w: &dyn Warehouse, ds: &str) {
    fresh_dataset(w, ds).await;
    let s = simple_schema("many");
    create(w, ds, &s).await;
    let rows: Vec<Row> = (0..1234).map(|i| row(json!({"id": i, "name": format!("n{i}"), "qty": i % 7}))).collect();
    insert(w, ds, &s, &rows).await;
    let sql = format!("SELECT id, name FROM {} WHERE qty >= @min ORDER BY id", tref(w, ds, "many"));
    let params = Params::new().bind("min", 0i64);
    let all = query(w, &sql, &params).await;
    let mut batches = w.query_batches(&sql, &params, 500).await.expect("query_batches");
    let mut got = Vec::new();
    let mut sizes = Vec::new();
    while let Some(batch) = batches.next().await {
        let batch = batch.expect("a batch");
        sizes.push(batch.len());
        got.extend(batch.iter().map(|r| row(json!({"id": r[0].to_json(), "name": r[1].to_json()}))));
        assert!(batch.iter().all(|r| r.len() == 2 && matches!(r[0], Cell::Int(_))), "two typed cells per row");
    }
    assert!(sizes.iter().all(|n| (1..=500).contains(n)), "batch sizes {sizes:?}");
    assert_eq!(got.len(), 1234);
    assert_eq!(got, all, "the batches are the query's rows, in order");

    // Nothing matches: no rows at all.
    let mut none = w.query_batches(&sql, &Params::new().bind("min", 100i64), 10).await.expect("query_batches");
    let mut n = 0;
    while let Some(batch) = none.next().await {
        n += batch.expect("a batch").len();
    }
    assert_eq!(n, 0);

    // A reader that stops early does not hold anything up.
    let mut partial = w.query_batches(&sql, &params, 100).await.expect("query_batches");
    assert_eq!(partial.next().await.expect("one batch").expect("rows").len(), 100);
    drop(partial);
    assert_eq!(count(w, ds, "many").await, 1234);

    let bad = format!("SELECT no_such_column FROM {}", tref(w, ds, "many"));
    let failed = match w.query_batches(&bad, &Params::new(), 10).await {
        Err(_) => true,
        Ok(mut b) => matches!(b.next().await, Some(Err(_))),
    };
    assert!(failed, "a query that cannot run must fail");
    cleanup(w, ds).await;
}

/// `render_table_refs` substitutes known placeholders with `table_ref` and refuses the rest.
pub async fn render_refs(w: &dyn Warehouse, ds: &str) {
    fresh_dataset(w, ds).await;
    let known = ["orders", "customers"];
    let rendered = render_table_refs(
        w,
        ds,
        "SELECT o.id, c.name FROM {{orders}} AS o JOIN {{ customers }} AS c ON o.id = c.id",
        &known,
    )
    .expect("render_table_refs");
    assert_eq!(
        rendered,
        format!(
            "SELECT o.id, c.name FROM {} AS o JOIN {} AS c ON o.id = c.id",
            tref(w, ds, "orders"),
            tref(w, ds, "customers")
        )
    );
    assert_eq!(render_table_refs(w, ds, "SELECT 1 AS x", &known).expect("no placeholders"), "SELECT 1 AS x");
    assert_invalid(render_table_refs(w, ds, "SELECT * FROM {{unknown}}", &known), "unknown placeholder");
    assert_invalid(render_table_refs(w, ds, "SELECT * FROM {{orders", &known), "unclosed placeholder");
    assert_invalid(render_table_refs(w, ds, "SELECT * FROM {{}}", &known), "empty placeholder");
    assert_invalid(render_table_refs(w, "bad ds", "SELECT * FROM {{orders}}", &known), "hostile dataset");
    assert_invalid(render_table_refs(w, ds, "SELECT * FROM {{a b}}", &["a b"]), "hostile table name");

    // The rendered SQL runs.
    let orders = simple_schema("orders");
    let customers = simple_schema("customers");
    create(w, ds, &orders).await;
    create(w, ds, &customers).await;
    insert(w, ds, &orders, &[row(json!({"id": 1, "qty": 3})), row(json!({"id": 2, "qty": 4}))]).await;
    insert(w, ds, &customers, &[row(json!({"id": 1, "name": "acme"}))]).await;
    let got = query(w, &rendered, &Params::new()).await;
    assert_eq!(got, vec![row(json!({"id": 1, "name": "acme"}))]);
    let view_sql = render_table_refs(w, ds, "SELECT SUM(qty) AS total FROM {{orders}}", &known).unwrap();
    w.create_view(ds, "totals", &view_sql).await.expect("view from a rendered template");
    let got = query(w, &format!("SELECT total FROM {}", tref(w, ds, "totals")), &Params::new()).await;
    assert_eq!(got, vec![row(json!({"total": 7}))]);
    cleanup(w, ds).await;
}

/// `@name` inside a string literal is text, not a parameter. Not run on the BigQuery emulator,
/// whose SQL translator substitutes parameters inside literals (real BigQuery does not).
pub async fn parameter_names_inside_literals(w: &dyn Warehouse, _ds: &str) {
    let got = query(w, "SELECT 'a@b' AS v, @p AS p, 'x @p y' AS w", &Params::new().bind("p", "bound")).await;
    assert_eq!(got[0]["v"], json!("a@b"));
    assert_eq!(got[0]["p"], json!("bound"));
    assert_eq!(got[0]["w"], json!("x @p y"), "@p inside a literal is not substituted");
}

/// Schema evolution: `table_columns` lists columns in order; `add_column` adds NULLABLE and
/// REPEATED columns to a table with rows (old rows read NULL / `[]`) and refuses REQUIRED ones;
/// `drop_column` removes a column and its values, keeping the rows.
pub async fn evolve_columns(w: &dyn Warehouse, ds: &str) {
    fresh_dataset(w, ds).await;
    let s = simple_schema("evolving");
    create(w, ds, &s).await;
    insert(w, ds, &s, &[row(json!({"id": 1, "name": "old"}))]).await;
    assert_eq!(w.table_columns(ds, "evolving").await.unwrap(), vec!["id", "name", "qty", "day"]);
    assert!(
        matches!(w.table_columns(ds, "absent").await, Err(WarehouseError::NotFound(_))),
        "absent table is NotFound"
    );

    let added: Field = serde_json::from_value(json!({"name": "note", "type": "STRING", "mode": "NULLABLE"})).unwrap();
    w.add_column(ds, "evolving", &added).await.expect("add NULLABLE column");
    let tags: Field = serde_json::from_value(json!({"name": "tags", "type": "STRING", "mode": "REPEATED"})).unwrap();
    w.add_column(ds, "evolving", &tags).await.expect("add REPEATED column");
    let required: Field =
        serde_json::from_value(json!({"name": "must", "type": "STRING", "mode": "REQUIRED"})).unwrap();
    assert_invalid(w.add_column(ds, "evolving", &required).await, "adding a REQUIRED column");
    let hostile: Field = serde_json::from_value(json!({"name": "x\"; DROP TABLE t; --", "type": "STRING"})).unwrap();
    assert_invalid(w.add_column(ds, "evolving", &hostile).await, "adding a column with a hostile name");
    assert_eq!(w.table_columns(ds, "evolving").await.unwrap(), vec!["id", "name", "qty", "day", "note", "tags"]);

    let rows = query(w, &format!("SELECT id, note, tags FROM {}", tref(w, ds, "evolving")), &Params::new()).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["note"], Value::Null, "old rows read NULL in a new NULLABLE column");
    assert_eq!(rows[0]["tags"], json!([]), "old rows read [] in a new REPEATED column");

    // The table has the added column at its end; a schema that lists it among the older ones
    // (where configs put it) stages its records by column name, not by position.
    let mut reordered = simple_schema("evolving");
    reordered.fields.insert(1, added.clone());
    let mut staging = w.stage(ds, &reordered, "TRUE", &Params::new()).await.expect("stage");
    let staged = row(json!({"id": 2, "note": "by name", "name": "n2", "qty": 3}));
    staging.append(to_records(&reordered, &[staged]).unwrap()).await.expect("append");
    staging.commit().await.expect("commit");
    let sql = format!("SELECT id, name, note, qty FROM {}", tref(w, ds, "evolving"));
    let rows = query(w, &sql, &Params::new()).await;
    assert_eq!(rows, vec![row(json!({"id": 2, "name": "n2", "note": "by name", "qty": 3}))]);

    // A retired column goes with its values; dropping it again is a no-op.
    w.drop_column(ds, "evolving", "name").await.expect("drop a column");
    w.drop_column(ds, "evolving", "name").await.expect("dropping an absent column is a no-op");
    assert_eq!(w.table_columns(ds, "evolving").await.unwrap(), vec!["id", "qty", "day", "note", "tags"]);
    let rows = query(w, &format!("SELECT * FROM {}", tref(w, ds, "evolving")), &Params::new()).await;
    assert_eq!(rows.len(), 1, "the rows stay");
    assert!(!rows[0].contains_key("name"), "the values go: {:?}", rows[0]);
    assert!(
        matches!(w.drop_column(ds, "absent", "name").await, Err(WarehouseError::NotFound(_))),
        "absent table is NotFound"
    );
    assert_invalid(w.drop_column(ds, "evolving", "x\"; DROP TABLE t; --").await, "dropping a hostile column name");
    cleanup(w, ds).await;
}
