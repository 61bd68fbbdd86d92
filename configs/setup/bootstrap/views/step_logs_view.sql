-- Steps (their current state) joined with their run's pipeline, trigger and current status. A
-- step still RUNNING in a run that has ended (its process died) reads FAILED.
-- Portable subset of SQL (runs unchanged on BigQuery and DuckDB).
SELECT
  st.created_at,
  st.org_slug,
  st.run_id,
  COALESCE(r.pipeline_id, st.pipeline_id) AS pipeline_id,
  r.provider,
  r.domain,
  r.trigger,
  r.status AS run_status,
  st.step_log_id,
  st.step_index,
  st.step_id,
  st.ps_type,
  CASE WHEN st.status = 'RUNNING' AND r.status IN ('SUCCESS', 'FAILED') THEN 'FAILED' ELSE st.status END AS status,
  st.rows_processed,
  st.error_message,
  st.started_at,
  st.finished_at,
  st.duration_ms,
  st.metadata
FROM {{step_logs_current}} AS st
LEFT JOIN {{pipeline_runs_current}} AS r
  ON st.run_id = r.run_id AND st.org_slug = r.org_slug
