"""The soak's leak detector: is a memory (or descriptor) series flat once warm?

A process under steady traffic first grows (imports finish, pools open, caches and per-window
counters fill up to their bounds), then levels off. The detector drops the first half of the
run as warm-up and fits a least-squares line to the second half. The series is "flat" when the
growth that line projects over the second half stays within a tolerance:

    tolerance = max(floor, fraction x median level)

Why these numbers (RSS, defaults below): CPython and glibc hand memory back and take it in
steps (pymalloc arenas of 1 MiB, glibc heap and mmap thresholds that move up to 32 MiB), so a
healthy process's RSS jitters by a few MiB and may take a step of several; a line fitted over
the half-run averages the jitter out, and a single 4 MiB step projects about 6 MiB, under the
8 MiB floor (2 % of a 250 MiB process is 5 MiB). A real leak is linear in traffic: a leak of B
bytes per message over the N messages of the second half projects B x N. The 10-minute soak
sends about 50,000 messages in its second half, so it catches leaks down to about 160 bytes
per message; the 60-second default run (about 5,000) about 1.6 KiB per message. A bounded cache still filling
looks like a leak too; the soak sizes its bounds so they fill during warm-up (see
docs/reliability.md), and a saw-tooth (a cache cleared when full) has no trend.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Trend:
    slope_per_s: float  # units per second over the measured half
    projected: float  # growth the fitted line projects over the measured half
    tolerance: float
    level: float  # median of the measured half

    @property
    def flat(self) -> bool:
        return self.projected <= self.tolerance


def trend(samples: Sequence[tuple[float, float]], *, floor: float, fraction: float,
          warmup: float = 0.5) -> Trend:
    """`samples` are (seconds, value); the first `warmup` of the time span is ignored."""
    if len(samples) < 8:
        raise ValueError("too few samples to judge a trend")
    t0, t1 = samples[0][0], samples[-1][0]
    half = [(t, v) for t, v in samples if t >= t0 + warmup * (t1 - t0)]
    ts = [t for t, _ in half]
    vs = [v for _, v in half]
    slope = statistics.linear_regression(ts, vs).slope if len(set(ts)) > 1 else 0.0
    level = statistics.median(vs)
    return Trend(slope, slope * (ts[-1] - ts[0]), max(floor, fraction * level), level)
