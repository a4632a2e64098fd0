"""The compact URL index: sorted 64-bit hash prefixes of list expressions, memory-mapped.

Layout of `MAMORI_DATA_DIR/urls/index.bin` (little endian):

    b"MAMURLX3"  u64 generation  u64 header_len  header (JSON, padded to 8 bytes)
    offsets: u64[65537]  start of each bucket of keys by their top 16 bits
    keys: u64[n]  sorted BLAKE2b-64 of each expression
    tags: u16[n]  index into header["tags"]: (list, kind "block"|"allow", label e.g. the brand)

10 bytes per entry plus 512 KiB of bucket offsets (perf/url_bench.py measures it: 20 million
entries map about 200 MB, shared by every worker process through the page cache). A 64-bit
prefix gives about 20e6 / 2**64 = 1e-12 false matches per lookup: treated as exact.

Each feed is kept on its own under `urls/lists/<name>.npz` (keys, tags of that list) so that
`mamori urls update` replaces one feed and rebuilds the merged index. The index is written to
a temporary file and renamed over the old one: a reader that has the old file mapped keeps
it, and `IndexHolder` notices the new one by its (inode, mtime, size, generation) at most once a second
and swaps the reference, so scanning never pauses. The generation sits in the file's fixed
prefix, so that two rebuilds within one timestamp tick are told apart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from gateway.errors import ConfigError
from gateway.urls.canon import CanonicalUrl, host_suffixes, path_prefixes

MAGIC = b"MAMURLX3"
PREFIX = 24  # magic, u64 generation, u64 header length
BUCKET_BITS = 16
N_BUCKETS = 1 << BUCKET_BITS
SHIFT = 64 - BUCKET_BITS
OFFSETS_BYTES = 8 * (N_BUCKETS + 1)
INDEX_NAME = "index.bin"
LISTS_DIR = "lists"
KINDS = ("block", "allow")
MAX_TAGS = 65535
RELOAD_INTERVAL = 1.0
MARKER = "\x00"  # key of MARKER + host: the host has path-scoped entries

log = logging.getLogger("mamori.urls")

U64 = npt.NDArray[np.uint64]
U16 = npt.NDArray[np.uint16]


def key_of(expression: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(expression.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
        "little",
    )


def keys_of(expressions: Iterable[str]) -> U64:
    return np.fromiter((key_of(e) for e in expressions), dtype=np.uint64)


@dataclass(frozen=True, slots=True)
class Tag:
    list: str
    kind: str
    label: str


@dataclass(frozen=True, slots=True)
class Hit:
    expression: str
    list: str
    kind: str
    label: str


def urls_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "urls"


def bucket_offsets(sorted_keys: U64) -> U64:
    """offs[b] = first position whose key's top BUCKET_BITS bits are >= b (b = 0..2**BITS)."""
    bounds = np.arange(N_BUCKETS + 1, dtype=np.uint64) << np.uint64(64 - BUCKET_BITS)
    offs = np.searchsorted(sorted_keys, bounds[:-1], side="left").astype(np.uint64)
    return np.append(offs, np.uint64(len(sorted_keys)))


def _view(arr: npt.NDArray[Any], fmt: Literal["Q", "H"]) -> Sequence[int]:
    buf: Any = np.ascontiguousarray(arr)
    view: Sequence[int] = memoryview(buf).cast("B").cast(fmt)
    return view


class UrlIndex:
    """A read-only index: a memory-mapped file, or in-memory arrays (evaluation, tests).

    A lookup finds the key's bucket by its top 16 bits (offsets stored in the file), then
    bisects inside the bucket (about 300 keys at 20 million entries: one or two pages), over
    memoryviews of the mapping, so that a key costs about a microsecond of Python and no
    copies. 64-bit keys are stored little-endian; on a big-endian host the views go through
    numpy instead.
    """

    def __init__(self, keys: U64, tags: U16, tag_table: Sequence[Tag], meta: dict[str, Any],
                 path: Path | None = None, ident: tuple[int, ...] | None = None,
                 offsets: U64 | None = None) -> None:
        self.keys = keys
        self.tags = tags
        self.tag_table = list(tag_table)
        self.meta = meta
        self.path = path
        self.ident = ident
        self.offsets = offsets if offsets is not None else bucket_offsets(keys)
        if sys.byteorder == "little":
            self._k: Sequence[int] = _view(keys, "Q")
            self._t: Sequence[int] = _view(tags, "H")
            self._o: Sequence[int] = _view(self.offsets, "Q")
        else:  # pragma: no cover - big-endian hosts
            self._k = keys.astype(np.uint64).tolist()
            self._t = tags.astype(np.uint16).tolist()
            self._o = self.offsets.astype(np.uint64).tolist()

    @classmethod
    def empty(cls) -> UrlIndex:
        return cls(np.zeros(0, np.uint64), np.zeros(0, np.uint16), [], {"generation": 0})

    @classmethod
    def from_lists(cls, lists: Sequence[ListData]) -> UrlIndex:
        """An in-memory index of some lists (evaluation and tests; the gateway maps a file)."""
        table: list[Tag] = []
        ks: list[U64] = []
        ts: list[U16] = []
        for d in lists:
            base = len(table)
            table.extend(Tag(d.name, d.kind, lab) for lab in d.label_table)
            ks.append(d.keys)
            ts.append((d.labels.astype(np.uint32) + base).astype(np.uint16))
        keys = np.concatenate(ks) if ks else np.zeros(0, np.uint64)
        tags = np.concatenate(ts) if ts else np.zeros(0, np.uint16)
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], tags[order], table, {"generation": 0})

    @property
    def generation(self) -> int:
        return int(self.meta.get("generation", 0))

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    @classmethod
    def open(cls, path: Path) -> UrlIndex:
        """Map an index file. Raises ConfigError when it is not a valid index."""
        try:
            # one open file for the header and every mapping: a rebuild that replaces the
            # file meanwhile cannot mix two files' header, offsets, keys and tags
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                head = f.read(PREFIX)
                if len(head) != PREFIX or head[:8] != MAGIC:
                    raise ConfigError(f"{path} is not a mamori URL index")
                generation, hlen = struct.unpack("<QQ", head[8:PREFIX])
                if hlen > 64 * 1024 * 1024:
                    raise ConfigError(f"{path}: header too large")
                meta = json.loads(f.read(hlen))
                n = int(meta["count"])
                off = PREFIX + hlen
                if st.st_size != off + OFFSETS_BYTES + n * 10:
                    raise ConfigError(f"{path}: truncated or corrupt (size {st.st_size})")
                offs: npt.NDArray[Any] = np.memmap(f, dtype="<u8", mode="r", offset=off,
                                                   shape=(N_BUCKETS + 1,))
                off += OFFSETS_BYTES
                keys: npt.NDArray[Any]
                tags: npt.NDArray[Any]
                if n:
                    keys = np.memmap(f, dtype="<u8", mode="r", offset=off, shape=(n,))
                    tags = np.memmap(f, dtype="<u2", mode="r", offset=off + 8 * n, shape=(n,))
                else:
                    keys, tags = np.zeros(0, np.uint64), np.zeros(0, np.uint16)
            if int(offs[-1]) != n:
                raise ConfigError(f"{path}: corrupt bucket offsets")
            table = [Tag(*t) for t in meta["tags"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot open URL index {path}: {exc}") from exc
        ident = (st.st_ino, st.st_mtime_ns, st.st_size, generation)
        return cls(keys, tags, table, meta, path, ident, offs)

    def find(self, key: int) -> list[Tag]:
        """The tags of one key (several when lists share an entry)."""
        b = key >> SHIFT
        o = self._o
        lo, hi = o[b], o[b + 1]
        if lo == hi:
            return []
        k = self._k
        i = bisect_left(k, key, lo, hi)
        out: list[Tag] = []
        while i < hi and k[i] == key:
            out.append(self.tag_table[self._t[i]])
            i += 1
        return out

    def lookup_keys(self, keys: Iterable[int]) -> list[tuple[int, Tag]]:
        """(position in `keys`, tag) for every key that is in the index."""
        if not len(self):
            return []
        out: list[tuple[int, Tag]] = []
        for pos, key in enumerate(keys):
            for tag in self.find(int(key)):
                out.append((pos, tag))
        return out

    def lookup_url(self, c: CanonicalUrl) -> list[Hit]:
        """Hits for a canonical URL: the same as `lookup(expressions(c))`, with fewer probes.

        Each host suffix costs two probes: `host/` (the whole host is listed) and the
        host's path marker; only a host with path-scoped entries gets its path prefixes
        probed. Most URLs take 2-6 probes instead of up to 30.
        """
        if not len(self):
            return []
        out: list[Hit] = []
        paths: list[str] | None = None
        for h in host_suffixes(c.host, c.is_ip):
            e = h + "/"
            for t in self.find(key_of(e)):
                out.append(Hit(e, t.list, t.kind, t.label))
            if self.find(key_of(MARKER + h)):
                if paths is None:
                    paths = [p for p in path_prefixes(c.path, c.query, c.has_query) if p != "/"]
                for p in paths:
                    e = h + p
                    for t in self.find(key_of(e)):
                        out.append(Hit(e, t.list, t.kind, t.label))
        return out

    def lookup(self, expressions: Sequence[str]) -> list[Hit]:
        if not len(self) or not expressions:
            return []
        out: list[Hit] = []
        for e in expressions:
            for t in self.find(key_of(e)):
                out.append(Hit(e, t.list, t.kind, t.label))
        return out


def write_index(path: Path, keys: U64, tags: U16, tag_table: Sequence[Tag],
                meta: dict[str, Any]) -> None:
    """Sort and write an index atomically (temporary file, fsync, rename)."""
    order = np.argsort(keys, kind="stable")
    keys = np.ascontiguousarray(keys[order], dtype="<u8")
    tags = np.ascontiguousarray(tags[order], dtype="<u2")
    offs = bucket_offsets(keys).astype("<u8")
    meta = dict(meta, count=int(keys.shape[0]), bucket_bits=BUCKET_BITS,
                tags=[[t.list, t.kind, t.label] for t in tag_table])
    header = json.dumps(meta, ensure_ascii=False).encode("utf-8")
    header += b" " * (-len(header) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(MAGIC + struct.pack("<QQ", int(meta.get("generation", 0)), len(header)) + header)
        f.write(offs.tobytes())
        f.write(keys.tobytes())
        f.write(tags.tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class ListData:
    """One feed's entries: keys, per-entry label index, labels, kind."""

    name: str
    kind: str
    keys: U64
    labels: npt.NDArray[np.uint16]
    label_table: list[str]
    meta: dict[str, Any]


class ListBuilder:
    """Collects one feed's expressions (deduplicated by key) with their labels."""

    def __init__(self, name: str, kind: str) -> None:
        if kind not in KINDS:
            raise ConfigError(f"list kind must be one of {KINDS}, not {kind!r}")
        self.name, self.kind = name, kind
        self._labels: dict[str, int] = {"": 0}
        self._keys: dict[int, int] = {}
        self._markers: set[int] = set()

    def add(self, expression: str, label: str = "") -> bool:
        """Add an expression; False when it was already there."""
        lid = self._labels.get(label)
        if lid is None:
            if len(self._labels) >= MAX_TAGS // 4:
                label = ""
                lid = self._labels.setdefault("", len(self._labels))
            else:
                lid = self._labels[label] = len(self._labels)
        k = key_of(expression)
        if k in self._keys:
            return False
        self._keys[k] = lid
        host, _, path = expression.partition("/")
        if path:
            self._markers.add(key_of(MARKER + host))
        return True

    def __len__(self) -> int:
        return len(self._keys)

    def extend_from(self, data: ListData) -> None:
        """Start from an existing list's entries (for `--append`)."""
        n = len(data.keys) - int(data.meta.get("markers", 0))
        for k, lid in zip(data.keys[:n].tolist(), data.labels[:n].tolist(), strict=True):
            label = data.label_table[lid]
            nid = self._labels.setdefault(label, len(self._labels))
            self._keys.setdefault(k, nid)
        self._markers.update(data.keys[n:].tolist())

    def build(self, meta: dict[str, Any] | None = None) -> ListData:
        """The list's keys, its path markers last (`meta["markers"]` of them, label "")."""
        markers = sorted(self._markers - self._keys.keys())
        keys = np.fromiter([*self._keys.keys(), *markers], dtype=np.uint64,
                           count=len(self._keys) + len(markers))
        labels = np.fromiter([*self._keys.values(), *([0] * len(markers))], dtype=np.uint16,
                             count=len(keys))
        meta = {**(meta or {}), "entries": len(self._keys), "markers": len(markers)}
        table = [""] * len(self._labels)
        for lab, i in self._labels.items():
            table[i] = lab
        return ListData(self.name, self.kind, keys, labels, table, meta)


class IndexStore:
    """The lists and the merged index under `MAMORI_DATA_DIR/urls/`."""

    def __init__(self, data_dir: Path) -> None:
        self.root = urls_dir(data_dir)
        self.index_path = self.root / INDEX_NAME
        self.lists_dir = self.root / LISTS_DIR

    def list_names(self) -> list[str]:
        if not self.lists_dir.is_dir():
            return []
        return sorted(p.name[:-4] for p in self.lists_dir.glob("*.npz"))

    def save_list(self, data: ListData) -> None:
        self.lists_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.lists_dir / f".{data.name}.{os.getpid()}.tmp.npz"
        info = json.dumps({"kind": data.kind, "labels": data.label_table, "meta": data.meta},
                          ensure_ascii=False)
        np.savez(tmp, keys=data.keys, labels=data.labels,
                 info=np.frombuffer(info.encode("utf-8"), dtype=np.uint8))
        os.replace(tmp, self.lists_dir / f"{data.name}.npz")

    def load_list(self, name: str) -> ListData:
        path = self.lists_dir / f"{name}.npz"
        try:
            with np.load(path, allow_pickle=False) as z:
                info = json.loads(z["info"].tobytes().decode("utf-8"))
                return ListData(name, info["kind"], z["keys"].astype(np.uint64),
                                z["labels"].astype(np.uint16), list(info["labels"]),
                                dict(info.get("meta", {})))
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"cannot read URL list {path}: {exc}") from exc

    def remove_list(self, name: str) -> bool:
        path = self.lists_dir / f"{name}.npz"
        if path.exists():
            path.unlink()
            return True
        return False

    def rebuild(self) -> dict[str, Any]:
        """Merge every list into a new index file; returns its header."""
        parts_k: list[U64] = []
        parts_t: list[U16] = []
        table: list[Tag] = []
        lists_meta: dict[str, Any] = {}
        for name in self.list_names():
            d = self.load_list(name)
            base = len(table)
            if base + len(d.label_table) > MAX_TAGS:
                raise ConfigError("too many distinct labels across lists")
            table.extend(Tag(name, d.kind, lab) for lab in d.label_table)
            parts_k.append(d.keys)
            parts_t.append((d.labels.astype(np.uint32) + base).astype(np.uint16))
            lists_meta[name] = {"kind": d.kind, "count": len(d.keys), **d.meta}
        keys = np.concatenate(parts_k) if parts_k else np.zeros(0, np.uint64)
        tags = np.concatenate(parts_t) if parts_t else np.zeros(0, np.uint16)
        prev = 0
        if self.index_path.exists():
            try:
                prev = UrlIndex.open(self.index_path).generation
            except ConfigError:
                prev = 0
        meta = {"generation": prev + 1, "built": int(time.time()), "lists": lists_meta}
        write_index(self.index_path, keys, tags, table, meta)
        return meta


def _generation_of(path: Path) -> int:
    """The generation in a file's fixed prefix (-1 when unreadable): a rebuild within the
    file system's timestamp granularity, into a reused inode, of the same size, still differs."""
    try:
        with open(path, "rb") as f:
            head = f.read(PREFIX)
    except OSError:
        return -1
    if len(head) != PREFIX or head[:8] != MAGIC:
        return -1
    return int(struct.unpack("<Q", head[8:16])[0])


class IndexHolder:
    """Holds the current index and swaps in a new file when one appears (hot reload).

    `current()` is called on the scan path: it stats the file at most once per
    `interval` seconds and maps a changed file (mapping is O(1); pages load on demand), then
    swaps the reference atomically. A bad new file is logged by the caller and the old index
    stays in service.
    """

    def __init__(self, path: Path, *, interval: float = RELOAD_INTERVAL) -> None:
        self.path = Path(path)
        self.interval = interval
        self._index = UrlIndex.empty()
        self._next_check = 0.0
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self.reloads = 0

    def current(self) -> UrlIndex:
        now = time.monotonic()
        if now >= self._next_check:
            self._maybe_reload(now)
        return self._index

    def _maybe_reload(self, now: float) -> None:
        if not self._lock.acquire(blocking=False):
            return  # another thread is reloading: keep serving the old index
        try:
            self._next_check = now + self.interval
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return
            ident = (st.st_ino, st.st_mtime_ns, st.st_size, _generation_of(self.path))
            if ident == self._index.ident:
                return
            try:
                new = UrlIndex.open(self.path)
            except ConfigError as exc:
                if self.last_error != str(exc):
                    log.warning("URL index not loaded, keeping generation %d: %s",
                                self._index.generation, exc)
                self.last_error = str(exc)
                return
            self._index = new  # a single reference assignment: atomic for readers
            self.reloads += 1
            self.last_error = None
            log.info("URL index generation %d loaded: %d entries", new.generation, len(new))
        finally:
            self._lock.release()

    def force_reload(self) -> UrlIndex:
        self._next_check = 0.0
        return self.current()
