"""The memory-mapped hash-prefix index: build, lookup, lists, corruption, hot reload."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from gateway.errors import ConfigError
from gateway.urls.canon import canonicalize, expressions, list_expression
from gateway.urls.index import IndexHolder, IndexStore, ListBuilder, UrlIndex


def make_list(name: str, entries: dict[str, str], kind: str = "block") -> ListBuilder:
    b = ListBuilder(name, kind)
    for e, label in entries.items():
        b.add(list_expression(e), label)
    return b


def lookup(index: UrlIndex, url: str) -> list[tuple[str, str, str]]:
    return [(h.list, h.kind, h.label) for h in index.lookup(expressions(canonicalize(url)))]


@pytest.fixture
def store(tmp_path: Path) -> IndexStore:
    s = IndexStore(tmp_path)
    s.save_list(make_list("jpcert", {"evil.example/login": "Amazon",
                                     "https://phish.example/": "楽天"}).build())
    s.save_list(make_list("carrier-allow", {"good.example": ""}, "allow").build())
    s.rebuild()
    return s


def test_lookup_by_host_suffix_and_path_prefix(store: IndexStore) -> None:
    idx = UrlIndex.open(store.index_path)
    assert len(idx) == 4  # 3 entries + the path marker of evil.example
    assert lookup(idx, "http://a.b.evil.example/login/x?y") == [("jpcert", "block", "Amazon")]
    assert lookup(idx, "https://evil.example/other") == []
    assert lookup(idx, "https://www.phish.example/any/path") == [("jpcert", "block", "楽天")]
    assert lookup(idx, "https://good.example/") == [("carrier-allow", "allow", "")]
    assert lookup(idx, "https://unlisted.example/") == []


def test_same_entry_in_two_lists(tmp_path: Path) -> None:
    s = IndexStore(tmp_path)
    s.save_list(make_list("a", {"x.example": "A"}).build())
    s.save_list(make_list("b", {"x.example": "B"}).build())
    s.rebuild()
    hits = lookup(UrlIndex.open(s.index_path), "http://x.example/")
    assert sorted(hits) == [("a", "block", "A"), ("b", "block", "B")]


def test_rebuild_bumps_generation_and_remove_list(store: IndexStore) -> None:
    g1 = UrlIndex.open(store.index_path).generation
    assert store.remove_list("jpcert")
    meta = store.rebuild()
    assert meta["generation"] == g1 + 1
    idx = UrlIndex.open(store.index_path)
    assert lookup(idx, "http://evil.example/login") == []
    assert len(idx) == 1


def test_corrupt_or_foreign_file_is_a_clear_error(store: IndexStore, tmp_path: Path) -> None:
    data = store.index_path.read_bytes()
    bad = tmp_path / "truncated.bin"
    bad.write_bytes(data[:-3])
    with pytest.raises(ConfigError, match="truncated"):
        UrlIndex.open(bad)
    other = tmp_path / "other.bin"
    other.write_bytes(b"hello world, not an index")
    with pytest.raises(ConfigError, match="not a mamori URL index"):
        UrlIndex.open(other)


def test_empty_index_and_empty_lookup(tmp_path: Path) -> None:
    s = IndexStore(tmp_path)
    s.rebuild()
    idx = UrlIndex.open(s.index_path)
    assert len(idx) == 0
    assert idx.lookup(["a.example/"]) == []
    assert UrlIndex.empty().lookup(["a.example/"]) == []


def test_hot_reload_swaps_a_new_file(store: IndexStore) -> None:
    holder = IndexHolder(store.index_path, interval=0.0)
    first = holder.current()
    assert lookup(first, "http://new.example/") == []
    store.save_list(make_list("plain", {"new.example": ""}).build())
    store.rebuild()
    second = holder.current()
    assert second is not first
    assert second.generation == first.generation + 1
    assert lookup(second, "http://new.example/") == [("plain", "block", "")]
    # the old mapping stays valid for a reader that still holds it
    assert lookup(first, "http://evil.example/login") == [("jpcert", "block", "Amazon")]


def test_hot_reload_checks_at_most_once_per_interval(store: IndexStore) -> None:
    holder = IndexHolder(store.index_path, interval=3600.0)
    first = holder.current()
    store.save_list(make_list("plain", {"new.example": ""}).build())
    store.rebuild()
    assert holder.current() is first  # not re-checked within the interval
    assert holder.force_reload() is not first


def test_bad_new_file_keeps_the_old_index(store: IndexStore) -> None:
    holder = IndexHolder(store.index_path, interval=0.0)
    first = holder.current()
    tmp = store.index_path.with_name("garbage")
    tmp.write_bytes(b"MAMURLX1garbage")
    os.replace(tmp, store.index_path)
    assert holder.current() is first
    assert holder.last_error


def test_readers_never_fail_during_rebuilds(store: IndexStore) -> None:
    holder = IndexHolder(store.index_path, interval=0.0)
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                assert lookup(holder.current(), "http://evil.example/login")
            except BaseException as exc:
                errors.append(exc)
                return

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(15):
            store.save_list(make_list("plain", {f"n{i}.example": ""}).build())
            store.rebuild()
    finally:
        stop.set()
        t.join()
    assert errors == []
    assert holder.current().generation >= 16


def test_open_during_a_rebuild_maps_the_file_it_read(store: IndexStore,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebuild replacing the file between the header read and the mappings (a hot reload
    racing a list update) cannot give an index mixing the two files."""
    import gateway.urls.index as ix

    before = UrlIndex.open(store.index_path)
    real = ix.json.loads
    fired: list[int] = []

    def loads(data: bytes, *args: object, **kw: object) -> object:
        out = real(data, *args, **kw)
        if not fired:  # right after the header was read: the file is replaced
            fired.append(1)
            store.save_list(make_list("plain", {f"n{i}.example": "" for i in range(50)}).build())
            store.rebuild()
        return out

    monkeypatch.setattr(ix.json, "loads", loads)
    idx = UrlIndex.open(store.index_path)
    monkeypatch.undo()
    assert fired
    assert idx.generation == before.generation and len(idx) == len(before)
    assert lookup(idx, "http://evil.example/login") == [("jpcert", "block", "Amazon")]
    assert lookup(idx, "http://n1.example/") == []  # (the new file's entry: not this index's)
    assert UrlIndex.open(store.index_path).generation == before.generation + 1


def test_from_lists_matches_file_index() -> None:
    a = make_list("a", {"x.example/p": "L"}).build()
    idx = UrlIndex.from_lists([a])
    assert lookup(idx, "http://x.example/p/q") == [("a", "block", "L")]
    assert idx.keys.dtype == np.uint64


@pytest.mark.parametrize("url", [
    "http://a.b.evil.example/login/x?y", "https://evil.example/other", "https://evil.example/",
    "https://www.phish.example/any/path", "https://good.example/", "http://x.y.z.phish.example/",
    "http://evil.example/login?q=1", "http://1.2.3.4/login",
])
def test_lookup_url_equals_expression_lookup(store: IndexStore, url: str) -> None:
    idx = UrlIndex.open(store.index_path)
    c = canonicalize(url)
    fast = sorted((h.expression, h.list, h.label) for h in idx.lookup_url(c))
    full = sorted((h.expression, h.list, h.label) for h in idx.lookup(expressions(c)))
    assert fast == full


def test_append_keeps_markers(tmp_path: Path) -> None:
    b = make_list("a", {"evil.example/login": "L"})
    data = b.build()
    b2 = ListBuilder("a", "block")
    b2.extend_from(data)
    b2.add(list_expression("other.example"), "")
    idx = UrlIndex.from_lists([b2.build()])
    assert [h.label for h in idx.lookup_url(canonicalize("http://evil.example/login/x"))] == ["L"]


def test_reload_sees_a_rebuild_within_one_timestamp_tick(store: IndexStore, tmp_path: Path) -> None:
    """Same inode, same size, same mtime (a rebuild within the file system's timestamp
    granularity into a reused inode): the generation in the prefix still tells them apart."""
    holder = IndexHolder(store.index_path, interval=0.0)
    first = holder.current()
    st = os.stat(store.index_path)
    other = IndexStore(tmp_path / "other")
    other.save_list(make_list("jpcert", {"evil.example/login": "Amazon",
                                         "https://phish.example/": "楽天"}).build())
    other.save_list(make_list("carrier-allow", {"good.example": ""}, "allow").build())
    other.rebuild()
    other.rebuild()  # generation 2, same content and size
    data = other.index_path.read_bytes()
    assert len(data) == st.st_size
    with open(store.index_path, "r+b") as f:  # in place: same inode
        f.write(data)
    os.utime(store.index_path, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = holder.current()
    assert second is not first
    assert second.generation == 2
