"""Memory probe for the soak's `mamori serve` child (diagnosis only, not loaded in normal runs).

The soak puts this directory on the child's PYTHONPATH when MAMORI_SOAK_MEMPROBE names an output
directory. The first SIGUSR1 starts tracing allocations (tracemalloc, 4 frames); each later one writes
`probe-N.json` there (object counts by type from gc.get_objects, the size of every functools.lru_cache
and memo cache it can find, native memory figures) and `probe-N.tracemalloc` (the snapshot, in
tracemalloc's own file format).
"""

from __future__ import annotations

import os

_OUT = os.environ.get("MAMORI_SOAK_MEMPROBE")
if _OUT:
    import collections
    import functools
    import gc
    import json
    import signal
    import tracemalloc

    _n = [0]

    def _native() -> dict[str, int]:
        """RSS, glibc malloc's view (mallinfo2, all arenas) and SQLite's own heap, in bytes."""
        import ctypes
        import ctypes.util

        out: dict[str, int] = {}
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "RssAnon:", "RssFile:")):
                    key = {"VmRSS:": "rss", "RssAnon:": "rss_anon", "RssFile:": "rss_file"}
                    out[key[line.split()[0]]] = int(line.split()[1]) * 1024
        libc = ctypes.CDLL("libc.so.6")

        class MallInfo2(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in (
                "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                "uordblks", "fordblks", "keepcost")]

        libc.mallinfo2.restype = MallInfo2
        mi = libc.mallinfo2()
        out.update(malloc_heap=mi.arena, malloc_mmap=mi.hblkhd, malloc_used=mi.uordblks,
                   malloc_free=mi.fordblks)
        name = ctypes.util.find_library("sqlite3")
        if name:
            lib = ctypes.CDLL(name)
            lib.sqlite3_memory_used.restype = ctypes.c_int64
            out["sqlite_used"] = lib.sqlite3_memory_used()
        if os.environ.get("MAMORI_SOAK_MEMPROBE_TRIM"):  # does malloc give memory back?
            libc.malloc_trim(0)
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        out["rss_after_trim"] = int(line.split()[1]) * 1024
        return out

    def _dump(signum: int, frame: object) -> None:
        try:
            _write()
        except Exception as exc:  # never disturb the code the signal interrupted
            with open(os.path.join(_OUT, "probe-errors.txt"), "a") as f:
                f.write(f"{type(exc).__name__}: {exc}\n")

    def _write_json(name: str, doc: dict[str, object]) -> None:
        with open(os.path.join(_OUT, name), "w") as f:
            json.dump(doc, f)

    def _write() -> None:
        if os.environ.get("MAMORI_SOAK_MEMPROBE_NATIVE"):  # no tracing: native figures only
            _n[0] += 1
            _write_json(f"native-{_n[0]}.json", {"native": _native()})
            return
        if not tracemalloc.is_tracing():  # the first signal starts tracing (start-up stays fast)
            native = _native()
            _write_json("probe-0.json", {"native": native})
            tracemalloc.start(4)
            return
        gc.collect()
        snap = tracemalloc.take_snapshot()
        counts: collections.Counter[str] = collections.Counter()
        lru: dict[str, int] = {}
        for o in gc.get_objects():
            t = type(o)
            counts[f"{getattr(t, '__module__', '?')}.{getattr(t, '__qualname__', t.__name__)}"] += 1
            if isinstance(o, functools._lru_cache_wrapper):
                fn = getattr(o, "__wrapped__", o)
                name = getattr(fn, "__module__", "?") + "." + getattr(fn, "__qualname__", "?")
                lru[name] = lru.get(name, 0) + o.cache_info().currsize
        _n[0] += 1
        try:
            from gateway import caches

            memo = caches.sizes()
        except Exception:
            memo = {}
        snap.dump(os.path.join(_OUT, f"probe-{_n[0]}.tracemalloc"))
        _write_json(f"probe-{_n[0]}.json", {"types": dict(counts), "lru": {**lru, **memo},
                                             "native": _native()})

    signal.signal(signal.SIGUSR1, _dump)
