"""Retention: every stored record type expires after its configured period and is purged;
a legal hold keeps matching records until it is lifted.

Stores that keep records implement `Retainable` and register with `register_retainable` at
start-up; `purge_all` (run by `mamori retention purge` and on a schedule inside `mamori serve`)
calls each with its cutoff and the active holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Holds:
    """Active legal holds: records of these subscribers or message ids are kept."""

    subscribers: frozenset[str] = frozenset()
    message_ids: frozenset[str] = frozenset()

    def holds(self, subscriber: str | None, message_id: str | None) -> bool:
        return (subscriber is not None and subscriber in self.subscribers) or (
            message_id is not None and message_id in self.message_ids
        )


class Retainable(Protocol):
    kind: str  # "verdicts", "quarantine", "feedback", "audit", "dmarc", ...

    async def purge(self, cutoff: float, holds: Holds) -> int:
        """Delete records older than `cutoff` (unix time) unless held; return how many."""
        ...


@dataclass
class RetentionRegistry:
    stores: list[Retainable] = field(default_factory=list)

    def register(self, store: Retainable) -> None:
        self.stores.append(store)


REGISTRY = RetentionRegistry()


def register_retainable(store: Retainable) -> None:
    REGISTRY.register(store)
