#!/usr/bin/env bash
# A private PostgreSQL 15 cluster for tests: Debian's packages, its own data directory under
# the services dir, listening on 127.0.0.1:15432 only (and a unix socket in its own dir).
# Usage: scripts/services/postgresql.sh install|start|stop|status
# `start` prints: export MAMORI_TEST_POSTGRES_URL=postgresql://mamori:mamori@127.0.0.1:15432/mamori
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
SERVICES=${MAMORI_SERVICES_DIR:-$ROOT/.services}
mkdir -p "$SERVICES"
SERVICES=$(cd "$SERVICES" && pwd)
DIR=$SERVICES/postgresql
PORT=${MAMORI_TEST_POSTGRES_PORT:-15432}
BIN=/usr/lib/postgresql/15/bin
URL="postgresql://mamori:mamori@127.0.0.1:$PORT/mamori"

# the server refuses to run as root: run it as the `postgres` system user when we are root
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install() {
  [ -x "$BIN/postgres" ] || "$ROOT/scripts/apt-install.sh" postgresql-15 postgresql-client-15
}

start() {
  install
  mkdir -p "$DIR"
  if [ "$(id -u)" = 0 ]; then
    chown postgres:postgres "$DIR"
    # the postgres user must be able to reach the data dir
    p=$DIR; while [ "$p" != / ]; do p=$(dirname "$p"); chmod o+x "$p" 2>/dev/null || true; done
  fi
  if [ ! -f "$DIR/data/PG_VERSION" ]; then
    pwfile=$(mktemp); echo mamori > "$pwfile"; chmod 644 "$pwfile"
    as_pg "$BIN/initdb" -D "$DIR/data" -U mamori --pwfile="$pwfile" -A scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1
    rm -f "$pwfile"
    cat >>"$DIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
shared_buffers = 64MB
CONF
  fi
  if ! as_pg "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start >/dev/null
  fi
  if ! PGPASSWORD=mamori "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U mamori -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='mamori'" | grep -q 1; then
    PGPASSWORD=mamori "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U mamori mamori
  fi
  echo "export MAMORI_TEST_POSTGRES_URL=$URL"
}

stop() {
  if [ -f "$DIR/data/PG_VERSION" ] && as_pg "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null
  fi
}

status() { as_pg "$BIN/pg_ctl" -D "$DIR/data" status; }

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
