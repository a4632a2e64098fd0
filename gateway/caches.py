"""Bounded memo caches whose size is a setting (`MAMORI_LIMITS__MEMO_CACHE_SIZE`).

Pure functions over hosts, domains and sender ids (`canonical_host`, `registered_domain`, ...)
are memoised: real traffic repeats a small set of them. Hostile or merely varied traffic does
not, so every such cache is an LRU with one configured bound, applied at start-up by
`Gateway.create` (`configure`). `sizes()` reports what each holds (the soak's memory probe and
`tests/test_caches.py` read it)."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_SIZE = 8192
_size = DEFAULT_SIZE
_MEMOS: weakref.WeakSet[Memo[Any, Any]] = weakref.WeakSet()


class Memo(Generic[P, R]):
    """`functools.lru_cache` whose bound can be changed after import."""

    def __init__(self, fn: Callable[P, R], name: str | None = None) -> None:
        self.fn = fn
        self.name = name or f"{fn.__module__}.{fn.__qualname__}"
        self._cached = functools.lru_cache(maxsize=_size)(fn)
        functools.update_wrapper(self, fn)
        _MEMOS.add(self)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._cached(*args, **kwargs)  # type: ignore[arg-type]

    def resize(self, size: int) -> None:
        self._cached = functools.lru_cache(maxsize=size)(self.fn)

    def cache_info(self) -> functools._CacheInfo:
        return self._cached.cache_info()

    def cache_clear(self) -> None:
        self._cached.cache_clear()


def memo(fn: Callable[P, R]) -> Memo[P, R]:
    """Decorator: a bounded memo cache of the configured size."""
    return Memo(fn)


def configure(size: int) -> None:
    """Bound every memo cache (present and future) to `size` entries; 0 turns memoising off."""
    global _size
    size = max(0, int(size))
    if size == _size:
        return
    _size = size
    for m in list(_MEMOS):
        m.resize(size)


def size() -> int:
    return _size


def sizes() -> dict[str, int]:
    """Entries held by each memo cache, by name (summed over instances)."""
    out: dict[str, int] = {}
    for m in list(_MEMOS):
        out[m.name] = out.get(m.name, 0) + m.cache_info().currsize
    return out
