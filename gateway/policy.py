"""Per-subscriber protection policy.

Every subscriber has the default profile without any setup: free, on, blocking fraud.
The policy is a frozen value; stores return it, the pipeline reads it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from operator import attrgetter
from typing import Any

import orjson


class Strength(StrEnum):
    LOW = "low"
    STANDARD = "standard"
    HIGH = "high"


_STRENGTH_VALUE = {s: s.value for s in Strength}


class OnBlock(StrEnum):
    QUARANTINE = "quarantine"  # keep a recoverable copy for the configured period
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class Policy:
    subscriber: str | None = None
    protection: bool = True
    strength: Strength = Strength.STANDARD
    block_international: bool = False
    block_url_unknown_senders: bool = False
    block_spoofed: bool = True
    honour_dmarc: bool = True
    youth: bool = False
    on_block: OnBlock = OnBlock.QUARANTINE
    allow: frozenset[str] = frozenset()
    block: frozenset[str] = frozenset()
    contacts: frozenset[str] = frozenset()
    weights: Mapping[str, float] = field(default_factory=dict)
    updated_at: float = 0.0

    @property
    def is_default(self) -> bool:
        # every field but the subscriber and the time, compared without building a copy
        # (every verdict asks for the version)
        return self is DEFAULT_POLICY or _settings_of(self) == _DEFAULT_SETTINGS

    @property
    def version(self) -> str:
        """A short, stable digest of the settings (not of the subscriber id)."""
        if self.is_default:
            return "default"
        data = self.to_json()
        data.pop("subscriber", None)
        data.pop("updated_at", None)
        return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]

    def threshold_multiplier(self, strength_table: Mapping[str, float]) -> float:
        m = strength_table.get(_STRENGTH_VALUE[self.strength], 1.0)  # `.value`, without a call
        if self.youth:
            m *= strength_table.get("youth", 1.0)
        return m

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("allow", "block", "contacts"):
            d[key] = sorted(d[key])
        d["strength"] = self.strength.value
        d["on_block"] = self.on_block.value
        d["weights"] = dict(self.weights)
        return d

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Policy:
        kw: dict[str, Any] = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("allow", "block", "contacts"):
            if key in kw:
                kw[key] = frozenset(kw[key] or ())
        if "strength" in kw:
            kw["strength"] = Strength(kw["strength"])
        if "on_block" in kw:
            kw["on_block"] = OnBlock(kw["on_block"])
        if "weights" in kw:
            kw["weights"] = dict(kw["weights"] or {})
        return cls(**kw)

    def for_subscriber(self, subscriber: str | None) -> Policy:
        """This policy for another subscriber: `replace(self, subscriber=subscriber)`, by
        copying the slots (under half of `replace`'s cost; each unknown SMS recipient gets one)."""
        new = _new_policy(Policy)
        for put, value in zip(_PUT_FIELDS, _get_fields(self), strict=True):
            put(new, value)
        _put_subscriber(new, subscriber)
        return new


_FIELD_NAMES = tuple(f.name for f in fields(Policy) if f.name != "subscriber")
_get_fields = attrgetter(*_FIELD_NAMES)
_PUT_FIELDS = tuple(getattr(Policy, n).__set__ for n in _FIELD_NAMES)  # slot descriptors
_put_subscriber = getattr(Policy, "subscriber").__set__  # noqa: B009 (the slot descriptor)
_new_policy = object.__new__
DEFAULT_POLICY = Policy()
_settings_of = attrgetter(*(f.name for f in fields(Policy) if f.name not in ("subscriber", "updated_at")))
_DEFAULT_SETTINGS = _settings_of(DEFAULT_POLICY)


def normalise_party(value: str) -> str:
    """Normalise a phone number, sender ID, address or domain for list matching."""
    v = value.strip().lower()
    if v.startswith("<") and v.endswith(">"):
        v = v[1:-1]
    if v and (v[0] == "+" or v[0].isdigit()) and "@" not in v:
        if (v[1:] if v[0] == "+" else v).isdigit():
            return v  # already only digits (the common case): the loop below keeps them all
        v = "+" + "".join(ch for ch in v if ch.isdigit()) if v[0] == "+" else "".join(
            ch for ch in v if ch.isdigit()
        )
    return v


def list_matches(entries: frozenset[str], party: str) -> str | None:
    """The entry of an allow/block list that matches `party` (exact, domain of an address,
    or a parent domain), or None."""
    if not entries or not party:
        return None
    p = normalise_party(party)
    if p in entries:
        return p
    domain = p.rsplit("@", 1)[1] if "@" in p else p
    parts = domain.split(".")
    for i in range(len(parts) - 1):
        cand = ".".join(parts[i:])
        if cand in entries:
            return cand
    return None
