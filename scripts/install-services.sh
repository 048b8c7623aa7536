#!/usr/bin/env bash
# Install the system services the test suite starts on loopback (idempotent, quiet).
#
#   PostGIS for the throwaway pgstac cluster that tests/_fx_services.py starts. The
#   PostgreSQL server binaries are expected in /usr/lib/postgresql/<major>/ (the base
#   image has them); the matching postgresql-<major>-postgis-3 package is added with apt.
#   If no server is there at all, postgresql + postgis of the distribution are installed.
#
#   Azurite (Microsoft's Azure Storage emulator) for the az:// publishing tests: npm package,
#   pinned, installed into .services/azurite (git-ignored) from the npm registry.
#
# Python-side services (stac-fastapi-pgstac, pypgstac, moto) come from requirements-test.txt.
# Runs as root (CI, fresh Debian 12). Without root and without PostGIS it only warns:
# the service tests then skip with a reason (and fail under CI=true).
set -euo pipefail

log() { echo "install-services: $*" >&2; }

AZURITE_VERSION=3.37.0
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
install_azurite() {
  local dir="$ROOT/.services/azurite"
  if [ -x "$dir/node_modules/.bin/azurite-blob" ]; then
    log "Azurite already installed"
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1; then
    log "WARNING: no npm here: install Node.js + npm (the Azure publishing tests will skip)"
    return 0
  fi
  log "npm install azurite@$AZURITE_VERSION (into .services/azurite)"
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --silent "azurite@$AZURITE_VERSION" >&2
}
install_azurite

pg_major() {
  # Highest PostgreSQL major version whose server binaries are installed.
  local d v best=""
  for d in /usr/lib/postgresql/*/bin/initdb; do
    [ -x "$d" ] || continue
    v="${d#/usr/lib/postgresql/}"; v="${v%%/*}"
    if [ -z "$best" ] || [ "$v" -gt "$best" ]; then best="$v"; fi
  done
  echo "$best"
}

has_postgis() {
  # postgis.control in the server's extension dir
  [ -f "/usr/share/postgresql/$1/extension/postgis.control" ]
}

V="$(pg_major)"
if [ -n "$V" ] && has_postgis "$V"; then
  log "PostgreSQL $V with PostGIS already installed"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  log "WARNING: PostGIS missing and not root: run 'sudo $0' (the STAC API tests will skip)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "WARNING: no apt-get here: install PostgreSQL + PostGIS 3 by hand (the STAC API tests will skip)"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-y -qq --no-install-recommends -o Dpkg::Use-Pty=0)
APT_LOG="$(mktemp)"
trap 'rm -f "$APT_LOG"' EXIT
quiet() {  # run quietly; show the output only if it fails
  if ! "$@" >"$APT_LOG" 2>&1; then cat "$APT_LOG" >&2; log "ERROR: $* failed"; exit 1; fi
}
quiet apt-get update -qq
if [ -n "$V" ]; then
  PKGS=("postgresql-$V" "postgresql-$V-postgis-3")
else
  PKGS=(postgresql postgresql-postgis-3)   # no server yet: the distribution's default major
fi
log "apt-get install ${PKGS[*]}"
quiet apt-get install "${APT_OPTS[@]}" "${PKGS[@]}"

V="$(pg_major)"
if [ -z "$V" ] || ! has_postgis "$V"; then
  log "ERROR: PostGIS still missing after apt-get install ${PKGS[*]}"
  exit 1
fi
log "PostgreSQL $V with PostGIS ready"
