#!/usr/bin/env bash
# A private Redis for tests (flood counting across replicas): Debian's redis-server on
# 127.0.0.1:16379, no persistence, state under the services dir.
# Usage: scripts/services/redis.sh install|start|stop
# `start` prints: export MAMORI_TEST_REDIS=redis://127.0.0.1:16379/0
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
SERVICES=${MAMORI_SERVICES_DIR:-$ROOT/.services}
DIR=$SERVICES/redis
PORT=${MAMORI_TEST_REDIS_PORT:-16379}

install() {
  command -v redis-server >/dev/null || "$ROOT/scripts/apt-install.sh" redis-server
}

start() {
  install
  mkdir -p "$DIR"
  if ! redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null 2>&1; then
    redis-server --daemonize yes --bind 127.0.0.1 --port "$PORT" --save "" --appendonly no \
      --dir "$DIR" --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" >/dev/null
    for _ in $(seq 50); do
      redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
  fi
  redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null
  echo "export MAMORI_TEST_REDIS=redis://127.0.0.1:$PORT/0"
}

stop() {
  redis-cli -h 127.0.0.1 -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
