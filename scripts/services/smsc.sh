#!/usr/bin/env bash
# An independent SMSC (npm `smpp` under Node.js) on 127.0.0.1 for the SMPP end-to-end tests.
# Usage: scripts/services/smsc.sh install|start|stop
# start prints: MAMORI_TEST_SMSC (host:port), MAMORI_TEST_SMSC_SYSTEM_ID, MAMORI_TEST_SMSC_PASSWORD,
# MAMORI_TEST_SMSC_LOG (JSON lines of every submit_sm it accepted).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
STATE="${MAMORI_SERVICES_DIR:-$HERE/../../.services}/smsc"
PORT="${MAMORI_SMSC_PORT:-12775}"
SYSTEM_ID=mamori
PASSWORD=upstream
mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd)"

install() {
  command -v node >/dev/null || "$HERE/../apt-install.sh" nodejs npm
  if [ ! -f "$STATE/node_modules/smpp/package.json" ]; then
    npm install --silent --no-audit --no-fund --prefix "$STATE" smpp@0.5.1 >/dev/null
  fi
  cp "$HERE/smsc/smsc.js" "$STATE/smsc.js"
}

start() {
  install
  if [ -f "$STATE/pid" ] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null; then
    :
  else
    : > "$STATE/submits.jsonl"
    rm -f "$STATE/pid"
    # every descriptor of the background job is redirected (and the subshell execs node), so
    # nothing keeps the caller's stdout open: `$(smsc.sh start)` returns at once
    (cd "$STATE" && NODE_PATH="$STATE/node_modules" exec setsid node smsc.js 127.0.0.1 "$PORT" \
      "$SYSTEM_ID" "$PASSWORD" "$STATE/submits.jsonl" "$STATE/pid") </dev/null >"$STATE/smsc.log" 2>&1 &
    for _ in $(seq 1 50); do
      [ -s "$STATE/pid" ] && grep -q listening "$STATE/smsc.log" 2>/dev/null && break
      sleep 0.1
    done
    grep -q listening "$STATE/smsc.log" || { cat "$STATE/smsc.log" >&2; exit 1; }
  fi
  echo "export MAMORI_TEST_SMSC=127.0.0.1:$PORT"
  echo "export MAMORI_TEST_SMSC_SYSTEM_ID=$SYSTEM_ID"
  echo "export MAMORI_TEST_SMSC_PASSWORD=$PASSWORD"
  echo "export MAMORI_TEST_SMSC_LOG=$STATE/submits.jsonl"
}

stop() {
  if [ -f "$STATE/pid" ]; then
    kill "$(cat "$STATE/pid")" 2>/dev/null || true
    rm -f "$STATE/pid"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
