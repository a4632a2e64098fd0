"""Random identifiers of messages and events: UUID version 4 as 32 hex digits.

The same values `uuid.uuid4().hex` gives (16 bytes from the OS's CSPRNG, the version and
variant bits set), without a `UUID` object and without a system call per id: the random
bytes are read 4 KiB at a time and handed out 16 at a time (every SMS needs two ids: its
message id and its verdict event's). The pool is emptied in a forked child, so worker
processes never share ids; `deque.popleft` is atomic, so threads never share one either."""

from __future__ import annotations

import os
from collections import deque

_MASK128 = (1 << 128) - 1
_CLEAR = _MASK128 & ~((0xC000 << 48) | (0xF000 << 64))  # variant and version bits
_SET = (0x8000 << 48) | (4 << 76)  # variant RFC 4122, version 4
_POOL_BYTES = 4096
_from_bytes = int.from_bytes
_urandom = os.urandom
_pool: deque[bytes] = deque()
os.register_at_fork(after_in_child=_pool.clear)


def _refill() -> bytes:
    buf = _urandom(_POOL_BYTES)
    _pool.extend(buf[i:i + 16] for i in range(16, _POOL_BYTES, 16))
    return buf[:16]


def new_id() -> str:
    """A random UUID4 in hex (32 lower-case digits, no dashes)."""
    try:
        raw = _pool.popleft()
    except IndexError:
        raw = _refill()
    return "%032x" % ((_from_bytes(raw) & _CLEAR) | _SET)
