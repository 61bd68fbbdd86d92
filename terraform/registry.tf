# Where the six images live: one Docker repository in Artifact Registry, in the services' region
# (image pulls stay regional). `make images` builds convergence-<service> images; push them here
# (output image_repository), then apply with image_tag set. Old tags are kept: a rollback is an
# apply with the previous tag.

resource "google_artifact_registry_repository" "images" {
  # checkov:skip=CKV_GCP_84: Google-managed encryption at rest. The images hold the binaries, configs/ and CA certificates, no secrets (the root key is in Secret Manager, credentials in BigQuery sealed by Cloud KMS); a customer-managed key would make every deploy and cold start depend on it.
  location      = var.region
  repository_id = local.name
  format        = "DOCKER"
  description   = "Convergence service images (convergence-<service>:<git sha>)"

  docker_config {
    # A pushed tag is never moved: a deployed image_tag always means the same bits.
    immutable_tags = true
  }

  labels = {
    app         = local.name
    environment = var.environment
  }

  depends_on = [google_project_service.enabled]
}

locals {
  # The registry path images are pulled from: var.image_repository when set (an existing
  # registry), else the repository above.
  image_repository = var.image_repository != "" ? var.image_repository : "${google_artifact_registry_repository.images.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}
