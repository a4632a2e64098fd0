"""The comparison as one PNG (matplotlib, Agg): throughput per core, latency, detection."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from perf.bench.stats import SystemResult

COLOURS = {"mamori": "#2a7ab0", "rspamd": "#d9822b", "spamassassin": "#7a5195"}


def plot(results: Sequence[SystemResult], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r.label for r in results]
    colours = [COLOURS.get(r.system, "#888888") for r in results]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    ax = axes[0]
    vals = [_nz(r.per_core) for r in results]
    ax.barh(labels, vals, color=colours)
    ax.set_xscale("log")
    ax.set_xlabel("messages per CPU-second (one core), log scale")
    ax.set_title("Throughput per core (higher is better)")
    for y, v in enumerate(vals):
        ax.text(v, y, f" {v:,.1f}", va="center", fontsize=8)
    ax.invert_yaxis()

    ax = axes[1]
    y = range(len(results))
    ax.barh([i - 0.2 for i in y], [_nz(r.p50_ms) for r in results], height=0.4, color=colours,
            alpha=0.55, label="p50")
    ax.barh([i + 0.2 for i in y], [_nz(r.p99_ms) for r in results], height=0.4, color=colours,
            label="p99")
    ax.set_yticks(list(y), labels)
    ax.set_xscale("log")
    ax.set_xlabel("ms per message (client side), log scale")
    ax.set_title("Latency p50 (light) / p99 (dark)")
    ax.invert_yaxis()

    ax = axes[2]
    ax.barh([i - 0.2 for i in y], [_nz(r.quality.recall) for r in results], height=0.4,
            color=colours, label="spam recall")
    ax.barh([i + 0.2 for i in y], [_nz(r.quality.fpr) for r in results], height=0.4,
            color="#c0392b", label="ham false-positive rate")
    ax.set_yticks(list(y), labels)
    ax.set_xlim(0, 1)
    ax.set_title("Detection at default thresholds")
    ax.legend(loc="lower right", fontsize=8)
    ax.invert_yaxis()

    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _nz(x: float) -> float:
    return 0.0 if x is None or math.isnan(x) else x
