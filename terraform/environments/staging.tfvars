# Staging: the same services as production (staging is held to production's start-up checks),
# smaller and cheaper. Apply with:
#   terraform init -backend-config="bucket=acme-staging-tfstate" -backend-config="prefix=convergence"
#   terraform apply -var-file=environments/staging.tfvars -var image_tag=$(git rev-parse --short HEAD)
project_id   = "acme-convergence-staging"
region       = "us-central1"
environment  = "staging"
domain       = "api.staging.convergence.example.com"
cors_origins = ["https://app.staging.convergence.example.com"]

# image_repository is left empty: images are pushed to the Artifact Registry repository this
# configuration creates (output image_repository). image_tag is given on the command line.

bigquery_location = "US"

# Sizes: the defaults of local.services (cloud_run.tf) unless set here. Every service scales to
# zero by default (the binaries are healthy in ~10 ms); staging caps the instances and runs two
# pipelines per smaller instance (2 x 200 MB + 100 MB fits 1Gi).
service_overrides = {
  "onboard"       = { max_instances = 3 }
  "integrations"  = { max_instances = 3 }
  "pricing"       = { max_instances = 3 }
  "pipelines-run" = { memory = "1Gi", cpu = "1", concurrency = 2, max_instances = 3 }
}

# Ticks every hour, like production, so staging exercises the same daily loop.
scheduler_schedule = "0 * * * *"

# Staging can be torn down and rebuilt.
deletion_protection = false
