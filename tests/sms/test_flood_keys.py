"""The flood check's keys are what they were: replicas sharing Redis count the same members."""

from __future__ import annotations

import hashlib

from gateway.checks.sms import SmsFloodCheck
from gateway.message import Message, ScanContext
from gateway.policy import DEFAULT_POLICY
from gateway.sms.flood import text_fingerprint


def test_member_is_the_keyed_blake2b_of_the_recipient() -> None:
    check = SmsFloodCheck(60.0, 5, 5, 1000, b"flood-key-0123456789")
    for rcpt in ("+818012345678", "+447700900123", "ｘ\udcff"):  # noqa: RUF001
        ctx = ScanContext(Message.sms("Win a prize now", sender="Prize", recipient=rcpt),
                          DEFAULT_POLICY)
        keys = check._keys(ctx)
        assert keys is not None
        want = hashlib.blake2b(rcpt.encode("utf-8", "replace"), key=check.key,
                               digest_size=12).hexdigest()
        assert keys == ("t:" + text_fingerprint("Win a prize now"), "s:prize", want)


def test_ascii_fingerprint_keeps_only_letters() -> None:
    want = hashlib.blake2b(b"winaprizeaturlbitlynow", digest_size=12).hexdigest()
    assert text_fingerprint("Win a PRIZE! at http://bit.ly/x123 now, 42") == want
