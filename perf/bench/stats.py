"""Figures of one system's run, the comparison table and the mamori/peer ratios."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One message through one system: the label, what the system said, how long it took."""

    spam: bool  # the label
    flagged: bool | None  # the system's verdict at its default threshold; None: error
    latency: float  # seconds, client side
    score: float | None = None
    detail: str = ""  # the action or reply, for the JSON record


@dataclass
class Quality:
    tp: int = 0
    fn: int = 0
    fp: int = 0
    tn: int = 0
    errors: int = 0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else math.nan

    @property
    def fpr(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else math.nan


def quality(outcomes: Sequence[Outcome]) -> Quality:
    q = Quality()
    for o in outcomes:
        if o.flagged is None:
            q.errors += 1
        elif o.spam:
            if o.flagged:
                q.tp += 1
            else:
                q.fn += 1
        elif o.flagged:
            q.fp += 1
        else:
            q.tn += 1
    return q


@dataclass
class SystemResult:
    """One row of the table: a system measured through one interface."""

    system: str  # mamori, rspamd, spamassassin
    interface: str  # smtp, milter, inprocess, checkv2, spamc
    version: str
    threshold: str  # what "flagged" means for this system
    n: int
    wall_s: float
    cpu_s: float  # CPU seconds of the system's own processes during the timed phase
    client_cpu_s: float
    concurrency: int
    latencies: list[float] = field(repr=False, default_factory=list)
    quality: Quality = field(default_factory=Quality)
    notes: list[str] = field(default_factory=list)
    rounds_cpu_ms: list[float] = field(default_factory=list)  # per round, with --rounds

    @property
    def label(self) -> str:
        return f"{self.system}/{self.interface}"

    @property
    def per_core(self) -> float:
        """Messages per CPU-second of the system's processes: messages/s on one core."""
        return self.n / self.cpu_s if self.cpu_s > 0 else math.nan

    @property
    def wall_rate(self) -> float:
        return self.n / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def cpu_ms(self) -> float:
        return 1000.0 * self.cpu_s / self.n if self.n else math.nan

    @property
    def p50_ms(self) -> float:
        return 1000.0 * percentile(self.latencies, 50)

    @property
    def p99_ms(self) -> float:
        return 1000.0 * percentile(self.latencies, 99)

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "interface": self.interface,
            "version": self.version,
            "threshold": self.threshold,
            "messages": self.n,
            "concurrency": self.concurrency,
            "wall_s": round(self.wall_s, 4),
            "cpu_s": round(self.cpu_s, 4),
            "client_cpu_s": round(self.client_cpu_s, 4),
            "cpu_ms_per_message": _r(self.cpu_ms),
            "messages_per_cpu_second": _r(self.per_core),
            "messages_per_wall_second": _r(self.wall_rate),
            "latency_ms": {"p50": _r(self.p50_ms), "p99": _r(self.p99_ms),
                           "max": _r(1000.0 * max(self.latencies)) if self.latencies else None},
            "quality": {**asdict(self.quality), "spam_recall": _r(self.quality.recall),
                        "ham_fpr": _r(self.quality.fpr)},
            "notes": self.notes,
            **({"rounds_cpu_ms_per_message": [round(x, 4) for x in self.rounds_cpu_ms]}
               if self.rounds_cpu_ms else {}),
        }


def merge(rounds: Sequence[SystemResult]) -> SystemResult:
    """One row from the rounds of one system/interface: messages, wall and CPU time summed
    (so cpu ms/msg is the mean over rounds), latencies pooled, detection counted once per
    round (the same messages: the rates stay those of one round), each round's cpu ms/msg kept."""
    first = rounds[0]
    q = Quality()
    for r in rounds:
        for f in ("tp", "fn", "fp", "tn", "errors"):
            setattr(q, f, getattr(q, f) + getattr(r.quality, f))
    notes = list(dict.fromkeys(n for r in rounds for n in r.notes))
    return SystemResult(
        system=first.system, interface=first.interface, version=first.version,
        threshold=first.threshold, n=sum(r.n for r in rounds),
        wall_s=sum(r.wall_s for r in rounds), cpu_s=sum(r.cpu_s for r in rounds),
        client_cpu_s=sum(r.client_cpu_s for r in rounds), concurrency=first.concurrency,
        latencies=[x for r in rounds for x in r.latencies], quality=q, notes=notes,
        rounds_cpu_ms=[r.cpu_ms for r in rounds])


def round_ratios(rounds: Sequence[Sequence[SystemResult]]) -> dict[str, list[float]]:
    """Per round, mamori/peer per core for every pair measured in that round."""
    out: dict[str, list[float]] = {}
    for results in rounds:
        for x in ratios(results):
            if x["per_core"] is not None:
                out.setdefault(f"{x['mamori']} / {x['peer']}", []).append(x["per_core"])
    return out


def _r(x: float, nd: int = 4) -> float | None:
    return None if x is None or math.isnan(x) else round(x, nd)


def ratios(results: Sequence[SystemResult]) -> list[dict[str, Any]]:
    """mamori/peer for every (mamori interface, peer interface) pair of the same run:
    throughput per core (higher is better for mamori), p50/p99 latency (lower is better)."""
    ours = [r for r in results if r.system == "mamori"]
    peers = [r for r in results if r.system != "mamori"]
    out = []
    for m in ours:
        for p in peers:
            out.append({
                "mamori": m.label,
                "peer": p.label,
                "per_core": _div(m.per_core, p.per_core),
                "p50": _div(m.p50_ms, p.p50_ms),
                "p99": _div(m.p99_ms, p.p99_ms),
                "recall_diff": _sub(m.quality.recall, p.quality.recall),
                "fpr_diff": _sub(m.quality.fpr, p.quality.fpr),
            })
    return out


def goals(results: Sequence[SystemResult]) -> list[dict[str, Any]]:
    """The issue's email goals for each mamori row, from this run: messages/s per core at
    least rspamd's (its best interface) and at least 10x spamd's; spam recall at least every
    peer's, at a ham FPR no worse than any peer's. None where a figure is missing."""
    peers = [r for r in results if r.system != "mamori"]
    rspamd = [r.per_core for r in peers if r.system == "rspamd" and not math.isnan(r.per_core)]
    spamd = [r.per_core for r in peers if r.system == "spamassassin" and not math.isnan(r.per_core)]
    recalls = [r.quality.recall for r in peers if not math.isnan(r.quality.recall)]
    fprs = [r.quality.fpr for r in peers if not math.isnan(r.quality.fpr)]
    out = []
    for m in (r for r in results if r.system == "mamori"):
        pc, rec, fpr = m.per_core, m.quality.recall, m.quality.fpr
        out.append({
            "mamori": m.label,
            "per_core_vs_rspamd": _ok(pc, max(rspamd) if rspamd else None),
            "per_core_vs_10x_spamd": _ok(pc, 10 * max(spamd) if spamd else None),
            "recall_vs_peers": _ok(rec, max(recalls) if recalls else None),
            "fpr_vs_peers": None if math.isnan(fpr) or not fprs else fpr <= min(fprs),
        })
    return out


def _ok(value: float, target: float | None) -> bool | None:
    if target is None or math.isnan(value):
        return None
    return value >= target


def goals_text(results: Sequence[SystemResult]) -> str:
    names = {"per_core_vs_rspamd": "per core >= rspamd", "per_core_vs_10x_spamd": ">= 10x spamd",
             "recall_vs_peers": "recall >= peers", "fpr_vs_peers": "ham FPR <= peers"}
    word = {True: "yes", False: "NO", None: "-"}
    lines = []
    for g in goals(results):
        cells = [f"{names[k]}: {word[g[k]]}" for k in names]
        lines.append(f"goals {g['mamori']}: " + "; ".join(cells))
    return "\n".join(lines)


def _div(a: float, b: float) -> float | None:
    if math.isnan(a) or math.isnan(b) or b == 0:
        return None
    return a / b


def _sub(a: float, b: float) -> float | None:
    if math.isnan(a) or math.isnan(b):
        return None
    return a - b


def _fmt(x: float | None, spec: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(x, spec)


def table(results: Sequence[SystemResult]) -> str:
    """The comparison as fixed-width text: one row per system/interface, then the ratios."""
    head = ("system/interface", "msgs", "err", "msg/s/core", "cpu ms/msg", "msg/s wall",
            "p50 ms", "p99 ms", "recall", "ham FPR")
    rows = [head]
    for r in results:
        q = r.quality
        rows.append((r.label, str(r.n), str(q.errors), _fmt(r.per_core, ".1f"), _fmt(r.cpu_ms, ".2f"),
                     _fmt(r.wall_rate, ".1f"), _fmt(r.p50_ms, ".1f"), _fmt(r.p99_ms, ".1f"),
                     _fmt(q.recall, ".3f"), _fmt(q.fpr, ".3f")))
    lines = _columns(rows)
    rat = ratios(results)
    if rat:
        lines.append("")
        rrows = [("mamori/peer", "per core", "p50", "p99", "recall diff", "FPR diff")]
        for x in rat:
            rrows.append((f"{x['mamori']} / {x['peer']}", _fmt(x["per_core"], ".2f") + "x",
                          _fmt(x["p50"], ".2f") + "x", _fmt(x["p99"], ".2f") + "x",
                          _fmt(x["recall_diff"], "+.3f"), _fmt(x["fpr_diff"], "+.3f")))
        lines += _columns(rrows)
    return "\n".join(lines)


def _columns(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for k, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        out.append("  ".join(cells))
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return out
