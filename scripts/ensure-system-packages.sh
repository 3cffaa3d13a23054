#!/usr/bin/env bash
# Install what a fresh machine lacks for `make test`: PostgreSQL server binaries (the tests
# start their own server), docker-compose (validates docker-compose.yaml), chromium (the
# browser tests drive it headless; Playwright never downloads a browser here) and, for
# `make test-distributed`, redis-server (the Celery broker; the test starts its own) and
# iproute2 (ip netns for the worker hosts). Debian only;
# elsewhere it says what is missing and stops.
set -euo pipefail

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages: ${missing[*]} (install them with your package manager)" >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts Redis on install; the distributed test runs its own, so stop it.
if [[ " ${missing[*]} " == *" redis-server "* ]]; then
  (systemctl stop redis-server || service redis-server stop) >/dev/null 2>&1 || true
fi
# Debian starts a cluster on install; the tests run their own server, so stop it.
if command -v pg_ctlcluster >/dev/null 2>&1; then
  for cluster in $(pg_lsclusters -h 2>/dev/null | awk '{print $1"/"$2}'); do
    pg_ctlcluster ${cluster/\// } stop >/dev/null 2>&1 || true
  done
fi
