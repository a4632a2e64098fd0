"""Milter throughput and latency with the SpamAssassin corpus.

Two drivers:
- direct (default): a driver speaking the milter protocol itself (as Postfix would: one milter
  connection per SMTP session, header fields without replies, 64 KiB body chunks) against a
  mamori milter running in a child process with the installed pipeline;
- --postfix: real SMTP into the Postfix of scripts/services/postfix.sh, with mamori as its
  milter on MAMORI_TEST_POSTFIX_MILTER (so Postfix's own work is included).

The auth checks answer DNS from an empty zone (no network) unless --live-dns is given.
Prints messages/s, latency p50/p90/p99 and the actions taken. Examples:
    python perf/milter_bench.py --limit 2000 --concurrency 16
    eval "$(scripts/services/postfix.sh start)"; python perf/milter_bench.py --postfix --limit 500
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import multiprocessing
import os
import smtplib
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gateway.config import load_settings
from gateway.events import NullSink
from gateway.ingress import milter_codec as mc
from gateway.ingress.milter import MilterService
from gateway.message import split_header_block
from gateway.pipeline import Pipeline
from gateway.runtime import Gateway
from gateway.store.policy import MemoryPolicyStore

ROOT = Path(__file__).resolve().parent.parent
RCPT = "bench@example.test"


def corpus_dir() -> Path:
    """MAMORI_SHARED_DATA, else shared/data beside the checkout (or beside its worktree dir)."""
    env = os.environ.get("MAMORI_SHARED_DATA")
    candidates = [Path(env)] if env else [ROOT.parent / "shared" / "data",
                                          ROOT.parent.parent / "shared" / "data"]
    for base in candidates:
        if (base / "email" / "spamassassin").is_dir():
            return base / "email" / "spamassassin"
    return candidates[0] / "email" / "spamassassin"


def load_corpus(limit: int) -> list[tuple[str, bytes]]:
    """(label, raw) for up to `limit` messages, ham and spam interleaved."""
    d = corpus_dir()
    if not d.is_dir():
        sys.exit(f"corpus not found at {d} (set MAMORI_SHARED_DATA)")
    groups = {g: sorted((d / g).glob("*.txt")) for g in sorted(os.listdir(d)) if (d / g).is_dir()}
    out: list[tuple[str, bytes]] = []
    iters = {g: iter(files) for g, files in groups.items()}
    while len(out) < limit and iters:
        for g in list(iters):
            f = next(iters[g], None)
            if f is None:
                del iters[g]
                continue
            out.append(("spam" if g.startswith("spam") else "ham", f.read_bytes()))
            if len(out) >= limit:
                break
    return out


def load_compare_sample(limit: int) -> list[tuple[str, bytes]]:
    """The selection `perf/compare --limit N` scans (the corpus's spam/ham ratio, seed 1)."""
    sys.path.insert(0, str(ROOT))
    from perf.bench import corpus

    return [("spam" if s.spam else "ham", s.raw)
            for s in corpus.load(corpus.default_corpus_dir(), limit, seed=1)]


def sender_of(headers: tuple[tuple[str, str], ...]) -> str:
    for name, value in headers:
        if name.lower() in ("return-path", "from") and "@" in value:
            v = value
            if "<" in v and ">" in v:
                v = v[v.rfind("<") + 1 : v.rfind(">")]
            return v.strip().split()[0] if v.strip() else "unknown@sender.test"
    return "unknown@sender.test"


# -- the milter under test, in its own process ---------------------------------------------


def serve(listen: str, data_dir: str, ready: multiprocessing.synchronize.Event,
          stop: multiprocessing.synchronize.Event, max_inflight: int, no_checks: bool,
          zone_file: str, loop: str = "asyncio") -> None:
    async def main() -> None:
        settings = load_settings(data_dir=Path(data_dir), hash_key="bench-hash-key-0123456789")
        ms = settings.milter.model_copy(update={"listen": listen, "socket_mode": "0666",
                                                "max_inflight": max_inflight,
                                                "queue_timeout": 30.0})
        update: dict[str, object] = {"milter": ms}
        if zone_file:  # the auth checks answer DNS from this file, not the network
            update["auth"] = settings.auth.model_copy(update={"zone_file": zone_file})
        settings = settings.model_copy(update=update)
        gw = Gateway.create(settings, events=NullSink(), policies=MemoryPolicyStore())
        if no_checks:  # the milter's own cost: protocol, Message, decision, replies
            gw.pipeline = Pipeline([], scores=gw.pipeline.scores)
        await gw.start()
        service = MilterService(gw)
        await service.start()
        gc.freeze()  # as `mamori serve` does once it serves (gateway/serve.py)
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await service.stop()
        await gw.close()

    import logging

    logging.getLogger("mamori").setLevel(logging.WARNING)
    factory = None
    if loop == "uvloop":  # `mamori serve`'s default when installed (MAMORI_EVENT_LOOP=auto)
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


# -- drivers ---------------------------------------------------------------------------------


async def drive_direct(address: str, corpus: list[tuple[str, bytes]], concurrency: int
                       ) -> tuple[list[float], collections.Counter[str]]:
    latencies: list[float] = []
    outcomes: collections.Counter[str] = collections.Counter()
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in corpus:
        queue.put_nowait(item)

    async def worker(n: int) -> None:
        while not queue.empty():
            label, raw = queue.get_nowait()
            headers, body = split_header_block(raw)
            t0 = time.perf_counter()
            client = await mc.MilterClient.open(address)
            try:
                await client.connect("mx.sender.test", "192.0.2.10", 40000 + n,
                                     macros={"j": "mx.example.test"})
                res = await client.message(sender_of(headers), [RCPT], list(headers), body,
                                           helo="mx.sender.test",
                                           macros={mc.SMFIC_MAIL: {"i": f"Q{n}"}})
            finally:
                await client.close()
            latencies.append(time.perf_counter() - t0)
            action = next((v for k, v in res.added_headers if k == "X-Mamori-Action"), None)
            outcomes[f"{label}:{action or res.reply[:9] or res.final.decode()}"] += 1

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return latencies, outcomes


def drive_postfix(smtp_addr: str, corpus: list[tuple[str, bytes]], concurrency: int
                  ) -> tuple[list[float], collections.Counter[str]]:
    from concurrent.futures import ThreadPoolExecutor

    host, _, port = smtp_addr.rpartition(":")
    outcomes: collections.Counter[str] = collections.Counter()

    def one(item: tuple[str, bytes]) -> float:
        label, raw = item
        headers, _ = split_header_block(raw)
        t0 = time.perf_counter()
        with smtplib.SMTP(host, int(port), timeout=120) as smtp:
            smtp.ehlo("client.sender.test")
            smtp.mail(sender_of(headers))
            smtp.rcpt(RCPT)
            code, _ = smtp.data(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        outcomes[f"{label}:smtp {code}"] += 1
        return time.perf_counter() - t0

    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, corpus))
    return latencies, outcomes


def process_cpu(pid: int, part: str = "both") -> float:
    """CPU seconds (user + system, or one of them) a process has spent so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    user, system = int(fields[11]), int(fields[12])
    ticks = user if part == "user" else system if part == "system" else user + system
    return ticks / os.sysconf("SC_CLK_TCK")


def report(kind: str, latencies: list[float], elapsed: float, outcomes: collections.Counter[str],
           concurrency: int, cpu: float | None = None) -> None:
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    print(f"milter bench ({kind}): {len(latencies)} messages, concurrency {concurrency}")
    print(f"  throughput  {len(latencies) / elapsed:8.1f} messages/s")
    if cpu is not None:  # the milter process only (the driver runs in this one)
        n = len(latencies)
        print(f"  milter CPU  {cpu * 1000 / n:8.3f} ms/message   {n / cpu if cpu else 0:8.1f} "
              f"messages per CPU-second")
    print(f"  latency p50 {q[49] * 1000:8.2f} ms   p90 {q[89] * 1000:8.2f} ms   "
          f"p99 {q[98] * 1000:8.2f} ms   max {max(latencies) * 1000:8.2f} ms")
    print("  outcomes    " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=1000, help="messages from the corpus")
    ap.add_argument("--concurrency", type=int, default=16, help="parallel MTA connections")
    ap.add_argument("--max-inflight", type=int, default=64, help="MAMORI_MILTER__MAX_INFLIGHT")
    ap.add_argument("--no-checks", action="store_true", help="an empty pipeline: milter overhead only")
    ap.add_argument("--live-dns", action="store_true",
                    help="let the auth checks query real DNS (default: an empty zone, no network)")
    ap.add_argument("--postfix", action="store_true", help="through Postfix (SMTP) instead")
    ap.add_argument("--warmup", type=int, default=100,
                    help="messages sent first and not counted (direct driver)")
    ap.add_argument("--select", choices=("groups", "compare"), default="groups",
                    help="groups: the same number from each corpus folder (hard ham and spam "
                         "weigh more); compare: perf/compare's sample (the corpus's ratio)")
    ap.add_argument("--tcp", action="store_true",
                    help="listen on 127.0.0.1 (as perf/compare and most MTAs) instead of a UNIX socket")
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                    help="the milter process's event loop (`mamori serve` uses uvloop when installed)")
    args = ap.parse_args()
    corpus = load_compare_sample(args.limit) if args.select == "compare" else load_corpus(args.limit)
    with tempfile.TemporaryDirectory(prefix="mamori-milter-bench-") as tmp:
        if args.postfix:
            smtp_addr = os.environ.get("MAMORI_TEST_POSTFIX", "")
            listen = os.environ.get("MAMORI_TEST_POSTFIX_MILTER", "")
            if not smtp_addr or not listen:
                sys.exit("--postfix needs MAMORI_TEST_POSTFIX and MAMORI_TEST_POSTFIX_MILTER "
                         "(eval \"$(scripts/services/postfix.sh start)\")")
        elif args.tcp:
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                listen = f"127.0.0.1:{s.getsockname()[1]}"
        else:
            listen = f"unix:{tmp}/milter.sock"
        zone_file = ""
        if not args.live_dns:
            zone_file = f"{tmp}/zone.yml"
            Path(zone_file).write_text("zonedata: {}\n")
        ctx = multiprocessing.get_context("spawn")
        ready, stop = ctx.Event(), ctx.Event()
        proc = ctx.Process(target=serve, args=(listen, f"{tmp}/data", ready, stop, args.max_inflight,
                                                   args.no_checks, zone_file, args.loop))
        proc.start()
        try:
            if not ready.wait(60):
                sys.exit("the milter did not start")
            cpu: float | None = None
            if args.postfix:
                t0 = time.perf_counter()
                latencies, outcomes = drive_postfix(smtp_addr, corpus, args.concurrency)
                kind = "through Postfix, SMTP transaction time"
            else:
                if args.warmup:
                    asyncio.run(drive_direct(listen, corpus[:args.warmup], args.concurrency))
                assert proc.pid is not None
                c0, t0 = process_cpu(proc.pid), time.perf_counter()
                s0 = process_cpu(proc.pid, "system")
                latencies, outcomes = asyncio.run(drive_direct(listen, corpus, args.concurrency))
                cpu = process_cpu(proc.pid) - c0
                system = process_cpu(proc.pid, "system") - s0
                kind = f"direct milter protocol, connect to final reply, {args.loop} loop"
            if args.no_checks:
                kind += ", no checks"
            report(kind, latencies, time.perf_counter() - t0, outcomes, args.concurrency, cpu)
            if cpu:
                print(f"  of which   {system * 1000 / len(latencies):8.3f} ms/message in the kernel")
        finally:
            stop.set()
            proc.join(30)
            if proc.is_alive():
                proc.terminate()
                proc.join()


if __name__ == "__main__":
    main()
