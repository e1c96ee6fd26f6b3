#!/usr/bin/env bash
# Installs what silt's demo and tests need, only what is missing (idempotent).
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run on its own.
set -euo pipefail

log() { echo "setup: $*" >&2; }

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
		log "need root to run: $*"; return 1; fi
}

apt_updated=0
apt_install() {
	if [ "$apt_updated" = 0 ]; then
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
		apt_updated=1
	fi
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need_go() {
	if ! command -v go >/dev/null; then
		log "Go is not installed: install Go 1.26 or newer from https://go.dev/dl/ and re-run"; exit 1
	fi
	local v; v=$(go env GOVERSION | sed 's/^go//')
	case "$v" in 1.2[6-9]*|1.[3-9]*) ;; *) log "Go $v is too old: silt needs Go 1.26 or newer"; exit 1;; esac
}

have_postgres() {
	local d
	if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ] && [ -x "$(pg_config --bindir)/postgres" ]; then return 0; fi
	for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && return 0; done
	return 1
}

need_postgres() {
	if have_postgres && command -v pg_recvlogical >/dev/null; then return; fi
	log "installing PostgreSQL (apt)"
	apt_install postgresql postgresql-client
	# The package starts a system cluster we do not use; tests start their own.
	if command -v pg_ctlcluster >/dev/null; then as_root systemctl disable --now postgresql >/dev/null 2>&1 || true; fi
	have_postgres || { log "PostgreSQL install failed"; exit 1; }
	id postgres >/dev/null 2>&1 || { log "the postgres user is missing after install"; exit 1; }
}

need_go_modules() {
	go mod download
}

need_python_deps() {
	# The interop tests (interop/, run by scripts/test.sh) need Python with
	# delta-rs and PySpark in .venv, and Java 17 for Spark. Reinstalls only
	# when interop/requirements.txt changed since the last good install.
	local root req venv stamp want
	root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	req="$root/interop/requirements.txt"
	venv="$root/.venv"
	stamp="$venv/.requirements.sha256"
	if ! command -v java >/dev/null; then
		log "installing Java 17 (apt) for Spark"
		apt_install openjdk-17-jre-headless
	fi
	if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
		log "installing python3-venv and pip (apt)"
		apt_install python3 python3-venv python3-pip
	fi
	want=$(sha256sum "$req" | cut -d' ' -f1)
	if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] &&
		"$venv/bin/python" -c 'import deltalake, delta, pyspark, pyarrow, pytest' 2>/dev/null; then
		return
	fi
	log "installing interop Python packages into .venv (interop/requirements.txt)"
	[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
	"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
	echo "$want" >"$stamp"
}

# versitygw is an S3 gateway over a local directory: the S3 tests
# (internal/blob/s3, the pipeline's e2e test on S3) start it as a child
# process. Pinned; installed into bin/ (git-ignored) with go install, and
# only when bin/versitygw is missing or another version.
VERSITYGW_VERSION=v1.8.0
need_versitygw() {
	local root bin
	root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	bin="$root/bin/versitygw"
	if [ -x "$bin" ] && go version -m "$bin" 2>/dev/null |
		grep -Eq "^[[:space:]]+mod[[:space:]]+github.com/versity/versitygw[[:space:]]+$VERSITYGW_VERSION([[:space:]]|\$)"; then
		return
	fi
	log "installing versitygw $VERSITYGW_VERSION into bin/ (go install; a few minutes the first time)"
	mkdir -p "$root/bin"
	GOBIN="$root/bin" go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
}

# kinesalite is an in-memory Kinesis (Node.js): the Kinesis stream tests
# (internal/stream/kinesis) start it as a child process. Pinned; installed
# with npm into .tools/kinesalite (git-ignored), only when missing or
# another version.
KINESALITE_VERSION=3.3.3
need_kinesalite() {
	local root dir have
	root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	dir="$root/.tools/kinesalite"
	have=$(node -p "require('$dir/node_modules/kinesalite/package.json').version" 2>/dev/null || true)
	if [ -x "$dir/node_modules/.bin/kinesalite" ] && [ "$have" = "$KINESALITE_VERSION" ]; then
		return
	fi
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
		log "installing Node.js and npm (apt) for kinesalite"
		apt_install nodejs npm
	fi
	log "installing kinesalite $KINESALITE_VERSION into .tools/kinesalite (npm)"
	mkdir -p "$dir"
	npm install --prefix "$dir" --no-audit --no-fund --silent "kinesalite@$KINESALITE_VERSION" >/dev/null
	[ -x "$dir/node_modules/.bin/kinesalite" ] || { log "kinesalite install failed"; exit 1; }
}

setup_all() {
	need_go
	need_postgres
	need_go_modules
	need_kinesalite
	need_versitygw
	need_python_deps
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then setup_all; fi
