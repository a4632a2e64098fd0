"""A minimal milter (sendmail/Postfix filter protocol, version 6) client over asyncio: what an
MTA does for one message on one milter connection. Drives mamori's milter and rspamd's proxy
in milter mode alike."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from perf.bench.corpus import Sample
from perf.bench.drive import Reply
from perf.bench.ingest import RCPT, envelope_sender, split_message

# commands (MTA -> milter)
C_OPTNEG, C_CONNECT, C_HELO, C_MAIL, C_RCPT = b"O", b"C", b"H", b"M", b"R"
C_HEADER, C_EOH, C_BODY, C_EOB, C_QUIT, C_MACRO = b"L", b"N", b"B", b"E", b"Q", b"D"
# replies (milter -> MTA)
R_ACCEPT, R_CONTINUE, R_REJECT, R_TEMPFAIL, R_DISCARD = b"a", b"c", b"r", b"t", b"d"
R_REPLYCODE, R_QUARANTINE, R_SKIP, R_PROGRESS = b"y", b"q", b"s", b"p"
R_ADDHEADER, R_INSHEADER, R_CHGHEADER = b"h", b"i", b"m"
FINAL = frozenset({R_ACCEPT, R_REJECT, R_TEMPFAIL, R_DISCARD, R_REPLYCODE})

VERSION = 6
ALL_ACTIONS = 0x1FF
# protocol flags: the steps a milter may ask us to skip (NO*) or not to await a reply for (NR_*)
P_NOCONNECT, P_NOHELO, P_NOMAIL, P_NORCPT, P_NOBODY, P_NOHDRS, P_NOEOH = (
    0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40)
P_NR_HDR, P_SKIP = 0x80, 0x400
P_NR_CONN, P_NR_HELO, P_NR_MAIL, P_NR_RCPT, P_NR_EOH, P_NR_BODY = (
    0x1000, 0x2000, 0x4000, 0x8000, 0x40000, 0x80000)
P_HDR_LEADSPC = 0x100000
OFFERED = (P_NOCONNECT | P_NOHELO | P_NOMAIL | P_NORCPT | P_NOBODY | P_NOHDRS | P_NOEOH | P_NR_HDR
           | P_SKIP | P_NR_CONN | P_NR_HELO | P_NR_MAIL | P_NR_RCPT | P_NR_EOH | P_NR_BODY)
CHUNK = 65535
MAX_PACKET = 64 * 1024 * 1024


class MilterError(RuntimeError):
    pass


@dataclass
class MilterOutcome:
    final: str  # accept, reject, tempfail, discard, replycode
    reply: str = ""  # the text of an 'y' reply (e.g. "550 5.7.1 ...")
    quarantined: bool = False
    headers: list[tuple[str, str]] = field(default_factory=list)  # added/changed header fields

    def header(self, name: str) -> str | None:
        """The last value the milter gave `name` (an empty change deletes a field: skipped)."""
        for n, v in reversed(self.headers):
            if n.lower() == name.lower() and v.strip():
                return v
        return None


def packet(cmd: bytes, data: bytes = b"") -> bytes:
    return struct.pack("!I", len(data) + 1) + cmd + data


async def read_packet(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    (n,) = struct.unpack("!I", await reader.readexactly(4))
    if not 1 <= n <= MAX_PACKET:
        raise MilterError(f"bad packet length {n}")
    data = await reader.readexactly(n)
    return data[:1], data[1:]


def _z(*parts: str | bytes) -> bytes:
    return b"".join((p.encode("utf-8", "surrogateescape") if isinstance(p, str) else p) + b"\0"
                    for p in parts)


_FINAL_NAMES = {R_ACCEPT: "accept", R_REJECT: "reject", R_TEMPFAIL: "tempfail",
                R_DISCARD: "discard", R_REPLYCODE: "replycode"}


async def check(host: str, port: int, raw: bytes, *, sender: str, recipient: str,
                client_ip: str = "127.0.0.1", helo: str = "bench.localhost",
                unix: str | None = None) -> MilterOutcome:
    """One connection, one message: negotiate, connect .. end of body; the milter's verdict.
    `unix`: connect to that unix socket path instead of host:port."""
    if unix is not None:
        reader, writer = await asyncio.open_unix_connection(unix)
    else:
        reader, writer = await asyncio.open_connection(host, port)
    out = MilterOutcome("accept")
    try:
        writer.write(packet(C_OPTNEG, struct.pack("!III", VERSION, ALL_ACTIONS, OFFERED)))
        await writer.drain()
        cmd, data = await read_packet(reader)
        if cmd != C_OPTNEG or len(data) < 12:
            raise MilterError(f"bad option negotiation reply {cmd!r}")
        _ver, _actions, proto = struct.unpack("!III", data[:12])
        headers, body = split_message(raw)

        async def step(cmd: bytes, payload: bytes, skip: int, noreply: int) -> bool:
            """Send one step unless skipped; True when the milter gave a final answer."""
            if proto & skip:
                return False
            writer.write(packet(cmd, payload))
            if proto & noreply:
                return False
            await writer.drain()
            return await replies(out, reader)

        macros = _z("j", "bench.localhost", "{daemon_name}", "bench", "v", "perf/compare")
        writer.write(packet(C_MACRO, C_CONNECT + macros))
        steps = [
            (C_CONNECT, _z("bench-client") + b"4" + struct.pack("!H", 25) + _z(client_ip),
             P_NOCONNECT, P_NR_CONN),
            (C_HELO, _z(helo), P_NOHELO, P_NR_HELO),
            (C_MAIL, _z(f"<{sender}>"), P_NOMAIL, P_NR_MAIL),
            (C_RCPT, _z(f"<{recipient}>"), P_NORCPT, P_NR_RCPT),
        ]
        steps += [(C_HEADER, _z(n, v), P_NOHDRS, P_NR_HDR) for n, v in headers]
        steps.append((C_EOH, b"", P_NOEOH, P_NR_EOH))
        for cmd, payload, skip, noreply in steps:
            if cmd == C_MAIL:
                writer.write(packet(C_MACRO, C_MAIL + _z("i", "BENCHQID")))
            if await step(cmd, payload, skip, noreply):
                return out
        if not proto & P_NOBODY:
            for i in range(0, len(body), CHUNK):
                if await step(C_BODY, body[i:i + CHUNK], 0, P_NR_BODY):
                    if out.final == "skip":
                        break
                    return out
        writer.write(packet(C_EOB))
        await writer.drain()
        out.final = "accept"
        await replies(out, reader, end_of_message=True)
        return out
    finally:
        try:
            writer.write(packet(C_QUIT))
            writer.close()
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def replies(out: MilterOutcome, reader: asyncio.StreamReader, *,
                  end_of_message: bool = False) -> bool:
    """Read replies up to continue/final; collect modifications. True if final."""
    while True:
        cmd, data = await read_packet(reader)
        if cmd == R_PROGRESS:
            continue
        if cmd == R_CONTINUE and not end_of_message:
            return False
        if cmd == R_SKIP:
            out.final = "skip"
            return True
        if cmd == R_QUARANTINE:
            out.quarantined = True
        elif cmd in (R_ADDHEADER, R_CHGHEADER, R_INSHEADER):
            if cmd != R_ADDHEADER:
                data = data[4:]  # index
            name, _, rest = data.partition(b"\0")
            out.headers.append((name.decode("utf-8", "replace"),
                                rest.rstrip(b"\0").decode("utf-8", "replace")))
        elif cmd in FINAL:
            out.final = _FINAL_NAMES[cmd]
            if cmd == R_REPLYCODE:
                out.reply = data.rstrip(b"\0").decode("utf-8", "replace")
            return True
        elif cmd == R_CONTINUE:  # at end of message, continue means accept
            out.final = "accept"
            return True
        # other modifications (body, recipients, from) are ignored by the benchmark


class Client:
    """A benchmark interface over `check`: one milter connection per message, the verdict read
    by the system's own `interpret`."""

    interface = "milter"

    def __init__(self, port: int, interpret: Callable[[MilterOutcome], Reply]) -> None:
        self.port = port
        self.interpret = interpret

    async def send(self, cid: int, sample: Sample) -> Reply:
        o = await check("127.0.0.1", self.port, sample.raw, sender=envelope_sender(sample.raw),
                        recipient=RCPT.format(cid=cid))
        return self.interpret(o)

    async def close(self) -> None:
        return None
