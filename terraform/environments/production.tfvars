# Production. Apply with:
#   terraform init -backend-config="bucket=acme-prod-tfstate" -backend-config="prefix=convergence"
#   terraform apply -var-file=environments/production.tfvars -var image_tag=$(git rev-parse --short HEAD)
project_id   = "acme-convergence-prod"
region       = "us-central1"
environment  = "production"
domain       = "api.convergence.example.com"
cors_origins = ["https://app.convergence.example.com"]

# image_repository is left empty: images are pushed to the Artifact Registry repository this
# configuration creates (output image_repository). image_tag is given on the command line.

bigquery_location = "US"

# Sizes: the defaults of local.services (cloud_run.tf) unless set here. One warm instance of
# each public API service (no cold start on the first request of the day), and room to grow.
service_overrides = {
  "onboard"       = { min_instances = 1 }
  "integrations"  = { min_instances = 1, max_instances = 20 }
  "pricing"       = { min_instances = 1, max_instances = 20 }
  "pipelines-run" = { max_instances = 20 } # 4 runs per instance in 2Gi (the default)
}

edge_rate_limit_per_minute = 1200
scheduler_schedule         = "0 * * * *"
deletion_protection        = true
