# Identities and least privilege: one runtime service account per service, granted only what
# its entry in local.services says it needs; one caller identity each for Cloud Scheduler and
# Pub/Sub push, allowed to invoke only their target service.

locals {
  # BigQuery, from what each service does (bigquery_central and bigquery_org_datasets in
  # local.services). No service holds a data role on the project:
  #   - every service runs query jobs (reads, DML, the start-up ping): Job User on the project;
  #   - the central dataset (bigquery.tf) grants Data Editor to the services that write it
  #     (all six today: audit rows at least) and Data Viewer to those that only read it;
  #   - the per-organization datasets (`{org}_{env}`) are created by onboard, which therefore
  #     holds BigQuery User on the project (bigquery.datasets.create; nothing in any dataset)
  #     and owns each dataset it creates. At creation it grants the services that use them
  #     their role on that dataset (ORG_DATASET_* settings, below), so a new organization needs
  #     no Terraform change. terraform/README.md says how to grant datasets made before.
  bigquery_project_grants = merge(
    { for name, svc in local.services : "${name} roles/bigquery.jobUser" => { service = name, role = "roles/bigquery.jobUser" } },
    {
      for name, svc in local.services : "${name} roles/bigquery.user" => { service = name, role = "roles/bigquery.user" }
      if svc.bigquery_org_datasets == "create"
    },
  )

  # Onboard's settings (the service whose bigquery_org_datasets is "create"): who gets which
  # role on each organization dataset it creates. Onboard itself is the owner (an explicit
  # access list replaces BigQuery's default, which made the creator the owner; it drops the
  # dataset of a failed onboarding).
  org_dataset_env = {
    "onboard" = {
      ORG_DATASET_OWNERS  = google_service_account.service["onboard"].email
      ORG_DATASET_WRITERS = join(",", [for name, svc in local.services : google_service_account.service[name].email if svc.bigquery_org_datasets == "write"])
      ORG_DATASET_READERS = join(",", [for name, svc in local.services : google_service_account.service[name].email if svc.bigquery_org_datasets == "read"])
    }
  }

  # The Pub/Sub service agent signs push tokens and dead-letters messages. It is created lazily by
  # Google, so on a new project the grants below would name an account that does not exist yet:
  # google_project_service_identity makes it exist first.
  pubsub_agent = "serviceAccount:${google_project_service_identity.pubsub.email}"
}

resource "google_project_service_identity" "pubsub" {
  provider = google-beta
  project  = var.project_id
  service  = "pubsub.googleapis.com"

  depends_on = [google_project_service.enabled]
}

resource "google_service_account" "service" {
  for_each = local.services

  account_id   = "${local.name}-${each.key}"
  display_name = "Convergence ${each.key} (Cloud Run runtime)"

  depends_on = [google_project_service.enabled]
}

resource "google_project_iam_member" "bigquery" {
  for_each = local.bigquery_project_grants

  project = var.project_id
  role    = each.value.role
  member  = "serviceAccount:${google_service_account.service[each.value.service].email}"
}

resource "google_bigquery_dataset_iam_member" "central" {
  for_each = local.services

  dataset_id = google_bigquery_dataset.central.dataset_id
  role       = each.value.bigquery_central == "write" ? "roles/bigquery.dataEditor" : "roles/bigquery.dataViewer"
  member     = "serviceAccount:${google_service_account.service[each.key].email}"
}

# Each service gets only the half of the key it uses: onboard seals Slack webhooks but can open
# nothing; pipelines-run and scheduler-tick open credentials and webhooks but seal nothing.
locals {
  kms_roles = {
    encrypt = "roles/cloudkms.cryptoKeyEncrypter"
    decrypt = "roles/cloudkms.cryptoKeyDecrypter"
    both    = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  }
}

resource "google_kms_crypto_key_iam_member" "service" {
  for_each = { for name, svc in local.services : name => svc if svc.kms != null }

  crypto_key_id = google_kms_crypto_key.secrets.id
  role          = local.kms_roles[each.value.kms]
  member        = "serviceAccount:${google_service_account.service[each.key].email}"
}

resource "google_secret_manager_secret_iam_member" "root_api_key" {
  for_each = local.services

  secret_id = google_secret_manager_secret.root_api_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.service[each.key].email}"
}

resource "google_pubsub_topic_iam_member" "runs_publisher" {
  for_each = { for name, svc in local.services : name => svc if svc.publishes_runs }

  topic  = google_pubsub_topic.runs.name
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.service[each.key].email}"
}

# Requests through the load balancer carry no Google identity, so the public services let
# allUsers invoke them; ingress (internal and Cloud Load Balancing) keeps the run.app URL closed
# to the internet, and the services authenticate every request with their own API keys.
resource "google_cloud_run_v2_service_iam_member" "public" {
  for_each = { for name, svc in local.services : name => svc if svc.public }

  project  = var.project_id
  location = google_cloud_run_v2_service.service[each.key].location
  name     = google_cloud_run_v2_service.service[each.key].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# --- Cloud Scheduler -> scheduler-tick ---------------------------------------------------------

resource "google_service_account" "scheduler" {
  account_id   = "${local.name}-scheduler"
  display_name = "Convergence Cloud Scheduler caller (OIDC to scheduler-tick)"

  depends_on = [google_project_service.enabled]
}

resource "google_cloud_run_v2_service_iam_member" "scheduler_invoker" {
  project  = var.project_id
  location = google_cloud_run_v2_service.service["scheduler-tick"].location
  name     = google_cloud_run_v2_service.service["scheduler-tick"].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

# --- Pub/Sub push -> pipelines-run ------------------------------------------------------------

resource "google_service_account" "pubsub_push" {
  account_id   = "${local.name}-pubsub-push"
  display_name = "Convergence Pub/Sub push caller (OIDC to pipelines-run)"

  depends_on = [google_project_service.enabled]
}

resource "google_cloud_run_v2_service_iam_member" "pubsub_push_invoker" {
  project  = var.project_id
  location = google_cloud_run_v2_service.service["pipelines-run"].location
  name     = google_cloud_run_v2_service.service["pipelines-run"].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.pubsub_push.email}"
}

# The Pub/Sub service agent mints the push OIDC tokens (needed explicitly in projects created
# before April 2021; harmless after) and moves undeliverable messages to the dead-letter topic.
resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  service_account_id = google_service_account.pubsub_push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic_iam_member" "pubsub_agent_dead_letter_publisher" {
  topic  = google_pubsub_topic.runs_dead_letter.name
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_runs_subscriber" {
  subscription = google_pubsub_subscription.runs_push.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}
