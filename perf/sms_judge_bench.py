"""The judging half of the SMPP path without sockets: CPU microseconds per SMS.

    python perf/sms_judge_bench.py [--messages 4000] [--batch 12] [--rounds 5] [--scan-only]
                                   [--unique-texts]

`Gateway.process_many` on batches of SMS built as the SMPP proxy builds them (the mix of
perf/sms_bench.py: ham, fraud with a URL, long GSM, Japanese UCS-2; a new sender and
recipient each; `--unique-texts`: no text twice), with the registered checks, verdict records and events. Without the
sockets and the load generator in the way, differences of a few percent show: the best of
`--rounds` rounds is printed. `--scan-only`: `Pipeline.scan_many` alone (the checks and the
verdicts; policies read before the clock starts; no quarantine copies, records or events).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sms_bench import FRAUD, HAM, JP


def texts(n: int, seed: int, unique: bool = False) -> list[tuple[str, str, str, dict[str, str]]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        dst = f"+8180{rnd.randrange(10**8):08d}"
        src = f"+8190{rnd.randrange(10**8):08d}"
        kind = rnd.random()
        proto = {"ton": "1", "npi": "1", "dest_ton": "1", "dest_npi": "1", "data_coding": "0",
                 "esm_class": "0", "system_id": "bench", "ingress": "smpp"}
        if kind < 0.55:
            text = rnd.choice(HAM)
        elif kind < 0.80:
            text = rnd.choice(FRAUD).format(i)
        elif kind < 0.90:
            text = "".join((f"Part {k} of a long newsletter message " * 3)[:150] for k in (1, 2, 3))
            proto = {**proto, "esm_class": "64", "parts": "3", "parts_received": "3"}
        else:
            text = JP
            proto = {**proto, "data_coding": "8", "esm_class": "64", "parts": "2",
                     "parts_received": "2"}
        if unique:  # no text twice (the mix repeats its ham, newsletter and Japanese texts)
            text = f"{text} ref {seed}-{i}"
        out.append((text, src, dst, proto))
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--unique-texts", action="store_true",
                    help="make every text unique (a reference appended): no repeated text")
    ap.add_argument("--scan-only", action="store_true",
                    help="time Pipeline.scan_many alone (no quarantine copies, records, events)")
    args = ap.parse_args()
    logging.disable(logging.INFO)
    from gateway.config import load_settings
    from gateway.message import Message
    from gateway.runtime import Gateway

    settings = load_settings(data_dir=Path(tempfile.mkdtemp(prefix="mamori-judge-")),
                             hash_key="bench-hash-key-0123456789",
                             sms={"flood_recipients": 10**9, "burst_recipients": 10**9})
    gw = Gateway.create(settings)
    await gw.start()
    gc.freeze()
    best = float("inf")
    try:
        for r in range(args.rounds + 1):  # round 0 warms the caches and the policy store
            spec = texts(args.messages, seed=r, unique=args.unique_texts)
            msgs = [Message.sms(t, sender=s, recipient=d, protocol=p, peer="127.0.0.1")
                    for t, s, d, p in spec]
            if args.scan_only:
                pols = [await gw.policy_for(m.subscriber) for m in msgs]
            c0 = time.process_time()
            for i in range(0, len(msgs), args.batch):
                if args.scan_only:
                    await gw.pipeline.scan_many(msgs[i:i + args.batch], pols[i:i + args.batch])
                else:
                    await gw.process_many(msgs[i:i + args.batch], "smpp")
            us = (time.process_time() - c0) / len(msgs) * 1e6
            if r:
                best = min(best, us)
                print(f"round {r}: {us:6.1f} CPU us per SMS")
    finally:
        await gw.close()
    print(f"best {best:6.1f} CPU us per SMS ({1e6 / best:,.0f} SMS per CPU-second), "
          f"batch {args.batch}{', scan only' if args.scan_only else ''}"
          f"{', unique texts' if args.unique_texts else ''}, checks {[c.name for c in gw.pipeline.checks]}")


if __name__ == "__main__":
    asyncio.run(main())
