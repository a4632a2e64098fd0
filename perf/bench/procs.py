"""Daemons the harness starts: each in its own session (process group), its CPU time measured
over its whole process tree, and stopped on exit, error or Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _tree(pid: int) -> list[Any]:
    """The process and all its descendants (psutil.Process objects); [] once it is gone."""
    import psutil  # the perf extra; imported here so that the parsing logic needs none of it

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _tree_sum(pid: int, measure: Callable[[Any], float]) -> float:
    import psutil

    total = 0.0
    for p in _tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += measure(p)
    return total


def _cpu(p: Any) -> float:
    t = p.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its descendants, including children
    already reaped (their times are in their parent's children_* counters)."""
    return _tree_sum(pid, _cpu)


def tree_rss_bytes(pid: int) -> int:
    return int(_tree_sum(pid, lambda p: float(p.memory_info().rss)))


class DaemonError(RuntimeError):
    pass


class Daemon:
    """One daemon in the foreground of its own process group; output goes to `log`."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, *,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stop_timeout = 15.0  # seconds between SIGTERM and SIGKILL
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise DaemonError(f"{self.name} is not started")
        return self.proc.pid

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
                                         start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, ready: Callable[[], bool], timeout: float) -> float:
        """Poll `ready` until true; seconds it took. Raises if the daemon died or timed out."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if not self.alive():
                raise DaemonError(f"{self.name} exited during start-up; log {self.log}:\n{self.log_tail()}")
            if ready():
                return time.monotonic() - t0
            time.sleep(0.2)
        raise DaemonError(f"{self.name} not ready after {timeout:.0f}s; log {self.log}:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        return tree_rss_bytes(self.pid)

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM to the daemon's own process group, SIGKILL after `timeout`."""
        if self.proc is None:
            return
        timeout = self.stop_timeout if timeout is None else timeout
        pgid = self.proc.pid  # start_new_session: the group is ours alone
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                self.proc.wait(5)
        # workers that outlived their parent are still in the group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


class Daemons(contextlib.AbstractContextManager["Daemons"]):
    """Every daemon started in this run, stopped in reverse order on exit (also on SIGTERM,
    which is turned into SystemExit so that the same clean-up runs)."""

    def __init__(self) -> None:
        self.started: list[Daemon] = []
        self._old: object = None

    def __enter__(self) -> Daemons:
        self._old = signal.signal(signal.SIGTERM, _raise_exit)
        return self

    def start(self, daemon: Daemon) -> Daemon:
        self.started.append(daemon)
        daemon.start()
        return daemon

    def stop(self, daemon: Daemon) -> None:
        daemon.stop()
        if daemon in self.started:
            self.started.remove(daemon)

    def __exit__(self, *exc: object) -> None:
        # Ctrl-C while stopping must not leave daemons behind: ignore it until done
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            while self.started:
                d = self.started.pop()
                try:
                    d.stop()
                except Exception as e:  # keep stopping the others
                    print(f"warning: could not stop {d.name}: {e}")
        finally:
            signal.signal(signal.SIGINT, old_int)
            if self._old is not None:
                signal.signal(signal.SIGTERM, self._old)  # type: ignore[arg-type]


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
