# One global external Application Load Balancer (EXTERNAL_MANAGED) in front of the six services:
# a serverless NEG and a backend service per service, one URL map routing DESIGN §2's paths,
# a Google-managed certificate, Cloud Armor rate limiting at the edge, HTTP -> HTTPS redirect.

locals {
  # URL-map route rules, in priority order: every path template first (they are more specific
  # than any prefix), then the prefixes. tests/api/terraform.rs simulates exactly this order.
  template_routes = flatten([
    for name, svc in local.services : [
      for template in svc.path_templates : { service = name, template = template, prefix = null }
    ]
  ])
  prefix_routes = flatten([
    for name, svc in local.services : [
      for prefix in svc.path_prefixes : { service = name, template = null, prefix = prefix }
    ]
  ])
  route_rules = concat(local.template_routes, local.prefix_routes)

  # Paths no rule matches (/health, typos) get the JSON 404 of a service that needs no special
  # identity; onboard is as good as any.
  default_service = "onboard"
}

resource "google_compute_global_address" "api" {
  name       = "${local.name}-api"
  ip_version = "IPV4"

  depends_on = [google_project_service.enabled]
}

resource "google_compute_region_network_endpoint_group" "service" {
  for_each = local.services

  name                  = "${local.name}-${each.key}"
  region                = var.region
  network_endpoint_type = "SERVERLESS"

  cloud_run {
    service = google_cloud_run_v2_service.service[each.key].name
  }
}

resource "google_compute_backend_service" "service" {
  for_each = local.services

  name                  = "${local.name}-${each.key}"
  description           = "Convergence ${each.key} (Cloud Run, serverless NEG)"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"
  security_policy       = google_compute_security_policy.edge.id

  # No health check, port or timeout: serverless NEG backends do not take them (Cloud Run's
  # probes and request timeout apply).
  backend {
    group = google_compute_region_network_endpoint_group.service[each.key].id
  }

  log_config {
    enable      = true
    sample_rate = 1.0
  }
}

resource "google_compute_url_map" "api" {
  name            = "${local.name}-api"
  description     = "Convergence API: DESIGN §2 paths to their Cloud Run service"
  default_service = google_compute_backend_service.service[local.default_service].id

  host_rule {
    hosts        = [var.domain]
    path_matcher = "api"
  }

  # Only route_rules (a path matcher takes path_rule or route_rules, not both): path_rule
  # wildcards only work at the end, which cannot tell .../{org}/{provider}/pricing from the rest
  # of /api/v1/integrations/.
  path_matcher {
    name            = "api"
    default_service = google_compute_backend_service.service[local.default_service].id

    dynamic "route_rules" {
      for_each = local.route_rules
      content {
        priority = route_rules.key + 1
        service  = google_compute_backend_service.service[route_rules.value.service].id

        match_rules {
          path_template_match = route_rules.value.template
          prefix_match        = route_rules.value.prefix
        }
      }
    }
  }
}

resource "google_compute_managed_ssl_certificate" "api" {
  # Named after the domain: a new domain makes a new certificate (created before the old one is
  # destroyed, while the proxy still uses it), instead of a name clash on the replacement.
  name = "${local.name}-api-${substr(sha256(var.domain), 0, 8)}"

  managed {
    domains = [var.domain]
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_ssl_policy" "api" {
  name            = "${local.name}-api"
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_target_https_proxy" "api" {
  name             = "${local.name}-api"
  url_map          = google_compute_url_map.api.id
  ssl_certificates = [google_compute_managed_ssl_certificate.api.id]
  ssl_policy       = google_compute_ssl_policy.api.id
}

resource "google_compute_global_forwarding_rule" "https" {
  name                  = "${local.name}-api-https"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_protocol           = "TCP"
  port_range            = "443"
  ip_address            = google_compute_global_address.api.address
  target                = google_compute_target_https_proxy.api.id
}

# Plain HTTP on the same address only redirects to HTTPS.
resource "google_compute_url_map" "http_redirect" {
  name        = "${local.name}-api-http-redirect"
  description = "Redirects http:// to https://"

  default_url_redirect {
    https_redirect         = true
    redirect_response_code = "MOVED_PERMANENTLY_DEFAULT"
    strip_query            = false
  }
}

resource "google_compute_target_http_proxy" "http_redirect" {
  name    = "${local.name}-api-http-redirect"
  url_map = google_compute_url_map.http_redirect.id
}

resource "google_compute_global_forwarding_rule" "http" {
  name                  = "${local.name}-api-http"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_protocol           = "TCP"
  port_range            = "80"
  ip_address            = google_compute_global_address.api.address
  target                = google_compute_target_http_proxy.http_redirect.id
}

# Cloud Armor (DESIGN §11): a per-client-IP throttle in front of every backend. The services
# still rate-limit per client address (the one this load balancer appends to X-Forwarded-For:
# TRUSTED_PROXY_HOPS in cloud_run.tf) and per verified key themselves (RATE_LIMIT_ENABLED=true).
resource "google_compute_security_policy" "edge" {
  # checkov:skip=CKV_GCP_73: no JVM behind this load balancer: the six services are Rust binaries, so Log4j lookups (CVE-2021-44228) cannot run; a cve-canary WAF rule would only add false positives on request bodies.
  name        = "${local.name}-edge"
  description = "Convergence API edge rate limit"
  type        = "CLOUD_ARMOR"

  rule {
    action      = "throttle"
    priority    = 1000
    description = "Per-IP rate limit"

    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }

    rate_limit_options {
      conform_action = "allow"
      exceed_action  = "deny(429)"
      enforce_on_key = "IP"

      rate_limit_threshold {
        count        = var.edge_rate_limit_per_minute
        interval_sec = 60
      }
    }
  }

  rule {
    action      = "allow"
    priority    = 2147483647
    description = "Default: allow"

    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
  }

  depends_on = [google_project_service.enabled]
}
