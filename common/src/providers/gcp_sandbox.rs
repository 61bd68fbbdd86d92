//! The sandbox Cloud Billing export (local mode, `SANDBOX_PROVIDERS=true`): a service-account key
//! whose `project_id` is `sandbox` (any key material) with a `billing_export_table` of
//! `sandbox.<dataset>.gcp_billing_export_v1_<id>` resolves to a table of the embedded warehouse,
//! `sandbox_<dataset>.gcp_billing_export_v1_<id>` (`-` in `<id>` read as `_`), in the export's
//! own shape (`configs/gcp/bq_etl/schema_template.json`; the detailed `…_resource_v1_…` export
//! has the `resource` column, the standard one does not), with `_PARTITIONTIME` as a real column.
//!
//! Rows are generated in SQL inside DuckDB the first time a usage day is read, deterministically
//! from the table id and the day: `rows per day` rows (`-rows<N>` at the end of `<id>`, else
//! `sandbox_rows_per_day` from `configs/gcp/bq_etl/config.yml`) over five services and ten SKUs,
//! four projects with labels, credits of four types, and in every day: a tax row, an adjustment
//! (with `adjustment_info`), a rounding-error row, a row in EUR, and one row in ten that arrives a
//! day late (partition D+1, exported on D+1). Late rows exist once their day has come: reading
//! day D before D+1 (UTC) finds only the rows exported on D, and a later read adds the rest.

use std::sync::LazyLock;

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use sha2::{Digest, Sha256};

use super::gcp::{BillingExportTable, SANDBOX_PROJECT};
use crate::configs::bq_etl::{BqEtlSettings, PARTITION_TIME};
use crate::warehouse::{DatasetOptions, Params, TableSchema, Warehouse, WarehouseError, WarehouseResult};

/// One sandbox export table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxExport {
    /// The embedded warehouse's dataset (`sandbox_<dataset>`).
    pub dataset: String,
    /// The table (`<id>` with `-` read as `_`).
    pub table: String,
    pub rows_per_day: u64,
    /// A detailed (resource-level) export: has the `resource` column.
    pub detailed: bool,
    /// The billing account the rows name.
    pub billing_account_id: String,
    seed: i64,
}

/// Generation is one statement per day part; two runs of one organization must not generate a
/// day twice (local mode is one process, so a process-wide lock does).
static GENERATING: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(|| tokio::sync::Mutex::new(()));

impl SandboxExport {
    /// The sandbox table `table` names, or why it names none.
    pub fn resolve(table: &BillingExportTable, settings: &BqEtlSettings) -> Result<SandboxExport, String> {
        if table.project != SANDBOX_PROJECT {
            return Err(format!("{table} is not a sandbox export table (project {SANDBOX_PROJECT})"));
        }
        let detailed = table.table.starts_with("gcp_billing_export_resource_v1_");
        let id = table.table.split_once("v1_").map_or("", |(_, id)| id);
        let rows = id
            .split('-')
            .filter_map(|word| word.strip_prefix("rows").and_then(|n| n.parse::<u64>().ok()))
            .next_back()
            .unwrap_or(settings.sandbox_rows_per_day)
            .clamp(1, settings.sandbox_max_rows_per_day);
        let digest = Sha256::digest(table.table.as_bytes());
        let seed = i64::from(u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) & 0x7fff_ffff);
        let account = hex::encode_upper(&digest[4..10]);
        Ok(SandboxExport {
            dataset: format!("sandbox_{}", table.dataset),
            table: table.table.replace('-', "_"),
            rows_per_day: rows,
            detailed,
            billing_account_id: format!("{}-{}-{}", &account[..6], &account[6..10], &account[10..]),
            seed,
        })
    }

    /// The table's schema: the template, without `resource` for a standard export.
    pub fn schema(&self, template: &TableSchema) -> TableSchema {
        let mut schema = template.clone();
        schema.name = self.table.clone();
        if !self.detailed {
            schema.fields.retain(|f| f.name != "resource");
        }
        schema
    }

    /// Creates the (empty) table when missing; the sandbox lives in the embedded warehouse only.
    pub async fn ensure_table(&self, warehouse: &dyn Warehouse, template: &TableSchema) -> WarehouseResult<()> {
        if warehouse.backend_name() != "duckdb" {
            return Err(WarehouseError::Invalid(
                "the sandbox billing export lives in the embedded warehouse (WAREHOUSE_BACKEND=duckdb)".into(),
            ));
        }
        warehouse
            .create_dataset(
                &self.dataset,
                &DatasetOptions { description: "GCP sandbox billing export".into(), ..Default::default() },
            )
            .await?;
        warehouse.create_table(&self.dataset, &self.schema(template)).await?;
        Ok(())
    }

    /// Generates the rows of every usage day in `start..=end` that are due by `today` and not
    /// there yet; returns how many rows were added.
    pub async fn ensure_days(
        &self,
        warehouse: &dyn Warehouse,
        template: &TableSchema,
        start: NaiveDate,
        end: NaiveDate,
        today: NaiveDate,
    ) -> WarehouseResult<u64> {
        self.ensure_table(warehouse, template).await?;
        let _generating = GENERATING.lock().await;
        let table = warehouse.table_ref(&self.dataset, &self.table)?;
        let mut added = 0;
        let mut day = start;
        while day <= end {
            let (day_start, next_day) = (midnight(day), midnight(day + Duration::days(1)));
            let params = Params::new().bind("day_start", day_start).bind("next_day", next_day);
            let present = warehouse
                .query(
                    &format!(
                        "SELECT COUNT(*) FILTER (WHERE {PARTITION_TIME} = @day_start) AS on_time, \
                         COUNT(*) FILTER (WHERE {PARTITION_TIME} = @next_day) AS late FROM {table} \
                         WHERE usage_start_time >= @day_start AND usage_start_time < @next_day"
                    ),
                    &params,
                )
                .await?;
            let count = |name: &str| present.first().and_then(|r| r.get(name)).and_then(|v| v.as_i64()).unwrap_or(0);
            let on_time = day <= today && count("on_time") == 0;
            let late = day < today && count("late") == 0;
            if on_time || late {
                let params = params
                    .bind("seed", self.seed)
                    .bind("rows", i64::try_from(self.rows_per_day).unwrap_or(i64::MAX))
                    .bind("account", self.billing_account_id.as_str())
                    .bind("invoice_month", day.format("%Y%m").to_string())
                    .bind("on_time", on_time)
                    .bind("late", late);
                added += warehouse.execute(&self.insert_sql(&table), &params).await?;
            }
            day += Duration::days(1);
        }
        if added > 0 {
            tracing::info!(table = %self.table, rows = added, "sandbox billing export rows generated");
        }
        Ok(added)
    }

    /// One day's rows (`@on_time` / `@late` select which part), computed from the row number:
    /// rows 0–3 are the tax, adjustment, rounding-error and EUR rows, one in ten of the others
    /// (`i % 10 = 7`) arrives late.
    fn insert_sql(&self, table: &str) -> String {
        let resource_col = if self.detailed { "resource, " } else { "" };
        let resource_val = if self.detailed {
            "CASE WHEN project_index IS NULL THEN NULL ELSE {'name': 'vm-' || (i % 50), \
             'global_name': '//compute.googleapis.com/projects/' || project_ids[project_index] || '/zones/' || zones[region_index] || '/instances/vm-' || (i % 50)} END, "
        } else {
            ""
        };
        format!(
            "INSERT INTO {table} (billing_account_id, service, sku, usage_start_time, usage_end_time, project, labels, \
             system_labels, location, {resource_col}export_time, cost, currency, currency_conversion_rate, usage, credits, \
             invoice, cost_type, adjustment_info, cost_at_list, {PARTITION_TIME})
WITH names AS (
  SELECT ['6F81-5844-456A', '95FF-2EF5-5EA1', '24E6-581D-38E5', '152E-C115-5142', 'C7E2-9256-1C43'] AS service_ids,
         ['Compute Engine', 'Cloud Storage', 'BigQuery', 'Cloud Run', 'Vertex AI'] AS service_names,
         ['2E27-4F75-95CD', 'D0CC-5D9E-8A0B', 'E5F0-6A5D-7BAD', 'A1B2-0C3D-4E5F', '9B4A-51E8-2C6D',
          'F17B-412E-CB64', 'CF4E-A0C7-E3BF', '0B1F-7B2C-5C3D', 'FC2D-9C8A-1E4B', '7A3C-BB11-0D2E'] AS sku_ids,
         ['E2 Instance Core running in Americas', 'E2 Instance Ram running in Americas',
          'Standard Storage US Multi-region', 'Class A Operations',
          'Analysis', 'Active Logical Storage',
          'CPU Allocation Time (tier 1)', 'Memory Allocation Time (tier 1)',
          'Gemini 2.5 Flash Input Tokens', 'Gemini 2.5 Flash Output Tokens'] AS sku_names,
         ['seconds', 'byte-seconds', 'byte-seconds', 'requests', 'bytes', 'byte-seconds', 'seconds', 'byte-seconds', 'count', 'count'] AS units,
         ['hour', 'gibibyte hour', 'gibibyte month', 'requests', 'tebibyte', 'gibibyte month', 'vCPU-second', 'gibibyte-second', 'count', 'count'] AS pricing_units,
         ['acme-prod-281', 'acme-staging-734', 'acme-data-019', 'acme-ml-455'] AS project_ids,
         ['Acme Production', 'Acme Staging', 'Acme Data', 'Acme ML'] AS project_names,
         ['prod', 'staging', 'prod', 'dev'] AS envs,
         ['web', 'web', 'data', 'ml'] AS teams,
         ['us-central1', 'europe-west1', 'us-east1', 'asia-northeast1'] AS regions,
         ['US', 'BE', 'US', 'JP'] AS countries,
         ['us-central1-a', 'europe-west1-b', 'us-east1-c', 'asia-northeast1-a'] AS zones
),
rows AS (
  SELECT i,
    CASE i WHEN 0 THEN 'tax' WHEN 1 THEN 'adjustment' WHEN 2 THEN 'rounding_error' ELSE 'regular' END AS cost_type,
    i >= 4 AND i % 10 = 7 AS late_row,
    i = 3 AS eur,
    (i * 7919 + @seed) % 100003 AS h,
    CAST(i % 5 AS INTEGER) + 1 AS service_index,
    CAST(i % 5 AS INTEGER) * 2 + CAST((i // 5) % 2 AS INTEGER) + 1 AS sku_index,
    CASE WHEN i IN (0, 2) THEN NULL ELSE CAST((i // 3) % 4 AS INTEGER) + 1 END AS project_index,
    CAST((i // 3) % 4 AS INTEGER) + 1 AS region_index
  FROM range(@rows) AS r(i)
),
priced AS (
  SELECT *,
    CASE cost_type WHEN 'tax' THEN 12.34 WHEN 'adjustment' THEN -5.0 WHEN 'rounding_error' THEN 0.004321
      ELSE round(h / 1000.0, 6) * (CASE WHEN eur THEN 0.92 ELSE 1.0 END) END AS row_cost
  FROM rows
  WHERE (@on_time AND NOT late_row) OR (@late AND late_row)
)
SELECT
  @account,
  CASE WHEN cost_type IN ('tax', 'rounding_error') THEN {{'id': '', 'description': 'Invoice'}}
    ELSE {{'id': service_ids[service_index], 'description': service_names[service_index]}} END,
  CASE cost_type WHEN 'tax' THEN {{'id': '', 'description': 'Tax'}} WHEN 'rounding_error' THEN {{'id': '', 'description': 'Rounding error'}}
    ELSE {{'id': sku_ids[sku_index], 'description': sku_names[sku_index]}} END,
  @day_start + to_hours(i % 24),
  @day_start + to_hours(i % 24 + 1),
  CASE WHEN project_index IS NULL THEN NULL ELSE {{'id': project_ids[project_index], 'number': CAST(100000000000 + project_index * 7919 AS VARCHAR),
    'name': project_names[project_index],
    'labels': [{{'key': 'env', 'value': envs[project_index]}}, {{'key': 'team', 'value': teams[project_index]}}],
    'ancestry_numbers': '/123456789012/'}} END,
  CASE WHEN cost_type = 'regular' THEN [{{'key': 'app', 'value': 'app-' || (i % 7)}}] ELSE [] END,
  CASE WHEN service_index = 1 AND cost_type = 'regular' THEN [{{'key': 'compute.googleapis.com/machine_spec', 'value': 'e2-standard-4'}}] ELSE [] END,
  {{'location': regions[region_index], 'country': countries[region_index], 'region': regions[region_index], 'zone': zones[region_index]}},
  {resource_val}CASE WHEN late_row THEN @next_day + to_hours(6) + to_seconds(i % 3600) ELSE @day_start + to_hours(23) + to_seconds(i % 3600) END,
  row_cost,
  CASE WHEN eur THEN 'EUR' ELSE 'USD' END,
  CASE WHEN eur THEN 0.92 ELSE 1.0 END,
  {{'amount': h * 3600.0, 'unit': units[sku_index], 'amount_in_pricing_units': h / 100.0, 'pricing_unit': pricing_units[sku_index]}},
  CASE WHEN cost_type <> 'regular' THEN []
    ELSE list_filter([
      CASE WHEN i % 3 = 0 THEN {{'name': 'Sustained usage discount', 'amount': -round(row_cost * 0.2, 6), 'full_name': 'Sustained usage discount', 'id': 'SUD', 'type': 'SUSTAINED_USAGE_DISCOUNT'}} END,
      CASE WHEN i % 5 = 0 THEN {{'name': 'Committed use discount: CPU', 'amount': -round(row_cost * 0.3, 6), 'full_name': 'Committed use discount: CPU', 'id': 'CUD-7', 'type': 'COMMITTED_USAGE_DISCOUNT'}} END,
      CASE WHEN i % 7 = 0 THEN {{'name': 'Free tier', 'amount': -round(row_cost * 0.05, 6), 'full_name': 'Free tier', 'id': 'FREE', 'type': 'FREE_TIER'}} END,
      CASE WHEN i % 11 = 0 THEN {{'name': 'Promotion: startup credits', 'amount': -round(row_cost * 0.1, 6), 'full_name': 'Promotion: startup credits', 'id': 'PROMO-1', 'type': 'PROMOTION'}} END
    ], lambda c: c IS NOT NULL) END,
  {{'month': @invoice_month, 'publisher_type': 'GOOGLE'}},
  cost_type,
  CASE WHEN cost_type = 'adjustment' THEN {{'id': 'adj-' || @seed, 'description': 'Goodwill credit for an incident',
    'mode': 'MANUAL_ADJUSTMENT', 'type': 'GOODWILL'}} END,
  CASE WHEN cost_type = 'regular' THEN round(row_cost * 1.25, 6) END,
  CASE WHEN late_row THEN @next_day ELSE @day_start END
FROM priced, names"
        )
    }
}

/// UTC midnight of a day.
pub fn midnight(day: NaiveDate) -> chrono::DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BqEtlSettings {
        BqEtlSettings {
            late_arrival_days: 7,
            transfer: crate::configs::bq_etl::Transfer::Auto,
            page_rows: 5000,
            sandbox_rows_per_day: 200,
            sandbox_max_rows_per_day: 5_000_000,
        }
    }

    #[test]
    fn table_ids_carry_rows_and_kind() {
        let t = BillingExportTable::parse("sandbox.billing.gcp_billing_export_v1_acme-rows1000000").unwrap();
        let s = SandboxExport::resolve(&t, &settings()).unwrap();
        assert_eq!(
            (s.dataset.as_str(), s.table.as_str()),
            ("sandbox_billing", "gcp_billing_export_v1_acme_rows1000000")
        );
        assert_eq!((s.rows_per_day, s.detailed), (1_000_000, false));
        let t = BillingExportTable::parse("sandbox.billing.gcp_billing_export_resource_v1_acme").unwrap();
        let s = SandboxExport::resolve(&t, &settings()).unwrap();
        assert_eq!((s.rows_per_day, s.detailed), (200, true));
        let t = BillingExportTable::parse("sandbox.billing.gcp_billing_export_v1_acme-rows99999999999").unwrap();
        assert_eq!(SandboxExport::resolve(&t, &settings()).unwrap().rows_per_day, 5_000_000);
        let real = BillingExportTable::parse("my-project.billing.gcp_billing_export_v1_0101").unwrap();
        assert!(SandboxExport::resolve(&real, &settings()).is_err());
        assert!(
            BillingExportTable::parse("my-project.billing.gcp_billing_export_v1_acme-rows10").is_err(),
            "knobs are for the sandbox only"
        );
    }
}
