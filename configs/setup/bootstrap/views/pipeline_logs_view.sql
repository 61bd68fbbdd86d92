-- Pipeline runs (their current state) with the organization's company name, columns ordered
-- for a log listing.
-- Portable subset of SQL (runs unchanged on BigQuery and DuckDB).
SELECT
  r.created_at,
  r.org_slug,
  p.company_name,
  r.run_id,
  r.pipeline_id,
  r.provider,
  r.domain,
  r.trigger,
  r.status,
  r.start_date,
  r.end_date,
  r.started_at,
  r.finished_at,
  r.duration_ms,
  r.rows_written,
  r.error_message,
  r.warnings,
  r.parameters
FROM {{pipeline_runs_current}} AS r
LEFT JOIN {{org_profiles}} AS p
  ON r.org_slug = p.org_slug
