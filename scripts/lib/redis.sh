# shellcheck shell=bash
# Redis for development, tests and CI (source this file; it defines functions only).
#
#   ensure_redis  RELAY_REDIS_URL set → use it, nothing else. Otherwise reuse a Redis that
#                 already answers PING on 127.0.0.1:$RELAY_DEV_REDIS_PORT (default 6390), or
#                 install Debian's redis-server if needed and start one there: daemonized, bound
#                 to 127.0.0.1, data and log in <repo>/.relay/redis/ (.relay/redis-PORT/ for
#                 another port), AOF on, noeviction (BullMQ needs it), no RDB snapshots.
#                 Exports RELAY_REDIS_URL=redis://127.0.0.1:PORT.
#   stop_redis    shuts down the server ensure_redis started in this shell, and only that one;
#                 a server that was already running (someone else's) is left alone.
#
# Our own port (not 6379) so a system Redis or the Debian package's service never collides.

_relay_redis_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/lib/apt.sh
source "$_relay_redis_root/scripts/lib/apt.sh"

_RELAY_REDIS_STARTED_PORT=""   # set when this shell started the server
_RELAY_REDIS_RUN_ID=""         # its run_id, so we never shut down a different server on that port
_RELAY_REDIS_DIR=""

_redis_ping() { # PORT → 0 when a Redis answers PONG on 127.0.0.1:PORT
  [ "$(timeout 3 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = "PONG" ]
}

_pid_alive() { # PID → 0 while the process runs (a zombie waiting to be reaped counts as gone)
  kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != "Z" ]
}

_redis_run_id() { # PORT → the server's run_id
  timeout 3 redis-cli -h 127.0.0.1 -p "$1" info server 2>/dev/null | tr -d '\r' | sed -n 's/^run_id://p'
}

ensure_redis() {
  if [ -n "${RELAY_REDIS_URL:-}" ]; then
    echo "redis: using RELAY_REDIS_URL=$RELAY_REDIS_URL" >&2
    return 0
  fi
  local port="${RELAY_DEV_REDIS_PORT:-6390}"
  # The default port keeps its data in .relay/redis/; another port gets its own directory
  # (two servers must never share an AOF).
  local dir="$_relay_redis_root/.relay/redis"
  [ "$port" = 6390 ] || dir="$_relay_redis_root/.relay/redis-$port"
  local log="$dir/redis.log"
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    echo "redis: installing Debian redis-server" >&2
    apt_install redis-server || { echo "redis: apt-get install redis-server failed" >&2; return 1; }
  fi
  mkdir -p "$dir"
  # One start at a time: two scripts starting together must not both launch a server on the
  # same port and data directory (the second waits, then finds the first one answering).
  exec {_relay_redis_lock}>"$dir/.lock"
  flock -w 60 "$_relay_redis_lock" || { echo "redis: timed out waiting for $dir/.lock" >&2; exec {_relay_redis_lock}>&-; return 1; }
  if _redis_ping "$port"; then
    echo "redis: reusing the server already answering on 127.0.0.1:$port" >&2
  else
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "redis: port $port is taken by something that does not answer Redis PING (a password-protected Redis or another program); set RELAY_DEV_REDIS_PORT or RELAY_REDIS_URL" >&2
      exec {_relay_redis_lock}>&-
      return 1
    fi
    echo "redis: starting redis-server on 127.0.0.1:$port (data in $dir)" >&2
    # The server must not inherit the lock's descriptor: it would hold the lock for its lifetime.
    if ! redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
        --dir "$dir" --logfile "$log" --pidfile "$dir/redis.pid" \
        --appendonly yes --maxmemory-policy noeviction --save '' {_relay_redis_lock}>&-; then
      echo "redis: redis-server failed to start; last lines of $log:" >&2
      tail -n 20 "$log" >&2 2>/dev/null || true
      exec {_relay_redis_lock}>&-
      return 1
    fi
    local waited=0 limit="${RELAY_REDIS_START_TIMEOUT_S:-30}"
    until _redis_ping "$port"; do
      if [ "$waited" -ge $((limit * 10)) ]; then
        echo "redis: no PONG on 127.0.0.1:$port after ${limit}s; last lines of $log:" >&2
        tail -n 20 "$log" >&2 2>/dev/null || true
        exec {_relay_redis_lock}>&-
        return 1
      fi
      sleep 0.1
      waited=$((waited + 1))
    done
    _RELAY_REDIS_STARTED_PORT="$port"
    _RELAY_REDIS_DIR="$dir"
    _RELAY_REDIS_RUN_ID="$(_redis_run_id "$port")"
  fi
  exec {_relay_redis_lock}>&-
  export RELAY_REDIS_URL="redis://127.0.0.1:$port"
}

stop_redis() {
  local port="$_RELAY_REDIS_STARTED_PORT"
  [ -n "$port" ] || return 0
  _RELAY_REDIS_STARTED_PORT=""
  if [ "$(_redis_run_id "$port")" != "$_RELAY_REDIS_RUN_ID" ]; then
    echo "redis: the server on port $port is not the one this script started; leaving it running" >&2
    return 0
  fi
  local pid
  pid=$(cat "$_RELAY_REDIS_DIR/redis.pid" 2>/dev/null || true)
  echo "redis: stopping the server this script started on 127.0.0.1:$port" >&2
  # SHUTDOWN fsyncs the AOF; with --save '' there is no RDB dump to write.
  timeout 10 redis-cli -h 127.0.0.1 -p "$port" shutdown >/dev/null 2>&1 || true
  for _ in $(seq 1 100); do
    if [ -n "$pid" ] && _pid_alive "$pid"; then sleep 0.1
    elif [ -z "$pid" ] && _redis_ping "$port"; then sleep 0.1
    else return 0
    fi
  done
  echo "redis: server on port $port did not exit within 10s" >&2
  return 0
}
