"""Shared data and helpers for the events, privacy and retention tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"

# secrets that must never leave the process in clear text
SMS_BODY = "Your parcel is held, pay the fee at once zq7"
SMS_SENDER = "+819011112222"
SMS_RECIPIENT = "+819033334444"
EMAIL_SENDER = "alice.sender@example.org"
EMAIL_RECIPIENT = "bob.recipient@example.test"
EMAIL_BODY = "Confidential quarterly numbers xk9 attached for review"
EMAIL_RAW = (
    f"From: Alice <{EMAIL_SENDER}>\r\nTo: Bob <{EMAIL_RECIPIENT}>\r\n"
    "Subject: Quarterly figures\r\nMessage-ID: <abc123@example.org>\r\n"
    f"Content-Type: text/plain; charset=utf-8\r\n\r\n{EMAIL_BODY}\r\n"
).encode()
SECRETS = [SMS_BODY, SMS_SENDER, SMS_RECIPIENT, SMS_SENDER.lstrip("+"), SMS_RECIPIENT.lstrip("+"),
           "9011112222", "9033334444", EMAIL_SENDER, EMAIL_RECIPIENT, EMAIL_BODY, "zq7", "xk9",
           "alice.sender", "bob.recipient", "Quarterly figures"]


def validator(stream: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{stream}.v1.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def assert_valid(stream: str, event: dict[str, Any]) -> None:
    errors = sorted(validator(stream).iter_errors(event), key=str)
    assert not errors, [e.message for e in errors]


def assert_no_secrets(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} found in clear text in {where}"
