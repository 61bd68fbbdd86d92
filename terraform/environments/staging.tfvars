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
min_instances     = 0 # scale to zero: the binaries are healthy in ~10 ms
max_instances     = 3
run_concurrency   = 2
run_memory        = "512Mi"

# Ticks every hour, like production, so staging exercises the same daily loop.
scheduler_schedule = "0 * * * *"

# Staging can be torn down and rebuilt.
deletion_protection = false
