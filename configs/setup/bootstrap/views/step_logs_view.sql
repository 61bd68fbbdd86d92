-- Step logs joined with their run's pipeline, trigger and run status.
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
  st.status,
  st.rows_processed,
  st.error_message,
  st.started_at,
  st.finished_at,
  st.duration_ms,
  st.metadata
FROM {{org_meta_step_logs}} AS st
LEFT JOIN {{org_meta_pipeline_runs}} AS r
  ON st.run_id = r.run_id AND st.org_slug = r.org_slug
