"""URL canonicalisation and lookup expressions, as Google Safe Browsing specifies them.

`canonicalize(url)` follows the Safe Browsing v4 rules: drop tab/CR/LF and the fragment,
percent-unescape repeatedly, normalise the host (dots, IPv4 in any notation, lower case, IDN to
punycode), resolve `.`/`..` and repeated slashes in the path, then percent-escape bytes <= 0x20,
>= 0x7f, `#` and `%`.

`expressions(url)` gives the host-suffix / path-prefix expressions a canonical URL is looked up
under, so that a listed `evil.example/login` matches `http://a.b.evil.example/login/x?y`.
One deliberate difference from Safe Browsing: path prefixes are formed without the trailing
slash (a listed `evil.example/login/` is stored as `evil.example/login`), so a list entry
matches whether or not the feed wrote the slash.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from gateway.caches import memo

MAX_URL_LEN = 4096
MAX_HOST_SUFFIXES = 5  # exact host + up to 4 suffixes of the last 5 labels
MAX_PATH_PREFIXES = 6

_SCHEME_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]{0,15}):(//)?")
_ESCAPE_RE = re.compile(rb"[\x00-\x20\x7f-\xff#%]")
_DOTS_RE = re.compile(r"\.{2,}")
_HOST_OK_RE = re.compile(r"^[a-z0-9_.-]+$")


class UrlError(ValueError):
    """Not a URL that can be canonicalised (no host, bad characters, too long)."""


@dataclass(frozen=True, slots=True)
class CanonicalUrl:
    scheme: str
    host: str  # lower case, punycode, no trailing dot; IPv4 as dotted decimal
    port: str  # "" when absent
    path: str  # starts with "/", escaped
    query: str  # without "?", escaped; "" when none (has_query tells "?" alone apart)
    has_query: bool
    is_ip: bool

    @property
    def url(self) -> str:
        port = f":{self.port}" if self.port else ""
        q = f"?{self.query}" if self.has_query else ""
        return f"{self.scheme}://{self.host}{port}{self.path}{q}"

    @property
    def expression(self) -> str:
        """The full host+path+query expression (what a list entry for this URL is)."""
        q = f"?{self.query}" if self.has_query else ""
        return f"{self.host}{strip_slash(self.path)}{q}"


def strip_slash(path: str) -> str:
    if path != "/" and path.endswith("/"):
        return path.rstrip("/") or "/"
    return path


def _unescape_fully(s: str) -> bytes:
    data = s.encode("utf-8", "surrogatepass")
    for _ in range(8):  # "repeatedly unescape until it has no more percent-escapes"
        if b"%" not in data:
            break
        new = unquote_to_bytes(data)
        if new == data:
            break
        data = new
    return data


def _plain(s: str) -> bool:
    """Printable ASCII without `%`, `#` or space: canonicalisation leaves it as it is."""
    return s.isascii() and s.isprintable() and "%" not in s and " " not in s and "#" not in s


def _escape(data: bytes) -> str:
    return _ESCAPE_RE.sub(lambda m: b"%%%02X" % m.group(0)[0], data).decode("ascii")


def _parse_ipv4(host: str) -> str | None:
    """IPv4 in any inet_aton notation (decimal, octal, hex, 1-4 parts) as dotted decimal."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(parts):
        return None
    nums: list[int] = []
    for p in parts:
        try:
            if p.lower().startswith("0x"):
                n = int(p[2:] or "0", 16)
            elif len(p) > 1 and p.startswith("0"):
                n = int(p, 8)
            else:
                if not p.isdigit():
                    return None
                n = int(p)
        except ValueError:
            return None
        nums.append(n)
    last_bits = 8 * (5 - len(nums))
    if any(n > 255 for n in nums[:-1]) or nums[-1] >= 1 << last_bits:
        return None
    value = 0
    for n in nums[:-1]:
        value = value << 8 | n
    value = value << last_bits | nums[-1]
    return ".".join(str(value >> s & 255) for s in (24, 16, 8, 0))


@memo
def canonical_host(raw: str) -> tuple[str, bool]:
    """(host, is_ip): the Safe Browsing host normalisation plus IDN to punycode."""
    host = _DOTS_RE.sub(".", raw.strip().strip("."))
    if not host:
        raise UrlError("empty host")
    if host.startswith("[") and host.endswith("]"):
        return host.lower(), True  # IPv6 literal, kept as written
    ip = _parse_ipv4(host)
    if ip is not None:
        return ip, True
    host = host.lower()
    if not host.isascii():
        try:
            host = ".".join(
                lab if lab.isascii() else "xn--" + lab.encode("punycode").decode("ascii")
                for lab in _nameprep(host).split(".")
            )
        except UnicodeError as exc:
            raise UrlError(f"bad IDN host: {exc}") from exc
    if not _HOST_OK_RE.match(host) or len(host) > 253:
        raise UrlError("bad characters in host")
    return host, False


def _nameprep(host: str) -> str:
    return unicodedata.normalize("NFKC", host).replace("\u3002", ".").lower()


def _normalize_path(path: str) -> str:
    segs: list[str] = []
    parts = path.split("/")
    for i, seg in enumerate(parts):
        last = i == len(parts) - 1
        if seg == "" and not last:
            continue
        if seg == ".":
            if last:
                segs.append("")
            continue
        if seg == "..":
            if segs:
                segs.pop()
            if last:
                segs.append("")
            continue
        segs.append(seg)
    out = "/" + "/".join(segs)
    return out


# A URL that canonicalisation leaves as it is but for the scheme's case: http(s)://, a host of
# lower-case letters, digits, "_" and "-" in dot-separated labels, the last starting with a
# letter (so not an IPv4 address in any notation), then a path and query of printable ASCII
# without space, "%", "#" and backslash (nothing to unescape, escape or cut off).
_PLAIN_URL_RE = re.compile(
    r"((?i:https?))://((?:[a-z0-9_-]+\.)+[a-z][a-z0-9_-]*)"
    r"(/[\x21\x22\x24\x26-\x3e\x40-\x5b\x5d-\x7e]*)?(?:\?([\x21\x22\x24\x26-\x5b\x5d-\x7e]*))?")


def canonicalize(url: str, *, default_scheme: str = "http") -> CanonicalUrl:
    """Canonicalise a URL (a missing scheme becomes `default_scheme`). Raises UrlError."""
    m = _PLAIN_URL_RE.fullmatch(url)
    if m is not None and len(url) <= MAX_URL_LEN:
        # `_canonicalize` of a plain URL (test): the scheme in lower case, the rest as it is
        scheme, host, path, query = m.groups()
        if len(host) <= 253 and (path is None or ("//" not in path and "/." not in path)):
            return CanonicalUrl(scheme.lower(), host, "", path or "/", query or "",
                                query is not None, False)
    return _canonicalize(url, default_scheme)


def _canonicalize(url: str, default_scheme: str) -> CanonicalUrl:
    """`canonicalize` by the Safe Browsing rules, step by step."""
    if len(url) > MAX_URL_LEN:
        raise UrlError("URL too long")
    s = url.strip().replace("\t", "").replace("\r", "").replace("\n", "")
    s = s.split("#", 1)[0]
    m = _SCHEME_RE.match(s)
    if m and (m.group(2) or m.group(1).lower() in ("http", "https")):
        scheme = m.group(1).lower()
        rest = s[m.end():]
    else:
        scheme = default_scheme
        rest = s
    rest = rest.lstrip("/\\")
    # authority ends at the first / ? (backslash counts as / like browsers do)
    cut = len(rest)
    for ch in "/?\\":
        i = rest.find(ch)
        if 0 <= i < cut:
            cut = i
    authority, tail = rest[:cut], rest[cut:]
    authority = authority.rsplit("@", 1)[-1]  # drop userinfo
    data = _unescape_fully(authority).decode("utf-8", "replace")
    port = ""
    if data.startswith("["):
        end = data.find("]")
        host_raw, after = data[: end + 1], data[end + 1:]
        if after.startswith(":"):
            port = after[1:]
    else:
        host_raw, _, port = data.partition(":")
    if port and (not port.isdigit() or int(port) > 65535):
        raise UrlError("bad port")
    if port in ("80", "443"):
        port = ""
    host, is_ip = canonical_host(host_raw)
    tail = tail.replace("\\", "/") if "?" not in tail else (
        tail.split("?", 1)[0].replace("\\", "/") + "?" + tail.split("?", 1)[1])
    path_raw, qmark, query_raw = tail.partition("?")
    if _plain(path_raw) and "//" not in path_raw and "/." not in path_raw:
        path = path_raw or "/"  # nothing to unescape, escape or resolve: the common case
    else:
        path = _normalize_path(_escape(_unescape_fully(path_raw or "/")))
    if not qmark:
        query = ""
    elif _plain(query_raw):
        query = query_raw
    else:
        query = _escape(_unescape_fully(query_raw))
    return CanonicalUrl(scheme, host, port, path, query, bool(qmark), is_ip)


def host_suffixes(host: str, is_ip: bool) -> list[str]:
    if is_ip:
        return [host]
    labels = host.split(".")
    out = [host]
    tail = labels[-MAX_HOST_SUFFIXES:]
    for i in range(1, len(tail) - 1):
        cand = ".".join(tail[i:])
        if cand != host:
            out.append(cand)
    if len(labels) > MAX_HOST_SUFFIXES and ".".join(tail) != host:
        out.insert(1, ".".join(tail))
    return out


def path_prefixes(path: str, query: str, has_query: bool) -> list[str]:
    out: list[str] = []
    if has_query:
        out.append(f"{strip_slash(path)}?{query}")
    full = strip_slash(path)
    out.append(full)
    if full != "/":
        out.append("/")
        segs = full.strip("/").split("/")
        for i in range(1, min(len(segs), MAX_PATH_PREFIXES)):
            p = "/" + "/".join(segs[:i])
            if p not in out:
                out.append(p)
    return out


def expressions(c: CanonicalUrl) -> list[str]:
    """Every host-suffix x path-prefix expression of a canonical URL, most specific first."""
    paths = path_prefixes(c.path, c.query, c.has_query)
    return [h + p for h in host_suffixes(c.host, c.is_ip) for p in paths]


def list_expression(entry: str) -> str:
    """The expression a feed entry (URL, host or host/path) is stored under. Raises UrlError."""
    return canonicalize(entry).expression
