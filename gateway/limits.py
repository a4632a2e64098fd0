"""The `MAMORI_LIMITS__*` section for modules that have no settings object of their own (MIME
walking, URL extraction, the SMS hook's models). `Gateway.create` applies the configured section;
until then (a library caller, a unit test) the defaults hold. Read `limits.current().NAME` where a
module constant used to be."""

from __future__ import annotations

import re

from gateway import caches
from gateway.api.ratelimit import RateLimiter
from gateway.config import LimitsSettings, Settings

_current = LimitsSettings()


def current() -> LimitsSettings:
    return _current


def apply(settings: Settings | LimitsSettings) -> LimitsSettings:
    global _current
    _current = settings.limits if isinstance(settings, Settings) else settings
    caches.configure(_current.memo_cache_size)
    return _current


_FIELD_START = re.compile(rb"^[^ \t\r\n]", re.M)


def header_over_limit(raw: bytes, lim: LimitsSettings | None = None) -> bool:
    """Whether the header block of a raw mail has more bytes or fields than the limits allow
    (`MAMORI_LIMITS__HEADER_MAX_BYTES`, `__HEADER_MAX_COUNT`; answered 552 5.3.4)."""
    lim = lim or _current
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    head = raw if end < 0 else raw[:end]
    if len(head) > lim.header_max_bytes:
        return True
    return len(_FIELD_START.findall(head)) > lim.header_max_count


def per_minute(limit: int) -> RateLimiter | None:
    """Per-client token buckets of `limit` a minute (bursts up to `limit`), None when 0 (off).
    At most `MAMORI_LIMITS__CLIENT_STATE_MAX` clients are tracked: the least recent is dropped
    (it starts again with a full bucket), so hostile address churn costs bounded memory."""
    if limit <= 0:
        return None
    return RateLimiter(limit / 60.0, limit, maxkeys=_current.client_state_max)
