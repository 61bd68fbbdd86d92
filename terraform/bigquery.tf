# The central dataset (configs/setup/bootstrap/config.yml: `organizations`, one per project, so
# no environment suffix). Terraform creates it so the services' access to it is granted here
# (iam.tf) and no service needs to create datasets at the project level; bootstrap then creates
# its tables and views (POST /api/v1/admin/bootstrap). Per-organization datasets are created by
# onboard, with their access (iam.tf, local.org_dataset_env).
resource "google_bigquery_dataset" "central" {
  # checkov:skip=CKV_GCP_81: Google-managed encryption at rest. A customer-managed key would make every query of every service depend on that key's availability and IAM; the secrets in this dataset are already sealed with the Cloud KMS key (kms.tf) before they are stored.
  dataset_id  = "organizations"
  location    = var.bigquery_location
  description = "Convergence central metadata: organizations, keys, subscriptions, runs, audit."

  # With deletion protection, `terraform destroy` fails while the dataset holds tables rather
  # than deleting every organization's keys, runs and audit trail.
  delete_contents_on_destroy = !var.deletion_protection

  labels = {
    app         = local.name
    environment = var.environment
    managed_by  = "convergence"
  }

  depends_on = [google_project_service.enabled]
}
