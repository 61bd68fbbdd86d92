# The six Cloud Run services (DESIGN §1), one entry each in local.services. Everything per
# service (service account, IAM, NEG, backend, URL-map rules) is a for_each over this map.

locals {
  name           = "convergence"
  container_port = 8080

  # name => what the load balancer routes to it (DESIGN §2), what it may touch and its size.
  #   path_templates: URL-map path templates, matched before every prefix (so pricing's
  #                   /api/v1/integrations/{org}/{provider}/pricing... wins over integrations).
  #   path_prefixes:  URL-map prefix matches; they must not overlap between services.
  #   public:         allUsers may invoke it (through the load balancer; ingress forbids the rest
  #                   of the internet). scheduler-tick is invoked only by Cloud Scheduler's OIDC token.
  #   kms:            what it does with the Cloud KMS key (provider credentials, Slack webhooks):
  #                   "encrypt" (seals what it stores), "decrypt" (opens what it uses), "both", or
  #                   null. iam.tf grants the matching role and nothing more.
  #   publishes_runs: enqueues pipeline runs on the Pub/Sub topic.
  #   executes_runs:  runs pipelines inside its requests (Pub/Sub push), so its concurrency is
  #                   runs per instance and its memory holds that many runs' working sets.
  #   bigquery_central, bigquery_org_datasets: what it does in the central dataset and in the
  #                   per-organization datasets (iam.tf grants exactly that).
  # Sizing (defaults; var.service_overrides changes them per environment, see local.sizing):
  #   memory, cpu:     Cloud Run limits. Cloud Run needs cpu >= 1 for memory above 512Mi and
  #                    for concurrency above 1 (checked by a precondition below). The binaries
  #                    measure ~14 MB RSS once healthy (docs/BENCHMARKS.md).
  #   concurrency:     requests per instance.
  #   min_instances, max_instances: scaling bounds (0: scale to zero; a cold start is ~10 ms).
  #   timeout_seconds: Cloud Run request timeout and the service's own REQUEST_TIMEOUT_SECS.
  services = {
    "bootstrap" = {
      # Rarely called (once per environment and release). One instance, so its in-process lock
      # serializes every bootstrap; a bootstrap creates tables one by one (up to 300 s).
      path_templates        = []
      path_prefixes         = ["/api/v1/admin/"]
      public                = true
      kms                   = null
      publishes_runs        = false
      executes_runs         = false
      bigquery_central      = "write"
      bigquery_org_datasets = "none"
      memory                = "512Mi"
      cpu                   = "1"
      concurrency           = 8
      min_instances         = 0
      max_instances         = 1
      timeout_seconds       = 300
    }
    "onboard" = {
      # Small JSON requests; creates each organization's dataset (and owns it).
      path_templates        = []
      path_prefixes         = ["/api/v1/organizations/"]
      public                = true
      kms                   = "encrypt"
      publishes_runs        = false
      executes_runs         = false
      bigquery_central      = "write"
      bigquery_org_datasets = "create"
      memory                = "512Mi"
      cpu                   = "1"
      concurrency           = 80
      min_instances         = 0
      max_instances         = 10
      timeout_seconds       = 60
    }
    "integrations" = {
      # Small JSON requests, plus a provider round trip when validating a credential.
      path_templates        = []
      path_prefixes         = ["/api/v1/integrations/"]
      public                = true
      kms                   = "both"
      publishes_runs        = false
      executes_runs         = false
      bigquery_central      = "write"
      bigquery_org_datasets = "write"
      memory                = "512Mi"
      cpu                   = "1"
      concurrency           = 80
      min_instances         = 0
      max_instances         = 10
      timeout_seconds       = 60
    }
    "pricing" = {
      # Small JSON requests over one organization's price books and the price catalog.
      path_templates = [
        "/api/v1/integrations/{org=*}/{provider=*}/pricing",
        "/api/v1/integrations/{org=*}/{provider=*}/pricing/**",
        "/api/v1/integrations/{org=*}/{provider=*}/subscriptions",
        "/api/v1/integrations/{org=*}/{provider=*}/subscriptions/**",
      ]
      # The system-wide price catalog (GET /api/v1/pricing/catalog/{provider}).
      path_prefixes         = ["/api/v1/pricing/"]
      public                = true
      kms                   = null
      publishes_runs        = false
      executes_runs         = false
      bigquery_central      = "write"
      bigquery_org_datasets = "write"
      memory                = "512Mi"
      cpu                   = "1"
      concurrency           = 80
      min_instances         = 0
      max_instances         = 10
      timeout_seconds       = 60
    }
    "pipelines-run" = {
      # A pushed run holds its working set until it ends (peak < 200 MB RSS, docs/BENCHMARKS.md
      # "pipeline end to end") and uses about one core while it transforms (server CPU ~ wall
      # time there): 4 runs per instance in 2 GiB (4 x 200 MB + the process and the run API's
      # light requests) on 2 CPUs; more runs scale out. timeout_seconds: > RUN_TIMEOUT_SECS,
      # Cloud Run's maximum (see run_timeout_seconds below).
      path_templates        = []
      path_prefixes         = ["/api/v1/pipelines/"]
      public                = true
      kms                   = "decrypt"
      publishes_runs        = true
      executes_runs         = true
      bigquery_central      = "write"
      bigquery_org_datasets = "write"
      memory                = "2Gi"
      cpu                   = "2"
      concurrency           = 4
      min_instances         = 0
      max_instances         = 10
      timeout_seconds       = 3600
    }
    "scheduler-tick" = {
      # A tick is set-based (one query for every due run, one append for all submissions): one
      # tick per instance, and a few instances at most (Cloud Scheduler calls it hourly; a retry
      # or a manual tick may overlap). Its peak RSS is ~400-500 MB at 17,000 due runs
      # (docs/BENCHMARKS.md "scheduler tick"), hence 1 GiB.
      path_templates        = []
      path_prefixes         = ["/api/v1/scheduler/"]
      public                = false
      kms                   = "decrypt"
      publishes_runs        = true
      executes_runs         = false
      bigquery_central      = "write"
      bigquery_org_datasets = "none"
      memory                = "1Gi"
      cpu                   = "1"
      concurrency           = 1
      min_instances         = 0
      max_instances         = 3
      timeout_seconds       = 120
    }
  }

  # Each service's size: its entry's defaults, with what var.service_overrides sets for it.
  # memory_mib and cpu_count are the same limits as numbers, for the preconditions below.
  sizing = {
    for name, svc in local.services : name => {
      memory          = coalesce(try(var.service_overrides[name].memory, null), svc.memory)
      cpu             = coalesce(try(var.service_overrides[name].cpu, null), svc.cpu)
      concurrency     = coalesce(try(var.service_overrides[name].concurrency, null), svc.concurrency)
      min_instances   = coalesce(try(var.service_overrides[name].min_instances, null), svc.min_instances)
      max_instances   = coalesce(try(var.service_overrides[name].max_instances, null), svc.max_instances)
      timeout_seconds = coalesce(try(var.service_overrides[name].timeout_seconds, null), svc.timeout_seconds)
    }
  }
  sizing_numbers = {
    for name, size in local.sizing : name => {
      memory_mib = tonumber(regex("^[0-9]+", size.memory)) * (endswith(size.memory, "Gi") ? 1024 : 1)
      cpu_count  = tonumber(size.cpu)
    }
  }

  # A pushed run executes inside the push request (Cloud Run gives CPU only while a request is
  # open). Its claim is a lease renewed by heartbeats every third of RUN_LEASE_SECS, so:
  #   RUN_LEASE_SECS (300 s) < the push subscription's ack deadline (600 s, Pub/Sub's maximum):
  #     a worker that died is noticed within a lease, and the redelivery that follows the ack
  #     deadline claims the run again;
  #   RUN_TIMEOUT_SECS (3300 s) < pipelines-run's request timeout (3600 s, Cloud Run's maximum):
  #     a run may outlast the ack deadline; the redeliveries meanwhile find its lease alive and
  #     are answered 429 (retried with backoff), and the run's outcome is recorded inside its own
  #     request before Cloud Run would cut it.
  # Every service gets the same values: the run API and the tick judge "still running" or
  # "stale" by the lease too.
  run_lease_seconds   = 300
  run_timeout_seconds = 3300

  # A run's peak RSS, rounded up (every measured run peaked below 200 MB, docs/BENCHMARKS.md
  # "pipeline end to end"), and what the process holds besides its runs: an instance that
  # executes runs needs concurrency x run_peak_mib + process_mib of memory.
  run_peak_mib = 200
  process_mib  = 100

  # Settings every service reads at start-up (common/src/settings.rs; tests/api/terraform.rs
  # checks each name is one the code reads and that each service's set passes production
  # validation; tests/api/cloud_binaries.rs starts every binary with it). CA_ROOT_API_KEY comes
  # from Secret Manager (secrets.tf); PORT is set by Cloud Run. Every service builds the run
  # queue, so all get the topic; only publishes_runs services may publish on it (iam.tf).
  service_env = {
    ENVIRONMENT        = var.environment
    GCP_PROJECT_ID     = var.project_id
    BIGQUERY_LOCATION  = var.bigquery_location
    WAREHOUSE_BACKEND  = "bigquery"
    KMS_BACKEND        = "gcp"
    KMS_KEY_NAME       = google_kms_crypto_key.secrets.id
    QUEUE_BACKEND      = "pubsub"
    PUBSUB_TOPIC       = google_pubsub_topic.runs.id
    RUN_LEASE_SECS     = tostring(local.run_lease_seconds)
    RUN_TIMEOUT_SECS   = tostring(local.run_timeout_seconds)
    CORS_ORIGINS       = join(",", var.cors_origins)
    RATE_LIMIT_ENABLED = "true"
    # The client address for rate limiting and the failed-authentication budget: Google's
    # external Application Load Balancer appends "<client-ip>,<load-balancer-ip>" to
    # X-Forwarded-For (anything left of those is what the client wrote, and is ignored), so the
    # client is the second entry from the right. Ingress is load-balancer only, so every request
    # carries both entries.
    TRUSTED_PROXY_HOPS = "2"
    DISABLE_AUTH       = "false"
    SANDBOX_PROVIDERS  = "false"
    LOG_FORMAT         = "json"
    # Run notifications link to the run's status URL under the API's public address.
    PUBLIC_BASE_URL = "https://${var.domain}"
  }

  # The internal endpoints (DESIGN §6): Pub/Sub pushes runs to pipelines-run and Cloud Scheduler
  # calls scheduler-tick, each with a Google-signed OIDC token for this audience. A fixed string,
  # not the service's run.app URL: a service's settings cannot hold its own `.uri` (a cycle).
  # The same value is the service's OIDC_AUDIENCE, the audience of the token requests
  # (pubsub.tf, scheduler.tf) and a custom audience of the service (Cloud Run's own IAM check
  # accepts only the run.app URL or a custom audience; scheduler-tick is IAM-protected).
  oidc_audiences = {
    "pipelines-run"  = "https://${var.domain}/api/v1/pipelines/push"
    "scheduler-tick" = "https://${var.domain}/api/v1/scheduler/tick"
  }

  # Settings of the services with an internal endpoint: the audience above, and the only caller
  # accepted (OIDC_INVOKERS, comma-separated), the account whose token the caller presents.
  oidc_env = {
    "pipelines-run" = {
      OIDC_AUDIENCE = local.oidc_audiences["pipelines-run"]
      OIDC_INVOKERS = google_service_account.pubsub_push.email
    }
    "scheduler-tick" = {
      OIDC_AUDIENCE = local.oidc_audiences["scheduler-tick"]
      OIDC_INVOKERS = google_service_account.scheduler.email
    }
  }
}

resource "google_cloud_run_v2_service" "service" {
  for_each = local.services

  name                = "${local.name}-${each.key}"
  location            = var.region
  description         = "Convergence ${each.key} (binary convergence-${each.key})"
  ingress             = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
  deletion_protection = var.deletion_protection

  labels = {
    app         = local.name
    service     = each.key
    environment = var.environment
  }

  custom_audiences = contains(keys(local.oidc_audiences), each.key) ? [local.oidc_audiences[each.key]] : []

  template {
    service_account = google_service_account.service[each.key].email
    # Sizes per service: local.services (why each is what it is) and var.service_overrides.
    max_instance_request_concurrency = local.sizing[each.key].concurrency
    timeout                          = "${local.sizing[each.key].timeout_seconds}s"

    scaling {
      min_instance_count = local.sizing[each.key].min_instances
      max_instance_count = local.sizing[each.key].max_instances
    }

    containers {
      name  = each.key
      image = "${local.image_repository}/convergence-${each.key}:${lookup(var.image_tags, each.key, var.image_tag)}"

      ports {
        name           = "http1"
        container_port = local.container_port
      }

      resources {
        limits = {
          cpu    = local.sizing[each.key].cpu
          memory = local.sizing[each.key].memory
        }
        # CPU only while a request is open (what allows a CPU below 1), boosted at start-up.
        cpu_idle          = true
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = merge(
          local.service_env,
          { REQUEST_TIMEOUT_SECS = tostring(local.sizing[each.key].timeout_seconds) },
          lookup(local.oidc_env, each.key, {}),
          lookup(local.org_dataset_env, each.key, {}),
          lookup(local.notify_env, each.key, {}),
          var.extra_env,
        )
        content {
          name  = env.key
          value = env.value
        }
      }

      env {
        name = "CA_ROOT_API_KEY"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.root_api_key.secret_id
            version = "latest"
          }
        }
      }

      # The SMTP password (notifications.tf), for the services that send email, when a login is set.
      dynamic "env" {
        for_each = var.smtp_username != "" && contains(keys(local.notify_env), each.key) ? ["SMTP_PASSWORD"] : []
        content {
          name = env.value
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.smtp_password.secret_id
              version = "latest"
            }
          }
        }
      }

      # /health answers as soon as the listener is up (configs loaded); the binaries are
      # healthy in ~10 ms, so the generous threshold only covers a slow image pull.
      startup_probe {
        initial_delay_seconds = 0
        period_seconds        = 2
        timeout_seconds       = 1
        failure_threshold     = 30
        http_get {
          path = "/health"
          port = local.container_port
        }
      }

      liveness_probe {
        period_seconds    = 30
        timeout_seconds   = 3
        failure_threshold = 3
        http_get {
          path = "/health"
          port = local.container_port
        }
      }
    }
  }

  lifecycle {
    # Cloud Run's rules on the limits, checked at plan time on the sizes after overrides.
    precondition {
      condition     = local.sizing_numbers[each.key].memory_mib <= 512 || local.sizing_numbers[each.key].cpu_count >= 1
      error_message = "${each.key}: Cloud Run needs cpu >= 1 for memory above 512Mi (memory ${local.sizing[each.key].memory}, cpu ${local.sizing[each.key].cpu})."
    }
    precondition {
      condition     = local.sizing[each.key].concurrency == 1 || local.sizing_numbers[each.key].cpu_count >= 1
      error_message = "${each.key}: Cloud Run needs cpu >= 1 for a concurrency above 1 (concurrency ${local.sizing[each.key].concurrency}, cpu ${local.sizing[each.key].cpu})."
    }
    precondition {
      condition     = local.sizing[each.key].min_instances <= local.sizing[each.key].max_instances
      error_message = "${each.key}: min_instances ${local.sizing[each.key].min_instances} is above max_instances ${local.sizing[each.key].max_instances}."
    }
    precondition {
      condition     = !each.value.executes_runs || local.sizing_numbers[each.key].memory_mib >= local.sizing[each.key].concurrency * local.run_peak_mib + local.process_mib
      error_message = "${each.key}: ${local.sizing[each.key].concurrency} runs at once need ${local.sizing[each.key].concurrency} x ${local.run_peak_mib} MiB + ${local.process_mib} MiB; memory is ${local.sizing[each.key].memory}."
    }
    # A pushed run's outcome is recorded inside its own request: the request must outlast it.
    precondition {
      condition     = !each.value.executes_runs || local.sizing[each.key].timeout_seconds > local.run_timeout_seconds
      error_message = "${each.key}: timeout_seconds ${local.sizing[each.key].timeout_seconds} must exceed RUN_TIMEOUT_SECS (${local.run_timeout_seconds})."
    }
  }

  depends_on = [
    google_project_service.enabled,
    google_project_iam_member.bigquery,
    google_bigquery_dataset_iam_member.central,
    google_secret_manager_secret_iam_member.root_api_key,
    google_secret_manager_secret_iam_member.smtp_password,
  ]
}
