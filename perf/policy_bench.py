"""Policy lookups per second on the scan path: uncached (a database read each time) and cached
(`CachedPolicyStore`, what `Gateway.process` uses), on SQLite and, when given, PostgreSQL.

    .venv/bin/python perf/policy_bench.py [--subscribers 10000] [--lookups 20000]
        [--url postgresql://mamori:mamori@127.0.0.1:15432/mamori]   (or MAMORI_TEST_POSTGRES_URL)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from pathlib import Path

from gateway.policy import Policy, Strength
from gateway.store.db import Database
from gateway.store.policy import CachedPolicyStore, DbPolicyStore


async def bench(url: str, subscribers: int, lookups: int, concurrency: int) -> None:
    db = Database(url)
    store = DbPolicyStore(db)
    engine = await db.ready()
    label = db.dialect
    ids = [f"bench-{i:07d}" for i in range(subscribers)]
    # a third of the subscribers changed something; the rest have the default profile
    t0 = time.perf_counter()
    for i in range(0, subscribers, 3000):
        await store.put_many([Policy(subscriber=s, youth=True, strength=Strength.HIGH,
                                     block=frozenset({"+15550001111"}))
                              for s in ids[i:i + 3000:3]], actor="bench")
    print(f"[{label}] stored {len(ids[::3])} policies in {time.perf_counter() - t0:.2f}s")
    rng = random.Random(7)
    sample = [rng.choice(ids) for _ in range(lookups)]

    async def run(get, n: int, conc: int) -> float:  # type: ignore[no-untyped-def]
        queue = iter(sample[:n])

        async def worker() -> None:
            for s in queue:
                await get(s)

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        return n / (time.perf_counter() - t)

    n_uncached = min(lookups, 2000)
    print(f"[{label}] uncached, 1 at a time:   {await run(store.get, n_uncached, 1):>12,.0f} lookups/s")
    print(f"[{label}] uncached, {concurrency} concurrent: "
          f"{await run(store.get, n_uncached, concurrency):>12,.0f} lookups/s")
    cache = CachedPolicyStore(store, ttl=3600, poll_interval=0)
    for s in ids:
        await cache.get(s)
    rate = await run(cache.get, lookups, 1)
    print(f"[{label}] cached (warm), 1 at a time: {rate:>10,.0f} lookups/s "
          f"(hits {cache.hits:,}, misses {cache.misses:,})")
    stale = CachedPolicyStore(store, ttl=0.0, poll_interval=0)
    for s in ids:
        await stale.get(s)
    rate = await run(stale.get, min(lookups, 2000), 1)
    await asyncio.sleep(0.5)
    print(f"[{label}] cached but stale (served at once, refreshed in background): "
          f"{rate:,.0f} lookups/s")
    await stale.close()
    await cache.close()
    del engine
    await db.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=3_000)
    ap.add_argument("--lookups", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--url", default=os.environ.get("MAMORI_TEST_POSTGRES_URL", ""))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}", args.subscribers,
                          args.lookups, args.concurrency))
    if args.url:
        asyncio.run(bench(args.url, args.subscribers, args.lookups, args.concurrency))


if __name__ == "__main__":
    main()
