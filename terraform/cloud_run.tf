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
  #   timeout_seconds: Cloud Run request timeout and the service's own REQUEST_TIMEOUT_SECS.
  services = {
    "bootstrap" = {
      path_templates  = []
      path_prefixes   = ["/api/v1/admin/"]
      public          = true
      kms             = false
      publishes_runs  = false
      timeout_seconds = 300
    }
    "onboard" = {
      path_templates  = []
      path_prefixes   = ["/api/v1/organizations/"]
      public          = true
      kms             = true
      publishes_runs  = false
      timeout_seconds = 60
    }
    "integrations" = {
      path_templates  = []
      path_prefixes   = ["/api/v1/integrations/"]
      public          = true
      kms             = true
      publishes_runs  = false
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
      timeout_seconds = 60
    }
    "pipelines-run" = {
      path_templates  = []
      path_prefixes   = ["/api/v1/pipelines/"]
      public          = true
      kms             = true
      publishes_runs  = true
      timeout_seconds = 600
    }
    "scheduler-tick" = {
      path_templates  = []
      path_prefixes   = ["/api/v1/scheduler/"]
      public          = false
      kms             = false
      publishes_runs  = true
      timeout_seconds = 120
    }
  }

  # Settings every service reads at start-up (common/src/settings.rs; tests/api/terraform.rs
  # checks each name is one the code reads and that the set passes production validation).
  # CA_ROOT_API_KEY comes from Secret Manager (secrets.tf); PORT is set by Cloud Run.
  service_env = {
    ENVIRONMENT        = var.environment
    GCP_PROJECT_ID     = var.project_id
    BIGQUERY_LOCATION  = var.bigquery_location
    WAREHOUSE_BACKEND  = "bigquery"
    KMS_BACKEND        = "gcp"
    KMS_KEY_NAME       = google_kms_crypto_key.secrets.id
    QUEUE_BACKEND      = "pubsub"
    PUBSUB_TOPIC       = google_pubsub_topic.runs.id
    CORS_ORIGINS       = join(",", var.cors_origins)
    RATE_LIMIT_ENABLED = "true"
    DISABLE_AUTH       = "false"
    SANDBOX_PROVIDERS  = "false"
    LOG_FORMAT         = "json"
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

  template {
    service_account                  = google_service_account.service[each.key].email
    max_instance_request_concurrency = var.max_concurrency
    timeout                          = "${each.value.timeout_seconds}s"

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    containers {
      name  = each.key
      image = "${var.image_repository}/convergence-${each.key}:${lookup(var.image_tags, each.key, var.image_tag)}"

      ports {
        name           = "http1"
        container_port = local.container_port
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        cpu_idle          = true
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = merge(
          local.service_env,
          { REQUEST_TIMEOUT_SECS = tostring(each.value.timeout_seconds) },
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
