#!/usr/bin/env bash
# The main job: a throwaway PostgreSQL, a mixed workload, the pipeline, and a
# check that every Silver table equals its source. Extra args go to "silt demo".
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
setup_all
mkdir -p bin
go build -o bin/silt ./cmd/silt
exec ./bin/silt demo "$@"
