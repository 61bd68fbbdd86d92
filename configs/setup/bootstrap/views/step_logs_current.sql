-- The current state of every step: the latest row of its step_log_id (org_meta_step_logs is
-- insert only: a row when the step starts, one when it ends).
-- Portable subset of SQL (BigQuery and DuckDB); BigQuery wants a WHERE beside QUALIFY.
SELECT *
FROM {{org_meta_step_logs}}
WHERE TRUE
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY org_slug, step_log_id
  ORDER BY created_at DESC, CASE status WHEN 'RUNNING' THEN 0 ELSE 1 END DESC
) = 1
