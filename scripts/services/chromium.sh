#!/usr/bin/env bash
# Headless Chromium (Debian's package) for the settings-page browser test.
# The test launches its own browser process; `start` only reports where it is.
# Usage: scripts/services/chromium.sh install|start|stop
set -euo pipefail
cd "$(dirname "$0")/../.."
install() {
  command -v chromium >/dev/null 2>&1 || scripts/apt-install.sh chromium fonts-noto-cjk
  dpkg-query -W -f='${Status}' fonts-noto-cjk 2>/dev/null | grep -q "install ok installed" \
    || scripts/apt-install.sh fonts-noto-cjk
}
case "${1:-}" in
  install) install ;;
  start) install; echo "export MAMORI_TEST_CHROMIUM=$(command -v chromium)" ;;
  stop) : ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
