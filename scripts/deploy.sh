#!/usr/bin/env bash
# Deploys this commit to one environment: build the six images, push them to the environment's
# Artifact Registry, apply Terraform with image_tag = the commit, bootstrap the central dataset.
#
#   STATE_BUCKET=acme-prod-tfstate scripts/deploy.sh terraform/prod.tfvars
#   STATE_BUCKET=acme-prod-tfstate scripts/deploy.sh terraform/prod.tfvars bootstrap
#
# The tfvars file is one of terraform/environments/*.tfvars, copied and filled in. The second
# form only calls bootstrap (once DNS and the managed certificate are up; see README "Deploy").
#
#   STATE_BUCKET   GCS bucket of the Terraform state (required); STATE_PREFIX, default convergence
#   IMAGE_TAG      default: the commit (git rev-parse --short=12 HEAD); a dirty tree is refused,
#                  since a tag must always mean the same bits (the registry's tags are immutable)
#   AUTO_APPROVE=1 apply without Terraform's plan review prompt (for a pipeline; by default the
#                  operator reads each plan and answers yes)
#   DRY_RUN=1      print every command, run none (no gcloud, terraform or buildah needed)
#
# Everything the script prints goes to standard error; each command it runs is printed first, '+ '.
#
# Needs: gcloud (logged in as an operator with the roles terraform/README.md lists), terraform,
# curl, and what `make images` installs (buildah). The two steps that stay manual (the root key's
# value, the DNS record) are checked, and the script says what to do when one is missing.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
functions=(bootstrap onboard integrations pricing pipelines-run scheduler-tick)

usage() {
  echo "usage: STATE_BUCKET=<bucket> $0 <environment.tfvars> [all|bootstrap]" >&2
  exit 2
}

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  usage
fi
tfvars="$(cd "$(dirname "$1")" 2>/dev/null && pwd)/$(basename "$1")"
step="${2:-all}"
case "$step" in all | bootstrap) ;; *) usage ;; esac
if [ ! -f "$tfvars" ]; then
  echo "deploy: $1 does not exist (copy terraform/environments/<env>.tfvars and fill it in)" >&2
  exit 2
fi
if [ -z "${STATE_BUCKET:-}" ]; then
  echo "deploy: set STATE_BUCKET to the GCS bucket holding this environment's Terraform state" >&2
  exit 2
fi
dry_run="${DRY_RUN:-0}"
approve=()
if [ "${AUTO_APPROVE:-0}" = 1 ]; then
  approve=(-auto-approve)
fi

if [ -z "${IMAGE_TAG:-}" ]; then
  if [ "$dry_run" != 1 ] && [ -n "$(git -C "$root" status --porcelain)" ]; then
    echo "deploy: the working tree has uncommitted changes; commit them (images are tagged with the commit)" >&2
    exit 2
  fi
  IMAGE_TAG="$(git -C "$root" rev-parse --short=12 HEAD)"
fi

# run CMD...: prints the command, then runs it unless DRY_RUN=1.
run() {
  printf '+ %s\n' "$*" >&2
  if [ "$dry_run" != 1 ]; then
    "$@"
  fi
}

# value NAME CMD...: a command's output, needed by later commands. In a dry run it is not run;
# the placeholder <NAME> stands in for its output.
value() {
  local name="$1"
  shift
  if [ "$dry_run" = 1 ]; then
    printf '+ %s   # -> <%s>\n' "$*" "$name" >&2
    printf '<%s>' "$name"
  else
    "$@"
  fi
}

tf() {
  run terraform -chdir="$root/terraform" "$@"
}

tf_output() {
  value "$1" terraform -chdir="$root/terraform" output -raw "$1"
}

require() {
  if [ "$dry_run" != 1 ]; then
    for tool in "$@"; do
      if ! command -v "$tool" >/dev/null 2>&1; then
        echo "deploy: $tool is not installed" >&2
        exit 2
      fi
    done
  fi
}

# The root key is read from Secret Manager into curl's standard input (a header file), so its
# value is never on a command line, in this script's output or in a log.
bootstrap() {
  local api_url secret
  api_url="$(tf_output api_url)"
  secret="$(tf_output root_api_key_secret)"
  echo "deploy: bootstrapping the central dataset through $api_url" >&2
  printf '+ %s\n' >&2 "gcloud secrets versions access latest --secret=$secret | sed 's/^/X-CA-Root-Key: /' | curl -fsS -X POST -H @- -H 'Content-Type: application/json' --data '{}' $api_url/api/v1/admin/bootstrap"
  if [ "$dry_run" = 1 ]; then
    return 0
  fi
  if ! gcloud secrets versions access latest --secret="$secret" | sed 's/^/X-CA-Root-Key: /' |
    curl -fsS --retry 3 --retry-connrefused -X POST -H @- -H 'Content-Type: application/json' --data '{}' \
      "$api_url/api/v1/admin/bootstrap"; then
    echo >&2
    echo "deploy: bootstrap did not answer at $api_url. On a first deploy the DNS A record must point at" >&2
    echo "  $(terraform -chdir="$root/terraform" output -raw lb_ip_address) and the managed certificate must be ACTIVE" >&2
    echo "  (minutes to an hour after the record resolves). Then run: $0 $1 bootstrap" >&2
    exit 3
  fi
  echo >&2
}

require terraform gcloud curl
tf init -input=false -reconfigure -backend-config="bucket=$STATE_BUCKET" -backend-config="prefix=${STATE_PREFIX:-convergence}"

if [ "$step" = bootstrap ]; then
  bootstrap "$1"
  exit 0
fi

# 1. What must exist before the images and the services: the registry and the root-key secret.
tf apply "${approve[@]}" -var-file="$tfvars" -var "image_tag=$IMAGE_TAG" \
  -target=google_artifact_registry_repository.images -target=google_secret_manager_secret.root_api_key
secret="$(tf_output root_api_key_secret)"
enabled_version="$(value root_key_version gcloud secrets versions list "$secret" --filter=state:enabled --limit=1 --format='value(name)')"
if [ -z "$enabled_version" ]; then
  echo "deploy: the root key has no value yet. Add one (>= 32 characters; it stays out of Terraform's state):" >&2
  printf '  %s\n' "openssl rand -base64 48 | tr -d '\\n' | gcloud secrets versions add $secret --data-file=-" >&2
  echo "then run this again." >&2
  exit 3
fi

# 2. The six images, built here and pushed under the commit's tag.
run make -C "$root" images IMAGE_TAG="$IMAGE_TAG"
registry="$(tf_output image_repository)"
registry_host="${registry%%/*}"
printf '+ %s\n' >&2 "gcloud auth print-access-token | buildah login --username oauth2accesstoken --password-stdin $registry_host"
if [ "$dry_run" != 1 ]; then
  gcloud auth print-access-token | buildah --storage-driver vfs login --username oauth2accesstoken --password-stdin "$registry_host"
fi
for function in "${functions[@]}"; do
  run buildah --storage-driver vfs push "localhost/convergence-$function:$IMAGE_TAG" "docker://$registry/convergence-$function:$IMAGE_TAG"
done

# 3. The services on the new images, and everything else.
tf apply "${approve[@]}" -var-file="$tfvars" -var "image_tag=$IMAGE_TAG"

# 4. The central dataset's tables and views (idempotent: a rerun adds what configs gained).
bootstrap "$1"
if [ "$dry_run" = 1 ]; then
  echo "deploy: dry run of $IMAGE_TAG: nothing was run" >&2
else
  echo "deploy: $IMAGE_TAG is live" >&2
fi
