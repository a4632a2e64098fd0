"""Prometheus metrics (served on the HTTP port at /metrics). Labels never carry content
or parties: channel, action, check names only."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SCANNED = Counter("mamori_messages_scanned_total", "Messages scanned", ["channel", "action"])
SCAN_SECONDS = Histogram(
    "mamori_scan_seconds",
    "Time to scan one message",
    ["channel"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CHECK_FAILURES = Counter("mamori_check_failures_total", "Checks that failed or timed out", ["check"])
INGRESS_ERRORS = Counter("mamori_ingress_errors_total", "Protocol errors by ingress", ["ingress", "kind"])
INFLIGHT = Gauge("mamori_inflight_messages", "Messages being scanned now", ["ingress"])
POLICY_FALLBACKS = Counter("mamori_policy_fallbacks_total",
                           "Scans that used the default policy because the store was down or slow")
