"""The operator's brand sender-ID registry: which sender IDs belong to which brand, and over
which accounts (ESME system_ids, HTTP callers, routes) they may arrive.

Stored in SQLite under MAMORI_DATA_DIR (`sms_registry.sqlite3`); read into memory and kept
there for the per-message path (a dict lookup). Writes from the operator API go to the same
object; other replicas sharing the file pick changes up within `refresh` seconds.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gateway.caches import memo

# look-alike folding: digits and symbols that imitate letters, after NFKC and casefold
_FOLD = str.maketrans({"0": "o", "1": "l", "i": "l", "3": "e", "4": "a", "5": "s", "7": "t",
                       "8": "b", "@": "a", "$": "s", "|": "l", "!": "l", "ｰ": "-"})
_SEPARATORS = re.compile(r"[\s\-_.・･]+")


@memo
def normalise_sender_id(sender: str) -> str:
    """Exact key: NFKC, casefolded, separators kept (the registry's own spelling)."""
    return unicodedata.normalize("NFKC", sender).strip().casefold()


def skeleton(sender: str) -> str:
    """Look-alike key: separators removed and imitating characters folded
    ("PAYPA1", "Pay-Pal" and a fullwidth "PayPal" all give "paypal")."""
    if sender.isascii():
        # ASCII (every phone number): NFKC changes nothing and casefold is lower(); the
        # separators are single bytes (\s of ASCII, "-", "_", ".") and every fold maps a byte
        # to a letter, so one bytes.translate deletes and folds what the expression and
        # str.translate do (tests/sms/test_registry_skeleton.py)
        return sender.lower().encode("ascii").translate(_FOLD_ASCII, _SEPARATORS_ASCII
                                                        ).decode("ascii")
    return _skeleton_any(sender)


@memo
def _skeleton_any(sender: str) -> str:
    s = _SEPARATORS.sub("", normalise_sender_id(sender))
    return s.translate(_FOLD)


_SEPARATORS_ASCII = bytes(c for c in range(128) if _SEPARATORS.fullmatch(chr(c)))
# _FOLD's ASCII-to-ASCII pairs, for bytes.translate
_FOLD_ASCII_PAIRS = [(k, ord(str(v))) for k, v in _FOLD.items()
                     if k < 128 and len(str(v)) == 1 and ord(str(v)) < 128]
_FOLD_ASCII = bytes.maketrans(bytes(k for k, _ in _FOLD_ASCII_PAIRS),
                              bytes(v for _, v in _FOLD_ASCII_PAIRS))


@dataclass(frozen=True, slots=True)
class SenderIdEntry:
    sender_id: str  # as the brand spells it
    brand: str
    accounts: frozenset[str]  # accounts/routes the sender ID may arrive over (empty: any)

    def to_json(self) -> dict[str, Any]:
        return {"sender_id": self.sender_id, "brand": self.brand, "accounts": sorted(self.accounts)}


@dataclass(frozen=True, slots=True)
class RegistryMatch:
    entry: SenderIdEntry
    exact: bool  # False: a look-alike of the registered ID


class SenderIdRegistry:
    def __init__(self, path: Path | None, *, refresh: float = 5.0) -> None:
        self.path = path
        self.refresh = refresh
        self._lock = threading.Lock()
        self._exact: dict[str, SenderIdEntry] = {}
        self._skeleton: dict[str, SenderIdEntry] = {}
        self._loaded_at = 0.0
        self._mtime = -1.0
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute("CREATE TABLE IF NOT EXISTS sender_ids (key TEXT PRIMARY KEY, "
                           "sender_id TEXT NOT NULL, brand TEXT NOT NULL, accounts TEXT NOT NULL, "
                           "updated_at REAL NOT NULL)")
            self._load()

    def _connect(self) -> sqlite3.Connection:
        assert self.path is not None
        db = sqlite3.connect(self.path, timeout=5.0)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def _load(self) -> None:
        if self.path is None:
            return
        with self._connect() as db:
            rows = db.execute("SELECT sender_id, brand, accounts FROM sender_ids").fetchall()
        self._index([SenderIdEntry(s, b, frozenset(orjson.loads(a))) for s, b, a in rows])
        self._mtime = self._file_mtime()
        self._loaded_at = time.monotonic()

    def _file_mtime(self) -> float:
        assert self.path is not None
        mt = 0.0
        for p in (self.path, self.path.with_name(self.path.name + "-wal")):
            with contextlib.suppress(OSError):
                mt = max(mt, p.stat().st_mtime)
        return mt

    def _index(self, entries: list[SenderIdEntry]) -> None:
        exact = {normalise_sender_id(e.sender_id): e for e in entries}
        skel = {skeleton(e.sender_id): e for e in entries if len(skeleton(e.sender_id)) >= 3}
        with self._lock:
            self._exact, self._skeleton = exact, skel

    def _maybe_reload(self) -> None:
        if self.path is None or time.monotonic() - self._loaded_at < self.refresh:
            return
        self._loaded_at = time.monotonic()
        if self._file_mtime() != self._mtime:
            self._load()

    # -- reading (per message) --------------------------------------------------------

    def lookup(self, sender: str) -> RegistryMatch | None:
        if not sender:
            return None
        self._maybe_reload()
        e = self._exact.get(normalise_sender_id(sender))
        if e is not None:
            return RegistryMatch(e, True)
        e = self._skeleton.get(skeleton(sender))
        if e is not None:
            return RegistryMatch(e, False)
        return None

    def entries(self) -> list[SenderIdEntry]:
        self._maybe_reload()
        return sorted(self._exact.values(), key=lambda e: normalise_sender_id(e.sender_id))

    # -- writing (operator API) -------------------------------------------------------

    def replace_all(self, entries: list[SenderIdEntry]) -> None:
        self._write(entries, replace=True)

    def put(self, entry: SenderIdEntry) -> None:
        self._write([entry], replace=False)

    def delete(self, sender_id: str) -> bool:
        key = normalise_sender_id(sender_id)
        if self.path is not None:
            with self._connect() as db:
                n = db.execute("DELETE FROM sender_ids WHERE key = ?", (key,)).rowcount
            self._load()
            return n > 0
        current = dict(self._exact)
        found = current.pop(key, None) is not None
        self._index(list(current.values()))
        return found

    def _write(self, entries: list[SenderIdEntry], *, replace: bool) -> None:
        now = time.time()
        if self.path is not None:
            with self._connect() as db:
                if replace:
                    db.execute("DELETE FROM sender_ids")
                db.executemany(
                    "INSERT OR REPLACE INTO sender_ids VALUES (?, ?, ?, ?, ?)",
                    [(normalise_sender_id(e.sender_id), e.sender_id, e.brand,
                      orjson.dumps(sorted(e.accounts)).decode(), now) for e in entries])
            self._load()
            return
        current = {} if replace else dict(self._exact)
        for e in entries:
            current[normalise_sender_id(e.sender_id)] = e
        self._index(list(current.values()))


def registry_for(resources: dict[str, Any], data_dir: Path) -> SenderIdRegistry:
    """The process-wide registry (shared by the SMS checks and the operator API)."""
    reg = resources.get("sms_registry")
    if reg is None:
        reg = SenderIdRegistry(data_dir / "sms_registry.sqlite3")
        resources["sms_registry"] = reg
    assert isinstance(reg, SenderIdRegistry)
    return reg
