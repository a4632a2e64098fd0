"""CPU cost of one scan, in process: CPU ms per message through `Gateway.process` (or only
`pipeline.scan`), optionally with a profile of where it goes.

    python perf/scan_profile.py [--limit 300] [--channel email|sms] [--repeat 2]
                                [--profile] [--top 30] [--pipeline-only]

Email: a fixed sample of the SpamAssassin corpus (the same selection as `perf/compare`).
SMS: the mix of `perf/sms_bench.py` (ham, fraud with URLs, long GSM, Japanese UCS-2), decoded.
The gateway runs offline as in `perf/compare` (empty DNS zone, no shortener expansion), with a
null event sink and an in-memory policy store (`--events file` to include the file sink). The
first pass warms caches and is not counted. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perf.bench import corpus
from perf.bench.mamori import offline_env


def email_messages(limit: int) -> list[object]:
    from gateway.message import Message

    samples = corpus.load(corpus.default_corpus_dir(), limit, seed=1)
    return [Message.email(s.raw, recipients=("user@example.test",)) for s in samples]


def sms_messages(limit: int) -> list[object]:
    from gateway.message import Message
    from perf.sms_bench import FRAUD, HAM, JP

    out = []
    for i in range(limit):
        k = i % 10
        if k < 5:
            text = HAM[i % len(HAM)]
        elif k < 8:
            text = FRAUD[i % len(FRAUD)].format(i)
        elif k < 9:
            text = ("This is a long message about your account. " * 8)[:450]
        else:
            text = JP
        out.append(Message.sms(text, sender=f"+8190{i:08d}", recipient=f"+8180{i % 997:08d}"))
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--channel", choices=("email", "sms"), default="email")
    ap.add_argument("--repeat", type=int, default=2, help="timed passes over the sample")
    ap.add_argument("--profile", action="store_true", help="cProfile the timed passes")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--pipeline-only", action="store_true", help="pipeline.scan, not gw.process")
    ap.add_argument("--events", choices=("null", "file"), default="null")
    ap.add_argument("--no-gc-freeze", action="store_true",
                    help="no gc.freeze() after the warm-up pass (mamori serve freezes)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="mamori-scanprof-"))
    for k, v in offline_env(tmp).items():
        os.environ[k] = v
    os.environ["MAMORI_DATA_DIR"] = str(tmp / "data")
    from gateway.config import load_settings
    from gateway.events import NullSink, make_event_sink
    from gateway.plugins import PluginEnv
    from gateway.runtime import Gateway
    from gateway.store.policy import MemoryPolicyStore

    settings = load_settings()
    events = NullSink() if args.events == "null" else make_event_sink(settings)
    gw = Gateway.create(settings, env=PluginEnv(settings), events=events,
                        policies=MemoryPolicyStore())
    await gw.start()
    msgs = email_messages(args.limit) if args.channel == "email" else sms_messages(args.limit)
    print(f"checks: {', '.join(c.name for c in gw.pipeline.checks)}")

    async def one_pass() -> None:
        for m in msgs:
            if args.pipeline_only:
                await gw.pipeline.scan(m)  # type: ignore[arg-type]
            else:
                await gw.process(m, ingress="bench")  # type: ignore[arg-type]

    await one_pass()  # warm-up
    if not args.no_gc_freeze:
        gc.freeze()  # as `mamori serve` does once it serves (gateway/serve.py)
    gc_time = [0.0, 0.0]
    gc_counts = [0, 0, 0]

    def gc_timer(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_time[1] = time.perf_counter()
        else:
            gc_time[0] += time.perf_counter() - gc_time[1]
            gc_counts[info["generation"]] += 1

    gc.callbacks.append(gc_timer)
    prof = cProfile.Profile() if args.profile else None
    c0, w0 = time.process_time(), time.perf_counter()
    if prof:
        prof.enable()
    for _ in range(args.repeat):
        await one_pass()
    if prof:
        prof.disable()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    gc.callbacks.remove(gc_timer)
    n = len(msgs) * args.repeat
    await gw.close()
    print(f"{args.channel}: {n} scans, {cpu * 1000 / n:.3f} CPU ms/msg, "
          f"{n / cpu:.0f} msg/CPU-s, wall {n / wall:.0f} msg/s"
          + (" (profiled: slower)" if prof else ""))
    print(f"  of it the garbage collector: {gc_time[0] * 1000 / n:.3f} ms/msg (wall), "
          f"collections of generation 0/1/2: {gc_counts[0]}/{gc_counts[1]}/{gc_counts[2]}")
    if prof:
        pstats.Stats(prof).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    asyncio.run(main())
