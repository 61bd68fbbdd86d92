# Email notifications of run outcomes (README "Notifications"; settings SMTP_*). The services
# that end runs send them: pipelines-run executes runs, scheduler-tick records the ones whose
# lease expired. With smtp_host empty (the default) every SMTP_* value is empty, which the
# settings read as unset: email is off, Slack webhooks still work.

locals {
  smtp_env = {
    SMTP_HOST     = var.smtp_host
    SMTP_PORT     = var.smtp_host == "" ? "" : tostring(var.smtp_port)
    SMTP_TLS      = var.smtp_host == "" ? "" : var.smtp_tls
    SMTP_USERNAME = var.smtp_username
    SMTP_FROM     = var.smtp_from
  }

  # Merged into the environment of these services (cloud_run.tf); the SMTP password is mounted
  # from Secret Manager for them alone, when a login is set.
  notify_env = {
    "pipelines-run"  = local.smtp_env
    "scheduler-tick" = local.smtp_env
  }
}

# The SMTP password (SMTP_PASSWORD). Terraform creates the secret but never its value, so the
# password is not in the Terraform state: add a version before applying with smtp_username set.
resource "google_secret_manager_secret" "smtp_password" {
  secret_id = "${local.name}-smtp-password"

  labels = {
    app         = local.name
    environment = var.environment
  }

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_iam_member" "smtp_password" {
  for_each = local.notify_env

  secret_id = google_secret_manager_secret.smtp_password.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.service[each.key].email}"
}
