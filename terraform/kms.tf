# The Cloud KMS key that encrypts organization API-key copies and provider credentials
# (DESIGN §3, §6). Its full id is the services' KMS_KEY_NAME.

resource "google_kms_key_ring" "convergence" {
  name     = local.name
  location = coalesce(var.kms_location, var.region)

  depends_on = [google_project_service.enabled]
}

resource "google_kms_crypto_key" "secrets" {
  name            = "secrets"
  key_ring        = google_kms_key_ring.convergence.id
  purpose         = "ENCRYPT_DECRYPT"
  rotation_period = var.kms_key_rotation_period

  labels = {
    app         = local.name
    environment = var.environment
  }

  # Destroying the key makes every stored credential unreadable. Key rings cannot be deleted at all.
  lifecycle {
    prevent_destroy = true
  }
}
