"""CPU cost of one message through a real `mamori serve` (milter or SMTP filter), as
`perf/compare` measures it, optionally with a cProfile of the server.

The server runs as its own process with perf/compare's offline settings (SQLite stores, file
events, empty DNS zone); the clients (perf/bench's milter client or an SMTP client with a sink
as next hop) run in this process, so their CPU is not counted. Prints server CPU ms per message
over the timed pass; with --profile the server's cProfile listing (main thread: the event loop
and the checks run there). Examples:
    python perf/serve_profile.py --ingress milter --limit 300
    python perf/serve_profile.py --ingress smtp --limit 300 --profile --top 40
    python perf/serve_profile.py --ingress milter --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from perf.bench import corpus, mamori, milter  # noqa: E402
from perf.bench.drive import run_clients  # noqa: E402
from perf.bench.procs import tcp_open, tree_cpu_seconds  # noqa: E402


def child(profile_out: str) -> None:
    """The server: `mamori serve`, under cProfile when asked; stats written on SIGTERM."""
    import cProfile

    from gateway.config import load_settings
    from gateway.logging import setup_logging
    from gateway.serve import run
    from gateway.workers import event_loop_factory

    settings = load_settings()
    setup_logging(settings.log_level)
    # CPU time, only over the timed pass (SIGUSR1 starts it, SIGUSR2 stops it)
    prof = cProfile.Profile(time.process_time) if profile_out else None
    if prof is not None:
        signal.signal(signal.SIGUSR1, lambda *_: prof.enable())
        signal.signal(signal.SIGUSR2, lambda *_: prof.disable())
    try:
        # the event loop `mamori serve` runs (uvloop when installed, MAMORI_EVENT_LOOP)
        with asyncio.Runner(loop_factory=event_loop_factory(settings)) as runner:
            runner.run(run(settings))
    finally:
        if prof is not None:
            prof.dump_stats(profile_out)


def system_seconds(pid: int) -> float:
    """The kernel's share of the server's CPU (socket calls, accept, close)."""
    import psutil

    return float(psutil.Process(pid).cpu_times().system)


async def drive(a: argparse.Namespace, ports: dict[str, int], pid: int) -> None:
    samples = corpus.load(a.corpus or corpus.default_corpus_dir(), a.limit, a.seed)
    server, sink = await mamori.start_sink(ports["sink"])
    try:
        if a.ingress == "smtp":
            iface: object = mamori.SmtpFilter(ports["smtp"], sink)
        else:
            iface = milter.Client(ports["milter"], mamori.interpret_milter)
        send = iface.send  # type: ignore[attr-defined]
        await run_clients(samples[: a.warmup], send, a.concurrency)
        for rep in range(a.repeat):
            if a.profile:
                os.kill(pid, signal.SIGUSR1)
            c0, s0, t0 = tree_cpu_seconds(pid), system_seconds(pid), time.perf_counter()
            out = await run_clients(samples, send, a.concurrency)
            cpu, wall = tree_cpu_seconds(pid) - c0, time.perf_counter() - t0
            sys_cpu = system_seconds(pid) - s0
            if a.profile:
                os.kill(pid, signal.SIGUSR2)
            errors = sum(o.flagged is None for o in out)
            flagged = sum(bool(o.flagged) for o in out)
            print(f"{a.ingress} pass {rep + 1}: {len(out)} msgs, server {1000 * cpu / len(out):.2f} "
                  f"CPU ms/msg ({len(out) / cpu:.0f} msg/CPU-s, of it system "
                  f"{1000 * sys_cpu / len(out):.2f}), wall {len(out) / wall:.0f} msg/s, "
                  f"flagged {flagged}, errors {errors}", flush=True)
        close = getattr(iface, "close", None)
        if close is not None:
            await close()
    finally:
        server.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ingress", choices=("milter", "smtp"), default="milter")
    p.add_argument("--limit", type=int, default=300)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--corpus", type=Path)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--repeat", type=int, default=1, help="timed passes")
    p.add_argument("--workers", type=int, default=1, help="MAMORI_WORKERS of the server")
    p.add_argument("--profile", action="store_true", help="cProfile the server (1 worker)")
    p.add_argument("--top", type=int, default=35)
    p.add_argument("--keep-profile", default="", help="write the cProfile stats to this file")
    p.add_argument("--sort", default="cumulative")
    p.add_argument("--callees", default="", help="also list what functions matching this call")
    p.add_argument("--mamori-env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child is not None:
        child(a.child)
        return 0
    with tempfile.TemporaryDirectory(prefix="mamori-serve-profile-") as tmp:
        root = Path(tmp)
        ports = mamori.configure(root, milter_too=True)
        extra = dict(kv.split("=", 1) for kv in a.mamori_env)
        extra["MAMORI_WORKERS"] = str(a.workers)
        extra.setdefault("MAMORI_LOG_LEVEL", "WARNING")
        env = mamori.serve_env(root, ports, extra)
        stats = (a.keep_profile or str(root / "serve.prof")) if a.profile else ""
        argv = ([sys.executable, __file__, "--child", stats] if a.workers == 1
                else [sys.executable, "-m", "gateway", "serve"])
        with (root / "serve.log").open("wb") as log:
            proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while not (tcp_open(ports["smtp"]) and tcp_open(ports["milter"])):
                if proc.poll() is not None or time.monotonic() > deadline:
                    print((root / "serve.log").read_text()[-3000:], file=sys.stderr)
                    return 1
                time.sleep(0.2)
            asyncio.run(drive(a, ports, proc.pid))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        if a.profile:
            import pstats

            st = pstats.Stats(stats)
            st.sort_stats(a.sort).print_stats(a.top)
            if a.callees:
                st.print_callees(a.callees)
        errors = [ln for ln in (root / "serve.log").read_text().splitlines()
                  if '"level":"error"' in ln or "Traceback" in ln]
        if errors:
            print(f"server log: {len(errors)} errors, first: {errors[0][:300]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
