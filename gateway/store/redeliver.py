"""Re-delivery of released email: the stored copy (envelope, header fields, body as received)
is re-injected by SMTP at MAMORI_STORE__RELEASE_SMTP (host:port, e.g. the MTA's re-injection
port that bypasses the filter). SMS re-delivery belongs to the SMS ingress, which registers its
own redeliverer in `gw.stores.quarantine.redeliverers["sms"]`."""

from __future__ import annotations

import asyncio
import logging
import smtplib

from gateway.config import parse_hostport
from gateway.errors import StoreError
from gateway.message import Message
from gateway.store.quarantine import message_bytes

log = logging.getLogger("mamori.store.redeliver")

SMTP_TIMEOUT = 30.0


class SmtpRedeliverer:
    def __init__(self, address: str, *, helo: str = "mamori.localhost") -> None:
        self.host, self.port = parse_hostport(address)
        self.helo = helo

    def _send(self, message: Message) -> None:
        with smtplib.SMTP(self.host, self.port, local_hostname=self.helo,
                          timeout=SMTP_TIMEOUT) as smtp:
            refused = smtp.sendmail(message.sender, list(message.recipients), message_bytes(message))
            if refused:
                raise smtplib.SMTPRecipientsRefused(refused)

    async def __call__(self, message: Message) -> bool:
        if not message.recipients:
            return False
        try:
            await asyncio.to_thread(self._send, message)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("release: re-injection failed (%s)", type(exc).__name__)
            raise StoreError("re-delivery failed; the message stays in quarantine") from exc
        return True
