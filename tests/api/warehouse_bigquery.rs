//! The warehouse conformance suite on BigQuery, against the emulator (`make test` starts it), one
//! test per case, each in a project of its own.

use common::warehouse::bigquery::BigQueryWarehouse;
use convergence_tests::{bigquery_emulator, conformance, unique_project};

async fn connect() -> BigQueryWarehouse {
    BigQueryWarehouse::connect(&unique_project(), "US", Some(&bigquery_emulator())).await.expect("BigQuery client")
}

macro_rules! conformance_case {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread")]
        async fn $case() {
            let warehouse = connect().await;
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
);
// Not here: `parameter_names_inside_literals`, which the emulator gets wrong (docs/bqemulator-notes.md).

/// BigQuery stages into one permanent table per data table, `{table}__staging`, its rows tagged
/// by staging: rows a crashed staging left there are never committed by another, a staging's
/// rows go when it ends, a column the table gains reaches its staging table, and dropping the
/// table drops its staging table.
#[tokio::test(flavor = "multi_thread")]
async fn staging_table_is_permanent_and_tagged() {
    use common::warehouse::{to_record, DatasetOptions, Field, FieldType, Mode, Param, Params, Warehouse};
    use serde_json::json;

    let w = connect().await;
    let ds = "bq_staging";
    w.drop_dataset(ds).await.unwrap();
    w.create_dataset(ds, &DatasetOptions::default()).await.unwrap();
    let s = conformance::schema(
        "facts",
        r#"{"description": "facts", "fields": [
            {"name": "day", "type": "DATE", "mode": "REQUIRED"},
            {"name": "id", "type": "INT64", "mode": "REQUIRED"},
            {"name": "label", "type": "STRING"}
        ]}"#,
    );
    w.create_table(ds, &s).await.unwrap();
    let day = Param::Date("2024-05-01".parse().unwrap());
    let slice = Params::new().bind("day", day.clone());
    let fact = |s: &common::warehouse::TableSchema, id: i64, extra: serde_json::Value| {
        let mut value = json!({"day": "2024-05-01", "id": id, "label": format!("l{id}")});
        value.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        to_record(s, &conformance::row(value)).unwrap()
    };
    let staging_ref = w.table_ref(ds, "facts__staging").unwrap();
    let staged_rows = || async {
        let rows = w.query(&format!("SELECT COUNT(*) AS n FROM {staging_ref}"), &Params::new()).await.unwrap();
        rows[0]["n"].as_i64().unwrap()
    };
    let ids = || async {
        let sql = format!("SELECT id FROM {} ORDER BY id", w.table_ref(ds, "facts").unwrap());
        w.query(&sql, &Params::new()).await.unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect::<Vec<_>>()
    };

    // Small batches are buffered and written a few MB at a time: a window of them is a few
    // INSERTs, not one per batch.
    let long = "x".repeat(300);
    let mut first = w.stage(ds, &s, "day = @day", &slice).await.unwrap();
    for batch in 0..3 {
        let records = (0..3000).map(|i| fact(&s, batch * 10_000 + i, json!({"label": long}))).collect();
        assert_eq!(first.append(records).await.unwrap(), 3000);
    }
    let written = staged_rows().await;
    assert!(written > 0 && written < 9000, "a full buffer is written before commit, the rest at it: {written}");
    assert_eq!(first.commit().await.unwrap(), (0, 9000));
    assert_eq!(ids().await.len(), 9000);
    assert_eq!(staged_rows().await, 0, "a committed staging's rows are deleted");
    assert_eq!(w.list_all_tables(ds).await.unwrap(), vec!["facts", "facts__staging"]);

    // A crashed staging's rows, under a tag no live staging has.
    let leftover = format!(
        "INSERT INTO {staging_ref} (day, id, label, convergence_staging_id, convergence_staged_at) \
         VALUES (@day, 99, 'crashed', 'crashed-staging', CURRENT_TIMESTAMP())"
    );
    assert_eq!(w.execute(&leftover, &slice).await.unwrap(), 1);
    let mut next = w.stage(ds, &s, "day = @day", &slice).await.unwrap();
    next.append(vec![fact(&s, 5, json!({}))]).await.unwrap();
    assert_eq!(next.commit().await.unwrap(), (9000, 1));
    assert_eq!(ids().await, vec![5], "the leftover was not committed");
    assert_eq!(staged_rows().await, 1, "the leftover stays (until its partition expires); nothing else");

    let mut discarded = w.stage(ds, &s, "day = @day", &slice).await.unwrap();
    discarded.append(vec![fact(&s, 6, json!({}))]).await.unwrap();
    discarded.discard().await.unwrap();
    assert_eq!(staged_rows().await, 1, "a discarded staging's rows are deleted");

    // The table gains a column: so does its staging table, at the next staging.
    let note = Field {
        name: "note".into(),
        field_type: FieldType::String,
        mode: Mode::Nullable,
        description: String::new(),
        fields: Vec::new(),
    };
    w.add_column(ds, "facts", &note).await.unwrap();
    let mut wider = s.clone();
    wider.fields.push(note);
    let mut evolved = w.stage(ds, &wider, "day = @day", &slice).await.unwrap();
    evolved.append(vec![fact(&wider, 7, json!({"note": "new column"}))]).await.unwrap();
    evolved.commit().await.unwrap();
    let sql = format!("SELECT id, note FROM {}", w.table_ref(ds, "facts").unwrap());
    let rows = w.query(&sql, &Params::new()).await.unwrap();
    assert_eq!(rows, vec![conformance::row(json!({"id": 7, "note": "new column"}))]);

    w.drop_table(ds, "facts").await.unwrap();
    assert_eq!(w.list_all_tables(ds).await.unwrap(), Vec::<String>::new(), "the staging table goes with its table");
    w.drop_dataset(ds).await.unwrap();
}
