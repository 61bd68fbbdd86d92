# The six Cloud Run services (DESIGN §1), one entry each in local.services. Everything per
# service (service account, IAM, NEG, backend, URL-map rules) is a for_each over this map.

locals {
  name           = "convergence"
  container_port = 8080

  # name => what the load balancer routes to it (DESIGN §2) and what it may touch.
  #   path_templates: URL-map path templates, matched before every prefix (so pricing's
  #                   /api/v1/integrations/{org}/{provider}/pricing... wins over integrations).
  #   path_prefixes:  URL-map prefix matches; they must not overlap between services.
  #   public:         allUsers may invoke it (through the load balancer; ingress forbids the rest
  #                   of the internet). scheduler-tick is invoked only by Cloud Scheduler's OIDC token.
  #   kms:            encrypts/decrypts with the Cloud KMS key (API keys, provider credentials).
  #   publishes_runs: enqueues pipeline runs on the Pub/Sub topic.
  #   executes_runs:  runs pipelines inside its requests (Pub/Sub push): sized by run_memory and
  #                   run_concurrency instead of memory and max_concurrency.
  #   timeout_seconds: Cloud Run request timeout and the service's own REQUEST_TIMEOUT_SECS.
  services = {
    "bootstrap" = {
      path_templates  = []
      path_prefixes   = ["/api/v1/admin/"]
      public          = true
      kms             = false
      publishes_runs  = false
      executes_runs   = false
      timeout_seconds = 300
    }
    "onboard" = {
      path_templates  = []
      path_prefixes   = ["/api/v1/organizations/"]
      public          = true
      kms             = true
      publishes_runs  = false
      executes_runs   = false
      timeout_seconds = 60
    }
    "integrations" = {
      path_templates  = []
      path_prefixes   = ["/api/v1/integrations/"]
      public          = true
      kms             = true
      publishes_runs  = false
      executes_runs   = false
      timeout_seconds = 60
    }
    "pricing" = {
      path_templates = [
        "/api/v1/integrations/{org=*}/{provider=*}/pricing",
        "/api/v1/integrations/{org=*}/{provider=*}/pricing/**",
        "/api/v1/integrations/{org=*}/{provider=*}/subscriptions",
        "/api/v1/integrations/{org=*}/{provider=*}/subscriptions/**",
      ]
      path_prefixes   = []
      public          = true
      kms             = false
      publishes_runs  = false
      executes_runs   = false
      timeout_seconds = 60
    }
    "pipelines-run" = {
      # timeout_seconds: > RUN_TIMEOUT_SECS, Cloud Run's maximum (see run_lease_seconds below).
      path_templates  = []
      path_prefixes   = ["/api/v1/pipelines/"]
      public          = true
      kms             = true
      publishes_runs  = true
      executes_runs   = true
      timeout_seconds = 3600
    }
    "scheduler-tick" = {
      path_templates  = []
      path_prefixes   = ["/api/v1/scheduler/"]
      public          = false
      kms             = false
      publishes_runs  = true
      executes_runs   = false
      timeout_seconds = 120
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
    DISABLE_AUTH       = "false"
    SANDBOX_PROVIDERS  = "false"
    LOG_FORMAT         = "json"
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
    # A push request holds one run's working set (peak < 200 MB, docs/BENCHMARKS.md) until the
    # run ends: run_concurrency runs at once must fit in run_memory (4 x 200 MB of 1 GiB).
    max_instance_request_concurrency = each.value.executes_runs ? var.run_concurrency : var.max_concurrency
    timeout                          = "${each.value.timeout_seconds}s"

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
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
          cpu    = var.cpu
          memory = each.value.executes_runs ? var.run_memory : var.memory
        }
        cpu_idle          = true
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = merge(
          local.service_env,
          { REQUEST_TIMEOUT_SECS = tostring(each.value.timeout_seconds) },
          lookup(local.oidc_env, each.key, {}),
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

  depends_on = [
    google_project_service.enabled,
    google_project_iam_member.bigquery,
    google_secret_manager_secret_iam_member.root_api_key,
  ]
}
