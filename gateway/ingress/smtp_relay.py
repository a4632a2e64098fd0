"""A pool of kept-open SMTP connections to the content filter's next hop.

A fresh connection per message costs a TCP handshake, the greeting, EHLO and QUIT: more CPU
and round trips than relaying the message itself. The pool keeps up to `size` idle sessions
and reuses them, most recently used first.

Never lose or duplicate a message:
- the caller answers its client 250 only after the next hop answered 250 to our DATA;
- a pooled session can have died while idle (the next hop's idle timeout, a restart). If it
  fails *before our DATA command was sent* (MAIL or RCPT: a disconnect, a reset or a 421),
  the next hop cannot have queued anything, so the transaction is retried once on a fresh
  connection;
- once DATA was sent, any failure is reported to the caller (a temporary failure for the
  client, which retries): a retry could deliver the message twice;
- a session that saw any error is closed, never returned to the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Sequence
from typing import Any

import aiosmtplib
import aiosmtplib.email
import aiosmtplib.smtp

log = logging.getLogger("mamori.smtp.relay")

# failures of a reused session that prove the next hop got no DATA from us on it
_STALE_ERRORS = (aiosmtplib.SMTPServerDisconnected, ConnectionError)


# aiosmtplib checks every envelope address with `email.utils.parseaddr` twice per transaction
# (before sending and to quote it), more CPU than the rest of relaying a small message. A plain
# dot-atom address (the SMTP filter hands over the paths its client sent) parses to itself, so
# it is taken as is; anything else goes through aiosmtplib's own parse and checks.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9_+=-]+(?:\.[A-Za-z0-9_+=-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\Z")
_library_parse_address = aiosmtplib.email.parse_address


def parse_address(address: str) -> str:
    """aiosmtplib's `parse_address`, with plain addresses taken without a parse."""
    if _PLAIN_ADDRESS.match(address):
        return address
    return _library_parse_address(address)


def quote_address(address: str) -> str:
    return f"<{parse_address(address)}>"


aiosmtplib.smtp.parse_address = parse_address  # type: ignore[attr-defined]
aiosmtplib.smtp.quote_address = quote_address  # type: ignore[attr-defined]


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client, noting whether the DATA command of this transaction was sent."""

    data_sent = False

    async def data(self, *args: Any, **kwargs: Any) -> Any:
        self.data_sent = True
        return await super().data(*args, **kwargs)


def _stale(exc: BaseException) -> bool:
    if isinstance(exc, _STALE_ERRORS):
        return True
    return isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == 421


class RelayPool:
    """Kept-open sessions to one next hop. `size` 0: a new connection per message."""

    def __init__(self, host: str, port: int, *, timeout: float, local_hostname: str,
                 size: int = 16, max_idle: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.local_hostname = local_hostname
        self.size = size
        self.max_idle = max_idle
        self._idle: list[tuple[_Client, float]] = []
        self.connects = 0
        self.reused = 0
        self.retries = 0

    async def _connect(self) -> _Client:
        client = _Client(hostname=self.host, port=self.port, timeout=self.timeout,
                         start_tls=False, use_tls=False, local_hostname=self.local_hostname)
        await client.connect()
        self.connects += 1
        return client

    def _checkout(self) -> _Client | None:
        now = time.monotonic()
        while self._idle:
            client, since = self._idle.pop()
            if client.is_connected and now - since < self.max_idle:
                return client
            self._discard(client)
        return None

    def _checkin(self, client: _Client) -> None:
        if self.size > 0 and len(self._idle) < self.size and client.is_connected:
            client.data_sent = False
            self._idle.append((client, time.monotonic()))
        else:
            self._discard(client, quit=True)

    @staticmethod
    def _discard(client: _Client, *, quit: bool = False) -> None:
        if quit and client.is_connected:
            task = asyncio.ensure_future(_quit(client))
            _QUITTING.add(task)
            task.add_done_callback(_QUITTING.discard)
        else:
            client.close()

    async def sendmail(self, sender: str, recipients: Sequence[str], data: bytes
                       ) -> tuple[dict[str, Any], str]:
        """One mail transaction; raises aiosmtplib's errors (or OSError/TimeoutError) as
        `aiosmtplib.SMTP.sendmail` does. See the module docstring for the retry rule."""
        async with asyncio.timeout(self.timeout):
            client = self._checkout()
            if client is not None:
                self.reused += 1
                try:
                    return await self._send(client, sender, recipients, data)
                except BaseException as exc:
                    if client.data_sent or not _stale(exc):
                        raise
                    self.retries += 1
                    log.debug("pooled next-hop session was stale; retrying on a new one")
            client = await self._connect()
            return await self._send(client, sender, recipients, data)

    async def _send(self, client: _Client, sender: str, recipients: Sequence[str],
                    data: bytes) -> tuple[dict[str, Any], str]:
        try:
            out = await client.sendmail(sender, list(recipients), data)
        except BaseException:
            self._discard(client)
            raise
        self._checkin(client)
        return out

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(c) for c, _ in idle), return_exceptions=True)
        if _QUITTING:
            await asyncio.gather(*list(_QUITTING), return_exceptions=True)


_QUITTING: set[asyncio.Task[None]] = set()


async def _quit(client: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(5):
            await client.quit()
    client.close()
