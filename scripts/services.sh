#!/usr/bin/env bash
# Install and start (up) or stop (down) every real peer in scripts/services/*.sh.
# `up` collects the `export VAR=value` lines the scripts print into $MAMORI_SERVICES_DIR/env.
set -uo pipefail
cd "$(dirname "$0")/.."
dir=${MAMORI_SERVICES_DIR:-$PWD/.services}
mkdir -p "$dir"
case "${1:-}" in
  up)
    : > "$dir/env"
    failed=()
    for s in scripts/services/*.sh; do
      [ -e "$s" ] || continue
      name=$(basename "$s" .sh)
      echo "== service $name: install" >&2
      if ! timeout 1800 bash "$s" install > "$dir/$name.install.log" 2>&1; then
        echo "!! service $name failed to install (see $dir/$name.install.log)" >&2
        tail -20 "$dir/$name.install.log" >&2
        failed+=("$name"); continue
      fi
      echo "== service $name: start" >&2
      # output to a file, not a pipe: a daemon that keeps a descriptor cannot hang us
      if timeout 600 bash "$s" start > "$dir/$name.start.out" 2> "$dir/$name.start.log" < /dev/null; then
        grep -E '^export [A-Z_][A-Z0-9_]*=' "$dir/$name.start.out" >> "$dir/env"
      else
        echo "!! service $name failed to start (see $dir/$name.start.log)" >&2
        tail -20 "$dir/$name.start.log" >&2
        failed+=("$name")
      fi
    done
    [ ${#failed[@]} -eq 0 ] || echo "!! services not running: ${failed[*]}" >&2
    ;;
  down)
    for s in scripts/services/*.sh; do
      [ -e "$s" ] || continue
      bash "$s" stop > /dev/null 2>&1 || echo "!! service $(basename "$s" .sh) failed to stop" >&2
    done
    ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
