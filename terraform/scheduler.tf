# Cloud Scheduler calls scheduler-tick's POST /api/v1/scheduler/tick on its run.app URL with a
# Google-signed OIDC token (DESIGN §6); the tick submits every due run and publishes it on the
# Pub/Sub topic, which pushes each to pipelines-run (pubsub.tf). The body {} means "as of now".

resource "google_cloud_scheduler_job" "tick" {
  name             = "${local.name}-scheduler-tick"
  description      = "Enqueues every due Convergence pipeline run"
  region           = var.region
  schedule         = var.scheduler_schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "${local.services["scheduler-tick"].timeout_seconds}s"

  retry_config {
    retry_count          = 3
    min_backoff_duration = "30s"
    max_backoff_duration = "300s"
  }

  http_target {
    http_method = "POST"
    uri         = "${google_cloud_run_v2_service.service["scheduler-tick"].uri}/api/v1/scheduler/tick"
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode("{}")

    # The account and audience scheduler-tick accepts (OIDC_INVOKERS, OIDC_AUDIENCE: cloud_run.tf).
    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = local.oidc_audiences["scheduler-tick"]
    }
  }

  depends_on = [
    google_project_service.enabled,
    google_cloud_run_v2_service_iam_member.scheduler_invoker,
  ]
}
