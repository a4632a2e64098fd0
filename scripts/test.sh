#!/usr/bin/env bash
# `make test`: start the real peers, run lint and the whole test suite, stop the peers.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
dir=${MAMORI_SERVICES_DIR:-$PWD/.services}
trap 'scripts/services.sh down' EXIT
scripts/services.sh up
set -a
# shellcheck disable=SC1091
[ -f "$dir/env" ] && . "$dir/env"
set +a
export MAMORI_REQUIRE_SERVICES=${MAMORI_REQUIRE_SERVICES:-1}
rc=0
"$BIN/ruff" check gateway tests perf || rc=1
"$BIN/mypy" gateway || rc=1
"$BIN/python" -m pytest -p no:cacheprovider --timeout=600 "$@" || rc=$?
exit $rc
