#!/usr/bin/env bash
# Kannel (Debian `kannel`): bearerbox is the ESME that binds to mamori's SMPP proxy in the
# end-to-end tests, smsbox gives it the HTTP sendsms interface and calls back for receipts.
# The test fixture writes a per-test kannel.conf (it must point at the proxy it starts), so
# `start` only installs and tells where the binaries are.
# Usage: scripts/services/kannel.sh install|start|stop
# start prints: MAMORI_TEST_KANNEL_BIN (the directory holding bearerbox and smsbox).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"

install() {
  [ -x /usr/sbin/bearerbox ] && [ -x /usr/sbin/smsbox ] || "$HERE/../apt-install.sh" kannel
}

case "${1:-}" in
  install) install ;;
  start) install; echo "export MAMORI_TEST_KANNEL_BIN=/usr/sbin" ;;
  stop) : ;;  # the test fixture stops the boxes it started
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
