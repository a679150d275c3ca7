# shellcheck shell=bash
# PostgreSQL for tests, benchmarks and CI (source this file; it defines functions only).
#
#   ensure_postgres  RELAY_TEST_PG_URL set → use it, nothing else. Otherwise reuse a server that
#                    already answers on 127.0.0.1:$RELAY_DEV_PG_PORT (default 5433), or install
#                    Debian's postgresql if needed, initdb a cluster in <repo>/.relay/postgres-PORT/
#                    (trust auth on loopback only, role `relay`; under /tmp when the postgres
#                    user cannot reach the repository) and start it with pg_ctl.
#                    Exports RELAY_TEST_PG_URL=postgres://relay@127.0.0.1:PORT/postgres.
#   stop_postgres    stops the server ensure_postgres started in this shell, and only that one.
#
# Our own port (not 5432) so the Debian package's own cluster never collides. initdb and the
# server refuse to run as root, so as root they run as the `postgres` user the package creates.

_relay_pg_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/lib/apt.sh
source "$_relay_pg_root/scripts/lib/apt.sh"

_RELAY_PG_STARTED_DIR=""   # set when this shell started the server

_pg_bindir() { # → the newest /usr/lib/postgresql/*/bin that has pg_ctl
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && [ -x "$d/pg_ctl" ] && echo "$d"
}

_pg_as() { # CMD... → runs as the postgres user when we are root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

_pg_ready() { # BINDIR PORT
  "$1/pg_isready" -q -h 127.0.0.1 -p "$2" -t 2 >/dev/null 2>&1
}

ensure_postgres() {
  if [ -n "${RELAY_TEST_PG_URL:-}" ]; then
    echo "postgres: using RELAY_TEST_PG_URL" >&2
    return 0
  fi
  local port="${RELAY_DEV_PG_PORT:-5433}"
  local dir="$_relay_pg_root/.relay/postgres-$port"
  local bin
  bin=$(_pg_bindir || true)
  if [ -z "$bin" ]; then
    echo "postgres: installing Debian postgresql" >&2
    apt_install postgresql || { echo "postgres: apt-get install postgresql failed" >&2; return 1; }
    bin=$(_pg_bindir || true)
    [ -n "$bin" ] || { echo "postgres: no pg_ctl under /usr/lib/postgresql after installing" >&2; return 1; }
  fi
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$_relay_pg_root/.relay" 2>/dev/null; then
    # A clone under a private directory (mktemp -d is 0700): the postgres user cannot reach
    # it, so the cluster lives in a directory of its own under /tmp, named after the clone.
    dir="/tmp/relay-postgres-$(printf '%s' "$_relay_pg_root" | md5sum | cut -c1-12)-$port"
    mkdir -p "$dir"
  fi
  exec {_relay_pg_lock}>"$dir.lock"
  flock -w 120 "$_relay_pg_lock" || { echo "postgres: timed out waiting for $dir.lock" >&2; exec {_relay_pg_lock}>&-; return 1; }
  if _pg_ready "$bin" "$port"; then
    echo "postgres: reusing the server already answering on 127.0.0.1:$port" >&2
  else
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "postgres: port $port is taken by something that is not PostgreSQL; set RELAY_DEV_PG_PORT or RELAY_TEST_PG_URL" >&2
      exec {_relay_pg_lock}>&-
      return 1
    fi
    if [ "$(id -u)" = 0 ]; then
      # The server runs as postgres: it must reach (not read) the repository's directories.
      chown postgres: "$dir"
      chmod 700 "$dir"
    fi
    if [ ! -f "$dir/PG_VERSION" ]; then
      echo "postgres: initdb in $dir" >&2
      _pg_as "$bin/initdb" -D "$dir" -U relay --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$dir.initdb.log" 2>&1 || {
        echo "postgres: initdb failed:" >&2; tail -n 20 "$dir.initdb.log" >&2; exec {_relay_pg_lock}>&-; return 1; }
    fi
    echo "postgres: starting on 127.0.0.1:$port (data in $dir)" >&2
    # The lock's descriptor must not be inherited by the server (it would hold it for its life).
    if ! _pg_as "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='$dir' -c fsync=off -c full_page_writes=off" \
        start >/dev/null {_relay_pg_lock}>&-; then
      echo "postgres: pg_ctl start failed; last lines of $dir/server.log:" >&2
      tail -n 20 "$dir/server.log" >&2 2>/dev/null || true
      exec {_relay_pg_lock}>&-
      return 1
    fi
    _RELAY_PG_STARTED_DIR="$dir"
    _RELAY_PG_BIN="$bin"
  fi
  exec {_relay_pg_lock}>&-
  export RELAY_TEST_PG_URL="postgres://relay@127.0.0.1:$port/postgres"
}

stop_postgres() {
  local dir="$_RELAY_PG_STARTED_DIR"
  [ -n "$dir" ] || return 0
  _RELAY_PG_STARTED_DIR=""
  echo "postgres: stopping the server this script started ($dir)" >&2
  _pg_as "$_RELAY_PG_BIN/pg_ctl" -D "$dir" -m fast -w -t 30 stop >/dev/null 2>&1 || true
}
