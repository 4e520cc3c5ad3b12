#!/usr/bin/env bash
# Lints the Dockerfile with hadolint (installed by .ci/install-deps.sh).
# Any finding, style level included, fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
hadolint --failure-threshold style Dockerfile
echo "hadolint: Dockerfile OK"
