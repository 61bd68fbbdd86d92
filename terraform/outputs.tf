output "lb_ip_address" {
  description = "The load balancer's IPv4 address: point the domain's A record here (the managed certificate is issued after that)."
  value       = google_compute_global_address.api.address
}

output "api_url" {
  description = "Base URL of the API for the frontend."
  value       = "https://${var.domain}"
}

output "service_urls" {
  description = "run.app URL of each Cloud Run service (reachable only from the load balancer and Google-internal callers such as Cloud Scheduler and Pub/Sub)."
  value       = { for name, svc in google_cloud_run_v2_service.service : name => svc.uri }
}

output "service_accounts" {
  description = "Runtime service account of each service."
  value       = { for name, sa in google_service_account.service : name => sa.email }
}

output "kms_key_name" {
  description = "Full Cloud KMS key id, as passed to the services in KMS_KEY_NAME."
  value       = google_kms_crypto_key.secrets.id
}

output "root_api_key_secret" {
  description = "Secret Manager secret holding CA_ROOT_API_KEY (add versions with gcloud, never through Terraform)."
  value       = google_secret_manager_secret.root_api_key.id
}

output "smtp_password_secret" {
  description = "Secret Manager secret holding SMTP_PASSWORD for email notifications (used when smtp_username is set; add versions with gcloud)."
  value       = google_secret_manager_secret.smtp_password.id
}

output "pipeline_runs_topic" {
  description = "Pub/Sub topic of pipeline runs (pushed to pipelines-run)."
  value       = google_pubsub_topic.runs.id
}

output "oidc_callers" {
  description = "Identities and audiences of the internal callers (DESIGN §6: the push and tick endpoints accept only these OIDC tokens in production)."
  value = {
    scheduler_tick = {
      service_account = google_service_account.scheduler.email
      audience        = local.oidc_audiences["scheduler-tick"]
    }
    pipelines_push = {
      service_account = google_service_account.pubsub_push.email
      audience        = local.oidc_audiences["pipelines-run"]
    }
  }
}

output "image_repository" {
  description = "Where to push the images (convergence-<service>:<tag>): the Artifact Registry repository, or var.image_repository when set."
  value       = local.image_repository
}
