"""Symbols, check results, actions and verdicts (after rspamd's model).

A check declares the symbols it may emit (`SymbolSpec`) and at run time returns `Symbol`s:
a name, a factor and options that explain the hit. Score = configured weight x factor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

SYMBOL_NAME_RE = re.compile(r"^[A-Z][A-Z0-9_]{1,63}$")

CHECK_FAILED = "CHECK_FAILED"


class Action(StrEnum):
    """What happens to a message, from mildest to strictest."""

    ACCEPT = "accept"
    TAG = "tag"
    QUARANTINE = "quarantine"
    SOFT_REJECT = "soft_reject"
    REJECT = "reject"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def blocks(self) -> bool:
        """Whether the recipient does not get the message now."""
        return self in (Action.QUARANTINE, Action.SOFT_REJECT, Action.REJECT)


_SEVERITY = {a: i for i, a in enumerate(Action)}


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """A symbol a check may emit: UPPER_SNAKE name, group, explanation, default weight."""

    name: str
    group: str
    description: str
    weight: float | None = None  # None: the scores file must give one

    def __post_init__(self) -> None:
        if not SYMBOL_NAME_RE.match(self.name):
            raise ValueError(f"symbol name {self.name!r} is not UPPER_SNAKE")


@dataclass(frozen=True, slots=True)
class Symbol:
    """One hit: the name of a declared symbol, a factor (usually 0..1) and explaining options."""

    name: str
    factor: float = 1.0
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: str
    symbols: tuple[Symbol, ...] = ()
    error: str | None = None
    elapsed: float = 0.0

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass(frozen=True, slots=True)
class ScoredSymbol:
    name: str
    score: float
    options: tuple[str, ...] = ()
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"score": round(self.score, 4), "options": list(self.options)}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one scan for one policy."""

    message_id: str
    channel: str
    action: Action
    score: float
    symbols: Mapping[str, ScoredSymbol]
    thresholds: Mapping[str, float] = field(default_factory=dict)
    subscriber: str | None = None
    policy_version: str = "default"
    model_version: str | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    failed_checks: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    elapsed_ms: float = 0.0
    reason: str = ""

    @property
    def is_spam(self) -> bool:
        return self.action is not Action.ACCEPT

    def to_json(self) -> dict[str, Any]:
        """The verdict in the shape `mamori scan` and the HTTP hook print."""
        return {
            "action": self.action.value,
            "score": round(self.score, 4),
            "symbols": {name: s.to_json() for name, s in self.symbols.items()},
            "model_version": self.model_version,
        }

    def explanations(self) -> list[dict[str, Any]]:
        """What a subscriber sees under "why was this blocked", strongest first."""
        return [
            {"symbol": s.name, "score": round(s.score, 3), "description": s.description,
             "options": list(s.options)}
            for s in sorted(self.symbols.values(), key=lambda s: -s.score)
            if s.score > 0
        ]
