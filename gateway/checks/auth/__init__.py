"""Email authentication: SPF (RFC 7208), DKIM (RFC 6376/8463), ARC (RFC 8617), DMARC
(RFC 7489/9091) with aggregate reports, and the Authentication-Results header (RFC 8601).

Registered through the `mamori.plugins` entry point `auth = gateway.checks.auth:checks`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.config import Settings
    from gateway.dns import CachingResolver
    from gateway.pipeline import Check
    from gateway.plugins import PluginEnv

log = logging.getLogger("mamori.auth")


def shared_resolver(settings: Settings, resources: dict[str, Any]) -> CachingResolver:
    """The process's DNS resolver (one cache for every check), created on first use."""
    from gateway.dns import CachingResolver, build_resolver

    res = resources.get("dns")
    if isinstance(res, CachingResolver):
        return res
    a = settings.auth
    res = build_resolver(zone_file=a.zone_file, timeout=a.dns_timeout, nameservers=a.nameservers,
                         max_entries=a.dns_cache_size)
    resources["dns"] = res
    return res


def build_auth_checks(settings: Settings, resolver: CachingResolver, *, events: Any = None,
                      disabled: frozenset[str] = frozenset()) -> list[Check]:
    from gateway.checks.auth.check import (
        ArcCheck,
        AuthResultsCheck,
        AuthShared,
        DkimCheck,
        DmarcCheck,
        SpfCheck,
    )

    shared = AuthShared.from_settings(settings, resolver, events=events)
    dmarc = DmarcCheck(shared)
    # a disabled dependency must not stop the gateway from starting
    dmarc.depends_on = tuple(d for d in DmarcCheck.depends_on if d not in disabled)  # type: ignore[misc]
    return [SpfCheck(shared), DkimCheck(shared), ArcCheck(shared), dmarc, AuthResultsCheck(shared)]


def checks(env: PluginEnv) -> list[Check]:
    """The plugin factory: the auth checks, sharing the process's resolver and event sink."""
    resolver = shared_resolver(env.settings, env.resources)
    return build_auth_checks(env.settings, resolver, events=env.resources.get("events"),
                             disabled=frozenset(env.settings.pipeline.disabled_checks))
