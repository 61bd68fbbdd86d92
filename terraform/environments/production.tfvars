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
min_instances     = 1 # one warm instance per service: no cold start on the first request of the day
max_instances     = 20
run_concurrency   = 4 # runs per pipelines-run instance; 4 x 200 MB peak fits run_memory
run_memory        = "1Gi"

edge_rate_limit_per_minute = 1200
scheduler_schedule         = "0 * * * *"
deletion_protection        = true
