"""Dataset loaders with one labelled-record shape, deduplication and leak-free grouping.

Formats are recognised from the path:

- ``*.tsv`` (or any file whose lines are ``label<TAB>text``): SMS, one message per line
- a TREC ``index`` file (lines ``spam|ham PATH``), or a folder holding one: raw RFC 5322 email
  in delivery order (the order is kept for temporal splits)
- a folder with ``labels.csv`` (``path,group,label``) or ``labels.tsv``: raw RFC 5322 email
- ``*.jsonl`` / ``*.json``: JSON lines with ``text`` (or ``raw``) and ``label``; subscriber
  feedback exports (objects with ``feedback`` / ``reported_as``) are read the same way
"""

from __future__ import annotations

import csv
import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from gateway.errors import InputError
from gateway.message import Channel

SPAM_LABELS = frozenset({"spam", "fraud", "phish", "phishing", "smishing", "scam", "1", "junk",
                         "reported_spam", "not_ham"})
HAM_LABELS = frozenset({"ham", "legit", "legitimate", "0", "not_spam", "good"})
MAX_EMAIL_BYTES = 2_000_000


@dataclass(frozen=True, slots=True)
class Record:
    """One labelled message: SMS text, or raw RFC 5322 bytes for email."""

    channel: Channel
    label: int  # 1 spam/fraud, 0 ham/legit
    text: str = ""
    raw: bytes = b""
    sender: str = ""
    source: str = ""  # which dataset (path name) it came from
    order: int = 0  # delivery order where known (temporal splits)
    group: str = ""  # template key: variants share it (leak-free splits)
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


def parse_label(value: Any) -> int:
    s = str(value).strip().lower()
    if s in SPAM_LABELS:
        return 1
    if s in HAM_LABELS:
        return 0
    raise InputError(f"unknown label {value!r} (expected spam/fraud or ham/legit)")


# -- format detection --------------------------------------------------------------------


def detect_format(path: Path) -> str:
    if path.is_dir():
        if (path / "index").is_file():
            return "trec"
        if (path / "labels.csv").is_file() or (path / "labels.tsv").is_file():
            return "rfc5322"
        raise InputError(f"{path}: a folder needs an 'index' (TREC) or 'labels.csv' file")
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    name = path.name.lower()
    if name == "index":
        return "trec"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith((".tsv", ".txt")):
        return "tsv"
    with path.open("rb") as fh:
        head = fh.read(4096)
    if head.lstrip().startswith(b"{"):
        return "jsonl"
    if b"\t" in head.split(b"\n", 1)[0]:
        return "tsv"
    raise InputError(f"{path}: cannot recognise the format (tsv, jsonl, TREC index, labels.csv)")


def load(path: Path | str, channel: Channel | str | None = None) -> list[Record]:
    """Load one dataset; `channel` filters JSON lines that name their channel."""
    if str(path).startswith("synthetic:"):
        return _synthetic(str(path))
    p = Path(path)
    fmt = detect_format(p)
    ch = Channel(channel) if channel is not None else None
    if fmt == "tsv":
        return list(load_tsv(p, ch or Channel.SMS))
    if fmt == "trec":
        return list(load_trec(p / "index" if p.is_dir() else p))
    if fmt == "rfc5322":
        return list(load_labelled_folder(p))
    return list(load_jsonl(p, ch))


def _synthetic(spec: str) -> list[Record]:
    from gateway.learn import synth

    parts = spec.split(":")
    if len(parts) < 2 or parts[1] != "ja":
        raise InputError(f"unknown synthetic dataset {spec!r} (known: synthetic:ja[:N])")
    try:
        n = int(parts[2]) if len(parts) > 2 else 1500
    except ValueError:
        raise InputError(f"{spec!r}: N must be a number") from None
    return synth.generate(n)


def load_many(paths: Sequence[Path | str], channel: Channel | str | None = None) -> list[Record]:
    out: list[Record] = []
    for p in paths:
        out.extend(load(p, channel))
    return out


def load_tsv(path: Path, channel: Channel = Channel.SMS) -> Iterator[Record]:
    with path.open(encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            label, sep, text = line.partition("\t")
            if not sep:
                raise InputError(f"{path}:{lineno}: expected label<TAB>text")
            yield Record(channel, parse_label(label), text=text, source=path.name, order=lineno)


def _read_email(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(MAX_EMAIL_BYTES)


def load_trec(index: Path) -> Iterator[Record]:
    base = index.parent
    with index.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if len(parts) < 2:
                continue
            label, rel = parts[0], parts[1]
            p = (base / rel).resolve()
            m = re.search(r"(\d+)$", rel)
            order = int(m.group(1)) if m else lineno
            yield Record(Channel.EMAIL, parse_label(label), raw=_read_email(p),
                         source=f"{base.name}", order=order, meta={"path": rel})


def load_labelled_folder(folder: Path) -> Iterator[Record]:
    labels = folder / "labels.csv"
    delim = ","
    if not labels.is_file():
        labels, delim = folder / "labels.tsv", "\t"
    with labels.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delim)
        for i, row in enumerate(reader, 1):
            rel = row.get("path") or row.get("file") or ""
            if not rel:
                continue
            yield Record(Channel.EMAIL, parse_label(row.get("label", "")),
                         raw=_read_email(folder / rel), source=folder.name, order=i,
                         meta={"path": rel, "group": row.get("group", "")})


def load_jsonl(path: Path, channel: Channel | None = None) -> Iterator[Record]:
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno}: invalid JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{lineno}: expected a JSON object")
            rec = _from_json(obj, path, lineno)
            if rec is None:
                continue
            if channel is not None and rec.channel is not channel:
                named = obj.get("channel")
                # LINE and other chat texts are short messages: they count as SMS
                if named not in (None, "", channel.value) and not (
                        channel is Channel.SMS and named == "line"):
                    continue
                rec = replace(rec, channel=channel)
            yield rec


def _from_json(obj: dict[str, Any], path: Path, lineno: int) -> Record | None:
    label = obj.get("label")
    if label is None:  # a feedback export: the subscriber's report
        label = obj.get("feedback", obj.get("reported_as"))
    if label is None:
        raise InputError(f"{path}:{lineno}: no label/feedback field")
    ch_name = str(obj.get("channel") or "sms")
    channel = Channel.EMAIL if ch_name == "email" and obj.get("raw") else Channel.SMS
    raw = obj.get("raw") or b""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    meta: dict[str, Any] = {k: obj[k] for k in ("category", "brand", "part", "channel", "date") if k in obj}
    return Record(channel, parse_label(label), text=str(obj.get("text") or ""), raw=raw,
                  sender=str(obj.get("sender") or ""), source=path.name, order=lineno, meta=meta)


# -- near-duplicates and templates -------------------------------------------------------

_MASK_URL = re.compile(r"(?i)\b(?:https?://|www\.)\S+")
_MASK_NUM = re.compile(r"\d+")
_MASK_WS = re.compile(r"\s+")
_WORD = re.compile(r"\w+")


def _email_body_text(raw: bytes) -> str:
    from gateway.message import split_header_block

    headers, body = split_header_block(raw)
    subject = next((v for n, v in headers if n.lower() == "subject"), "")
    return subject + "\n" + body[:20_000].decode("utf-8", "replace")


def masked(text: str) -> str:
    """Text with URLs, numbers and spacing masked: variants of one template collapse."""
    t = unicodedata.normalize("NFKC", text).lower()
    t = _MASK_URL.sub(" U ", t)
    t = _MASK_NUM.sub("0", t)
    return _MASK_WS.sub(" ", t).strip()


def template_keys(rec: Record) -> tuple[str, str]:
    """(duplicate key, template group key) of a record."""
    text = rec.text if rec.channel is Channel.SMS or not rec.raw else _email_body_text(rec.raw)
    m = masked(text)
    dup = hashlib.sha1(m.encode("utf-8", "surrogatepass")).hexdigest()
    words = _WORD.findall(m)
    # a template: the first words after masking (variants differ in names, amounts, links)
    head = " ".join(words[:12]) if len(words) >= 6 else m[:40]
    group = hashlib.sha1(head.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return dup, group


def dedup(records: Iterable[Record]) -> tuple[list[Record], dict[str, int]]:
    """Drop near-identical duplicates (same masked text); label conflicts keep the majority.

    Every kept record carries its template group key. Returns (records, stats).
    """
    by_key: dict[str, list[Record]] = {}
    order: list[str] = []
    for rec in records:
        dup, group = template_keys(rec)
        if dup not in by_key:
            by_key[dup] = []
            order.append(dup)
        by_key[dup].append(replace(rec, group=group))
    out: list[Record] = []
    conflicts = 0
    for key in order:
        recs = by_key[key]
        labels = Counter(r.label for r in recs)
        if len(labels) > 1:
            conflicts += 1
        label = labels.most_common(1)[0][0]
        out.append(next(r for r in recs if r.label == label))
    n_in = sum(len(v) for v in by_key.values())
    stats = {"input": n_in, "kept": len(out), "duplicates": n_in - len(out),
             "label_conflicts": conflicts, "groups": len({r.group for r in out})}
    return out, stats


def counts(records: Sequence[Record]) -> dict[str, int]:
    spam = sum(r.label for r in records)
    return {"total": len(records), "spam": spam, "ham": len(records) - spam}
