"""Built-in checks. They register through the `mamori.plugins` entry point like any plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.pipeline import Check
    from gateway.plugins import PluginEnv


def builtin_checks(env: PluginEnv) -> list[Check]:
    from gateway.checks.structure import EmailStructureCheck
    from gateway.pipeline import PolicyListsCheck

    checks: list[Check] = [PolicyListsCheck(), EmailStructureCheck()]
    return checks
