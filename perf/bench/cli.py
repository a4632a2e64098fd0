"""perf/compare: mamori, rspamd and SpamAssassin side by side, same corpus, same run.

Each system runs alone while it is measured (the others are stopped), is warmed up, then gets
the corpus from the same number of concurrent clients; with --rounds N all run at once and
each interface is measured N times round robin. Per-core throughput comes from the CPU
seconds of the system's own process tree over the timed phase, not from wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from perf.bench import corpus, holdout, mamori, milter, rspamd, spamassassin
from perf.bench.drive import Send, measure
from perf.bench.procs import Daemon, DaemonError, Daemons
from perf.bench.stats import (
    Outcome,
    SystemResult,
    goals,
    goals_text,
    merge,
    ratios,
    round_ratios,
    table,
)

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = ("mamori", "rspamd", "spamassassin")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="perf/compare",
        description="Measure mamori against rspamd and SpamAssassin (spamd) on the SpamAssassin "
                    "corpus: messages/s per core, latency p50/p99, spam recall and ham FPR.")
    p.add_argument("--limit", type=int, default=None,
                   help="messages to measure (a fixed stratified sample); default: all 6,046")
    p.add_argument("--concurrency", type=int, default=4, help="concurrent clients per system [4]")
    p.add_argument("--warmup", type=int, default=20, help="messages sent first, not counted [20]")
    p.add_argument("--systems", default=",".join(SYSTEMS),
                   help="comma-separated subset of: " + ", ".join(SYSTEMS))
    p.add_argument("--no-milter", action="store_true", help="skip mamori's milter even if present")
    p.add_argument("--rspamd-milter", action="store_true",
                   help="also drive rspamd's proxy worker in milter mode")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                   help="rspamd normal workers; spamd children: the larger of this and --concurrency [CPU count]")
    p.add_argument("--mamori-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra MAMORI_* setting for mamori (repeatable)")
    p.add_argument("--model", choices=("auto", "holdout", "shipped"), default="auto",
                   help="mamori's email model: 'holdout' trains one with `mamori model train` on "
                        "the corpus minus the measured messages (needs --limit); 'shipped' uses "
                        "the live one; 'auto': holdout when possible [auto]")
    p.add_argument("--corpus", type=Path, default=None, help="corpus folder with labels.csv")
    p.add_argument("--seed", type=int, default=1, help="sample/shuffle seed [1]")
    p.add_argument("--rounds", type=int, default=1,
                   help="all systems up at once, every interface measured this many times round "
                        "robin (the host's drift then falls on all alike) [1: one after the other]")
    p.add_argument("--out", type=Path, default=ROOT / "perf" / "out", help="results folder")
    p.add_argument("--publish", action="store_true", help="copy the plot to docs/img/")
    p.add_argument("--no-install", action="store_true", help="do not install missing peers")
    a = p.parse_args(argv)
    a.systems = [s.strip() for s in a.systems.split(",") if s.strip()]
    bad = [s for s in a.systems if s not in SYSTEMS]
    if bad:
        p.error(f"unknown system(s): {', '.join(bad)}")
    if a.concurrency < 1 or a.warmup < 0 or a.workers < 1:
        p.error("--concurrency and --workers must be >= 1, --warmup >= 0")
    if a.limit is not None and a.limit < 1:
        p.error("--limit must be >= 1")
    if a.rounds < 1:
        p.error("--rounds must be >= 1")
    extra = {}
    for kv in a.mamori_env:
        k, sep, v = kv.partition("=")
        if not sep or not k.startswith("MAMORI_"):
            p.error(f"--mamori-env wants MAMORI_NAME=value, got {kv!r}")
        extra[k] = v
    a.mamori_env = extra
    return a


def ensure_installed(systems: Sequence[str], allowed: bool) -> None:
    need = []
    if "rspamd" in systems and not shutil.which("rspamd"):
        need += rspamd.PACKAGES
    if "spamassassin" in systems and not (shutil.which("spamd") and shutil.which("spamc")):
        need += spamassassin.PACKAGES
    if not need:
        return
    if not allowed:
        raise SystemExit(f"perf/compare: missing {' '.join(need)} (and --no-install given)")
    print(f"installing {' '.join(need)} from Debian's packages ...", flush=True)
    subprocess.run([str(ROOT / "scripts" / "apt-install.sh"), *need], check=True)



def interpreter() -> str:
    """The interpreter mamori runs on (the server is started with this one too): its build
    matters, a PGO+LTO build (Debian's, the official images') costs ~7-10% less CPU per
    message than a default pyenv build (docs/perf.md, "Interpreter")."""
    return f"Python {platform.python_version()} at {os.path.realpath(sys.executable)}"

class Run:
    def __init__(self, args: argparse.Namespace, samples: list[corpus.Sample],
                 corpus_dir: Path) -> None:
        self.args = args
        self.samples = samples
        self.corpus_dir = corpus_dir
        self.work = args.out / "work"
        self.results: list[SystemResult] = []
        self.outcomes: dict[str, list[Outcome]] = {}
        self.info: dict[str, Any] = {}
        self.daemons: list[tuple[str, Daemon]] = []
        self.rounds: list[list[SystemResult]] = []  # with --rounds: each round's rows

    def log(self, text: str) -> None:
        print(text, flush=True)

    async def _measure(self, system: str, iface: Any, version: str, threshold: str,
                       cpu: Any) -> SystemResult:
        a = self.args
        send: Send = iface.send
        r, outs = await measure(system, iface.interface, version, threshold, self.samples, send,
                                cpu, concurrency=a.concurrency, warmup=min(a.warmup, len(self.samples)))
        self.results.append(r)
        self.outcomes[r.label] = outs
        self.log(f"  {r.label}: {r.n} msgs, {r.per_core:.1f} msg/s/core, p99 {r.p99_ms:.1f} ms, "
                 f"recall {r.quality.recall:.3f}, FPR {r.quality.fpr:.3f}, errors {r.quality.errors}")
        return r

    def start(self, ds: Daemons, d: Daemon, ready: Any, timeout: float) -> float:
        ds.start(d)
        took = d.wait_ready(ready, timeout)
        self.log(f"  {d.name} ready in {took:.1f}s (pid {d.pid})")
        return took

    # -- systems -------------------------------------------------------------------------

    def model(self, root: Path) -> str:
        """Pick mamori's email model (see --model); a description for the results."""
        a = self.args
        if holdout.ENV in a.mamori_env:
            return f"given: {a.mamori_env[holdout.ENV]}"
        rows = corpus.read_labels(self.corpus_dir / "labels.csv")
        possible = holdout.has_trainer() and len(self.samples) < len(rows)
        want = a.model if a.model != "auto" else ("holdout" if possible else "shipped")
        if want == "shipped":
            return "shipped (live model; it may have been trained on this corpus)"
        if not possible:
            raise SystemExit("perf/compare: --model holdout needs `mamori model train` and --limit "
                             "below the corpus size")
        exclude = {s.path for s in self.samples}
        n = holdout.write_training_set(root / "holdout" / "train", self.corpus_dir, rows, exclude)
        self.log(f"mamori: training a held-out email model on {n} messages not in the sample ...")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAMORI_")}
        env.update({"PYTHONPATH": str(ROOT), "MAMORI_DATA_DIR": str(root / "holdout" / "data")})
        recipe = holdout.live_recipe(ROOT / "models")
        shown = " ".join(f"{k} {v}" for k, v in recipe.items()) or "train's defaults"
        t0 = time.monotonic()
        out = holdout.train(root / "holdout" / "train", root / "holdout" / "model", env,
                            root / "holdout" / "train.log", recipe)
        a.mamori_env[holdout.ENV] = str(out)
        took = time.monotonic() - t0
        self.log(f"  trained in {took:.0f}s ({shown}, the live model's recipe): {out}")
        return (f"holdout: trained on the {n} corpus messages not measured, with the live "
                f"model's recipe ({shown}; {took:.0f}s)")

    # Each system: `setup_*` starts its daemon (if any) and returns one measurement per
    # interface, each a function that measures once in an event loop of its own; `teardown`
    # notes the daemon's memory and stops it. Without --rounds each system is set up,
    # measured and torn down in turn (the others stopped meanwhile); with --rounds N all run at
    # once and every interface is measured N times round robin.

    def _once(self, system: str, open_iface: Any, version: str, threshold: str,
              cpu: Any) -> Any:
        """A measurement of one interface in an event loop of its own; `open_iface()` is an
        async context manager giving the interface, ready to send to."""
        def run() -> SystemResult:
            async def go() -> SystemResult:
                async with open_iface() as iface:
                    result: SystemResult = await self._measure(system, iface, version, threshold, cpu)
                    return result
            return asyncio.run(go())
        return run

    def setup_mamori(self, ds: Daemons) -> list[Any]:
        a = self.args
        root = self.work / "mamori"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        version = mamori.version()
        model = self.model(root)
        self.log(f"mamori {version}: in-process scoring, {interpreter()} (scripts/pick-python)")
        first = mamori.InProcess(root / "inprocess", a.mamori_env)
        self.info["mamori"] = {**mamori.describe(first), "email_model": model}
        self.log(f"  email model: {model}")
        self.log(f"  checks: {', '.join(first.checks)}")
        made = [first]

        @contextlib.asynccontextmanager
        async def inproc() -> Any:
            iface = made.pop() if made else mamori.InProcess(root / "inprocess", a.mamori_env)
            await iface.start()
            try:
                yield iface
            finally:
                await iface.close()

        runs = [self._once("mamori", inproc, version, mamori.THRESHOLD, mamori.cpu_self)]
        use_milter = mamori.has_milter() and not a.no_milter
        ports = mamori.configure(root, use_milter)
        d = mamori.daemon(root, ports, a.mamori_env)
        self.log(f"mamori serve: SMTP filter{' and milter' if use_milter else ''} "
                 f"(milter {'present' if mamori.has_milter() else 'absent on this branch'})")
        self.info.setdefault("startup_s", {})["mamori"] = round(
            self.start(ds, d, lambda: mamori.ready(ports), 120), 1)
        self.daemons.append(("mamori", d))

        @contextlib.asynccontextmanager
        async def smtp() -> Any:  # the next hop's sink runs in the measuring loop
            server, got = await mamori.start_sink(ports["sink"])
            try:
                async with _closing(mamori.SmtpFilter(ports["smtp"], got)) as iface:
                    yield iface
            finally:
                server.close()
                await server.wait_closed()

        runs.append(self._once("mamori", smtp, version, mamori.THRESHOLD, d.cpu_seconds))
        if use_milter:
            runs.append(self._once(
                "mamori", lambda: _closing(milter.Client(ports["milter"], mamori.interpret_milter)),
                version, mamori.THRESHOLD, d.cpu_seconds))
        return runs

    def setup_rspamd(self, ds: Daemons) -> list[Any]:
        a = self.args
        root = self.work / "rspamd"
        version = rspamd.version()
        self.log(f"rspamd {version}: offline config in {root}")
        ports = rspamd.configure(root, workers=a.workers, milter=a.rspamd_milter)
        d = rspamd.daemon(root)
        self.info.setdefault("startup_s", {})["rspamd"] = round(
            self.start(ds, d, lambda: rspamd.ready(ports["normal"]), 300), 1)
        self.daemons.append(("rspamd", d))
        runs = [self._once("rspamd", lambda: _closing(rspamd.CheckV2(ports["normal"])), version,
                           rspamd.THRESHOLD, d.cpu_seconds)]
        if a.rspamd_milter:
            runs.append(self._once(
                "rspamd", lambda: _closing(milter.Client(ports["milter"], rspamd.interpret_milter)),
                version, rspamd.THRESHOLD, d.cpu_seconds))
        return runs

    def setup_spamassassin(self, ds: Daemons) -> list[Any]:
        a = self.args
        root = self.work / "spamassassin"
        version = spamassassin.version()
        self.log(f"SpamAssassin {version}: spamd offline, site config in {root}")
        ports = spamassassin.configure(root)
        d = spamassassin.daemon(root, ports["spamd"], max(a.workers, a.concurrency))
        self.info.setdefault("startup_s", {})["spamassassin"] = round(
            self.start(ds, d, lambda: spamassassin.ready(ports["spamd"]), 300), 1)
        self.daemons.append(("spamassassin", d))
        return [self._once("spamassassin", lambda: _closing(spamassassin.Spamc(ports["spamd"])),
                           version, spamassassin.THRESHOLD, d.cpu_seconds)]

    def teardown(self, ds: Daemons) -> None:
        for name, d in self.daemons:
            self.info.setdefault("rss_mb", {})[name] = round(d.rss_bytes() / 2**20, 1)
            ds.stop(d)
        self.daemons = []

    # -- output --------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        a = self.args
        n_spam = sum(s.spam for s in self.samples)
        return {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "commit": mamori.version(),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "python_executable": os.path.realpath(sys.executable),
                        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
            "corpus": {"messages": len(self.samples), "spam": n_spam,
                       "ham": len(self.samples) - n_spam, "limit": a.limit, "seed": a.seed},
            "config": {"concurrency": a.concurrency, "warmup": a.warmup, "workers": a.workers,
                       "systems": a.systems, "mamori_env": a.mamori_env},
            "info": self.info,
            "results": [r.to_json() for r in self.results],
            "ratios": ratios(self.results),
            "goals": goals(self.results),
            **({"rounds": a.rounds, "round_ratios_per_core": round_ratios(self.rounds)}
               if self.rounds else {}),
        }


@contextlib.asynccontextmanager
async def _closing(iface: Any) -> Any:
    try:
        yield iface
    finally:
        await iface.close()


def run_rounds(run: Run, ds: Daemons, systems: Sequence[str], rounds: int) -> list[str]:
    """Every system up at once, each interface measured `rounds` times round robin; the
    table's rows are the sums over rounds (`merge`), each round's ratios printed too."""
    failed: list[str] = []
    measures: list[Any] = []
    try:
        for system in systems:
            try:
                measures += getattr(run, f"setup_{system}")(ds)
            except (DaemonError, OSError, subprocess.CalledProcessError) as exc:
                failed.append(system)
                print(f"perf/compare: {system} failed: {exc}", file=sys.stderr)
        for k in range(rounds):
            run.log(f"round {k + 1} of {rounds}")
            before = len(run.results)
            for once in measures:
                once()
            run.rounds.append(run.results[before:])
    finally:
        run.teardown(ds)
    by_label: dict[str, list[SystemResult]] = {}
    for r in run.results:
        by_label.setdefault(r.label, []).append(r)
    run.results = [merge(rs) for rs in by_label.values()]
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    cdir = a.corpus or corpus.default_corpus_dir()
    try:
        samples = corpus.load(cdir, a.limit, a.seed)
    except (OSError, ValueError) as exc:
        print(f"perf/compare: {exc}", file=sys.stderr)
        return 2
    ensure_installed(a.systems, not a.no_install)
    n_spam = sum(s.spam for s in samples)
    print(f"corpus: {len(samples)} messages ({n_spam} spam, {len(samples) - n_spam} ham) from {cdir}; "
          f"{a.concurrency} clients, {a.warmup} warm-up messages", flush=True)
    run = Run(a, samples, cdir)
    a.out.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    try:
        with Daemons() as ds:
            if a.rounds <= 1:
                for system in a.systems:
                    try:
                        for once in getattr(run, f"setup_{system}")(ds):
                            once()
                    except (DaemonError, OSError, subprocess.CalledProcessError) as exc:
                        failed.append(system)
                        print(f"perf/compare: {system} failed: {exc}", file=sys.stderr)
                    finally:
                        run.teardown(ds)
            else:
                failed += run_rounds(run, ds, a.systems, a.rounds)
    except KeyboardInterrupt:
        print("\ninterrupted: every daemon stopped", file=sys.stderr)
        return 130
    if not run.results:
        return 1
    rep = run.report()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for name in (f"compare-{stamp}.json", "compare-latest.json"):
        (a.out / name).write_bytes(orjson.dumps(rep, option=orjson.OPT_INDENT_2))
    # per message: what each system said (to look into errors and disagreements)
    per_msg = {label: [[s.path, s.spam, o.flagged, round(o.latency * 1000, 3), o.score, o.detail]
                       for s, o in zip(samples, outs, strict=True)]
               for label, outs in run.outcomes.items()}
    (a.out / "compare-latest-messages.json").write_bytes(orjson.dumps(
        {"columns": ["path", "spam", "flagged", "latency_ms", "score", "detail"], **per_msg}))
    from perf.bench.plot import plot

    title = (f"mamori {rep['commit']} vs peers, {len(samples)} SpamAssassin-corpus messages, "
             f"{a.concurrency} clients, {os.cpu_count()} CPUs, {rep['date']}")
    png = plot(run.results, a.out / "compare.png", title)
    print()
    print(table(run.results))
    if run.rounds:
        print(f"\nper core, mamori/peer in each of the {len(run.rounds)} rounds (median):")
        for pair, xs in round_ratios(run.rounds).items():
            cells = " ".join(f"{x:.2f}" for x in xs)
            print(f"  {pair:<40} {cells}  ({statistics.median(xs):.2f})")
    if any(r.system == "mamori" for r in run.results) and len({r.system for r in run.results}) > 1:
        print()
        print(goals_text(run.results))
    rss = ", ".join(f"{k} {v:.0f} MB" for k, v in run.info.get("rss_mb", {}).items())
    start = ", ".join(f"{k} {v:.0f} s" for k, v in run.info.get("startup_s", {}).items())
    if rss:
        print(f"\nresident memory after each run: {rss}" + (f"; start-up: {start}" if start else ""))
    print(f"\nresults: {a.out / 'compare-latest.json'}  plot: {png}")
    if a.publish:
        dest = ROOT / "docs" / "img" / "perf-compare.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(png, dest)
        print(f"published: {dest}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
