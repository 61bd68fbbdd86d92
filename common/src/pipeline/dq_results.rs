//! A run's data-quality results that did not pass, for the run API and run notifications: read from
//! `dq_results_current` (the results in force), suite expectations and processors' own checks
//! (reconciliation) alike.

use crate::configs::Configs;
use crate::warehouse::{Params, Row, Warehouse, WarehouseResult};

/// The view of the results in force.
const DQ_CURRENT: &str = "dq_results_current";

/// At most this many are listed; the rest are counted.
pub const MAX_LISTED: usize = 100;

/// The run's results in force that did not pass (at most [`MAX_LISTED`], FAIL first) and how
/// many there are: WARN and FAIL for the run API, only FAIL (what failed the run) when
/// `include_warnings` is false, for run notifications.
pub async fn failed_expectations(
    warehouse: &dyn Warehouse,
    configs: &Configs,
    org_slug: &str,
    run_id: &str,
    include_warnings: bool,
) -> WarehouseResult<(Vec<Row>, usize)> {
    // Not PASS alone: an UNPRICED result (a charge billed that we do not price) is information,
    // not a failed check.
    let not_passed = if include_warnings { "status IN ('WARN', 'FAIL')" } else { "status = 'FAIL'" };
    let sql = format!(
        "SELECT step_id, check_name AS expectation, suite, expectation_type, severity, status, table_name, \
         usage_date, dimension, observed_value, expected_value, tolerance, expected, message FROM {} \
         WHERE org_slug = @org_slug AND run_id = @run_id AND {not_passed} \
         ORDER BY status, step_id NULLS FIRST, table_name, check_name, usage_date, dimension NULLS FIRST",
        warehouse.table_ref(configs.central_dataset(), DQ_CURRENT)?
    );
    let params = Params::new().bind("org_slug", org_slug).bind("run_id", run_id);
    let mut rows = warehouse.query(&sql, &params).await?;
    let total = rows.len();
    rows.truncate(MAX_LISTED);
    // Text columns without a value (a reconciliation row has no suite) are left out.
    for row in &mut rows {
        row.retain(|_, v| !v.is_null());
    }
    Ok((rows, total))
}
