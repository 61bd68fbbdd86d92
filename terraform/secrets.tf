# The root API key (X-CA-Root-Key), mounted into every service as CA_ROOT_API_KEY. Terraform
# creates the secret but never its value, so the key is not in the Terraform state: add a
# version (at least 32 characters) before the first full apply, see README.md.

resource "google_secret_manager_secret" "root_api_key" {
  secret_id = "${local.name}-root-api-key"

  labels = {
    app         = local.name
    environment = var.environment
  }

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}
