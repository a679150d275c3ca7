#!/usr/bin/env bash
# `npm run bench [-- ARGS]`: installs/builds what is missing (and OpenSSH + curl for the
# baselines), makes sure a Redis is there, then runs dist/bench/run.js ARGS (compiled from
# bench/run.ts; `-- --help` lists the scenarios). `npm run soak` runs bench/soak.ts the same way
# (RELAY_BENCH_ENTRY=soak), and `npm run bench:sql` bench/sql-memory.ts (which also gets a
# PostgreSQL, scripts/lib/postgres.sh). What this script started is stopped on exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/lib/deps.sh
source scripts/lib/redis.sh
source scripts/lib/postgres.sh
source scripts/lib/ssh.sh

trap 'stop_postgres; stop_redis' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_node_deps
[ "${RELAY_BENCH_ENTRY:-run}" = run ] && ensure_bench_tools
entry="dist/bench/${RELAY_BENCH_ENTRY:-run}.js"
[ -f "$entry" ] || { echo "bench: $entry is missing (npm run build)" >&2; exit 2; }
# The soak runs a Redis of its own (it restarts it) and needs only the server installed.
if [ "${RELAY_BENCH_ENTRY:-run}" = soak ]; then
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
else
  ensure_redis
fi
case "$entry" in *sql*) ensure_postgres ;; esac

# The fleet scenario holds 10,000 event streams open: use the whole hard limit on descriptors
# (node raises its own soft limit too; this covers sshd, curl and anything else started here).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

status=0
node "$entry" "$@" || status=$?
exit "$status"
