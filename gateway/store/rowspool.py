"""An append-only file of table rows waiting for the database: where a quarantine copy goes
when the SQLite database is busy (a WAL checkpoint holding the write lock, another writer), so
that the message waiting for its copy never waits for the database.

A row appended here is as safe as a row committed to SQLite with synchronous=NORMAL, the
store's setting: both are in the kernel's page cache when the call returns (they survive the
process, not a power cut before the next sync). The file is ingested into the database by the
database's writer thread shortly after (`RowSpool.take` hands over what was appended, by
renaming the file, so appends never wait for an ingest) and at start-up (what a stopped or
crashed process left). Ingesting is idempotent (the insert ignores rows already there), so a
crash between the commit and the removal of the file only repeats work.

Format: records of a 4-byte big-endian length, the CRC-32 of the payload, and the payload: one
row as a JSON object, with `bytes` values as {"$b64": "..."}. A record torn by a crash (short,
or its CRC wrong) ends the file: what follows it is not read, and is reported.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import itertools
import logging
import os
import secrets
import struct
import threading
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("mamori.store.spool")

_HEAD = struct.Struct("!II")
MAX_RECORD = 64 * 1024 * 1024


def _encode_value(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"$b64": base64.b64encode(bytes(v)).decode("ascii")}
    return v


def _decode_value(v: Any) -> Any:
    if isinstance(v, dict) and len(v) == 1 and "$b64" in v:
        return base64.b64decode(v["$b64"])
    return v


def encode_rows(rows: Iterable[dict[str, Any]]) -> bytes:
    out = []
    for row in rows:
        payload = orjson.dumps({k: _encode_value(v) for k, v in row.items()})
        out.append(_HEAD.pack(len(payload), zlib.crc32(payload)))
        out.append(payload)
    return b"".join(out)


def decode_rows(data: bytes, name: str = "spool") -> list[dict[str, Any]]:
    """The rows of a spool file's bytes, up to the first torn or damaged record."""
    rows: list[dict[str, Any]] = []
    off, n = 0, len(data)
    while off < n:
        if n - off < _HEAD.size:
            log.warning("%s: %d bytes of a torn record at its end skipped", name, n - off)
            break
        length, crc = _HEAD.unpack_from(data, off)
        payload = data[off + _HEAD.size: off + _HEAD.size + length]
        if length > MAX_RECORD or len(payload) < length or zlib.crc32(payload) != crc:
            log.warning("%s: a damaged record at byte %d; the %d bytes from there skipped",
                        name, off, n - off)
            break
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.warning("%s: a record at byte %d is not JSON; skipped", name, off)
        else:
            rows.append({k: _decode_value(v) for k, v in obj.items()})
        off += _HEAD.size + length
    return rows


class RowSpool:
    """Rows appended from the event loop (`append`), handed over to an ingesting thread a file
    at a time (`take`).

    Each process (`mamori serve` may pre-fork several workers on one data directory) spools in
    a directory of its own under `root`, `<pid>-<token>/`, holding an exclusive lock on its
    `lock` file while it lives: `rows` is the file being appended to, `rows.<n>` the files
    handed over and not yet ingested. `orphans` finds the directories of processes that are
    gone (their lock is free), whose rows any process may then ingest."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir: Path | None = None
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._size = 0  # bytes appended to `rows` since it was last handed over
        self._seq = itertools.count(1)
        self._claimed: dict[Path, int] = {}  # orphan directory -> our lock on it

    def _open(self) -> int:
        if self._fd is None:
            if self.dir is None:
                self.root.mkdir(parents=True, exist_ok=True)
                d = self.root / f"{os.getpid()}-{secrets.token_hex(4)}"
                d.mkdir(mode=0o700)
                lock_fd = os.open(d / "lock", os.O_WRONLY | os.O_CREAT, 0o600)
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.dir, self._lock_fd = d, lock_fd
            self._fd = os.open(self.dir / "rows", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._size = os.fstat(self._fd).st_size
        return self._fd

    @property
    def pending(self) -> bool:
        """Whether anything appended is not yet handed over."""
        return self._size > 0

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append the rows in one write; OSError (a full disk) when they could not be."""
        blob = encode_rows(rows)
        with self._lock:
            fd = self._open()
            try:
                written = os.write(fd, blob)
                if written != len(blob):  # a short write: the disk filled up
                    raise OSError(errno.ENOSPC, "short write to the spool")
            except OSError:
                os.ftruncate(fd, self._size)  # no torn record left behind
                raise
            self._size += written

    def take(self) -> list[Path]:
        """Hand over what was appended (the file is renamed; appends go to a new one) along
        with the files handed over earlier and not yet `done` (a failed ingest); oldest first."""
        with self._lock:
            if self.dir is None:
                return []
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._size > 0:
                os.rename(self.dir / "rows", self.dir / f"rows.{next(self._seq):09d}")
            self._size = 0
            return sorted(self.dir.glob("rows.*"))

    def orphans(self) -> list[Path]:
        """The spool directories of processes that are gone (nobody held their lock), now
        locked by this process until `remove`d or `release`d."""
        if not self.root.is_dir():
            return []
        out = []
        for d in sorted(self.root.iterdir()):
            if d == self.dir or d in self._claimed or not d.is_dir():
                continue
            try:
                fd = os.open(d / "lock", os.O_WRONLY | os.O_CREAT, 0o600)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # its process is alive
                os.close(fd)
                continue
            self._claimed[d] = fd
            out.append(d)
        return out

    def release(self, orphan: Path) -> None:
        """Give an orphan up without removing it (its ingest failed: it is tried again)."""
        fd = self._claimed.pop(orphan, None)
        if fd is not None:
            os.close(fd)

    @staticmethod
    def files_of(orphan: Path) -> list[Path]:
        return sorted(p for p in orphan.iterdir() if p.name == "rows" or p.name.startswith("rows."))

    def remove(self, orphan: Path) -> None:
        """An orphan directory whose rows are all ingested."""
        for p in orphan.iterdir():
            p.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            orphan.rmdir()
        self.release(orphan)

    def reject(self, row: dict[str, Any]) -> None:
        """Set a row the database refused aside in `root/rejected` (the same records), for
        an operator to look at; it is not ingested again."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "rejected", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, encode_rows([row]))
        finally:
            os.close(fd)

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        return decode_rows(path.read_bytes(), path.name)

    @staticmethod
    def done(path: Path) -> None:
        path.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop appending; the directory goes when empty (what is left is an orphan's)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self.dir is not None and not any(
                    p.name.startswith("rows") and p.stat().st_size for p in self.dir.iterdir()):
                self.remove(self.dir)
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            self.dir = None
            for d in list(self._claimed):
                self.release(d)
