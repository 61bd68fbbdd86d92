-- The current state of every pipeline run: its latest event (org_meta_pipeline_runs is insert
-- only: nothing ever UPDATEs a run, see docs/ARCHITECTURE.md). A run still PENDING or RUNNING
-- past its lease reads FAILED ("lease expired"), finished when the lease ended, so a run lost
-- with its process never blocks its window. A finish recorded after an expiry is the later
-- event, and the run reads as finished. Rows written before run events existed have no
-- event_at and stand for themselves.
-- Portable subset of SQL (BigQuery and DuckDB); BigQuery wants a WHERE beside QUALIFY.
SELECT
  run_id,
  org_slug,
  pipeline_id,
  provider,
  domain,
  trigger,
  CASE
    WHEN status IN ('PENDING', 'RUNNING') AND lease_expires_at < CURRENT_TIMESTAMP THEN 'FAILED'
    ELSE status
  END AS status,
  start_date,
  end_date,
  parameters,
  rows_written,
  CASE
    WHEN status IN ('PENDING', 'RUNNING') AND lease_expires_at < CURRENT_TIMESTAMP
      THEN 'lease expired: the run stopped reporting before its lease ended; its window may run again'
    ELSE error_message
  END AS error_message,
  warnings,
  started_at,
  CASE
    WHEN status IN ('PENDING', 'RUNNING') AND lease_expires_at < CURRENT_TIMESTAMP THEN lease_expires_at
    ELSE finished_at
  END AS finished_at,
  duration_ms,
  created_at,
  event,
  event_at,
  lease_expires_at,
  claim_id
FROM {{org_meta_pipeline_runs}}
WHERE TRUE
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY org_slug, run_id
  ORDER BY
    COALESCE(event_at, created_at) DESC,
    CASE event
      WHEN 'finished' THEN 5
      WHEN 'expired' THEN 4
      WHEN 'interrupted' THEN 4
      WHEN 'retrying' THEN 3
      WHEN 'heartbeat' THEN 2
      WHEN 'claimed' THEN 2
      ELSE 1
    END DESC,
    event_id DESC
) = 1
