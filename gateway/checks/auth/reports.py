"""DMARC aggregate reports (RFC 7489 section 7.2, XML schema of its Appendix C).

The DMARC check hands one row per evaluated message (metadata only: the sending server's
IP, domains, results, disposition; never addresses or content) to a `ReportLog`, which
appends them to `<report_dir>/records/YYYY-MM-DD.jsonl` (UTC days). `write_reports` turns a
day of rows into one report per policy domain, named as RFC 7489 7.2.1.1 says:
`receiver!policy-domain!begin!end.xml` (or `.xml.gz`), plus `index.json` listing each
file's `rua` destinations. The directory is the default transport; `mamori auth report
--send` also mails each report to its authorised `mailto:` destinations through an SMTP
relay (`MAMORI_AUTH__REPORT_SMTP`), checking external destinations as RFC 7489 7.1 says.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import re
import threading
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

log = logging.getLogger("mamori.auth.reports")


def utc_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


class ReportLog:
    """Buffers report rows and appends them to the day's records file."""

    def __init__(self, directory: Path, *, flush_every: int = 500, flush_interval: float = 30.0) -> None:
        self.directory = directory
        self.flush_every = flush_every
        self.flush_interval = flush_interval
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()

    def add(self, row: dict[str, Any]) -> bool:
        """Buffer a row; True when the buffer should be flushed (size or age)."""
        with self._lock:
            self._rows.append(row)
            return (len(self._rows) >= self.flush_every
                    or time.monotonic() - self._last_flush >= self.flush_interval)

    def flush(self) -> int:
        with self._lock:
            rows, self._rows = self._rows, []
            self._last_flush = time.monotonic()
        if not rows:
            return 0
        by_day: dict[str, list[bytes]] = {}
        for r in rows:
            by_day.setdefault(utc_day(float(r["ts"])), []).append(
                json.dumps(r, separators=(",", ":"), sort_keys=True).encode() + b"\n")
        try:
            rec = self.directory / "records"
            rec.mkdir(parents=True, exist_ok=True)
            for day, lines in by_day.items():
                with open(rec / f"{day}.jsonl", "ab") as fh:
                    fh.write(b"".join(lines))
        except OSError as exc:
            log.error("cannot write DMARC report data: %s", exc.strerror)
            return 0
        return len(rows)


def _text(parent: ET.Element, tag: str, value: Any) -> ET.Element:
    el = ET.SubElement(parent, tag)
    el.text = str(value)
    return el


def read_rows(directory: Path, day: str) -> list[dict[str, Any]]:
    path = directory / "records" / f"{day}.jsonl"
    rows: list[dict[str, Any]] = []
    try:
        with open(path, "rb") as fh:
            for line in fh:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a torn last line after a crash: skip it
                if isinstance(row, dict) and row.get("policy_domain"):
                    rows.append(row)
    except FileNotFoundError:
        return []
    return rows


def _row_key(r: dict[str, Any]) -> str:
    keep = {k: r.get(k) for k in ("source_ip", "disposition", "dkim", "spf", "reasons",
                                   "header_from", "auth_dkim", "auth_spf")}
    return json.dumps(keep, sort_keys=True)


def build_report(
    policy_domain: str,
    rows: list[dict[str, Any]],
    *,
    begin: int,
    end: int,
    org_name: str,
    email: str,
) -> bytes:
    """One RFC 7489 aggregate report for one policy domain."""
    root = ET.Element("feedback")
    meta = ET.SubElement(root, "report_metadata")
    _text(meta, "org_name", org_name)
    _text(meta, "email", email)
    rid = hashlib.sha256(f"{org_name}!{policy_domain}!{begin}!{end}".encode()).hexdigest()[:24]
    _text(meta, "report_id", rid)
    rng = ET.SubElement(meta, "date_range")
    _text(rng, "begin", begin)
    _text(rng, "end", end)
    pub = rows[-1]["policy_published"]  # the most recent record seen
    pp = ET.SubElement(root, "policy_published")
    _text(pp, "domain", policy_domain)
    for k in ("adkim", "aspf", "p", "sp", "pct"):
        _text(pp, k, pub.get(k, ""))
    counts: Counter[str] = Counter(_row_key(r) for r in rows)
    for key in sorted(counts):
        r = json.loads(key)
        rec = ET.SubElement(root, "record")
        row = ET.SubElement(rec, "row")
        _text(row, "source_ip", r["source_ip"] or "0.0.0.0")
        _text(row, "count", counts[key])
        pe = ET.SubElement(row, "policy_evaluated")
        _text(pe, "disposition", r["disposition"])
        _text(pe, "dkim", r["dkim"])
        _text(pe, "spf", r["spf"])
        for reason in r.get("reasons") or ():
            re_el = ET.SubElement(pe, "reason")
            _text(re_el, "type", reason.get("type", "other"))
            if reason.get("comment"):
                _text(re_el, "comment", reason["comment"])
        ids = ET.SubElement(rec, "identifiers")
        _text(ids, "header_from", r["header_from"])
        ar = ET.SubElement(rec, "auth_results")
        for d in r.get("auth_dkim") or ():
            de = ET.SubElement(ar, "dkim")
            _text(de, "domain", d.get("domain", ""))
            if d.get("selector"):
                _text(de, "selector", d["selector"])
            _text(de, "result", d.get("result", "none"))
        s = r.get("auth_spf") or {"domain": "", "scope": "mfrom", "result": "none"}
        se = ET.SubElement(ar, "spf")
        _text(se, "domain", s.get("domain", ""))
        _text(se, "scope", s.get("scope", "mfrom"))
        _text(se, "result", s.get("result", "none"))
    ET.indent(root)
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body + b"\n"


def write_reports(
    directory: Path,
    day: date,
    *,
    receiver: str,
    org_name: str,
    email: str,
    compress: bool = False,
    only_with_rua: bool = True,
) -> list[Path]:
    """Write the day's aggregate reports; returns the files written (idempotent)."""
    rows = read_rows(directory, day.isoformat())
    begin = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    end = int((datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)).timestamp()) - 1
    by_domain: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_domain.setdefault(r["policy_domain"], []).append(r)
    out_dir = directory / "reports" / day.isoformat()
    written: list[Path] = []
    index: dict[str, list[str]] = {}
    for domain, drows in sorted(by_domain.items()):
        rua = sorted({u for r in drows for u in r.get("rua") or ()})
        if only_with_rua and not rua:
            continue
        data = build_report(domain, drows, begin=begin, end=end, org_name=org_name, email=email)
        name = f"{receiver}!{domain}!{begin}!{end}.xml"
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / (name + ".gz" if compress else name)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(gzip.compress(data, mtime=0) if compress else data)
        tmp.replace(path)
        written.append(path)
        index[path.name] = rua
    if written:
        (out_dir / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    return written


def yesterday_utc(now: float | None = None) -> date:
    return (datetime.fromtimestamp(now if now is not None else time.time(), UTC) - timedelta(days=1)).date()


# -- sending (RFC 7489 7.2.1.1 mailto: transport) ------------------------------------------


def parse_mailto(uri: str) -> tuple[str, int | None] | None:
    """'mailto:a@b.example!10m' -> ('a@b.example', 10485760); None for other schemes."""
    uri = uri.strip()
    if not uri.lower().startswith("mailto:"):
        return None
    addr, _, size = uri[7:].partition("!")
    addr = addr.strip()
    if "@" not in addr or any(c in addr for c in " <>,;"):
        return None
    limit: int | None = None
    if size:
        m = re.fullmatch(r"(\d+)([kmgt]?)", size.strip().lower())
        if m:
            limit = int(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " ")
    return addr, limit


async def authorised(resolver: Any, policy_domain: str, address: str) -> bool:
    """RFC 7489 7.1: a destination outside the policy domain's organisation must publish
    `<policy-domain>._report._dmarc.<destination-domain>` with v=DMARC1."""
    from gateway.checks.auth.dmarc import organisational_domain
    from gateway.dns import DnsTempError

    dest = address.rsplit("@", 1)[1].lower().rstrip(".")
    if organisational_domain(dest) == organisational_domain(policy_domain):
        return True
    try:
        answer = await resolver.query(f"{policy_domain}._report._dmarc.{dest}", "TXT")
    except DnsTempError:
        return False
    return any(t.strip().lower().startswith(b"v=dmarc1") for t in answer.txt())


def report_message(path: Path, *, policy_domain: str, submitter: str, sender: str, to: str) -> Any:
    """The mail carrying one report file (gzip attachment, RFC 7489 7.2.1.1)."""
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    data = path.read_bytes()
    name = path.name
    if not name.endswith(".gz"):
        data, name = gzip.compress(data, mtime=0), name + ".gz"
    report_id = hashlib.sha256(path.name.encode()).hexdigest()[:24]
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain=submitter or None)
    msg["Subject"] = f"Report Domain: {policy_domain} Submitter: {submitter} Report-ID: <{report_id}>"
    msg.set_content(f"DMARC aggregate report for {policy_domain} from {submitter}.\n")
    msg.add_attachment(data, maintype="application", subtype="gzip", filename=name)
    return msg


async def send_reports(
    files: list[Path],
    rua: dict[str, list[str]],
    *,
    resolver: Any,
    relay: tuple[str, int],
    sender: str,
    submitter: str,
    timeout: float = 30.0,
) -> list[dict[str, Any]]:
    """Mail each report to its authorised mailto: destinations through the relay; one result
    per destination (sent, skipped with the reason, or failed)."""
    import smtplib

    out: list[dict[str, Any]] = []
    for path in files:
        policy_domain = path.name.split("!")[1]
        data = path.read_bytes()
        size = len(data if path.name.endswith(".gz") else gzip.compress(data, mtime=0))  # as sent
        for uri in rua.get(path.name, []):
            parsed = parse_mailto(uri)
            if parsed is None:
                out.append({"report": path.name, "to": uri, "status": "skipped", "reason": "not a mailto URI"})
                continue
            addr, limit = parsed
            if limit is not None and size > limit:
                out.append({"report": path.name, "to": addr, "status": "skipped", "reason": "over the size limit"})
                continue
            if not await authorised(resolver, policy_domain, addr):
                out.append({"report": path.name, "to": addr, "status": "skipped",
                            "reason": "external destination not authorised (RFC 7489 7.1)"})
                continue
            msg = report_message(path, policy_domain=policy_domain, submitter=submitter, sender=sender, to=addr)

            def deliver(msg: Any = msg) -> None:
                with smtplib.SMTP(relay[0], relay[1], timeout=timeout) as smtp:
                    smtp.send_message(msg)

            try:
                await asyncio.to_thread(deliver)
            except (OSError, smtplib.SMTPException) as exc:
                out.append({"report": path.name, "to": addr, "status": "failed", "reason": type(exc).__name__})
                continue
            out.append({"report": path.name, "to": addr, "status": "sent"})
    return out
