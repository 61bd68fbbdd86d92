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
    insert_refusals,
    parameters,
    execute_counts,
    views,
    replace_slice,
    staged_replace,
    staged_types,
    query_batches,
    render_refs,
    evolve_columns,
);
// Not here: `parameter_names_inside_literals`, which the emulator gets wrong (docs/bqemulator-notes.md).
