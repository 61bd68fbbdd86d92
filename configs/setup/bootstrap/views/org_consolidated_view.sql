-- One row per organization: profile, current subscription, quotas, active API key
-- fingerprint and number of VALID integrations.
-- Portable subset of SQL (runs unchanged on BigQuery and DuckDB): no window functions,
-- "latest row" is picked with MAX(...) GROUP BY org_slug joins; ties are collapsed with MAX.
WITH latest_subscription AS (
  SELECT s.org_slug, MAX(s.subscription_id) AS subscription_id
  FROM {{org_subscriptions}} AS s
  INNER JOIN (
    SELECT org_slug, MAX(updated_at) AS max_updated_at
    FROM {{org_subscriptions}}
    GROUP BY org_slug
  ) AS sm
    ON s.org_slug = sm.org_slug AND s.updated_at = sm.max_updated_at
  GROUP BY s.org_slug
),
latest_quota AS (
  SELECT
    q.org_slug,
    MAX(q.plan_name) AS quota_plan_name,
    MAX(q.max_pipeline_runs_per_day) AS max_pipeline_runs_per_day,
    MAX(q.max_pipeline_runs_per_month) AS max_pipeline_runs_per_month,
    MAX(q.max_concurrent_runs) AS max_concurrent_runs,
    MAX(q.max_integrations) AS max_integrations
  FROM {{org_usage_quotas}} AS q
  INNER JOIN (
    SELECT org_slug, MAX(updated_at) AS max_updated_at
    FROM {{org_usage_quotas}}
    GROUP BY org_slug
  ) AS qm
    ON q.org_slug = qm.org_slug AND q.updated_at = qm.max_updated_at
  GROUP BY q.org_slug
),
active_key AS (
  SELECT
    k.org_slug,
    MAX(k.fingerprint) AS api_key_fingerprint,
    MAX(k.created_at) AS api_key_created_at
  FROM {{org_api_keys}} AS k
  INNER JOIN (
    SELECT org_slug, MAX(created_at) AS max_created_at
    FROM {{org_api_keys}}
    WHERE status = 'ACTIVE'
    GROUP BY org_slug
  ) AS km
    ON k.org_slug = km.org_slug AND k.created_at = km.max_created_at
  WHERE k.status = 'ACTIVE'
  GROUP BY k.org_slug
),
valid_integrations AS (
  SELECT org_slug, COUNT(*) AS valid_integration_count
  FROM {{org_integration_credentials}}
  WHERE status = 'VALID'
  GROUP BY org_slug
)
SELECT
  p.org_slug,
  p.company_name,
  p.admin_email,
  p.status,
  p.dataset_id,
  p.default_currency,
  p.timezone,
  p.created_at,
  p.updated_at,
  s.subscription_id,
  s.plan_name,
  s.status AS subscription_status,
  s.billing_status,
  s.trial_ends_at,
  lq.max_pipeline_runs_per_day,
  lq.max_pipeline_runs_per_month,
  lq.max_concurrent_runs,
  lq.max_integrations,
  ak.api_key_fingerprint,
  ak.api_key_created_at,
  COALESCE(vi.valid_integration_count, 0) AS valid_integration_count
FROM {{org_profiles}} AS p
LEFT JOIN latest_subscription AS ls
  ON p.org_slug = ls.org_slug
LEFT JOIN {{org_subscriptions}} AS s
  ON ls.org_slug = s.org_slug AND ls.subscription_id = s.subscription_id
LEFT JOIN latest_quota AS lq
  ON p.org_slug = lq.org_slug
LEFT JOIN active_key AS ak
  ON p.org_slug = ak.org_slug
LEFT JOIN valid_integrations AS vi
  ON p.org_slug = vi.org_slug
