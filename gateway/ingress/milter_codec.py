"""The Sendmail milter protocol, version 6: packets, commands, replies, option negotiation.

A packet is a 4-byte big-endian length (counting the command byte), one command byte and the
data. Strings are NUL-terminated. This module only encodes and decodes; it knows nothing of
the gateway. `MilterClient` drives a milter as an MTA would (tests and perf/ use it).

References: libmilter's mfdef.h / mfapi.h (Sendmail 8.14+) and Postfix's milter8.c.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.errors import InputError

MILTER_VERSION = 6
# Postfix sends body chunks of at most 65535 bytes and header fields up to header_size_limit
# (100 KiB by default); nothing legitimate comes near this.
MAX_PACKET = 1024 * 1024

# -- commands (MTA -> milter) ------------------------------------------------------------
SMFIC_ABORT = b"A"
SMFIC_BODY = b"B"
SMFIC_CONNECT = b"C"
SMFIC_MACRO = b"D"
SMFIC_BODYEOB = b"E"
SMFIC_HELO = b"H"
SMFIC_QUIT_NC = b"K"
SMFIC_HEADER = b"L"
SMFIC_MAIL = b"M"
SMFIC_EOH = b"N"
SMFIC_OPTNEG = b"O"
SMFIC_QUIT = b"Q"
SMFIC_RCPT = b"R"
SMFIC_DATA = b"T"
SMFIC_UNKNOWN = b"U"

# -- replies and actions (milter -> MTA) -------------------------------------------------
SMFIR_ADDRCPT = b"+"
SMFIR_DELRCPT = b"-"
SMFIR_ADDRCPT_PAR = b"2"
SMFIR_SHUTDOWN = b"4"
SMFIR_ACCEPT = b"a"
SMFIR_REPLBODY = b"b"
SMFIR_CONTINUE = b"c"
SMFIR_DISCARD = b"d"
SMFIR_CHGFROM = b"e"
SMFIR_CONN_FAIL = b"f"
SMFIR_ADDHEADER = b"h"
SMFIR_INSHEADER = b"i"
SMFIR_SETSYMLIST = b"l"
SMFIR_CHGHEADER = b"m"
SMFIR_PROGRESS = b"p"
SMFIR_QUARANTINE = b"q"
SMFIR_REJECT = b"r"
SMFIR_SKIP = b"s"
SMFIR_TEMPFAIL = b"t"
SMFIR_REPLYCODE = b"y"

# -- action flags (what the milter may do at end of message) -----------------------------
SMFIF_ADDHDRS = 0x001
SMFIF_CHGBODY = 0x002
SMFIF_ADDRCPT = 0x004
SMFIF_DELRCPT = 0x008
SMFIF_CHGHDRS = 0x010
SMFIF_QUARANTINE = 0x020
SMFIF_CHGFROM = 0x040
SMFIF_ADDRCPT_PAR = 0x080
SMFIF_SETSYMLIST = 0x100

# -- protocol flags (steps the MTA may skip, replies it need not wait for) ---------------
SMFIP_NOCONNECT = 0x000001
SMFIP_NOHELO = 0x000002
SMFIP_NOMAIL = 0x000004
SMFIP_NORCPT = 0x000008
SMFIP_NOBODY = 0x000010
SMFIP_NOHDRS = 0x000020
SMFIP_NOEOH = 0x000040
SMFIP_NR_HDR = 0x000080
SMFIP_NOUNKNOWN = 0x000100
SMFIP_NODATA = 0x000200
SMFIP_SKIP = 0x000400
SMFIP_RCPT_REJ = 0x000800
SMFIP_NR_CONN = 0x001000
SMFIP_NR_HELO = 0x002000
SMFIP_NR_MAIL = 0x004000
SMFIP_NR_RCPT = 0x008000
SMFIP_NR_DATA = 0x010000
SMFIP_NR_UNKN = 0x020000
SMFIP_NR_EOH = 0x040000
SMFIP_NR_BODY = 0x080000
SMFIP_HDR_LEADSPC = 0x100000

# -- macro stages for the v6 macro request in option negotiation -------------------------
SMFIM_CONNECT = 0
SMFIM_HELO = 1
SMFIM_ENVFROM = 2
SMFIM_ENVRCPT = 3
SMFIM_DATA = 4
SMFIM_EOM = 5
SMFIM_EOH = 6

# which protocol flag turns off the reply to a command
NO_REPLY_FLAG = {
    SMFIC_CONNECT: SMFIP_NR_CONN,
    SMFIC_HELO: SMFIP_NR_HELO,
    SMFIC_MAIL: SMFIP_NR_MAIL,
    SMFIC_RCPT: SMFIP_NR_RCPT,
    SMFIC_DATA: SMFIP_NR_DATA,
    SMFIC_UNKNOWN: SMFIP_NR_UNKN,
    SMFIC_EOH: SMFIP_NR_EOH,
    SMFIC_BODY: SMFIP_NR_BODY,
    SMFIC_HEADER: SMFIP_NR_HDR,
}

# which protocol flag asks the MTA not to send a command at all
NOT_SENT_FLAG = {
    SMFIC_CONNECT: SMFIP_NOCONNECT,
    SMFIC_HELO: SMFIP_NOHELO,
    SMFIC_MAIL: SMFIP_NOMAIL,
    SMFIC_RCPT: SMFIP_NORCPT,
    SMFIC_DATA: SMFIP_NODATA,
    SMFIC_UNKNOWN: SMFIP_NOUNKNOWN,
    SMFIC_EOH: SMFIP_NOEOH,
    SMFIC_BODY: SMFIP_NOBODY,
    SMFIC_HEADER: SMFIP_NOHDRS,
}

# address families in SMFIC_CONNECT
FAMILY_UNKNOWN = b"U"
FAMILY_UNIX = b"L"
FAMILY_INET = b"4"
FAMILY_INET6 = b"6"

_LEN = struct.Struct(">I")
_OPTNEG = struct.Struct(">III")


class MilterProtocolError(InputError):
    """The peer broke the milter protocol (bad length, truncated or malformed packet)."""


# -- packets -----------------------------------------------------------------------------


def encode(cmd: bytes, data: bytes = b"") -> bytes:
    """One packet: length, command byte, data."""
    return _LEN.pack(len(data) + 1) + cmd + data


async def read_packet(reader: asyncio.StreamReader, max_size: int = MAX_PACKET) -> tuple[bytes, bytes] | None:
    """The next (command, data), or None at a clean end of stream (EOF between packets).

    Raises MilterProtocolError for a zero or oversized length and for a stream that ends
    inside a packet."""
    try:
        head = await reader.readexactly(4)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise MilterProtocolError("stream ended inside a packet length") from None
    (length,) = _LEN.unpack(head)
    if length == 0:
        raise MilterProtocolError("packet of length 0")
    if length > max_size:
        raise MilterProtocolError(f"packet of {length} bytes exceeds {max_size}")
    try:
        packet = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise MilterProtocolError("stream ended inside a packet") from None
    return packet[:1], packet[1:]


class PacketDecoder:
    """Incremental decoder for callers that receive bytes in arbitrary pieces (the milter
    session reads whatever the socket has and decodes every packet in it at once).

    Packets wholly inside one `feed` are sliced straight out of it (one copy of each body
    chunk); only a packet split across reads is assembled in the buffer."""

    def __init__(self, max_size: int = MAX_PACKET) -> None:
        self._buf = bytearray()
        self.max_size = max_size
        # a bad packet after good ones in the same read: the good ones are returned first,
        # this is raised by `check` (or the next `feed`)
        self.error: MilterProtocolError | None = None

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def _length(self, data: bytes | bytearray, off: int) -> int:
        (length,) = _LEN.unpack_from(data, off)
        if length == 0:
            raise MilterProtocolError("packet of length 0")
        if length > self.max_size:
            raise MilterProtocolError(f"packet of {length} bytes exceeds {self.max_size}")
        return int(length)

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self.check()
        out: list[tuple[bytes, bytes]] = []
        try:
            self._decode(data, out)
        except MilterProtocolError as exc:
            if not out:
                raise
            self.error = exc
        return out

    def _decode(self, data: bytes, out: list[tuple[bytes, bytes]]) -> None:
        if self._buf:  # complete the packet begun in an earlier read first
            buf = self._buf
            if len(buf) < 4:
                take = 4 - len(buf)
                buf += data[:take]
                data = data[take:]
                if len(buf) < 4:
                    return
            need = 4 + self._length(buf, 0) - len(buf)
            buf += data[:need]
            data = data[need:]
            if len(buf) < 4 + self._length(buf, 0):
                return
            out.append((bytes(buf[4:5]), bytes(buf[5:])))
            self._buf = bytearray()
        off, end = 0, len(data)
        unpack, max_size, append = _LEN.unpack_from, self.max_size, out.append
        while end - off >= 4:
            (length,) = unpack(data, off)
            if not 0 < length <= max_size:
                self._length(data, off)  # raises what is wrong with it
            if end - off < 4 + length:
                break
            append((data[off + 4 : off + 5], data[off + 5 : off + 4 + length]))
            off += 4 + length
        if off < end:
            self._buf = bytearray(data[off:])

    @property
    def pending(self) -> int:
        return len(self._buf)


# -- field decoding ----------------------------------------------------------------------


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def split_strings(data: bytes) -> list[str]:
    """NUL-terminated strings; a missing final NUL is tolerated (Postfix always sends it)."""
    if not data:
        return []
    if data.endswith(b"\0"):
        data = data[:-1]
    return [_text(p) for p in data.split(b"\0")]


@dataclass(frozen=True, slots=True)
class OptNeg:
    version: int
    actions: int
    protocol: int
    # v6: macros the milter asks for, by stage (SMFIM_*) -> space-separated names
    macros: Mapping[int, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        out = bytearray(_OPTNEG.pack(self.version, self.actions, self.protocol))
        for stage, names in sorted(self.macros.items()):
            out += _LEN.pack(stage) + names.encode("ascii") + b"\0"
        return encode(SMFIC_OPTNEG, bytes(out))


def parse_optneg(data: bytes) -> OptNeg:
    if len(data) < _OPTNEG.size:
        raise MilterProtocolError("option negotiation shorter than 12 bytes")
    version, actions, protocol = _OPTNEG.unpack_from(data)
    macros: dict[int, str] = {}
    rest = data[_OPTNEG.size :]
    while len(rest) >= 4:
        (stage,) = _LEN.unpack_from(rest)
        end = rest.find(b"\0", 4)
        if end < 0:
            raise MilterProtocolError("unterminated macro list in option negotiation")
        macros[stage] = rest[4:end].decode("ascii", "replace")
        rest = rest[end + 1 :]
    return OptNeg(version, actions, protocol, macros)


@dataclass(frozen=True, slots=True)
class Connect:
    hostname: str
    family: bytes
    port: int | None
    address: str | None


def parse_connect(data: bytes) -> Connect:
    end = data.find(b"\0")
    if end < 0 or end + 1 >= len(data):
        raise MilterProtocolError("malformed connect")
    hostname = _text(data[:end])
    family = data[end + 1 : end + 2]
    if family == FAMILY_UNKNOWN:
        return Connect(hostname, family, None, None)
    rest = data[end + 2 :]
    if len(rest) < 3:
        raise MilterProtocolError("malformed connect address")
    port = int.from_bytes(rest[:2], "big")
    address = _text(rest[2:].rstrip(b"\0"))
    if family == FAMILY_UNIX:
        return Connect(hostname, family, None, address)
    if family not in (FAMILY_INET, FAMILY_INET6):
        raise MilterProtocolError("unknown address family in connect")
    return Connect(hostname, family, port, address)


def parse_macros(data: bytes) -> tuple[bytes, dict[str, str]]:
    """SMFIC_MACRO: (the command they belong to, {name: value}); braces are stripped."""
    if not data:
        raise MilterProtocolError("empty macro packet")
    parts = split_strings(data[1:])
    out: dict[str, str] = {}
    for i in range(0, len(parts) - 1, 2):
        name = parts[i].strip()
        if name.startswith("{") and name.endswith("}"):
            name = name[1:-1]
        if name:
            out[name] = parts[i + 1]
    return data[:1], out


def parse_header(data: bytes) -> tuple[str, str]:
    """name NUL value NUL (the final NUL may be missing), as `split_strings` would give: two
    strings, the name not empty. (One split, then the shapes that are two strings: the value
    followed by the final NUL, or by nothing when the value is not empty.)"""
    parts = data.split(b"\0")
    n = len(parts)
    if ((n == 3 and not parts[2]) or (n == 2 and parts[1])) and parts[0]:
        return parts[0].decode("utf-8", "surrogateescape"), parts[1].decode("utf-8", "surrogateescape")
    raise MilterProtocolError("malformed header")


def strip_angle(addr: str) -> str:
    a = addr.strip()
    if a.startswith("<") and a.endswith(">"):
        a = a[1:-1]
    return a


# -- replies -----------------------------------------------------------------------------

CONTINUE = encode(SMFIR_CONTINUE)
ACCEPT = encode(SMFIR_ACCEPT)
TEMPFAIL = encode(SMFIR_TEMPFAIL)
REJECT = encode(SMFIR_REJECT)
SKIP = encode(SMFIR_SKIP)


def _z(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape").replace(b"\0", b"") + b"\0"


def add_header(name: str, value: str) -> bytes:
    return encode(SMFIR_ADDHEADER, _z(name) + _z(value))


def insert_header(index: int, name: str, value: str) -> bytes:
    return encode(SMFIR_INSHEADER, _LEN.pack(index) + _z(name) + _z(value))


def change_header(index: int, name: str, value: str) -> bytes:
    """Change the index-th (1-based) occurrence of the header; an empty value deletes it."""
    return encode(SMFIR_CHGHEADER, _LEN.pack(index) + _z(name) + _z(value))


def delete_recipient(rcpt: str) -> bytes:
    return encode(SMFIR_DELRCPT, _z(f"<{strip_angle(rcpt)}>"))


def quarantine(reason: str) -> bytes:
    return encode(SMFIR_QUARANTINE, _z(reason or "mamori"))


def reply_code(code: str) -> bytes:
    """SMFIR_REPLYCODE: 'NNN X.Y.Z text' on one line. MTAs treat % specially: it is dropped."""
    text = code.replace("\r", " ").replace("\n", " ").replace("%", "")
    if len(text) < 5 or not text[:3].isdigit() or text[0] not in "45" or text[3] != " ":
        raise ValueError(f"invalid SMTP reply {code!r}")
    return encode(SMFIR_REPLYCODE, _z(text))


# -- the MTA side: encoders and a small client (tests, perf) -----------------------------


def encode_connect(hostname: str, address: str | None, port: int = 0,
                   family: bytes | None = None) -> bytes:
    if address is None:
        return encode(SMFIC_CONNECT, _z(hostname) + FAMILY_UNKNOWN)
    fam = family or (FAMILY_INET6 if ":" in address else FAMILY_INET)
    return encode(SMFIC_CONNECT, _z(hostname) + fam + port.to_bytes(2, "big") + _z(address))


def encode_macros(cmd: bytes, macros: Mapping[str, str]) -> bytes:
    body = b"".join(_z(k if len(k) == 1 else "{" + k + "}") + _z(v) for k, v in macros.items())
    return encode(SMFIC_MACRO, cmd + body)


def encode_strings(cmd: bytes, values: Iterable[str]) -> bytes:
    return encode(cmd, b"".join(_z(v) for v in values))


@dataclass
class MilterResult:
    """What a milter answered for one message, as an MTA sees it."""

    final: bytes = b""  # the last reply command (a, c, t, r, d or y)
    reply: str = ""  # the SMFIR_REPLYCODE text, if any
    added_headers: list[tuple[str, str]] = field(default_factory=list)
    changed_headers: list[tuple[int, str, str]] = field(default_factory=list)
    deleted_recipients: list[str] = field(default_factory=list)
    quarantine: str | None = None
    early: bytes | None = None  # a non-continue reply before end of message


# every action/protocol flag an MTA (Postfix 3.x) offers
ALL_ACTIONS = 0x1FF
ALL_PROTOCOL = 0x1FFFFF


class MilterClient:
    """Speaks the MTA side of the protocol over one connection (several messages in turn)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.negotiated: OptNeg | None = None

    @classmethod
    async def open(cls, address: str, *, actions: int = ALL_ACTIONS,
                   protocol: int = ALL_PROTOCOL) -> MilterClient:
        if address.startswith("unix:"):
            reader, writer = await asyncio.open_unix_connection(address[5:])
        else:
            host, _, port = address.rpartition(":")
            reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
        client = cls(reader, writer)
        await client.negotiate(actions, protocol)
        return client

    async def negotiate(self, actions: int, protocol: int) -> OptNeg:
        self.writer.write(OptNeg(MILTER_VERSION, actions, protocol).encode())
        pkt = await read_packet(self.reader)
        if pkt is None or pkt[0] != SMFIC_OPTNEG:
            raise MilterProtocolError("no option negotiation reply")
        self.negotiated = parse_optneg(pkt[1])
        return self.negotiated

    def _expects_reply(self, cmd: bytes) -> bool:
        assert self.negotiated is not None
        flag = NO_REPLY_FLAG.get(cmd)
        return not (flag and self.negotiated.protocol & flag)

    def _wants(self, cmd: bytes) -> bool:
        """Whether the milter wants `cmd` sent at all (an MTA leaves out the SMFIP_NO* steps)."""
        assert self.negotiated is not None
        return not self.negotiated.protocol & NOT_SENT_FLAG.get(cmd, 0)

    async def command(self, packet: bytes) -> bytes | None:
        """Send one command; return its reply command byte (None if none is expected)."""
        self.writer.write(packet)
        if not self._expects_reply(packet[4:5]):
            return None
        await self.writer.drain()
        pkt = await read_packet(self.reader)
        if pkt is None:
            raise ConnectionResetError("milter closed the connection")
        return pkt[0]

    async def connect(self, hostname: str, address: str | None, port: int = 0,
                      macros: Mapping[str, str] | None = None) -> bytes | None:
        if macros:
            self.writer.write(encode_macros(SMFIC_CONNECT, macros))
        return await self.command(encode_connect(hostname, address, port))

    async def message(
        self,
        sender: str,
        recipients: Sequence[str],
        headers: Sequence[tuple[str, str]],
        body: bytes,
        *,
        helo: str | None = None,
        macros: Mapping[bytes, Mapping[str, str]] | None = None,
        chunk: int = 65535,
    ) -> MilterResult:
        """One SMTP transaction (HELO if given, MAIL, RCPTs, DATA, headers, body, EOM)."""
        macros = macros or {}
        res = MilterResult()

        async def step(cmd: bytes, packet: bytes) -> bool:
            if not self._wants(cmd):
                return True
            if cmd in macros:
                self.writer.write(encode_macros(cmd, macros[cmd]))
            r = await self.command(packet)
            if r is not None and r != SMFIR_CONTINUE:
                res.early = r
                return False
            return True

        if helo is not None and not await step(SMFIC_HELO, encode_strings(SMFIC_HELO, [helo])):
            return res
        if not await step(SMFIC_MAIL, encode_strings(SMFIC_MAIL, [f"<{sender}>"])):
            return res
        for rcpt in recipients:
            if not await step(SMFIC_RCPT, encode_strings(SMFIC_RCPT, [f"<{rcpt}>"])):
                return res
        if not await step(SMFIC_DATA, encode(SMFIC_DATA)):
            return res
        for name, value in headers:
            if not await step(SMFIC_HEADER, encode_strings(SMFIC_HEADER, [name, value])):
                return res
        if not await step(SMFIC_EOH, encode(SMFIC_EOH)):
            return res
        for i in range(0, len(body) if self._wants(SMFIC_BODY) else 0, chunk):
            r = await self.command(encode(SMFIC_BODY, body[i : i + chunk]))
            if r == SMFIR_SKIP:
                break
            if r is not None and r != SMFIR_CONTINUE:
                res.early = r
                return res
        if SMFIC_BODYEOB in macros:
            self.writer.write(encode_macros(SMFIC_BODYEOB, macros[SMFIC_BODYEOB]))
        self.writer.write(encode(SMFIC_BODYEOB))
        await self.writer.drain()
        while True:
            pkt = await read_packet(self.reader)
            if pkt is None:
                raise ConnectionResetError("milter closed the connection at end of message")
            cmd, data = pkt
            if cmd == SMFIR_ADDHEADER:
                name, value = parse_header(data)
                res.added_headers.append((name, value))
            elif cmd == SMFIR_CHGHEADER:
                (index,) = _LEN.unpack_from(data)
                name, value = parse_header(data[4:])
                res.changed_headers.append((index, name, value))
            elif cmd == SMFIR_DELRCPT:
                res.deleted_recipients.append(strip_angle(split_strings(data)[0]))
            elif cmd == SMFIR_QUARANTINE:
                res.quarantine = split_strings(data)[0] if data else ""
            elif cmd == SMFIR_PROGRESS:
                continue
            elif cmd == SMFIR_REPLYCODE:
                res.final = cmd
                res.reply = split_strings(data)[0]
                return res
            else:
                res.final = cmd
                return res

    async def abort(self) -> None:
        self.writer.write(encode(SMFIC_ABORT))
        await self.writer.drain()

    async def close(self) -> None:
        try:
            self.writer.write(encode(SMFIC_QUIT))
            await self.writer.drain()
        except (ConnectionError, RuntimeError):
            pass
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
