-- The data-quality results in force: for each step's checks of a pipeline's table and day, those
-- of the latest run that checked it (org_meta_dq_results is insert only: a rerun of a window
-- appends its results instead of replacing the old ones). By step, so a validate step's results
-- never hide a cost step's reconciliation of the same day.
-- Portable subset of SQL (BigQuery and DuckDB); BigQuery wants a WHERE beside QUALIFY.
SELECT *
FROM {{org_meta_dq_results}}
WHERE TRUE
QUALIFY RANK() OVER (
  PARTITION BY org_slug, pipeline_id, table_name, usage_date, step_id
  ORDER BY created_at DESC
) = 1
