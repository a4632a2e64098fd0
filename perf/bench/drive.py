"""Drive one system with the same few concurrent asyncio clients, time every message, and
measure the CPU its own processes spent over the timed phase."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from perf.bench.corpus import Sample
from perf.bench.stats import Outcome, SystemResult, quality


@dataclass(frozen=True, slots=True)
class Reply:
    flagged: bool  # spam at the system's default threshold
    score: float | None = None
    detail: str = ""


# send(client_id, sample) -> Reply; client_id is 0..concurrency-1, one message at a time each
Send = Callable[[int, Sample], Awaitable[Reply]]


async def run_clients(samples: Sequence[Sample], send: Send, concurrency: int,
                      timeout: float = 120.0) -> list[Outcome]:
    """Every sample through `send`, `concurrency` clients pulling from one queue; outcomes in
    input order. A failing or timed-out message is an error outcome, never a crash."""
    out: list[Outcome | None] = [None] * len(samples)
    next_index = iter(range(len(samples)))

    async def client(cid: int) -> None:
        for i in next_index:
            s = samples[i]
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(timeout):
                    r = await send(cid, s)
                out[i] = Outcome(s.spam, r.flagged, time.perf_counter() - t0, r.score, r.detail)
            except Exception as exc:
                out[i] = Outcome(s.spam, None, time.perf_counter() - t0, None,
                                 f"error: {type(exc).__name__}: {exc}"[:200])

    await asyncio.gather(*(client(c) for c in range(concurrency)))
    return [o for o in out if o is not None]


async def measure(system: str, interface: str, version: str, threshold: str,
                  samples: Sequence[Sample], send: Send, cpu: Callable[[], float], *,
                  concurrency: int, warmup: int) -> tuple[SystemResult, list[Outcome]]:
    """Warm up on the first `warmup` samples (not counted), then time the whole list."""
    if warmup:
        await run_clients(samples[:warmup], send, concurrency)
    c0, k0, t0 = cpu(), time.process_time(), time.perf_counter()
    outcomes = await run_clients(samples, send, concurrency)
    wall = time.perf_counter() - t0
    c1, k1 = cpu(), time.process_time()
    result = SystemResult(
        system=system, interface=interface, version=version, threshold=threshold,
        n=len(outcomes), wall_s=wall, cpu_s=max(c1 - c0, 0.0), client_cpu_s=k1 - k0,
        concurrency=concurrency, latencies=[o.latency for o in outcomes if o.flagged is not None],
        quality=quality(outcomes),
    )
    errors = [o.detail for o in outcomes if o.flagged is None]
    if errors:
        result.notes.append(f"{len(errors)} errors, first: {errors[0]}")
    return result, outcomes
