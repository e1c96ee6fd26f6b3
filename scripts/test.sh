#!/usr/bin/env bash
# Every test: unit, real-PostgreSQL, end-to-end, and brief fuzzing.
# Tests that need PostgreSQL fail (not skip) when CI is set.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
setup_all
echo "== go vet"
go vet ./...
echo "== go test"
# The race detector on every package but the end-to-end one, whose
# multi-process and multi-million-row tests run several times slower under
# it (the stages it wires are race-tested in their own packages).
go test -race -count=1 -timeout 30m $(go list ./... | grep -v '/internal/pipeline$')
go test -count=1 -timeout 30m ./internal/pipeline
echo "== interop (delta-rs, Spark)"
.venv/bin/python -m pytest -q -p no:cacheprovider interop
echo "== fuzz (brief)"
fuzz() { # package target
	local out
	if out=$(go test -run '^$' -fuzz "^$2\$" -fuzztime "${FUZZTIME:-10s}" "$1" 2>&1); then
		echo "$out"
		return 0
	fi
	echo "$out"
	# Go's fuzzing coordinator can report its own -fuzztime deadline as a
	# failure (golang/go#51484, #75804): tolerated only when it wrote no
	# failing input and the corpus then replays clean; anything else fails.
	if grep -q 'context deadline exceeded' <<<"$out" && ! grep -qE 'Failing input written|panic:' <<<"$out"; then
		echo "-- $2: the fuzz engine's deadline race, no failing input; replaying the corpus"
		go test -count=1 -run "^$2\$" "$1"
		return
	fi
	return 1
}
for t in $(grep -rhoE '^func Fuzz[A-Za-z0-9_]+' --include='*_test.go' internal | sed 's/func //' | sort -u); do
	for pkg in $(grep -rlE "^func $t\(" --include='*_test.go' internal | xargs -n1 dirname | sort -u); do
		echo "-- $t ./$pkg"
		fuzz "./$pkg" "$t"
	done
done
echo "== all tests passed"
