"""rspamd (Debian's 3.4) offline, in a private directory, driven through HTTP /checkv2 on its
normal worker (and its milter proxy when asked).

Offline means: every module that does DNS, fuzzy or other network lookups, or learns by itself,
is switched off in a private `local.d`; the resolver points at a closed loopback port so that a
stray lookup fails at once instead of leaving the machine. No redis, no controller.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import orjson

from perf.bench import milter
from perf.bench.corpus import Sample
from perf.bench.drive import Reply
from perf.bench.procs import Daemon, free_port, tcp_open

PACKAGES = ("rspamd",)
CONFDIR = Path("/etc/rspamd")
USER = "_rspamd"

# modules that do DNS/fuzzy/network lookups, need redis, or train themselves
OFFLINE_DISABLED = (
    "hfilter", "once_received", "neural", "rbl", "surbl", "emails", "spf", "dkim", "dmarc", "arc",
    "asn", "fuzzy_check", "mx_check", "url_redirector", "greylist", "ratelimit", "replies",
    "reputation", "dcc", "rspamd_update", "history_redis", "bimi", "p0f", "external_services",
    "antivirus", "spamtrap", "dkim_signing", "clickhouse", "elastic", "metric_exporter",
)

# what counts as "flagged" at rspamd's default thresholds (actions.conf: add header 6,
# rewrite subject 8 (unset by default), reject 15); greylist and soft reject only delay mail
SPAM_ACTIONS = frozenset({"add header", "rewrite subject", "reject"})
THRESHOLD = "action in {add header (>=6), rewrite subject, reject (>=15)}"

TOP_CONF = """\
# Written by perf/compare: rspamd with the packaged rules, private state, offline.
.include "$CONFDIR/common.conf"

options {
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}

logging {
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    .include "$CONFDIR/logging.inc"
}

worker "normal" {
    bind_socket = "127.0.0.1:%(port)d";
    .include "$CONFDIR/worker-normal.inc"
    count = %(workers)d;
}
%(proxy)s"""

PROXY_CONF = """
worker "rspamd_proxy" {
    bind_socket = "127.0.0.1:%(port)d";
    milter = yes;
    timeout = 120s;
    count = %(workers)d;
    upstream "local" {
        default = yes;
        self_scan = yes;
    }
}
"""

OPTIONS_INC = """\
# no network: a stray DNS lookup goes to a closed loopback port and fails at once
dns {
    nameserver = ["127.0.0.1:%(dead_port)d"];
    timeout = 0.2s;
    retransmits = 1;
}
"""


def version() -> str:
    try:
        out = subprocess.run(["rspamd", "--version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return "?"
    return out.stdout.strip().splitlines()[0].split()[-1] if out.stdout.strip() else "?"


def configure(root: Path, *, workers: int, milter: bool) -> dict[str, int]:
    """Write the private configuration under `root`; returns the ports."""
    if root.exists():
        shutil.rmtree(root)
    etc = root / "etc"
    (etc / "local.d").mkdir(parents=True)
    for d in ("db", "run", "log"):
        (root / d).mkdir()
        shutil.chown(root / d, USER, USER)
    ports = {"normal": free_port(), "dead_dns": free_port()}
    proxy = ""
    if milter:
        ports["milter"] = free_port()
        proxy = PROXY_CONF % {"port": ports["milter"], "workers": workers}
    (etc / "rspamd.conf").write_text(
        TOP_CONF % {"port": ports["normal"], "workers": workers, "proxy": proxy})
    (etc / "local.d" / "options.inc").write_text(OPTIONS_INC % {"dead_port": ports["dead_dns"]})
    for mod in OFFLINE_DISABLED:
        (etc / "local.d" / f"{mod}.conf").write_text("enabled = false;\n")
    # phishing stays (local maps) but without its per-URL DNS lookups at phishtank.rspamd.com
    (etc / "local.d" / "phishing.conf").write_text("phishtank_enabled = false;\n")
    # the bayes classifier needs redis, which we do not run
    (etc / "local.d" / "classifier-bayes.conf").write_text("enabled = false;\n")
    root.chmod(0o755)
    return ports


def daemon(root: Path) -> Daemon:
    argv = [
        "rspamd", "-f", "-u", USER, "-g", USER, "-c", str(root / "etc" / "rspamd.conf"),
        "--var", f"CONFDIR={CONFDIR}", "--var", f"LOCAL_CONFDIR={root / 'etc'}",
        "--var", f"DBDIR={root / 'db'}", "--var", f"RUNDIR={root / 'run'}",
        "--var", f"LOGDIR={root / 'log'}",
    ]
    return Daemon("rspamd", argv, root / "log" / "stdout.log")


class HttpClient:
    """A minimal HTTP/1.1 keep-alive client, one connection per benchmark client."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conns: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}

    async def post(self, cid: int, path: str, body: bytes) -> tuple[int, bytes]:
        for attempt in (0, 1):
            conn = self.conns.get(cid)
            if conn is None:
                conn = await asyncio.open_connection("127.0.0.1", self.port)
                self.conns[cid] = conn
            reader, writer = conn
            try:
                writer.write(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                await writer.drain()
                status, headers, data = await read_response(reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                await self._drop(cid)
                if attempt:
                    raise
                continue
            if headers.get("connection", "").lower() == "close":
                await self._drop(cid)
            return status, data
        raise ConnectionError("unreachable")

    async def _drop(self, cid: int) -> None:
        conn = self.conns.pop(cid, None)
        if conn is not None:
            conn[1].close()

    async def close(self) -> None:
        for cid in list(self.conns):
            await self._drop(cid)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ValueError(f"bad HTTP status line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            chunk = await reader.readexactly(size + 2)
            body += chunk[:-2]
            if size == 0:
                break
    else:
        body = await reader.read()
        headers["connection"] = "close"
    return int(parts[1]), headers, body


def parse_check_reply(status: int, body: bytes) -> Reply:
    """The /checkv2 JSON reply -> Reply (flagged by the action at rspamd's defaults)."""
    if status != 200:
        raise ValueError(f"rspamd answered HTTP {status}: {body[:120]!r}")
    obj = orjson.loads(body)
    if not isinstance(obj, dict) or "action" not in obj:
        raise ValueError(f"unexpected rspamd reply {body[:120]!r}")
    action = str(obj["action"])
    return Reply(action in SPAM_ACTIONS, float(obj.get("score", 0.0)), action)


class CheckV2:
    interface = "checkv2"

    def __init__(self, port: int) -> None:
        self.http = HttpClient(port)

    async def send(self, cid: int, sample: Sample) -> Reply:
        status, body = await self.http.post(cid, "/checkv2", sample.raw)
        return parse_check_reply(status, body)

    async def close(self) -> None:
        await self.http.close()


def ready(port: int) -> bool:
    """The normal worker answers /ping."""
    if not tcp_open(port):
        return False

    async def ping() -> bool:
        c = HttpClient(port)
        try:
            status, _body = await c.post(0, "/ping", b"")
            return status == 200
        except Exception:
            return False
        finally:
            await c.close()

    return asyncio.run(ping())


def interpret_milter(o: milter.MilterOutcome) -> Reply:
    """rspamd's proxy in milter mode: reject -> 5xx; add header -> `X-Spam: Yes`; rewrite
    subject -> a changed Subject; soft reject/greylist -> 4xx (a delay, not a verdict)."""
    if o.final == "reject" or (o.final == "replycode" and o.reply.startswith("5")):
        return Reply(True, None, "reject")
    if o.final == "tempfail" or (o.final == "replycode" and o.reply.startswith("4")):
        return Reply(False, None, "soft reject")
    if (o.header("X-Spam") or "").strip().lower() == "yes":
        return Reply(True, None, "add header")
    if o.header("Subject") is not None:
        return Reply(True, None, "rewrite subject")
    return Reply(False, None, "no action")
