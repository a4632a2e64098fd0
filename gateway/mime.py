"""Tolerant MIME helpers: text extraction that never raises on broken mail."""

from __future__ import annotations

import email.utils
import html
import re
from collections.abc import Callable
from email import errors
from email.headerregistry import HeaderRegistry, ParameterizedMIMEHeader, UnstructuredHeader
from email.message import EmailMessage, Message
from email.policy import EmailPolicy
from typing import Any

from gateway import limits

MAX_PARTS = 200  # defaults; MAMORI_LIMITS__MIME_MAX_PARTS and __MIME_MAX_DEPTH apply
MAX_DEPTH = 20
MAX_TEXT = 2_000_000

_TAG_RE = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->|<[^>]{0,2000}>", re.S | re.I)
_SPACES_RE = re.compile("  +")


def html_to_text(markup: str) -> str:
    """The text of HTML: tags, comments, scripts and styles made spaces, entities decoded,
    runs of spaces, tabs, CR, VT and FF collapsed to one space (`[ \t\r\f\v]+` -> " "), the
    ends stripped. The collapse makes the other four spaces first, then replaces runs of two
    spaces or more: an expression that begins with a literal skips ahead to it, one that
    begins with a class of characters steps through every character (~2x; test)."""
    text = html.unescape(_TAG_RE.sub(" ", markup[:MAX_TEXT]))
    for ch in "\t\r\v\f":
        if ch in text:
            text = text.replace(ch, " ")
    return _SPACES_RE.sub(" ", text).strip()


def _decode_part(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # broken transfer encoding: take the raw payload
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    if not isinstance(payload, bytes):
        return ""
    charset = _content_charset(part) or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except (LookupError, ValueError):
        return payload.decode("latin-1", "replace")


_CHARSETS: dict[str, str | None] = {}  # Content-Type text -> its charset parameter


def _content_charset(part: Message) -> str | None:
    """`part.get_content_charset()`, remembered per Content-Type text: the standard library
    parses the parameters again on each call (~6 us), and the answer depends on that text
    alone (a few values make up most mail). Cleared when full, as the header cache is."""
    ctype = part.get("content-type")
    if ctype is None:
        return None  # (no Content-Type: no charset parameter)
    key = str(ctype)
    if key in _CHARSETS:
        return _CHARSETS[key]
    charset = part.get_content_charset()
    if len(_CHARSETS) >= limits.current().header_cache_size:
        _CHARSETS.clear()
    _CHARSETS[key] = charset
    return charset


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
# space or a tab). Lines end in CRLF, CR or LF, as the parser splits them. A field starts a
# line, and nothing is given back once taken (possessive): a long line that is not a field is
# rejected once, not retried from each of its characters (which was quadratic).
_FIELD_RE = re.compile(r"(?<![^\r\n])[\041-\071\073-\176]++:[^\r\n]*+(?:\r\n|\r|\n)"
                       r"(?:[ \t][^\r\n]*+(?:\r\n|\r|\n))*+")


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
    # `msg.set_raw(name, value)` of each field (which appends the pair), in one list
    msg._headers = [(name, value.lstrip(" \t").rstrip("\r\n"))  # type: ignore[attr-defined]
                    for name, value in [field.split(":", 1) for field in fields]]
    return msg


# -- multipart mail without the feed parser --------------------------------------------------
# `_Multipart` reads a multipart body as `email.feedparser.FeedParser._parsegen` does, step by
# step (the same lines, boundaries, preamble, epilogue, line-end trimming and the defects of
# a missing close boundary or a multipart transfer encoding), except that a leaf part's
# payload is cut from the text up to the next boundary line in one piece rather than line by
# line, and a part's header block goes through `_FIELD_RE`. Whatever else would make the
# parser record a defect or take another road (message/* parts, a missing boundary, a line
# that is not a header field, a unix From line, lone CR line ends, ...) raises `_Unusual`, and
# the message is parsed by the standard parser instead.

_NLCRE_EOL = re.compile(r"(\r\n|\r|\n)\Z")
_NLCRE_BOL = re.compile(r"(\r\n|\r|\n)")
_FIELD_START_RE = re.compile(r"[\041-\071\073-\176]+:")


def _without_line_end(text: str) -> str:
    """`text` without its last line end (CRLF, CR or LF), as the feed parser trims a part's
    payload, a preamble or an epilogue before a boundary."""
    eol = _NLCRE_EOL.search(text)
    return text[:-len(eol.group(0))] if eol else text


def _boundary_line(line: str, separator: str) -> tuple[bool, str] | None:
    """`boundaryre.match(line)` of the feed parser for a line (ending at its first LF, if any)
    and `separator` ("--" + boundary), without compiling an expression per boundary: None,
    or (a close boundary "--" follows, the line end matched, "" when none)."""
    if not line.startswith(separator):
        return None
    rest = line[len(separator):]
    close = rest.startswith("--")
    rest = (rest[2:] if close else rest).lstrip(" \t")
    # (?P<linesep>\r\n|\r|\n)?$ of a line: nothing more, or one line end
    if rest in ("", "\n", "\r", "\r\n"):
        return close, rest
    return None


class _Unusual(Exception):
    """The fast multipart reading does not cover this message: the parser reads it."""


class _Multipart:
    """The lines of a body (split after each LF: the text has no lone CR) with the feed
    parser's stack of boundary expressions that end the current part ("false EOF")."""

    def __init__(self, text: str) -> None:
        if text.count("\r") != text.count("\r\n"):
            raise _Unusual("lone CR")
        self.text = text
        self.pos = 0
        self.bounds: list[str] = []  # "--" + boundary, of each multipart around the part
        # separator -> (a line start, the first boundary line of it from there): the parts of
        # an inner multipart do not search again for an outer boundary further on each time
        self._found: dict[str, tuple[int, int]] = {}

    def _at_bound(self, line: str) -> bool:
        return any(_boundary_line(line, sep) is not None for sep in self.bounds)

    def readline(self) -> str:
        """The next line, or "" at the end of the text or at a line that ends the part."""
        t, pos = self.text, self.pos
        if pos >= len(t):
            return ""
        end = t.find("\n", pos) + 1 or len(t)
        line = t[pos:end]
        if self._at_bound(line):
            return ""
        self.pos = end
        return line

    def unreadline(self, line: str) -> None:
        self.pos -= len(line)

    def rest(self) -> str:
        """All lines up to the end of the text or the first line that ends the part (what
        reading line by line until "" would give), in one piece."""
        pos = self.pos
        stop = min((self._next_bound(sep, pos) for sep in self.bounds), default=len(self.text))
        self.pos = stop
        return self.text[pos:stop]

    def _next_bound(self, sep: str, i: int) -> int:
        """The start of the first line from line start `i` on that is a boundary line of
        `sep` (the end of the text if none): such a line starts with `sep`, at `i` or after
        an LF."""
        known = self._found.get(sep)
        if known is not None and known[0] <= i <= known[1]:
            return known[1]  # (the text does not change: the same first one from i)
        found = self._search_bound(sep, i)
        self._found[sep] = (i, found)
        return found

    def _search_bound(self, sep: str, i: int) -> int:
        t = self.text
        if not t.startswith(sep, i):
            i = t.find("\n" + sep, i)
            if i < 0:
                return len(t)
            i += 1
        while True:
            end = t.find("\n", i) + 1 or len(t)
            if _boundary_line(t[i:end], sep) is not None:
                return i
            i = t.find("\n" + sep, i)
            if i < 0:
                return len(t)
            i += 1

    def part(self, parent: Message) -> EmailMessage:
        """`_parsegen` of one part of `parent` from the current line."""
        if len(self.bounds) > MAX_DEPTH:
            raise _Unusual("deep")
        msg = EmailMessage(PARSE_POLICY)
        if parent.get_content_type() == "multipart/digest":
            msg.set_default_type("message/rfc822")
        parent.attach(msg)
        self._headers(msg)
        self.body(msg)
        return msg

    def body(self, msg: EmailMessage) -> None:
        """`_parsegen` after the header block of `msg`."""
        maintype = msg.get_content_maintype()
        if maintype == "message":
            raise _Unusual("message part")
        if maintype != "multipart":
            msg.set_payload(self.rest())
            return
        boundary = msg.get_boundary()
        if boundary is None:
            raise _Unusual("no boundary")
        if str(msg.get("content-transfer-encoding", "8bit")).lower() not in ("7bit", "8bit", "binary"):
            msg.policy.handle_defect(msg, errors.InvalidMultipartContentTransferEncodingDefect())
        separator = "--" + boundary
        capturing_preamble = True
        preamble: list[str] = []
        linesep = ""
        close_boundary_seen = False
        while True:
            line = self.readline()
            if line == "":
                break
            mo = _boundary_line(line, separator)
            if mo is None:
                preamble.append(line)  # (after the preamble, only boundaries come back here)
                continue
            if mo[0]:
                close_boundary_seen = True
                linesep = mo[1]
                break
            if capturing_preamble:
                if preamble:  # (the last line end belongs to the boundary)
                    preamble[-1] = _without_line_end(preamble[-1])
                    msg.preamble = "".join(preamble)
                capturing_preamble = False
                self.unreadline(line)
                continue
            while True:  # repeated boundary lines
                line = self.readline()
                if _boundary_line(line, separator) is None:
                    self.unreadline(line)
                    break
            self.bounds.append(separator)
            child = self.part(msg)
            if child.get_content_maintype() == "multipart":
                epilogue = child.epilogue
                if epilogue == "":
                    child.epilogue = None
                elif epilogue is not None:
                    child.epilogue = _without_line_end(epilogue)
            else:
                payload = child._payload  # type: ignore[attr-defined]
                if isinstance(payload, str):
                    child._payload = _without_line_end(payload)  # type: ignore[attr-defined]
            self.bounds.pop()
        if capturing_preamble:
            raise _Unusual("no start boundary")
        if not close_boundary_seen:
            msg.policy.handle_defect(msg, errors.CloseBoundaryNotFoundDefect())
            return
        epilogue_text = self.rest()
        if not linesep:
            bol = _NLCRE_BOL.match(epilogue_text)
            if bol:
                epilogue_text = epilogue_text[len(bol.group(0)):]
        msg.epilogue = epilogue_text

    def _headers(self, msg: Message) -> None:
        """A part's header block up to its blank line (or its end), as `_parse_head` takes
        it: plain fields, else `_Unusual`."""
        lines: list[str] = []
        while True:
            line = self.readline()
            if line == "":
                break
            if line[0] in "\r\n":
                break  # the blank line (consumed)
            if line.startswith("From ") or (not _FIELD_START_RE.match(line)
                                            and (line[0] not in " \t" or not lines)):
                raise _Unusual("not a header field")
            lines.append(line)
        if lines:
            head = _parse_head("".join(lines) + "\r\n")
            if head is None:
                raise _Unusual("header block")
            for name, value in head._headers:  # type: ignore[attr-defined]
                msg.set_raw(name, value)


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
        plain = _parse_head(text)
        head: Message = plain if plain is not None else email.message_from_string(
            text, policy=PARSE_POLICY)
        # (a block of plain fields is all header: nothing left over)
        alone = plain is not None or (head.get_payload() == "" and not head.is_multipart())
        if alone and head.get_content_maintype() not in ("multipart", "message"):
            head.set_payload(raw[end + 4:].decode("ascii", "surrogateescape"))
            assert isinstance(head, EmailMessage)
            return head
        if plain is not None and plain.get_content_maintype() == "multipart":
            # a header block of plain fields: the parts without the parser
            try:
                _Multipart(raw[end + 4:].decode("ascii", "surrogateescape")).body(plain)
            except _Unusual:
                pass
            else:
                if plain.is_multipart():  # (else the parser notes a defect)
                    return plain
    parsed = email.message_from_bytes(raw, policy=PARSE_POLICY)
    assert isinstance(parsed, EmailMessage)
    return parsed
