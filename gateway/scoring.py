"""Weights, thresholds and forced actions, loaded from data files and configuration.

Validation at start-up (after rspamd): a weight for an undeclared symbol, or a declared
symbol without any weight, refuses to start.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError
from gateway.verdict import CHECK_FAILED, Action, SymbolSpec

DEFAULT_SCORES = "scores.toml"
THRESHOLD_ACTIONS = (Action.REJECT, Action.QUARANTINE, Action.TAG)


@dataclass(frozen=True, slots=True)
class Scores:
    weights: Mapping[str, float]
    thresholds: Mapping[Action, float]
    strength: Mapping[str, float]
    force_actions: Mapping[str, Action] = field(default_factory=dict)

    def weight(self, name: str) -> float:
        return self.weights.get(name, 0.0)

    def action_for(self, score: float, multiplier: float = 1.0) -> Action:
        for action in THRESHOLD_ACTIONS:
            t = self.thresholds.get(action)
            if t is not None and score >= t * multiplier:
                return action
        return Action.ACCEPT


def _read_toml(path: Path | None) -> dict[str, Any]:
    try:
        if path is None:
            text = resources.files("gateway.data").joinpath(DEFAULT_SCORES).read_text("utf-8")
        else:
            text = path.read_text("utf-8")
        return tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        where = path or f"gateway/data/{DEFAULT_SCORES}"
        raise ConfigError(f"cannot read scores file {where}: {exc}") from exc


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _parse_action(name: str, where: str) -> Action:
    try:
        return Action(name)
    except ValueError:
        raise ConfigError(f"{where}: unknown action {name!r}") from None


def load_scores(
    specs: Iterable[SymbolSpec],
    *,
    scores_file: str | Path | None = None,
    weights: Mapping[str, float] | None = None,
    thresholds: Mapping[str, float] | None = None,
) -> Scores:
    """Build the scoring table for the declared symbols, with overrides applied in order:
    checks' default weights < shipped scores.toml < scores_file < weights/thresholds."""
    doc = _read_toml(None)
    declared = {s.name: s for s in specs}
    declared.setdefault(CHECK_FAILED, SymbolSpec(CHECK_FAILED, "pipeline", "a check failed or timed out", 0.0))
    # The shipped file covers every built-in check, some of which may be disabled: its entries
    # for symbols no running check declares are dropped (a contract test keeps it consistent).
    # An operator's overrides naming an undeclared symbol are a typo: refuse to start.
    shipped = set(doc.get("symbols", {})) | set(doc.get("force_actions", {}))
    for section in ("symbols", "force_actions"):
        doc[section] = {k: v for k, v in doc.get(section, {}).items() if k in declared}
    overrides: dict[str, Any] = {}
    if scores_file:
        overrides = _read_toml(Path(scores_file))
    if weights:
        _merge(overrides, {"symbols": dict(weights)})
    if thresholds:
        _merge(overrides, {"thresholds": dict(thresholds)})
    for section in ("symbols", "force_actions"):
        names = set(overrides.get(section, {}))
        unknown = sorted(names - set(declared) - shipped)
        if unknown:
            raise ConfigError(f"scores name undeclared symbols: {', '.join(unknown)}")
        # a known symbol of a disabled check: valid, but nothing emits it
        overrides[section] = {k: v for k, v in overrides.get(section, {}).items() if k in declared}
    _merge(doc, overrides)

    file_weights: dict[str, Any] = doc.get("symbols", {})
    table: dict[str, float] = {}
    for name, spec in declared.items():
        raw = file_weights.get(name, spec.weight)
        if raw is None:
            raise ConfigError(f"symbol {name} has no weight (declare one or set it in the scores file)")
        try:
            table[name] = float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"symbol {name}: weight {raw!r} is not a number") from None

    th: dict[Action, float] = {}
    for key, value in doc.get("thresholds", {}).items():
        action = _parse_action(key, "thresholds")
        if action not in THRESHOLD_ACTIONS:
            raise ConfigError(f"thresholds: {key} cannot have a score threshold")
        th[action] = float(value)
    forced: dict[str, Action] = {}
    for name, action in doc.get("force_actions", {}).items():
        forced[name] = _parse_action(str(action), f"force_actions.{name}")
    strength = {k: float(v) for k, v in doc.get("strength", {}).items()}
    return Scores(weights=table, thresholds=th, strength=strength, force_actions=forced)
