# The RunQueue in production (DESIGN §3): pipeline runs are published to a topic and pushed,
# at least once, to pipelines-run's POST /api/v1/pipelines/push with a Google-signed OIDC token.
# Deliveries that keep failing go to a dead-letter topic kept for inspection.

resource "google_pubsub_topic" "runs" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption at rest. A message is a run request (organization slug, pipeline id, run id, dates), no credentials or usage data; a customer-managed key would make every submission depend on that key.
  name = "${local.name}-pipeline-runs"

  labels = {
    app         = local.name
    environment = var.environment
  }

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "runs_dead_letter" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption at rest; it holds the same run requests as the runs topic (no credentials or usage data).
  name = "${local.name}-pipeline-runs-dead-letter"

  labels = {
    app         = local.name
    environment = var.environment
  }

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_subscription" "runs_push" {
  name  = "${local.name}-pipeline-runs-push"
  topic = google_pubsub_topic.runs.id

  # Pub/Sub's maximum. A run may take longer (up to RUN_TIMEOUT_SECS): the redeliveries that
  # follow find its lease renewed by heartbeats and are answered 429 until it has finished; then
  # 200 (cloud_run.tf, run_lease_seconds).
  ack_deadline_seconds       = 600
  message_retention_duration = "604800s" # 7 days

  push_config {
    push_endpoint = "${google_cloud_run_v2_service.service["pipelines-run"].uri}/api/v1/pipelines/push"

    # The account and audience pipelines-run accepts (OIDC_INVOKERS, OIDC_AUDIENCE: cloud_run.tf).
    oidc_token {
      service_account_email = google_service_account.pubsub_push.email
      audience              = local.oidc_audiences["pipelines-run"]
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.runs_dead_letter.id
    max_delivery_attempts = 5
  }

  expiration_policy {
    ttl = "" # never expire for inactivity
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.pubsub_push_invoker,
    google_service_account_iam_member.pubsub_agent_token_creator,
  ]
}

# Dead letters need a subscription, or Pub/Sub drops them.
resource "google_pubsub_subscription" "runs_dead_letter" {
  name                       = "${local.name}-pipeline-runs-dead-letter"
  topic                      = google_pubsub_topic.runs_dead_letter.id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = ""
  }
}
