#!/usr/bin/env bash
# `npm run bench [-- ARGS]`: installs/builds what is missing, makes sure a Redis is there, then
# runs dist/bench/run.js ARGS (compiled from bench/run.ts). The Redis this script started is
# stopped on exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/lib/deps.sh
source scripts/lib/redis.sh

trap stop_redis EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_node_deps
if [ ! -f dist/bench/run.js ]; then
  echo "no benchmarks yet"
  exit 0
fi
ensure_redis

status=0
node dist/bench/run.js "$@" || status=$?
exit "$status"
