"""Tolerant MIME helpers: text extraction that never raises on broken mail."""

from __future__ import annotations

import email.utils
import html
import re
from collections.abc import Callable
from email.headerregistry import HeaderRegistry, ParameterizedMIMEHeader, UnstructuredHeader
from email.message import EmailMessage, Message
from email.policy import EmailPolicy
from typing import Any

from gateway import limits

MAX_PARTS = 200  # defaults; MAMORI_LIMITS__MIME_MAX_PARTS and __MIME_MAX_DEPTH apply
MAX_DEPTH = 20
MAX_TEXT = 2_000_000

_TAG_RE = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->|<[^>]{0,2000}>", re.S | re.I)
_WS_RE = re.compile(r"[ \t\r\f\v]+")


def html_to_text(markup: str) -> str:
    text = _TAG_RE.sub(" ", markup[:MAX_TEXT])
    text = html.unescape(text)
    return _WS_RE.sub(" ", text).strip()


def _decode_part(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # broken transfer encoding: take the raw payload
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except (LookupError, ValueError):
        return payload.decode("latin-1", "replace")


def extract_text(msg: EmailMessage) -> tuple[str, str]:
    """Return (plain text, html) of a message: subject and text/plain parts, and text/html parts.

    Bounded in depth, part count and size; malformed structure yields what could be read.
    """
    plain: list[str] = []
    htmls: list[str] = []
    try:
        subject = str(msg.get("Subject", "") or "")
    except Exception:
        subject = ""
    if subject:
        plain.append(subject)
    lim = limits.current()
    max_parts, max_depth = lim.mime_max_parts, lim.mime_max_depth
    count = 0
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack and count < max_parts:
        part, depth = stack.pop()
        count += 1
        try:
            if part.is_multipart():
                if depth < max_depth:
                    payload = part.get_payload()
                    if isinstance(payload, list):
                        stack.extend(
                            (p, depth + 1) for p in reversed(payload) if isinstance(p, Message)
                        )
                continue
            ctype = part.get_content_type()
        except Exception:
            continue
        if ctype == "text/html":
            htmls.append(_decode_part(part))
        elif ctype.startswith("text/") or ctype == "message/rfc822":
            plain.append(_decode_part(part))
    return "\n".join(plain)[:MAX_TEXT], "\n".join(htmls)[:MAX_TEXT]


# -- parsing policy --------------------------------------------------------------------------


_HEADER_CACHE: dict[tuple[str, str], object] = {}
# cleared when full at MAMORI_LIMITS__HEADER_CACHE_SIZE entries: each costs about 5 KB (the
# standard library builds a class per parsed header; the former bound of 20,000 let it reach
# ~100 MB before clearing, the soak's main memory growth)


class _CachingPolicy(EmailPolicy):
    """`email.policy.default`, except that a parsed header field is built once per distinct
    (name, raw value) instead of on every `msg.get(...)` (the standard library re-parses
    Content-Type for each `get_content_type()`, `get_param()`, ... of each part). Header objects
    are immutable, so sharing them changes nothing but the cost."""

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if hasattr(value, "name"):
            return value
        key = (name, value)
        hit = _HEADER_CACHE.get(key)
        if hit is None:
            hit = super().header_fetch_parse(name, value)
            if len(_HEADER_CACHE) >= limits.current().header_cache_size:
                _HEADER_CACHE.clear()
            _HEADER_CACHE[key] = hit
        return hit


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, except that (1) the class of a header field is built once
    per kind, not once per parsed field (`HeaderRegistry.__getitem__` creates a new class on
    each call: ~10 us and ~5 KB), and (2) an unstructured field whose text is known without
    parsing (see `_plain_value`) is parsed only when more than its text is asked of it. Header
    objects behave the same; only their classes are shared."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[type, type] = {}
        self._lazy: dict[type, type[_LazyHeader] | None] = {}  # made class -> its lazy variant, if any

    def __getitem__(self, name: str) -> Any:
        cls = self.registry.get(name.lower(), self.default_class)
        made = self._classes.get(cls)
        if made is None:
            bases: tuple[type, ...] = (cls, self.base_class)
            if issubclass(cls, ParameterizedMIMEHeader):
                bases = (_DeferredDefects, *bases)
            made = self._classes[cls] = type("_" + cls.__name__, bases, {})
            self._lazy[made] = (type(made.__name__, (_LazyHeader, made), {})
                                if issubclass(cls, UnstructuredHeader) else None)
        return made

    def __call__(self, name: str, value: str) -> Any:
        cls = self[name]
        lazy = self._lazy[cls]
        if lazy is not None and _plain_value(value):
            return lazy.known(name, value, cls)
        return cls(name, value)


_sanitize: Callable[[str], str] = email.utils._sanitize  # type: ignore[attr-defined]


class _DeferredDefects:
    """Content-Type and Content-Disposition fields as the standard classes make them, except
    that the defects of the parse tree are collected when `defects` is first read (walking
    the tree for them was most of the cost of parsing a Content-Type, and the scan never reads
    them). `parse` is `ParameterizedMIMEHeader.parse` without that one line."""

    _defects: list[Any]
    _parse_tree: Any

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        kwds["parse_tree"] = parse_tree = cls.value_parser(value)  # type: ignore[attr-defined]
        kwds["decoded"] = str(parse_tree)
        if parse_tree.params is None:
            kwds["params"] = {}
        else:  # (parameter order is arbitrary in MIME)
            kwds["params"] = {_sanitize(name).lower(): _sanitize(v)
                              for name, v in parse_tree.params}

    @property
    def defects(self) -> tuple[Any, ...]:
        d = self.__dict__
        if "_defects_collected" not in d:
            d["_defects_collected"] = True
            self._defects.extend(self._parse_tree.all_defects)
        return tuple(self._defects)


class _LazyHeader(str):
    """A parsed header field whose text is its value as received: built without parsing;
    the first access to anything parsed (defects, params, the parse tree, ...) parses the
    value with the standard class and takes over what that set (the same attributes)."""

    @classmethod
    def known(cls, name: str, value: str, full: type) -> Any:
        self = str.__new__(cls, value)
        self.__dict__["_lazy"] = (name, value, full)
        return self

    def __getattr__(self, attr: str) -> Any:
        d = self.__dict__
        pending = d.pop("_lazy", None)
        if pending is None or attr.startswith("__"):
            raise AttributeError(attr)
        name, value, full = pending
        parsed = full(name, value)
        d.update(parsed.__dict__)
        return getattr(self, attr)


def _plain_value(value: str) -> bool:
    """Whether the standard parse of an unstructured field's `value` (Subject, ...) has
    `value` itself as its text: ASCII without an encoded word ("=?"). (A structured field's
    text is rebuilt by its parser, e.g. Content-Type parameters quoted: not known before.)"""
    return value.isascii() and "=?" not in value


PARSE_POLICY = _CachingPolicy(header_factory=_HeaderClasses())


# One header field as the feed parser reads it: a name of printable ASCII other than ":" (its
# `headerRE`), the colon, the rest of the line, and the continuation lines (starting with a
# space or a tab). Lines end in CRLF, CR or LF, as the parser splits them.
_FIELD_RE = re.compile(r"[\041-\071\073-\176]+:[^\r\n]*(?:\r\n|\r|\n)(?:[ \t][^\r\n]*(?:\r\n|\r|\n))*")


def _parse_head(head: str) -> EmailMessage | None:
    """The feed parser's message of a header block `head` ending in CRLF CRLF, when every line
    up to that blank line is a header field or a continuation of one (None otherwise: a unix
    From line, a line that is not a field, a stray blank line, ... are left to the parser).
    Such a block gives no defect, and each field is `header_source_parse` of its lines (the
    name before the first colon; the value with the first line's leading blanks and the last
    line end stripped), kept as received in the order received."""
    fields = _FIELD_RE.findall(head)
    if sum(map(len, fields)) != len(head) - 2:  # (the fields run up to the blank line)
        return None
    msg = EmailMessage(PARSE_POLICY)
    for field in fields:
        name, value = field.split(":", 1)
        msg.set_raw(name, value.lstrip(" \t").rstrip("\r\n"))
    msg.set_payload("")  # (what the parser sets when nothing follows the blank line)
    return msg


def parse_message(raw: bytes) -> EmailMessage:
    """`email.message_from_bytes(raw, policy=PARSE_POLICY)`, the same message, defects and
    all. A single-part message (most mail) is not read line by line after its header block:
    the feed parser would only join its lines back into the payload. So the header block
    (up to the first empty line, CRLF CRLF) is parsed alone (by `_parse_head` when it is
    plain fields, else by the feed parser), and when that parse ended exactly there (nothing
    left over) and the type is neither multipart nor message, the rest becomes the payload as
    the parser would have made it (bytes decoded as ASCII with surrogateescape). Anything else
    is parsed whole."""
    end = raw.find(b"\r\n\r\n")
    if end >= 0:
        text = raw[: end + 4].decode("ascii", "surrogateescape")
        head: Message | None = _parse_head(text)
        if head is None:
            head = email.message_from_string(text, policy=PARSE_POLICY)
            alone = head.get_payload() == "" and not head.is_multipart()
        else:
            alone = True  # (all of the block was fields)
        if alone and head.get_content_maintype() not in ("multipart", "message"):
            head.set_payload(raw[end + 4:].decode("ascii", "surrogateescape"))
            assert isinstance(head, EmailMessage)
            return head
    parsed = email.message_from_bytes(raw, policy=PARSE_POLICY)
    assert isinstance(parsed, EmailMessage)
    return parsed
