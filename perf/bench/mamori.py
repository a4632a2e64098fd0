"""mamori measured the ways it is deployed: `mamori serve` as its own process, through its SMTP
content filter (next hop: a sink in this process) and its milter (when this checkout has
`gateway/ingress/milter.py`), plus `mamori scan`-equivalent scoring in this process.

Generic: whatever checks are registered (entry points `mamori.plugins`) are what is measured;
their names are recorded with the results.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiosmtplib
from aiosmtpd.smtp import SMTP, Envelope, Session

from perf.bench import milter
from perf.bench.corpus import Sample
from perf.bench.drive import Reply
from perf.bench.ingest import RCPT, envelope_sender, header_value
from perf.bench.procs import Daemon, free_port, tcp_open

ROOT = Path(__file__).resolve().parents[2]
THRESHOLD = "action != accept (tag >= 5, quarantine >= 9, reject >= 12; scores.toml)"


def has_milter() -> bool:
    return importlib.util.find_spec("gateway.ingress.milter") is not None


def version() -> str:
    import subprocess

    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "gateway"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return "?"
    return (rev or "?") + ("+dirty" if dirty else "")


def offline_env(root: Path) -> dict[str, str]:
    """mamori offline, as the peers are: DNS (SPF, DKIM keys, DMARC, ARC) is answered from an
    empty local zone, so every lookup says "no such record" at once and nothing leaves the
    machine; shortener expansion stays off. Settings a checkout does not know are ignored."""
    zone = root / "empty-zone.json"
    zone.parent.mkdir(parents=True, exist_ok=True)
    zone.write_text("{}\n")
    return {"MAMORI_AUTH__ZONE_FILE": str(zone), "MAMORI_URLS__EXPAND_SHORTENERS": "false"}


def serve_env(root: Path, ports: Mapping[str, int], extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAMORI_")}
    env.update(offline_env(root))
    env.update({
        "PYTHONPATH": str(ROOT),
        "MAMORI_DATA_DIR": str(root / "data"),
        "MAMORI_SMTP__LISTEN": f"127.0.0.1:{ports['smtp']}",
        "MAMORI_SMTP__NEXT_HOP": f"127.0.0.1:{ports['sink']}",
        "MAMORI_API__LISTEN": "",
        "MAMORI_MILTER__LISTEN": f"127.0.0.1:{ports['milter']}" if "milter" in ports else "",
        "MAMORI_SMPP__LISTEN": "",
    })
    env.update(extra)
    return env


def configure(root: Path, milter_too: bool) -> dict[str, int]:
    (root / "data").mkdir(parents=True, exist_ok=True)
    ports = {"smtp": free_port(), "sink": free_port()}
    if milter_too:
        ports["milter"] = free_port()
    return ports


def daemon(root: Path, ports: Mapping[str, int], extra: Mapping[str, str]) -> Daemon:
    return Daemon("mamori", [sys.executable, "-m", "gateway", "serve"], root / "serve.log",
                  env=serve_env(root, ports, extra), cwd=ROOT)


def ready(ports: Mapping[str, int]) -> bool:
    return all(tcp_open(p) for k, p in ports.items() if k != "sink")


# -- the next hop: a sink that remembers what mamori said about each client's message --------


class SinkHandler:
    def __init__(self) -> None:
        self.seen: dict[str, str] = {}  # recipient -> X-Mamori-Action

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        action = header_value(data, "X-Mamori-Action") or "missing"
        for r in envelope.rcpt_tos:
            self.seen[r.lower()] = action
        return "250 2.0.0 OK: sunk"


class _PermissiveSMTP(SMTP):
    """The sink takes lines of any length, as Postfix does (aiosmtpd's default is RFC 5321's
    1,000), so that a refusal is never the sink's doing."""

    line_length_limit = 1 << 20


async def start_sink(port: int) -> tuple[asyncio.base_events.Server, SinkHandler]:
    handler = SinkHandler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _PermissiveSMTP(handler, decode_data=False, data_size_limit=0, enable_SMTPUTF8=True,
                     hostname="sink.localhost", ident="perf-sink"),
        "127.0.0.1", port)
    return server, handler


# -- SMTP content filter ---------------------------------------------------------------------


def interpret_smtp(code: int, text: str, sink_action: str | None) -> Reply:
    """mamori's DATA reply (and, for 250, the X-Mamori-Action header the next hop got)."""
    if code == 550:
        return Reply(True, None, "reject")
    if code == 451 and text.startswith("4.7.1"):
        return Reply(True, None, "soft_reject")
    if code == 250 and "held" in text:
        return Reply(True, None, "quarantine")
    if code == 250:
        if sink_action is None:
            raise ValueError("mamori answered 250 but the next hop got nothing")
        if sink_action == "missing":
            raise ValueError("the relayed message lacks X-Mamori-Action")
        return Reply(sink_action != "accept", None, sink_action)
    raise ValueError(f"mamori answered {code} {text[:60]}")


class SmtpFilter:
    interface = "smtp"

    def __init__(self, port: int, sink: SinkHandler) -> None:
        self.port = port
        self.sink = sink
        self.conns: dict[int, aiosmtplib.SMTP] = {}

    async def _conn(self, cid: int) -> aiosmtplib.SMTP:
        c = self.conns.get(cid)
        if c is None or not c.is_connected:
            c = aiosmtplib.SMTP(hostname="127.0.0.1", port=self.port, timeout=120,
                                local_hostname="bench.localhost", start_tls=False, use_tls=False)
            await c.connect()
            self.conns[cid] = c
        return c

    async def send(self, cid: int, sample: Sample) -> Reply:
        rcpt = RCPT.format(cid=cid)
        self.sink.seen.pop(rcpt, None)
        c = await self._conn(cid)
        try:
            _errors, text = await c.sendmail(envelope_sender(sample.raw), [rcpt], sample.raw)
            code = 250
        except aiosmtplib.SMTPResponseException as exc:
            code, text = exc.code, exc.message
            with contextlib.suppress(aiosmtplib.SMTPException):
                await c.rset()
        except aiosmtplib.SMTPServerDisconnected:
            self.conns.pop(cid, None)
            raise
        return interpret_smtp(code, text, self.sink.seen.pop(rcpt, None))

    async def close(self) -> None:
        for c in self.conns.values():
            with contextlib.suppress(Exception):
                await c.quit()
        self.conns.clear()


# -- milter ------------------------------------------------------------------------------------


def interpret_milter(o: milter.MilterOutcome) -> Reply:
    if o.final == "reject" or (o.final == "replycode" and o.reply.startswith("5")):
        return Reply(True, None, "reject")
    if o.final == "tempfail" or (o.final == "replycode" and o.reply.startswith("4")):
        if "4.7.1" in o.reply or (o.final == "tempfail" and o.header("X-Mamori-Action")):
            return Reply(True, None, "soft_reject")
        raise ValueError(f"mamori milter answered tempfail {o.reply[:60]}")
    if o.quarantined or o.final == "discard":
        return Reply(True, None, "quarantine" if o.quarantined else "discard")
    action = o.header("X-Mamori-Action")
    if action is None:
        raise ValueError("mamori milter accepted without X-Mamori-Action")
    action = " ".join(action.split())
    return Reply(action != "accept", None, action)


# -- in process (what `mamori scan` does) -------------------------------------------------------


class InProcess:
    """`mamori scan --channel email`'s scoring in this process: Gateway.create with a null event
    sink and an in-memory policy store, then `pipeline.scan` per message."""

    interface = "inprocess"

    def __init__(self, data_dir: Path, extra: Mapping[str, str]) -> None:
        for k, v in {**offline_env(data_dir), **extra}.items():
            os.environ[k] = v
        os.environ["MAMORI_DATA_DIR"] = str(data_dir)
        from gateway.config import load_settings
        from gateway.events import NullSink
        from gateway.plugins import PluginEnv
        from gateway.runtime import Gateway
        from gateway.store.policy import MemoryPolicyStore

        settings = load_settings()
        self.gw = Gateway.create(settings, env=PluginEnv(settings), events=NullSink(),
                                 policies=MemoryPolicyStore())

    @property
    def checks(self) -> list[str]:
        return [c.name for c in self.gw.pipeline.checks]

    async def start(self) -> None:
        await self.gw.start()

    async def send(self, cid: int, sample: Sample) -> Reply:
        from gateway.message import Message

        v = await self.gw.pipeline.scan(Message.email(sample.raw))
        return Reply(v.is_spam, v.score, v.action.value)

    async def close(self) -> None:
        await self.gw.close()


def cpu_self() -> float:
    return time.process_time()


def describe(inproc: InProcess) -> dict[str, Any]:
    return {"checks": inproc.checks, "milter": has_milter()}
