"""Check discovery through the entry-point group `mamori.plugins`.

An entry point names a factory `f(env: PluginEnv) -> Iterable[Check]`. Built-in checks register
the same way (`builtin = gateway.checks:builtin_checks` in pyproject.toml). Discovery happens
once at start-up, never on the per-message path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.pipeline import Check, Pipeline
from gateway.scoring import load_scores

GROUP = "mamori.plugins"
log = logging.getLogger("mamori.plugins")


@dataclass
class PluginEnv:
    """What a check factory gets: the settings and shared resources (created lazily by the
    checks that need them and kept here so that several checks share one)."""

    settings: Settings
    resources: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {"model.sms": Path}


def discover() -> list[tuple[str, Callable[[PluginEnv], Iterable[Check]]]]:
    found: list[tuple[str, Callable[[PluginEnv], Iterable[Check]]]] = []
    seen: set[str] = set()
    for ep in entry_points(group=GROUP):
        if ep.value in seen:
            continue
        seen.add(ep.value)
        try:
            found.append((ep.name, ep.load()))
        except Exception as exc:
            raise ConfigError(f"plugin {ep.name} ({ep.value}) failed to load: {exc}") from exc
    if "gateway.checks:builtin_checks" not in seen:  # running from a source tree without metadata
        from gateway.checks import builtin_checks

        found.insert(0, ("builtin", builtin_checks))
    return found


def build_checks(env: PluginEnv, *, include_disabled: bool = False) -> list[Check]:
    checks: list[Check] = []
    disabled = set(env.settings.pipeline.disabled_checks)
    for name, factory in discover():
        try:
            made = list(factory(env))
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"plugin {name} failed to create its checks: {exc}") from exc
        for check in made:
            if not isinstance(check, Check):
                raise ConfigError(f"plugin {name} returned {type(check).__name__}, not a Check")
            if include_disabled or check.name not in disabled:
                checks.append(check)
    return checks


def build_pipeline(settings: Settings, env: PluginEnv | None = None) -> Pipeline:
    env = env or PluginEnv(settings)
    every = build_checks(env, include_disabled=True)
    disabled = set(settings.pipeline.disabled_checks)
    checks = [c for c in every if c.name not in disabled]
    # weights of a disabled check's symbols stay valid in the scores file
    specs = [s for c in every for s in c.symbols]
    p = settings.pipeline
    scores = load_scores(specs, scores_file=p.scores_file or None, weights=p.weights,
                         thresholds=p.thresholds)
    return Pipeline(
        checks,
        scores,
        deadline=p.deadline,
        check_timeout=p.check_timeout,
        check_timeouts=p.check_timeouts,
    )
