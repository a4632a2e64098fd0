"""The one message type for SMS and email, and the per-message scan context.

Ingress adapters translate their wire protocol into a `Message`; nothing past the ingress
knows about the wire. `ScanContext` carries what checks compute once and share (parsed MIME,
text, URLs, results of earlier checks).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from enum import StrEnum
from functools import cached_property, wraps
from typing import TYPE_CHECKING, Any, TypeVar

from gateway import limits
from gateway.ids import new_id

if TYPE_CHECKING:
    from gateway.policy import Policy
    from gateway.verdict import CheckResult


MIME_PARSE_LIMIT = 8 * 1024 * 1024
# ctx.data key of the extracted URLs (gateway.urls.extract.FoundUrl list), computed once
FOUND_URLS_KEY = "urls.found"


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"


@dataclass(frozen=True, slots=True)
class Peer:
    """The network peer that handed us the message (SMTP client, ESME, HTTP caller)."""

    ip: str | None = None
    port: int | None = None
    helo: str | None = None
    hostname: str | None = None


def new_message_id() -> str:
    return new_id()


@dataclass(frozen=True, slots=True)
class Message:
    """One message, SMS or email.

    - `sender`: envelope sender (MAIL FROM) or SMS originator (source_addr / sender ID).
    - `recipients`: envelope recipients or SMS destination numbers.
    - `subscriber`: whose protection policy applies (None: the default profile).
    - `headers`: email header fields in order (name, value); empty for SMS.
    - `body`: email body bytes as received (after the header block), or the SMS text as UTF-8.
    - `protocol`: wire metadata the checks may use (SMPP TON/NPI, data coding, milter macros,
      the authenticated account, the route).
    """

    channel: Channel
    sender: str = ""
    recipients: tuple[str, ...] = ()
    subscriber: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    peer: Peer = field(default_factory=Peer)
    protocol: Mapping[str, str] = field(default_factory=dict)
    id: str = field(default_factory=new_message_id)
    received_at: float = field(default_factory=time.time)
    # the header block exactly as received (with its blank line), for byte-exact consumers
    # such as DKIM c=simple; used by `raw()` only while `headers` is still the tuple it was
    # split into (a copy with other header fields rebuilds them)
    head: bytes | None = field(default=None, repr=False, compare=False)
    head_of: tuple[tuple[str, str], ...] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def sms(
        cls,
        text: str,
        *,
        sender: str = "",
        recipient: str = "",
        subscriber: str | None = None,
        protocol: Mapping[str, str] | None = None,
        peer: Peer | None = None,
        id: str | None = None,
    ) -> Message:
        return cls(
            channel=Channel.SMS,
            sender=sender,
            recipients=(recipient,) if recipient else (),
            subscriber=subscriber if subscriber is not None else (recipient or None),
            body=text.encode("utf-8", "surrogatepass"),
            protocol=dict(protocol or {}),
            peer=peer or Peer(),
            id=id or new_message_id(),
        )

    @classmethod
    def email(
        cls,
        raw: bytes,
        *,
        sender: str = "",
        recipients: Sequence[str] = (),
        subscriber: str | None = None,
        peer: Peer | None = None,
        protocol: Mapping[str, str] | None = None,
        id: str | None = None,
    ) -> Message:
        """Build an email message from raw RFC 5322 bytes (header block, blank line, body)."""
        headers, body = split_header_block(raw)
        if not sender:
            sender = _header_value(headers, "Return-Path").strip("<> ")
        head: bytes | None = raw[: len(raw) - len(body)] if body else raw
        if head and head.startswith(b"From ") and b"\n" in head:  # the mbox line is not mail
            head = head.split(b"\n", 1)[1]
        if head and not head.endswith(b"\n\n") and not head.endswith(b"\r\n\r\n"):
            head = None  # no blank line as received: raw() supplies one
        elif head and b"\r\n" not in head:
            head = head.replace(b"\n", b"\r\n")  # LF-only mail: CRLF, as rebuilt fields have
        return cls(
            channel=Channel.EMAIL,
            sender=sender,
            recipients=tuple(recipients),
            subscriber=subscriber if subscriber is not None else (recipients[0] if recipients else None),
            headers=headers,
            body=body,
            peer=peer or Peer(),
            protocol=dict(protocol or {}),
            id=id or new_message_id(),
            head=head,
            head_of=headers if head is not None else None,
        )

    @property
    def text(self) -> str:
        """SMS text (for email use `ScanContext.text`, which decodes MIME)."""
        return self.body.decode("utf-8", "replace")

    def raw(self) -> bytes:
        """The email as RFC 5322 bytes (headers as received, then the body)."""
        if self.head is not None and self.head_of is self.headers:
            return self.head + self.body
        head = b"".join(
            f"{name}: {value}\r\n".encode("utf-8", "surrogateescape") for name, value in self.headers
        )
        return head + b"\r\n" + self.body

    def header(self, name: str) -> str:
        return _header_value(self.headers, name)

    @property
    def size(self) -> int:
        return len(self.body) + _header_size(self.headers)


Headers = tuple[tuple[str, str], ...]
T = TypeVar("T")


def _for_last_headers(fn: Callable[[Headers], T]) -> Callable[[Headers], T]:
    """`fn(headers)`, remembered for the last header tuple asked about: the checks of a scan
    and its verdict line ask about the same message's header fields one after the other. Held
    by identity, and the tuple is kept alive with its answer, so a hit is that tuple; one
    (tuple, answer) pair, replaced whole (a reader in another thread sees one or the other)."""
    last: list[tuple[Headers | None, Any]] = [(None, None)]

    @wraps(fn)
    def get(headers: Headers) -> T:
        held, value = last[0]
        if held is headers:
            return value  # type: ignore[no-any-return]
        value = fn(headers)
        last[0] = (headers, value)
        return value

    return get


@_for_last_headers
def lower_names(headers: Headers) -> tuple[str, ...]:
    """The names of `headers` in lower case, in order."""
    return tuple([n.lower() for n, _v in headers])


@_for_last_headers
def _header_size(headers: Headers) -> int:
    """The characters of `headers` as "name: value\r\n" lines."""
    return sum(len(n) + len(v) + 4 for n, v in headers)


def _header_value(headers: Sequence[tuple[str, str]], name: str) -> str:
    lname = name.lower()
    for n, v in headers:
        if n.lower() == lname:
            return v
    return ""


def split_header_block(raw: bytes) -> tuple[tuple[tuple[str, str], ...], bytes]:
    """Split raw RFC 5322 bytes into unfolded-as-received header fields and the body.

    Tolerant of LF-only line ends, a missing body, a leading mbox "From " line and garbage:
    lines that are not header fields end the header block (as MTAs treat them).
    """
    if raw.startswith(b"From ") and b"\n" in raw:
        raw = raw.split(b"\n", 1)[1]
    headers: list[tuple[str, str]] = []
    pos = 0
    n = len(raw)
    cur_name: str | None = None
    cur_val: list[str] = []
    while pos < n:
        eol = raw.find(b"\n", pos)
        if eol < 0:
            eol = n
        line = raw[pos:eol]
        nxt = eol + 1
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:  # blank line: end of headers
            pos = nxt
            break
        if line[:1] in (b" ", b"\t") and cur_name is not None:
            cur_val.append(line.decode("utf-8", "surrogateescape"))
            pos = nxt
            continue
        colon = line.find(b":")
        if colon <= 0 or b" " in line[:colon].strip() or colon > 200:
            # not a header field: the body starts here
            break
        if cur_name is not None:
            headers.append((cur_name, "\r\n".join(cur_val)))
        cur_name = line[:colon].decode("ascii", "replace").strip()
        cur_val = [line[colon + 1 :].lstrip(b" \t").decode("utf-8", "surrogateescape")]
        pos = nxt
    else:
        pos = n
    if cur_name is not None:
        headers.append((cur_name, "\r\n".join(cur_val)))
    return tuple(headers), raw[pos:]


class ScanContext:
    """Per-message state shared by the checks of one scan: parsed forms of the message,
    the subscriber's policy, results of earlier checks, and data checks publish for their
    dependents. Checks must not mutate the `Message`."""

    def __init__(self, message: Message, policy: Policy, *, deadline: float | None = None) -> None:
        self.message = message
        self.policy = policy
        self.deadline = deadline
        self.results: dict[str, CheckResult] = {}
        self.data: dict[str, Any] = {}
        self.versions: dict[str, str] = {}
        self.extra_headers: list[tuple[str, str]] = []

    @property
    def channel(self) -> Channel:
        return self.message.channel

    def time_left(self) -> float:
        if self.deadline is None:
            return float("inf")
        return self.deadline - time.monotonic()

    @cached_property
    def mime(self) -> EmailMessage:
        """The email parsed with the standard library (tolerant: defects are recorded)."""
        raw = self.message.raw()
        parse_limit = limits.current().mime_parse_bytes  # MAMORI_LIMITS__MIME_PARSE_BYTES
        if len(raw) > parse_limit:  # content analysis reads the head of huge mail only
            raw = raw[:parse_limit]
            self.data["mime_truncated"] = True
        from gateway.mime import parse_message  # email.policy.default, headers parsed once

        return parse_message(raw)

    @cached_property
    def text_parts(self) -> tuple[str, str]:
        """(plain text, html) of an email, or (SMS text, "")."""
        if self.message.channel is Channel.SMS:
            return self.message.text, ""
        from gateway.mime import extract_text

        return extract_text(self.mime)

    @property
    def text(self) -> str:
        """The human-readable text: SMS text, or the email's subject plus its text parts."""
        if self.message.channel is Channel.SMS:
            return self.message.text
        plain, html = self.text_parts
        if not plain and html:
            from gateway.mime import html_to_text

            plain = html_to_text(html)
        return plain

    @cached_property
    def urls(self) -> tuple[str, ...]:
        """URLs found in the message text and HTML (deduplicated, in order of appearance)."""
        found = self.data.get(FOUND_URLS_KEY)
        if found is None:  # extracted once per message, shared with the URL check
            from gateway.urls.extract import extract_urls

            plain, html = self.text_parts
            found = extract_urls(plain, html=html)
            self.data[FOUND_URLS_KEY] = found
        return tuple(u.url for u in found)
