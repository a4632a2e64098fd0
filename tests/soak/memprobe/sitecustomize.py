"""Memory probe for the soak's `mamori serve` child (diagnosis only, not loaded in normal runs).

The soak puts this directory on the child's PYTHONPATH when MAMORI_SOAK_MEMPROBE names an output
directory. The first SIGUSR1 starts tracing allocations (tracemalloc, 4 frames); each later one writes
`probe-N.pickle` there: the tracemalloc snapshot, object counts by type (gc.get_objects) and the
size of every functools.lru_cache and every OrderedDict/dict-backed cache it can find.
"""

from __future__ import annotations

import os

_OUT = os.environ.get("MAMORI_SOAK_MEMPROBE")
if _OUT:
    import collections
    import functools
    import gc
    import pickle
    import signal
    import tracemalloc

    _n = [0]

    def _dump(signum: int, frame: object) -> None:
        try:
            _write()
        except Exception as exc:  # never disturb the code the signal interrupted
            with open(os.path.join(_OUT, "probe-errors.txt"), "a") as f:
                f.write(f"{type(exc).__name__}: {exc}\n")

    def _write() -> None:
        if not tracemalloc.is_tracing():  # the first signal starts tracing (start-up stays fast)
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
        path = os.path.join(_OUT, f"probe-{_n[0]}.pickle")
        with open(path, "wb") as f:
            pickle.dump({"snapshot": snap, "types": dict(counts), "lru": {**lru, **memo}}, f)

    signal.signal(signal.SIGUSR1, _dump)
