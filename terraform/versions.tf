# Convergence on Google Cloud: six Cloud Run services behind one HTTPS load balancer (DESIGN §1, §2).
# Applied by operators; see README.md in this directory.

terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
    # google_project_service_identity (the Pub/Sub service agent) exists only in the beta provider.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 6.0"
    }
  }

  # State: configure a GCS backend per environment at `terraform init` time, e.g.
  #   terraform init -backend-config="bucket=acme-prod-tfstate" -backend-config="prefix=convergence"
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}

data "google_project" "this" {
  project_id = var.project_id
}

# The APIs everything below needs. Never disabled on destroy: other things in the project may use
# them. Cloud Resource Manager serves the project lookups and IAM bindings a first apply makes.
resource "google_project_service" "enabled" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudkms.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "compute.googleapis.com",
    "iam.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
  ])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
