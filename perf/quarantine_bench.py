"""Quarantine copies at a steady rate: how long a caller waits for its copy to be committed.

Blocked SMS are answered only once their copy is stored (QUARANTINE) or after the attempt
(REJECT), so this wait is part of their added latency. Copies of realistic size (an SMS with
its explanations) are asked for at `--rate` per second in groups of `--group` (as the SMPP
proxy's judged batches produce them) into a fresh SQLite file through the same store and writer
the gateway uses; prints the wait's p50/p99/p99.9/max, the share of waits over 2 ms and the WAL's
size at the end; and the transactions themselves (statements and COMMIT, in the event loop's
thread or the writer's).

    python perf/quarantine_bench.py --seconds 20 --rate 450 --group 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.message import Message
from gateway.store import db as dbm
from gateway.store.db import Database
from gateway.store.quarantine import QuarantineStore
from gateway.verdict import Action, ScoredSymbol, Verdict

TEXT = ("【重要】お客様のアカウントが一時停止されました。下記URLより本人確認をお願いします "
        "https://secure-login.example-verify.top/a/{n} ")


def blocked(n: int) -> tuple[Message, Verdict]:
    msg = Message.sms(TEXT.format(n=n) * 2, sender="+8190" + f"{n % 10**8:08d}",
                      subscriber=f"+8180{n % 50_000:08d}")
    syms = {f"SYM_{k}": ScoredSymbol(f"SYM_{k}", 2.5, (f"option {n}",), "a reason") for k in range(4)}
    return msg, Verdict(message_id=msg.id, channel="sms", action=Action.QUARANTINE, score=10.0,
                        symbols=syms)


COMMITS: list[float] = []
_transaction = dbm.SqliteWriter._transaction


def _timed_transaction(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    t0 = time.perf_counter()
    try:
        _transaction(conn, sql, rows)
    finally:
        COMMITS.append(time.perf_counter() - t0)


SPOOLED = [0]
try:  # the copies that went to the quarantine spool (where the store has one)
    from gateway.store.rowspool import RowSpool

    _append = RowSpool.append

    def _counted_append(self: RowSpool, rows: Any) -> None:
        rows = list(rows)
        _append(self, rows)
        SPOOLED[0] += len(rows)

    RowSpool.append = _counted_append  # type: ignore[method-assign]
except ImportError:
    pass

# the statements and COMMIT of one group, in whichever thread writes it
dbm.SqliteWriter._transaction = staticmethod(_timed_transaction)  # type: ignore[method-assign]


def _summary(seconds_list: list[float]) -> tuple[list[float], float]:
    ms = sorted(s * 1000 for s in seconds_list)
    return ms, sum(1 for m in ms if m > 2.0) / max(1, len(ms))


def pct(ms: list[float], p: float) -> float:
    return ms[min(len(ms) - 1, int(len(ms) * p))]


async def run(seconds: float, rate: float, group: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "q.sqlite3"
        db = Database(f"sqlite:///{path}")
        store = QuarantineStore(db)
        await store.add(*blocked(0), "smpp")  # the schema and the writer's connection
        waits: list[float] = []

        async def one(n: int) -> None:
            t0 = time.perf_counter()
            await store.add(*blocked(n), "smpp")
            waits.append(time.perf_counter() - t0)

        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        n = 1
        while (now := time.perf_counter()) - start < seconds:
            due = start + n / rate
            if due > now:
                await asyncio.sleep(due - now)
            for _ in range(group):
                t = asyncio.ensure_future(one(n))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                n += 1
        await asyncio.gather(*tasks)
        wal = path.with_name(path.name + "-wal")
        wal_mb = wal.stat().st_size / 1e6 if wal.exists() else 0.0
        close = getattr(store, "close", None)  # (its spool, where the store has one)
        if close is not None:
            await close()
        await db.close()
    for name, values in ((f"{len(waits):,} copies in {seconds:.0f} s, groups of {group}: wait", waits),
                         (f"{len(COMMITS):,} transactions (statements and COMMIT):", COMMITS)):
        ms, over = _summary(values)
        print(f"{name} p50 {pct(ms, 0.5):.2f} ms  p99 {pct(ms, 0.99):.2f} ms  "
              f"p99.9 {pct(ms, 0.999):.2f} ms  max {ms[-1]:.1f} ms  over 2 ms {over:.2%}")
    print(f"WAL at the end {wal_mb:.1f} MB; copies spooled (the database busy): {SPOOLED[0]:,}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rate", type=float, default=450.0, help="copies per second")
    ap.add_argument("--group", type=int, default=3, help="copies asked for together")
    args = ap.parse_args()
    asyncio.run(run(args.seconds, args.rate, max(1, args.group)))


if __name__ == "__main__":
    os.environ.setdefault("MAMORI_LOG_LEVEL", "WARNING")
    main()
