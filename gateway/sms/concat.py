"""Reassembly of concatenated SMS (UDH or sar_* TLVs) with a bounded wait and bounded memory.

Parts are grouped by a key the caller builds (account, originator, recipient, reference,
total). A group is released when complete, when its wait expires, or when it is the oldest
and the memory bound is reached: an incomplete group is then judged on the parts it has (a
firewall never holds traffic forever, and never lets parts slip through unjudged).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Part:
    seq: int
    data: bytes
    item: Any = None  # what the caller needs to answer this part (PDU, session, ...)
    earlier: list[Any] = field(default_factory=list)  # items of replaced duplicates

    def items(self) -> list[Any]:
        return [*self.earlier, self.item]


@dataclass(slots=True)
class Group:
    key: Hashable
    total: int
    created: float
    parts: dict[int, Part] = field(default_factory=dict)
    size: int = 0

    @property
    def complete(self) -> bool:
        return len(self.parts) >= self.total

    def ordered(self) -> list[Part]:
        return [self.parts[k] for k in sorted(self.parts)]

    def payload(self) -> bytes:
        return b"".join(p.data for p in self.ordered())


class Reassembler:
    def __init__(self, *, wait: float = 5.0, max_groups: int = 10_000,
                 max_bytes: int = 16 * 1024 * 1024, clock: Any = time.monotonic) -> None:
        self.wait = wait
        self.max_groups = max_groups
        self.max_bytes = max_bytes
        self.clock = clock
        self._groups: OrderedDict[Hashable, Group] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._groups)

    def add(self, key: Hashable, total: int, seq: int, data: bytes,
            item: Any = None) -> tuple[Group | None, list[Group]]:
        """Add a part. Returns (the group if now complete, groups evicted for memory)."""
        g = self._groups.get(key)
        if g is None:
            g = Group(key, max(total, 1), self.clock())
            self._groups[key] = g
        earlier: list[Any] = []
        if seq in g.parts:  # a duplicate part replaces the text of the first (resubmission);
            old = g.parts[seq]  # both submissions are still answered
            g.size -= len(old.data)
            self.bytes -= len(old.data)
            earlier = old.items()
        g.parts[seq] = Part(seq, data, item, earlier)
        g.size += len(data)
        self.bytes += len(data)
        done: Group | None = None
        if g.complete:
            done = self._pop(key)
        evicted: list[Group] = []
        while self._groups and (len(self._groups) > self.max_groups or self.bytes > self.max_bytes):
            evicted.append(self._pop(next(iter(self._groups))))
        return done, evicted

    def _pop(self, key: Hashable) -> Group:
        g = self._groups.pop(key)
        self.bytes -= g.size
        return g

    def expired(self, now: float | None = None) -> list[Group]:
        """Groups whose wait is over (oldest first)."""
        now = self.clock() if now is None else now
        out: list[Group] = []
        while self._groups:
            key, g = next(iter(self._groups.items()))
            if now - g.created < self.wait:
                break
            out.append(self._pop(key))
        return out

    def drain(self) -> list[Group]:
        out = list(self._groups.values())
        self._groups.clear()
        self.bytes = 0
        return out
