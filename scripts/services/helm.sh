#!/usr/bin/env bash
# helm, built from the Go module proxy, for the chart tests (tests/test_helm.py).
# Rendered manifests are checked against the Kubernetes JSON schemas shipped in the PyPI package
# kubernetes-validate (a dev dependency: offline, no schema download at test time).
# State under ${MAMORI_SERVICES_DIR:-.services}/helm. Usage: helm.sh install|start|stop
set -euo pipefail
cd "$(dirname "$0")/../.."
HELM_VERSION="${HELM_VERSION:-v3.19.0}"
BASE="$(realpath -m "${MAMORI_SERVICES_DIR:-.services}")/helm"
BIN="$BASE/bin/helm"

install() {
    mkdir -p "$BASE/bin"
    if [ -x "$BIN" ] && "$BIN" version --short 2>/dev/null | grep -q "^${HELM_VERSION}"; then return 0; fi
    local go=go
    command -v go >/dev/null || go=/usr/local/go/bin/go
    [ -x "$(command -v "$go")" ] || { echo "go is needed to build helm" >&2; exit 1; }
    GOBIN="$BASE/bin" "$go" install "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" \
        >"$BASE/install.log" 2>&1 || { tail -20 "$BASE/install.log" >&2; exit 1; }
}

case "${1:-}" in
    install) install ;;
    start)
        install
        echo "export MAMORI_TEST_HELM=$BIN"
        ;;
    stop) ;;  # nothing runs
    *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
