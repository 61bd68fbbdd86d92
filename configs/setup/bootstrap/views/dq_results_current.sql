-- The data-quality results in force: for each check of a pipeline's table, day and dimension,
-- those of the latest run that checked it (org_meta_dq_results is insert only: a rerun of a
-- window appends its results instead of replacing the old ones).
-- Portable subset of SQL (BigQuery and DuckDB); BigQuery wants a WHERE beside QUALIFY.
SELECT *
FROM {{org_meta_dq_results}}
WHERE TRUE
QUALIFY RANK() OVER (
  PARTITION BY org_slug, pipeline_id, table_name, usage_date
  ORDER BY created_at DESC
) = 1
