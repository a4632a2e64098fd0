"""`MAMORI_WORKERS=N`: N serving processes behind the same listening sockets (pre-fork).

The parent stays small: it reads the settings, binds every listening socket of the ingresses
that are switched on (TCP, or the milter's unix socket), forks N children and supervises them.
Each child imports the gateway, builds its own `Gateway` (models, stores, event producer) and
runs `gateway.serve.run` as with one process; when an ingress asks its event loop for a server
on an address the parent bound, the loop hands it the inherited socket instead of binding anew.
The kernel gives each connection to one of the processes accepting on the shared socket.

- A child that dies (crash, OOM kill, `kill -9`) is replaced at once with the same slot; the
  parent keeps its copy of every listening socket open, so connections arriving meanwhile wait
  in the backlog (the other children keep serving): nothing is refused and nothing is lost. A
  message a dying child was scanning gets no answer, and the MTA or ESME retries it (milter:
  `milter_default_action`; SMTP: no 250 was given, so the client keeps the message).
- SIGTERM or SIGINT to the parent: each child gets SIGTERM and stops as with one process
  (stop accepting, answer the messages in flight, close); children still alive after
  `SHUTDOWN_GRACE` seconds are killed. A child that keeps dying within a second of its start
  (a configuration error) stops the parent with an error instead of looping.
- Metrics: prometheus_client's multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, a private
  directory unless set) so that /metrics, whichever child answers, shows the sum over all
  children (gauges: one series per process, labelled `pid`).
- Only worker 0 runs the scheduled retention purge (`worker_index()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import select
import shutil
import signal
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.config import Settings, parse_hostport
from gateway.errors import ConfigError

log = logging.getLogger("mamori.workers")

SHUTDOWN_GRACE = 60.0  # seconds children get to finish after SIGTERM
START_TIMEOUT = 300.0  # seconds the first worker may take to start serving
QUICK_DEATH = 1.0  # a child dying this soon after its start counts towards a crash loop
MAX_QUICK_DEATHS = 5

# set in a child: its slot and the sockets the parent bound, by listen address
_worker_index: int | None = None
_inherited: dict[tuple[str, ...], socket.socket] = {}
_ready_fd: int | None = None  # a child writes a byte here once it serves


def worker_index() -> int:
    """This process's worker slot (0 when not running under the supervisor)."""
    return _worker_index or 0


def listen_key(address: str) -> tuple[str, ...]:
    """A listen setting ("host:port", "inet:host:port", "unix:/path") as a lookup key."""
    address = address.strip()
    if address.startswith("unix:"):
        return ("unix", str(Path(address[5:]).absolute()))
    host, port = parse_hostport(address.removeprefix("inet:"))
    return ("tcp", host, str(port))


def inherited_socket(address: str) -> socket.socket | None:
    """The listening socket the supervisor bound for this listen address, in a worker."""
    if not _inherited:
        return None
    try:
        return _inherited.get(listen_key(address))
    except ConfigError:
        return None


def listen_addresses(settings: Settings) -> list[tuple[str, str]]:
    """(ingress, listen address) of every ingress that is switched on."""
    out = []
    for name, sect in (("smtp", settings.smtp), ("milter", settings.milter),
                       ("smpp", settings.smpp), ("api", settings.api)):
        addr = (getattr(sect, "listen", "") or "").strip()
        if addr:
            out.append((name, addr))
    return out


def bind(address: str, *, unix_mode: int = 0o660, backlog: int = 1024) -> socket.socket:
    """Bind and listen on one address, as asyncio's servers would."""
    key = listen_key(address)
    if key[0] == "unix":
        path = Path(key[1])
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise ConfigError(f"socket path {path} exists and is not a socket")
            path.unlink()  # stale socket of an earlier run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        os.chmod(path, unix_mode)
    else:
        host, port = key[1], int(key[2])
        try:
            infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise ConfigError(f"cannot resolve listen address {address!r}: {exc}") from None
        family, type_, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, type_, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot listen on {address!r}: {exc}") from None
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


class _Prefork(asyncio.AbstractEventLoop):
    """Event loop mixin: servers use the inherited listening sockets when there is one."""

    async def create_server(self, protocol_factory: Any, host: Any = None, port: Any = None,
                            *, sock: socket.socket | None = None, **kw: Any) -> asyncio.Server:
        if sock is None and isinstance(host, str) and port is not None:
            inherited = _inherited.get(("tcp", host, str(port)))
            if inherited is not None:
                kw.pop("reuse_address", None)
                kw.pop("reuse_port", None)
                return await super().create_server(protocol_factory, sock=inherited, **kw)
        return await super().create_server(protocol_factory, host, port, sock=sock, **kw)

    async def create_unix_server(self, protocol_factory: Any, path: Any = None, *,
                                 sock: socket.socket | None = None, **kw: Any) -> asyncio.Server:
        if sock is None and path is not None:
            inherited = _inherited.get(("unix", str(Path(path).absolute())))
            if inherited is not None:
                return await super().create_unix_server(protocol_factory, sock=inherited, **kw)
        return await super().create_unix_server(protocol_factory, path, sock=sock, **kw)


class PreforkLoop(_Prefork, asyncio.SelectorEventLoop):
    """asyncio's loop, handing out the inherited listening sockets."""


def event_loop_factory(settings: Settings, *, prefork: bool = False
                       ) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop `mamori serve` runs on (MAMORI_EVENT_LOOP): uvloop when installed and
    not switched off (the protocol work per message costs 15-25% less), else asyncio's; a worker
    under the supervisor gets the variant that hands out the inherited sockets. None: asyncio's
    default."""
    choice = settings.event_loop
    uvloop: Any = None
    if choice != "asyncio":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            if choice == "uvloop":
                raise ConfigError("MAMORI_EVENT_LOOP=uvloop but uvloop is not installed "
                                  "(pip install 'mamori[fast]')") from None
    if uvloop is not None:
        if not prefork:
            return uvloop.new_event_loop  # type: ignore[no-any-return]
        return type("PreforkUvloop", (_Prefork, uvloop.Loop), {})
    return PreforkLoop if prefork else None


def _child(slot: int, settings: Settings, sockets: dict[tuple[str, ...], socket.socket]) -> int:
    """The body of one worker process; returns its exit status."""
    global _worker_index
    _worker_index = slot
    _inherited.clear()
    _inherited.update(sockets)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    from gateway.errors import GatewayError
    from gateway.serve import run

    async def serve() -> None:
        ready = asyncio.Event()

        async def notify() -> None:
            await ready.wait()
            if _ready_fd is not None:
                os.write(_ready_fd, b"r")

        notifier = asyncio.ensure_future(notify())
        try:
            await run(settings, ready=ready)
        finally:
            notifier.cancel()

    try:
        with asyncio.Runner(loop_factory=event_loop_factory(settings, prefork=True)) as runner:
            runner.run(serve())
    except GatewayError as exc:
        log.error("worker %d cannot start: %s", slot, exc)
        return 2
    except KeyboardInterrupt:
        return 0
    except Exception:
        log.exception("worker %d failed", slot)
        return 1
    return 0


def supervise(settings: Settings, workers: int, *,
              child: Callable[[int, Settings, dict[tuple[str, ...], socket.socket]], int] = _child
              ) -> int:
    """Bind, fork `workers` children, restart the ones that die, stop them on SIGTERM.

    Returns the parent's exit status: 0 after a requested stop, 1 after a crash loop.
    """
    sockets: dict[tuple[str, ...], socket.socket] = {}
    try:
        mode = int(settings.milter.socket_mode, 8)
    except ValueError:
        raise ConfigError(f"invalid milter socket_mode {settings.milter.socket_mode!r}") from None
    try:
        for _name, addr in listen_addresses(settings):
            key = listen_key(addr)
            if key not in sockets:
                sockets[key] = bind(addr, unix_mode=mode)
    except Exception:
        for s in sockets.values():
            s.close()
        raise
    from gateway.privacy import PartyHasher

    PartyHasher.from_settings(settings.hash_key, settings.data_dir)  # the key file, made once
    own_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="mamori-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    children: dict[int, tuple[int, float]] = {}  # pid -> (slot, started)
    stopping: list[float] = []  # time of the stop request

    ready_r, ready_w = os.pipe()

    def spawn(slot: int, *, notify: bool = False) -> int:
        global _ready_fd
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child
            status = 1
            _ready_fd = ready_w if notify else None
            os.close(ready_r)
            try:
                status = child(slot, settings, sockets)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        children[pid] = (slot, time.monotonic())
        log.info("worker started", extra={"worker": slot, "pid": pid})
        return pid

    def wait_ready(pid: int, timeout: float) -> None:
        """Until the first worker serves (or dies, or `timeout`): it alone creates what all
        share on first use (database schema, directories), so the others start after it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not stopping:
            readable, _, _ = select.select([ready_r], [], [], 0.1)
            if readable:
                os.read(ready_r, 64)
                return
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:  # reaped here: the caller stops
                children.pop(pid, None)
                dead.append(pid)
                return

    def on_stop(signum: int, _frame: Any) -> None:
        if not stopping:
            stopping.append(time.monotonic())
            log.info("mamori stopping workers", extra={"signal": signum})
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    old = {sig: signal.signal(sig, on_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    quick_deaths = 0
    status = 0
    dead: list[int] = []
    try:
        first = spawn(0, notify=True)
        wait_ready(first, START_TIMEOUT)
        for pid in dead:  # the first one died at start (a configuration error, a store down)
            _mark_dead(pid)
            if not stopping:
                status = 1
                log.error("the first worker could not start; stopping")
                on_stop(signal.SIGTERM, None)
        for slot in range(1, workers):
            if not stopping:
                spawn(slot)
        log.info("mamori serving with workers", extra={
            "workers": workers, "listen": [":".join(k[1:]) for k in sockets]})
        while children:
            try:
                pid, wstatus = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                if stopping and time.monotonic() - stopping[0] > SHUTDOWN_GRACE:
                    for p in list(children):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(p, signal.SIGKILL)
                time.sleep(0.05)
                continue
            slot, started = children.pop(pid)
            _mark_dead(pid)
            if stopping:
                continue
            code = os.waitstatus_to_exitcode(wstatus)
            quick = time.monotonic() - started < QUICK_DEATH
            quick_deaths = quick_deaths + 1 if quick else 0
            log.warning("worker died, starting another",
                        extra={"worker": slot, "pid": pid, "exit": code})
            if quick_deaths >= MAX_QUICK_DEATHS:
                log.error("workers keep dying at start; stopping")
                status = 1
                on_stop(signal.SIGTERM, None)
                continue
            if quick:
                time.sleep(0.2 * quick_deaths)
            spawn(slot)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for p in list(children):  # only on an unexpected error in the loop above
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        os.close(ready_r)
        os.close(ready_w)
        for key, s in sockets.items():
            s.close()
            if key[0] == "unix":
                with contextlib.suppress(OSError):
                    os.unlink(key[1])
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log.info("mamori stopped")
    return status


def _mark_dead(pid: int) -> None:
    """Drop a dead child's live gauges from the aggregated metrics."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    with contextlib.suppress(Exception):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def metrics_payload() -> bytes:
    """/metrics: the sum over every worker under the supervisor, else this process's."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and _worker_index is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()
