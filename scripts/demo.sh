#!/usr/bin/env bash
# `npm run demo [-- ARGS]`: installs/builds what is missing, makes sure a Redis is there, then
# runs `relay demo ARGS`. The Redis this script started is stopped on exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/lib/deps.sh
source scripts/lib/redis.sh

trap stop_redis EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_node_deps
ensure_redis

status=0
node bin/relay.js demo "$@" || status=$?
exit "$status"
