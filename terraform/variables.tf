variable "project_id" {
  description = "The Google Cloud project of this environment (one project per environment: the central `organizations` dataset has no environment suffix)."
  type        = string

  validation {
    # The same rule the services apply to GCP_PROJECT_ID at start-up.
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be 6 to 30 lowercase letters, digits and hyphens, start with a letter and not end with a hyphen."
  }
}

variable "region" {
  description = "Region of the Cloud Run services, serverless NEGs, Cloud Scheduler job and (by default) the KMS key ring, e.g. us-central1."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region such as us-central1 or europe-west1."
  }
}

variable "environment" {
  description = "ENVIRONMENT of the services: production (dataset suffix prod) or staging (stage). Both refuse the embedded backends; production also refuses a short root key, auth or rate limiting off, and empty CORS_ORIGINS."
  type        = string
  default     = "production"

  validation {
    condition     = contains(["production", "staging"], var.environment)
    error_message = "environment must be production or staging (development is for convergence-local on a laptop)."
  }
}

variable "domain" {
  description = "The API's DNS name, e.g. api.example.com. A Google-managed certificate is issued for it once its A record points at the load balancer address (output lb_ip_address)."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,}$", var.domain))
    error_message = "domain must be a lowercase DNS name such as api.example.com (no scheme, no path)."
  }
}

variable "image_repository" {
  description = "Container registry path holding one image per service, named convergence-<service>, e.g. us-central1-docker.pkg.dev/acme-prod/convergence. Empty (the default): the Artifact Registry repository this configuration creates (output image_repository)."
  type        = string
  default     = ""

  validation {
    condition     = !endswith(var.image_repository, "/")
    error_message = "image_repository must be a registry path without a trailing slash."
  }
}

variable "image_tag" {
  description = "Image tag deployed for every service (for example the git commit). Override single services with image_tags."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag must be a valid Docker tag."
  }
}

variable "image_tags" {
  description = "Per-service image tag overrides, keyed by service name (bootstrap, onboard, integrations, pricing, pipelines-run, scheduler-tick)."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for name in keys(var.image_tags) :
      contains(["bootstrap", "onboard", "integrations", "pricing", "pipelines-run", "scheduler-tick"], name)
    ])
    error_message = "image_tags keys must be service names: bootstrap, onboard, integrations, pricing, pipelines-run, scheduler-tick."
  }
}

variable "cors_origins" {
  description = "Origins of the web frontend allowed by CORS (CORS_ORIGINS), e.g. [\"https://app.example.com\"]. Required in production; * is refused."
  type        = list(string)

  validation {
    condition = length(var.cors_origins) > 0 && alltrue([
      for origin in var.cors_origins : can(regex("^https?://[^/*,\\s]+$", origin))
    ])
    error_message = "cors_origins must list at least one origin such as https://app.example.com (scheme and host, no path, no *)."
  }
}

variable "bigquery_location" {
  description = "BIGQUERY_LOCATION of the datasets the services create: US, EU or a region such as europe-west1."
  type        = string
  default     = "US"

  validation {
    condition     = can(regex("^(US|EU|[a-z]+-[a-z]+[0-9]+)$", var.bigquery_location))
    error_message = "bigquery_location must be US, EU or a BigQuery region such as europe-west1."
  }
}

variable "kms_location" {
  description = "Location of the KMS key ring; defaults to region. Lowercase (a region or global), as KMS_KEY_NAME is checked at start-up."
  type        = string
  default     = null

  validation {
    condition     = var.kms_location == null || can(regex("^(global|[a-z]+-[a-z]+[0-9]+)$", var.kms_location))
    error_message = "kms_location must be global or a region such as us-central1."
  }
}

variable "kms_key_rotation_period" {
  description = "Rotation period of the KMS key (old versions stay usable for decryption)."
  type        = string
  default     = "7776000s" # 90 days
}

variable "min_instances" {
  description = "Minimum Cloud Run instances per service (0 scales to zero; the binaries are healthy in ~10 ms, so cold starts are cheap)."
  type        = number
  default     = 0

  validation {
    condition     = var.min_instances >= 0 && floor(var.min_instances) == var.min_instances
    error_message = "min_instances must be a whole number >= 0."
  }
}

variable "max_instances" {
  description = "Maximum Cloud Run instances per service."
  type        = number
  default     = 10

  validation {
    condition     = var.max_instances >= 1 && floor(var.max_instances) == var.max_instances
    error_message = "max_instances must be a whole number >= 1."
  }
}

variable "max_concurrency" {
  description = "Concurrent requests per Cloud Run instance (pipelines-run: run_concurrency)."
  type        = number
  default     = 80

  validation {
    condition     = var.max_concurrency >= 1 && var.max_concurrency <= 1000
    error_message = "max_concurrency must be between 1 and 1000."
  }
}

variable "cpu" {
  description = "CPU limit per instance. The binaries use ~12 MB and little CPU; 1 is the smallest value that allows concurrency above 1."
  type        = string
  default     = "1"
}

variable "memory" {
  description = "Memory limit per instance (the binaries measure ~12 MB RSS; headroom for request bodies and BigQuery results). pipelines-run: run_memory."
  type        = string
  default     = "256Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.memory))
    error_message = "memory must be a Kubernetes quantity such as 256Mi or 1Gi."
  }
}

variable "run_memory" {
  description = "Memory limit per instance of the services that execute pipeline runs (pipelines-run). A run peaks below 200 MB RSS (docs/BENCHMARKS.md); keep run_concurrency x 200 MB well inside it."
  type        = string
  default     = "1Gi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.run_memory))
    error_message = "run_memory must be a Kubernetes quantity such as 512Mi or 1Gi."
  }
}

variable "run_concurrency" {
  description = "Concurrent requests per instance of pipelines-run. Each push request executes a whole run and holds its working set until it ends, so this is runs per instance, not light API calls."
  type        = number
  default     = 4

  validation {
    condition     = var.run_concurrency >= 1 && var.run_concurrency <= 8 && floor(var.run_concurrency) == var.run_concurrency
    error_message = "run_concurrency must be a whole number between 1 and 8 (each run holds up to ~200 MB)."
  }
}

variable "extra_env" {
  description = "Additional settings for every service, e.g. { RATE_LIMIT_PER_SECOND = \"50\" }. Only names common/src/settings.rs reads are accepted; the ones Terraform already sets (and PORT, set by Cloud Run) are not."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for name in keys(var.extra_env) : contains([
        "RATE_LIMIT_PER_SECOND",
        "RATE_LIMIT_BURST",
        "MAX_BODY_BYTES",
        "PROVIDER_TIMEOUT_SECS",
        "CACHE_TTL_SECS",
        "CONFIGS_DIR",
        "OPENAI_API_BASE",
        "ANTHROPIC_API_BASE",
      ], name)
    ])
    error_message = "extra_env may only set RATE_LIMIT_PER_SECOND, RATE_LIMIT_BURST, MAX_BODY_BYTES, PROVIDER_TIMEOUT_SECS, CACHE_TTL_SECS, CONFIGS_DIR, OPENAI_API_BASE, ANTHROPIC_API_BASE."
  }
}

variable "edge_rate_limit_per_minute" {
  description = "Cloud Armor: requests per minute per client IP across the whole API before the load balancer answers 429 (the services also limit per key and address)."
  type        = number
  default     = 1200

  validation {
    condition     = var.edge_rate_limit_per_minute >= 1
    error_message = "edge_rate_limit_per_minute must be at least 1."
  }
}

variable "scheduler_schedule" {
  description = "Cron schedule (UTC) of the scheduler tick that enqueues every due pipeline run."
  type        = string
  default     = "0 * * * *"
}

variable "deletion_protection" {
  description = "Protect the Cloud Run services from `terraform destroy` (the KMS key is always protected: losing it loses every stored credential)."
  type        = bool
  default     = true
}
