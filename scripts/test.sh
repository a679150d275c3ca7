#!/usr/bin/env bash
# `npm test`: installs/builds what is missing, makes sure a Redis is there, runs the tests.
#
#   npm test                                   all of dist/test/{unit,integration,e2e}
#   npm test -- test/unit/codec.test.ts        one file (a .ts path under test/ is mapped to dist/)
#   npm test -- --test-name-pattern=zstd       node --test options (use the --opt=value form)
#
# PostgreSQL likewise (scripts/lib/postgres.sh; RELAY_TEST_PG_URL for the tests).
#
# Tests run one file at a time (--test-concurrency=1): integration and e2e tests share one Redis
# and start real processes. The Redis this script started is stopped on exit; one that was
# already running is left alone. Exits with the test runner's status.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/lib/deps.sh
source scripts/lib/redis.sh
source scripts/lib/chromium.sh
source scripts/lib/postgres.sh

trap 'stop_postgres; stop_redis' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_node_deps
ensure_redis
ensure_chromium
# test/e2e/tls.test.ts makes a throwaway self-signed certificate with openssl.
command -v openssl >/dev/null 2>&1 || { echo "deps: installing openssl" >&2; apt_install openssl; }
ensure_postgres

opts=()
targets=()
for arg in "$@"; do
  case "$arg" in
    -*) opts+=("$arg") ;;
    *.ts)
      js="${arg#./}"
      js="dist/${js%.ts}.js"
      [ -f "$js" ] || { echo "test: $arg has no compiled $js" >&2; exit 2; }
      targets+=("$js") ;;
    *) targets+=("$arg") ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  for d in dist/test/unit dist/test/integration dist/test/e2e dist/test/faults; do
    [ -d "$d" ] && targets+=("$d")
  done
fi
if [ ${#targets[@]} -eq 0 ]; then
  echo "test: no compiled tests under dist/test (is test/ empty?)" >&2
  exit 1
fi

echo "test: node --test ${targets[*]} (RELAY_REDIS_URL=$RELAY_REDIS_URL, RELAY_TEST_PG_URL=$RELAY_TEST_PG_URL)" >&2
status=0
node --test --test-concurrency=1 --test-timeout=300000 ${opts[@]+"${opts[@]}"} "${targets[@]}" || status=$?
exit "$status"
