#!/usr/bin/env bash
# The main job: a throwaway PostgreSQL, a mixed workload, the pipeline, and a
# check that every Silver table equals its source. Extra args go to "silt demo".
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
# The demo needs only PostgreSQL and the Go modules (the test command also
# installs the S3, Kinesis and Spark/delta-rs test parts).
need_go
need_postgres
need_go_modules
mkdir -p bin
go build -o bin/silt ./cmd/silt
exec ./bin/silt demo "$@"
