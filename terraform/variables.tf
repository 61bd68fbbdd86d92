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
  description = "ENVIRONMENT of the services: production (dataset suffix prod) or staging (stage). Staging is held to production's rules: both refuse the embedded backends, the sandbox, a short root key, auth or rate limiting off, and empty or * CORS_ORIGINS."
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
  description = "Location of the central dataset (bigquery.tf) and BIGQUERY_LOCATION, where onboard creates each organization's dataset: US, EU or a region such as europe-west1."
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

variable "service_overrides" {
  description = <<-EOT
    Per-service sizing overrides, keyed by service name (bootstrap, onboard, integrations, pricing,
    pipelines-run, scheduler-tick); a field left out keeps the default of the service's entry in
    local.services (cloud_run.tf, with the reasons for each). Fields: memory (256Mi, 1Gi, ...),
    cpu ("1", "2", or a fraction such as "0.5"), concurrency (requests per instance;
    pipelines-run: runs per instance), min_instances, max_instances, timeout_seconds (request
    timeout, also REQUEST_TIMEOUT_SECS). Cloud Run's rules are checked at plan time: memory above
    512Mi and concurrency above 1 need cpu >= 1; pipelines-run's memory must hold concurrency runs
    (~200 MB each, docs/BENCHMARKS.md) and its timeout exceed RUN_TIMEOUT_SECS (3300 s).
    EOT
  type = map(object({
    memory          = optional(string)
    cpu             = optional(string)
    concurrency     = optional(number)
    min_instances   = optional(number)
    max_instances   = optional(number)
    timeout_seconds = optional(number)
  }))
  default = {}

  validation {
    condition = alltrue([
      for name in keys(var.service_overrides) :
      contains(["bootstrap", "onboard", "integrations", "pricing", "pipelines-run", "scheduler-tick"], name)
    ])
    error_message = "service_overrides keys must be service names: bootstrap, onboard, integrations, pricing, pipelines-run, scheduler-tick."
  }
  validation {
    condition = alltrue([
      for o in values(var.service_overrides) : o.memory == null || can(regex("^[1-9][0-9]*(Mi|Gi)$", o.memory))
    ])
    error_message = "service_overrides: memory must be a quantity such as 512Mi or 2Gi."
  }
  validation {
    # Cloud Run: 0.08 to 8 vCPU; whole numbers above 1 are 2, 4, 6 or 8.
    condition = alltrue([
      for o in values(var.service_overrides) : o.cpu == null || contains(["1", "2", "4", "6", "8"], coalesce(o.cpu, "1")) || can(regex("^0\\.[0-9]+$", o.cpu))
    ])
    error_message = "service_overrides: cpu must be 1, 2, 4, 6, 8 or a fraction below 1 such as 0.5."
  }
  validation {
    condition = alltrue([
      for o in values(var.service_overrides) : o.concurrency == null || (
        try(o.concurrency >= 1 && o.concurrency <= 1000 && floor(o.concurrency) == o.concurrency, false)
      )
    ])
    error_message = "service_overrides: concurrency must be a whole number from 1 to 1000."
  }
  validation {
    condition = alltrue([
      for o in values(var.service_overrides) :
      (o.min_instances == null || try(o.min_instances >= 0 && floor(o.min_instances) == o.min_instances, false)) &&
      (o.max_instances == null || try(o.max_instances >= 1 && floor(o.max_instances) == o.max_instances, false))
    ])
    error_message = "service_overrides: min_instances must be a whole number >= 0 and max_instances one >= 1."
  }
  validation {
    condition = alltrue([
      for o in values(var.service_overrides) : o.timeout_seconds == null || try(o.timeout_seconds >= 1 && o.timeout_seconds <= 3600, false)
    ])
    error_message = "service_overrides: timeout_seconds must be between 1 and 3600 (Cloud Run's maximum)."
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
        "RATE_LIMIT_ADDRESS_PER_SECOND",
        "RATE_LIMIT_ADDRESS_BURST",
        "AUTH_FAILURE_BURST",
        "AUTH_FAILURES_PER_MINUTE",
        "MAX_BODY_BYTES",
        "PROVIDER_TIMEOUT_SECS",
        "CACHE_TTL_SECS",
        "CONFIGS_DIR",
        "OPENAI_API_BASE",
        "ANTHROPIC_API_BASE",
      ], name)
    ])
    error_message = "extra_env may only set RATE_LIMIT_PER_SECOND, RATE_LIMIT_BURST, RATE_LIMIT_ADDRESS_PER_SECOND, RATE_LIMIT_ADDRESS_BURST, AUTH_FAILURE_BURST, AUTH_FAILURES_PER_MINUTE, MAX_BODY_BYTES, PROVIDER_TIMEOUT_SECS, CACHE_TTL_SECS, CONFIGS_DIR, OPENAI_API_BASE, ANTHROPIC_API_BASE."
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
  description = "Protect the Cloud Run services from `terraform destroy`, and the central dataset from losing its tables to it (the KMS key is always protected: losing it loses every stored credential)."
  type        = bool
  default     = true
}

variable "smtp_host" {
  description = "SMTP server that run notifications are emailed through (SMTP_HOST), e.g. smtp.sendgrid.net. Empty: email notifications off (Slack still works)."
  type        = string
  default     = ""

  validation {
    condition     = var.smtp_host == "" || can(regex("^[A-Za-z0-9.-]+$", var.smtp_host))
    error_message = "smtp_host must be a host name or IP address, without scheme or port."
  }
}

variable "smtp_port" {
  description = "SMTP port (SMTP_PORT): 587 for starttls, 465 for tls."
  type        = number
  default     = 587

  validation {
    condition     = var.smtp_port >= 1 && var.smtp_port <= 65535
    error_message = "smtp_port must be a port (1 to 65535)."
  }
}

variable "smtp_tls" {
  description = "How the SMTP connection is secured (SMTP_TLS): starttls or tls. none is for development only and refused here."
  type        = string
  default     = "starttls"

  validation {
    condition     = contains(["starttls", "tls"], var.smtp_tls)
    error_message = "smtp_tls must be starttls or tls."
  }
}

variable "smtp_username" {
  description = "SMTP login (SMTP_USERNAME). When set, SMTP_PASSWORD is read from the Secret Manager secret <name>-smtp-password (output smtp_password_secret): add its version before applying."
  type        = string
  default     = ""
}

variable "smtp_from" {
  description = "Sender of notification emails (SMTP_FROM), e.g. \"Convergence <notifications@example.com>\". Required with smtp_host."
  type        = string
  default     = ""

  validation {
    condition     = var.smtp_host == "" || var.smtp_from != ""
    error_message = "smtp_from is required when smtp_host is set."
  }
}
