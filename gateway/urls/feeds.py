"""Feed parsers for the URL lists carriers meet.

Each parser reads one file and yields `Entry(expression, label)` for good lines and
`Rejected(line_no, reason, text)` for bad ones; `load_feed` validates the entries
(canonicalisation, a real TLD or an IP address) and feeds a `ListBuilder`.

Formats (`--format`):
- `jpcert`: JPCERT/CC phishurl-list CSV, `date,URL,description` (description = brand).
- `urlhaus`: URLhaus CSV (`id,dateadded,url,url_status,...,threat,tags,...`), the
  urlhaus-filter Splunk CSV (`"host","path",...`), and its text lists: domains, hosts file
  lines (`0.0.0.0 host`), adblock-style rules (`||host^`), plain URLs.
- `phishtank`: PhishTank JSON (a list of objects with `url` and `target`) or CSV
  (`phish_id,url,phish_detail_url,submission_time,verified,verification_time,online,target`).
- `openphish`: one URL per line.
- `plain`: one URL, host or host/path per line, optionally followed by a tab or comma and a
  label; `#` starts a comment. Carriers' own allow and block lists use this format.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from gateway.urls.canon import CanonicalUrl, UrlError, canonicalize
from gateway.urls.domains import known_tld, registered_domain
from gateway.urls.index import ListBuilder

FORMATS = ("jpcert", "urlhaus", "phishtank", "openphish", "plain")
MAX_LINE = 8192


@dataclass(frozen=True, slots=True)
class Entry:
    url: str
    label: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    reason: str
    text: str


@dataclass
class FeedReport:
    path: str
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    samples: list[Rejected] = field(default_factory=list)

    def reject(self, r: Rejected, keep: int = 20) -> None:
        self.rejected += 1
        self.reasons[r.reason] += 1
        if len(self.samples) < keep:
            self.samples.append(r)


def _lines(data: str) -> Iterator[tuple[int, str]]:
    yield from enumerate(data.splitlines(), 1)


def _text_list(data: str) -> Iterator[Entry | Rejected]:
    for no, raw in _lines(data):
        line = raw.strip()
        if not line or line[0] in "#!;":
            continue
        if len(line) > MAX_LINE:
            yield Rejected(no, "line too long", line[:80])
            continue
        label = ""
        for sep in ("\t", ","):
            if sep in line:
                line, _, label = line.partition(sep)
                line, label = line.strip(), label.strip()
                break
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("0.0.0.0", "127.0.0.1", "::", "::1"):
            line = parts[1]  # hosts-file format
        elif len(parts) > 1:
            yield Rejected(no, "spaces inside the entry", raw[:80])
            continue
        if line.startswith("||"):  # adblock rule
            line = line[2:].split("^", 1)[0].split("$", 1)[0]
        yield Entry(line, label, no)


def parse_plain(data: str) -> Iterator[Entry | Rejected]:
    yield from _text_list(data)


def parse_openphish(data: str) -> Iterator[Entry | Rejected]:
    yield from _text_list(data)


def _csv_rows(data: str) -> Iterator[tuple[int, list[str]]]:
    lines = [(i, ln) for i, ln in _lines(data) if ln.strip() and not ln.lstrip().startswith("#")]
    reader = csv.reader(io.StringIO("\n".join(ln for _, ln in lines)))
    for (no, _), row in zip(lines, reader, strict=False):
        yield no, row


def parse_jpcert(data: str) -> Iterator[Entry | Rejected]:
    for no, row in _csv_rows(data):
        if row and row[0].strip().lower() == "date":
            continue
        if len(row) < 2 or not row[1].strip():
            yield Rejected(no, "expected date,URL,description", ",".join(row)[:80])
            continue
        yield Entry(row[1].strip(), row[2].strip() if len(row) > 2 else "", no)


def parse_urlhaus(data: str) -> Iterator[Entry | Rejected]:
    head = next((ln for ln in data.splitlines() if ln.strip() and not ln.startswith(("#", "!"))),
                "")
    if head.startswith('"host","path"') or head.startswith("host,path"):
        for no, row in _csv_rows(data):
            if row[:2] == ["host", "path"]:
                continue
            if len(row) < 2 or not row[0]:
                yield Rejected(no, "expected host,path,...", ",".join(row)[:80])
                continue
            yield Entry(row[0] + row[1], "", no)
        return
    if head.count(",") >= 4 and ("http" in head or head.startswith('"')):
        # abuse.ch CSV: id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter
        for no, row in _csv_rows(data):
            if len(row) < 3 or not row[2].startswith(("http://", "https://")):
                yield Rejected(no, "expected id,dateadded,url,...", ",".join(row)[:80])
                continue
            threat = row[5] if len(row) > 5 else ""
            yield Entry(row[2], threat, no)
        return
    yield from _text_list(data)


def parse_phishtank(data: str) -> Iterator[Entry | Rejected]:
    if data.lstrip().startswith("["):
        try:
            items = json.loads(data)
        except json.JSONDecodeError as exc:
            yield Rejected(exc.lineno, f"bad JSON: {exc.msg}", "")
            return
        for i, item in enumerate(items, 1):
            if not isinstance(item, dict) or not isinstance(item.get("url"), str):
                yield Rejected(i, "JSON item without url", str(item)[:80])
                continue
            target = item.get("target")
            yield Entry(item["url"], target if isinstance(target, str) and target != "Other"
                        else "", i)
        return
    cols: dict[str, int] = {}
    for no, row in _csv_rows(data):
        if not cols and "url" in row:
            cols = {name: i for i, name in enumerate(row)}
            continue
        ui = cols.get("url", 1)
        if len(row) <= ui or not row[ui]:
            yield Rejected(no, "expected phish_id,url,...", ",".join(row)[:80])
            continue
        ti = cols.get("target", 7)
        target = row[ti] if len(row) > ti else ""
        yield Entry(row[ui], "" if target == "Other" else target, no)


PARSERS: dict[str, Callable[[str], Iterator[Entry | Rejected]]] = {
    "jpcert": parse_jpcert,
    "urlhaus": parse_urlhaus,
    "phishtank": parse_phishtank,
    "openphish": parse_openphish,
    "plain": parse_plain,
}


SCOPES = ("url", "host", "domain")


def scoped_expression(c: CanonicalUrl, scope: str) -> str:
    """What a list entry covers: `url` the URL as Safe Browsing matches it (the path and
    below, on the host and its subdomains), `host` the whole host, `domain` the whole
    registered domain (private suffixes such as duckdns.org or workers.dev respected)."""
    if scope == "url":
        return c.expression
    if scope == "host" or c.is_ip:
        return c.host + "/"
    return registered_domain(c.host) + "/"


@lru_cache(maxsize=1)
def _protected() -> frozenset[str]:
    from gateway.urls.lookalike import load_brands
    from gateway.urls.scan import url_data

    data = url_data()
    hosts = {*data["shared_hosts"], *data["shorteners"]}
    for b in load_brands():
        hosts.update(b.domains)
    return frozenset(h.lower() for h in hosts)


def protected_host(host: str) -> bool:
    """A shared host (storage, site builder, shortener, a brand's own domain): a feed entry
    there blocks only its URL, never the whole host or domain."""
    p = _protected()
    h = host
    while True:
        if h in p:
            return True
        if "." not in h:
            return False
        h = h.split(".", 1)[1]


def validate(entry: Entry, scope: str = "url") -> str | Rejected:
    """The list expression of an entry, or why it is rejected."""
    url = entry.url.strip()
    if not url:
        return Rejected(entry.line, "empty", "")
    try:
        c = canonicalize(url)
    except UrlError as exc:
        return Rejected(entry.line, str(exc), url[:80])
    if not c.is_ip:
        labels = c.host.split(".")
        tld = labels[-1]
        if len(labels) < 2 or not known_tld(tld):
            return Rejected(entry.line, "not a domain with a known TLD", url[:80])
    if scope != "url" and protected_host(c.host):
        scope = "url"
    return scoped_expression(c, scope)


def load_feed(path: Path, fmt: str, builder: ListBuilder, report: FeedReport,
              progress: Callable[[int], None] | None = None, scope: str = "url") -> None:
    """Parse one feed file into `builder`; bad lines go to `report`."""
    if fmt not in PARSERS:
        raise ValueError(f"unknown format {fmt!r}")
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    data = path.read_bytes().decode("utf-8-sig", "replace")
    step = 0
    for item in PARSERS[fmt](data):
        step += 1
        if progress is not None and step % 1000 == 0:
            progress(1000)
        if isinstance(item, Rejected):
            report.reject(item)
            continue
        expr = validate(item, scope)
        if isinstance(expr, Rejected):
            report.reject(expr)
            continue
        if builder.add(expr, item.label):
            report.accepted += 1
        else:
            report.duplicates += 1
    if progress is not None:
        progress(step % 1000)
