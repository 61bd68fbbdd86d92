//! The warehouse conformance suite (`convergence_tests::conformance`) on the embedded DuckDB
//! warehouse, one test per case so a failure names its case, plus persistence across reopening.

use std::sync::Arc;

use common::settings::{BackendDefaults, Settings};
use common::warehouse::counting::{CountingWarehouse, StatementKind, StatementLog};
use common::warehouse::duckdb::DuckDbWarehouse;
use common::warehouse::{DatasetOptions, Params, Warehouse};
use convergence_tests::conformance;
use serde_json::json;

/// A fresh DuckDB file in its own temp directory (kept alive by the returned guard).
fn open() -> (tempfile::TempDir, DuckDbWarehouse) {
    let dir = tempfile::tempdir().expect("temp dir");
    let warehouse = DuckDbWarehouse::open(&dir.path().join("data").join("w.duckdb")).expect("open DuckDB");
    (dir, warehouse)
}

macro_rules! conformance_case {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread")]
        async fn $case() {
            let (_dir, warehouse) = open();
            conformance::$case(&warehouse, concat!("conf_", stringify!($case))).await;
        }
    )*};
}

conformance_case!(
    ping,
    datasets,
    hostile_identifiers,
    tables,
    insert_and_query,
    large_batch,
    large_inserts_match_small_ones,
    insert_refusals,
    parameters,
    execute_counts,
    views,
    replace_slice,
    staged_replace,
    staged_from_select,
    staged_types,
    concurrent_stagings,
    abandoned_stagings,
    a_staging_waits_for_one_of_its_slice,
    no_table_per_staging,
    query_batches,
    render_refs,
    evolve_columns,
    parameter_names_inside_literals,
);

/// Every case in turn on one warehouse: the cases' datasets do not interfere, and each case
/// cleans up after itself.
#[tokio::test(flavor = "multi_thread")]
async fn run_all_on_one_warehouse() {
    let (_dir, warehouse) = open();
    conformance::run_all(&warehouse, "conf_all").await;
    for case in ["datasets", "tables", "insert", "params", "views", "replace"] {
        let ds = format!("conf_all_{case}");
        assert!(!warehouse.dataset_exists(&ds).await.unwrap(), "case left dataset {ds} behind");
    }
    // Running everything again on the same warehouse works too (leftovers are handled).
    conformance::run_all(&warehouse, "conf_all").await;
}

/// Data written before the warehouse is dropped is there after reopening the file.
#[tokio::test(flavor = "multi_thread")]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("w.duckdb");
    let schema = conformance::all_types_schema("kept");
    let rows = vec![
        conformance::row(json!({
            "id": 1, "name": "persisted", "amount": "0.1", "happened_at": "2024-03-05T06:07:08.123456Z",
            "day": "2024-03-05", "rec": {"label": "r", "n": 1, "price": "2.5", "seen": null, "tags": ["a"]},
            "tags": ["x"], "items": [{"sku": "s", "units": 1, "price": "3"}]
        })),
        conformance::row(json!({"id": 2, "name": "second"})),
    ];
    let select = "SELECT id, name, amount, happened_at, day, rec, tags, items FROM \"persist\".\"kept\" ORDER BY id";
    let before = {
        let w = DuckDbWarehouse::open(&path).expect("open");
        assert!(w.create_dataset("persist", &DatasetOptions::default()).await.unwrap());
        assert!(w.create_table("persist", &schema).await.unwrap());
        assert_eq!(w.insert_rows("persist", &schema, &rows).await.unwrap(), 2);
        w.create_view("persist", "v", "SELECT id FROM \"persist\".\"kept\"").await.unwrap();
        let before = w.query(select, &Params::new()).await.unwrap();
        assert_eq!(before.len(), 2);
        before
        // `w` (and every pooled connection) is dropped here, closing the database.
    };

    let w = DuckDbWarehouse::open(&path).expect("reopen");
    assert!(w.dataset_exists("persist").await.unwrap(), "dataset survives reopening");
    assert_eq!(w.list_tables("persist").await.unwrap(), vec!["kept", "v"], "table and view survive");
    assert_eq!(w.query(select, &Params::new()).await.unwrap(), before, "rows survive reopening");
    assert_eq!(before[0]["amount"], json!("0.1"));
    assert_eq!(before[0]["happened_at"], json!("2024-03-05T06:07:08.123456Z"));
    let n = w.query("SELECT COUNT(*) AS n FROM \"persist\".\"v\"", &Params::new()).await.unwrap();
    assert_eq!(n[0]["n"], json!(2), "the view still works");
    assert!(!w.create_table("persist", &schema).await.unwrap(), "the table is known after reopening");
}

/// The counting decorator changes nothing (the whole suite passes through it) and records what
/// reached the warehouse by kind and table.
#[tokio::test(flavor = "multi_thread")]
async fn conformance_through_the_counting_warehouse() {
    let (_dir, warehouse) = open();
    let (counting, log) = CountingWarehouse::wrap(Arc::new(warehouse));
    conformance::run_all(counting.as_ref(), "counted").await;
    let summary = log.summary();
    // no_table_per_staging: the table created once, staged three times, committed twice.
    assert_eq!(summary.count(StatementKind::Ddl, "counted_staged_tables.facts"), 1, "{summary}");
    assert_eq!(summary.count(StatementKind::Stage, "counted_staged_tables.facts"), 3, "{summary}");
    assert_eq!(summary.count(StatementKind::StageAppend, "counted_staged_tables.facts"), 3, "{summary}");
    assert_eq!(summary.count(StatementKind::StageCommit, "counted_staged_tables.facts"), 2, "{summary}");
    assert_eq!(summary.count(StatementKind::StageDiscard, "counted_staged_tables.facts"), 1, "{summary}");
    // The one read of the rows at the end, its table read from the SQL.
    assert_eq!(summary.count(StatementKind::Select, "counted_staged_tables.facts"), 1, "{summary}");
    assert!(summary.count_kind(StatementKind::ReplaceSlice) > 0 && summary.count_kind(StatementKind::InsertRows) > 0);
    log.reset();
    assert!(log.snapshot().is_empty());
}

/// `AppState::build_with_warehouse` puts the wrapped warehouse in the state: what the app does
/// is counted.
#[tokio::test(flavor = "multi_thread")]
async fn app_state_takes_a_wrapped_warehouse() {
    let dir = tempfile::tempdir().expect("temp dir");
    let vars = std::collections::HashMap::from([
        ("CA_ROOT_API_KEY".to_string(), convergence_tests::ROOT_KEY.to_string()),
        ("DATA_DIR".to_string(), dir.path().display().to_string()),
        ("CONFIGS_DIR".to_string(), concat!(env!("CARGO_MANIFEST_DIR"), "/../configs").to_string()),
    ]);
    let settings = Settings::from_vars(&vars, BackendDefaults::Embedded).expect("settings");
    let log = StatementLog::new();
    let wrap = {
        let log = log.clone();
        move |inner: Arc<dyn Warehouse>| -> Arc<dyn Warehouse> { Arc::new(CountingWarehouse::with_log(inner, log)) }
    };
    let state = common::AppState::build_with_warehouse(settings, wrap).await.expect("state");
    // The app may already be busy in the background (its scheduler): look for this call only.
    assert!(state.warehouse.table_columns("probe", "probed").await.is_err(), "no such table");
    let probes: Vec<_> = log.snapshot().into_iter().filter(|s| s.touches("probe", "probed")).collect();
    assert_eq!(probes.len(), 1, "{probes:?}");
    assert_eq!(probes[0].kind, StatementKind::Metadata);
}
