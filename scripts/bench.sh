#!/usr/bin/env bash
# make bench (quick, a few minutes) / make bench-full (the issues' sizes, under
# 30 minutes on 2 cores): installs what is missing, builds silt, and runs
# `silt bench`, which starts its own PostgreSQL and measures every scenario
# next to its baseline in the same run (pg_recvlogical, parallel COPY binary,
# raw write+fsync, delta-rs through bench/deltaops/bench.py, Conduit), then
# prints one table and writes bench-results.json.
#
#   scripts/bench.sh [--full] [silt bench flags...]   e.g. --insert-changes 500000
#   SILT_BENCH_CONDUIT=0   skip building/running Conduit
#   SILT_BENCH_JSON=path   where the JSON goes (default bench-results.json)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
need_go
need_postgres
need_go_modules
need_python_deps

# Conduit (Apache-2.0) is the peer: built from its Go module into
# .tools/conduit (git-ignored) through a throwaway wrapper module, once.
# The Go checksum database has no entries for github.com/conduitio and
# buf.build modules, so those two prefixes are fetched from the module proxy
# without it (GONOSUMDB). The first build takes 10-20 minutes on 2 cores.
CONDUIT_VERSION=v0.14.0
conduit_bin=""
conduit_why=""
need_conduit() {
	local dir="$PWD/.tools/conduit" log
	log="$dir/build.log"
	if [ -x "$dir/bin/conduit" ] && [ "$(cat "$dir/version" 2>/dev/null)" = "$CONDUIT_VERSION" ]; then
		conduit_bin="$dir/bin/conduit"; return
	fi
	log "building Conduit $CONDUIT_VERSION into .tools/conduit (once; 10-20 minutes on 2 cores)"
	mkdir -p "$dir/src"
	printf 'module conduitbuild\n\ngo 1.26\n' >"$dir/src/go.mod"
	printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/conduitio/conduit/cmd/conduit"\n' >"$dir/src/tools.go"
	if (cd "$dir/src" && export GONOSUMDB=github.com/conduitio,buf.build GOFLAGS=-mod=mod &&
		timeout "${SILT_BENCH_CONDUIT_BUILD_TIMEOUT:-1800}" go get "github.com/conduitio/conduit@$CONDUIT_VERSION" &&
		timeout "${SILT_BENCH_CONDUIT_BUILD_TIMEOUT:-1800}" go build -o "$dir/bin/conduit" github.com/conduitio/conduit/cmd/conduit) >"$log" 2>&1; then
		echo "$CONDUIT_VERSION" >"$dir/version"
		conduit_bin="$dir/bin/conduit"
	else
		conduit_why="go build of github.com/conduitio/conduit@$CONDUIT_VERSION failed: $(grep -v '^go: downloading' "$log" | tail -1 | cut -c1-200)"
		log "$conduit_why"
	fi
}
if [ "${SILT_BENCH_CONDUIT:-1}" = 0 ]; then
	conduit_why="skipped (SILT_BENCH_CONDUIT=0)"
else
	need_conduit
fi

mkdir -p bin
go build -o bin/silt ./cmd/silt
args=(--json "${SILT_BENCH_JSON:-bench-results.json}" --deltaops-python .venv/bin/python)
if [ -n "$conduit_bin" ]; then args+=(--conduit "$conduit_bin"); else args+=(--conduit-why "$conduit_why"); fi
exec ./bin/silt bench "${args[@]}" "$@"
