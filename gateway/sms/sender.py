"""Sender (originator) types from SMPP TON/NPI, with inference when TON is unknown."""

from __future__ import annotations

from enum import StrEnum

from gateway.ingress.smpp_pdu import (
    TON_ABBREVIATED,
    TON_ALPHANUMERIC,
    TON_INTERNATIONAL,
    TON_NATIONAL,
    TON_NETWORK_SPECIFIC,
    TON_SUBSCRIBER,
)

SHORT_CODE_MAX_DIGITS = 6


class SenderType(StrEnum):
    INTERNATIONAL = "international"  # E.164 with country code
    NATIONAL = "national"
    SHORT_CODE = "short_code"
    ALPHANUMERIC = "alphanumeric"  # a sender ID such as "MyBank"
    UNKNOWN = "unknown"


def sender_type(sender: str, ton: int | None = None, npi: int | None = None) -> SenderType:
    """Classify an originator. TON wins when it is set; otherwise the form of the address."""
    s = sender.strip()
    if not s:
        return SenderType.UNKNOWN
    if ton == TON_ALPHANUMERIC:
        return SenderType.ALPHANUMERIC
    if ton == TON_INTERNATIONAL:
        return SenderType.INTERNATIONAL
    if ton in (TON_NETWORK_SPECIFIC, TON_ABBREVIATED):
        return SenderType.SHORT_CODE
    if ton in (TON_NATIONAL, TON_SUBSCRIBER):
        return SenderType.SHORT_CODE if len(s) <= SHORT_CODE_MAX_DIGITS else SenderType.NATIONAL
    digits = s[1:] if s.startswith("+") else s
    if not digits.isdigit():
        return SenderType.ALPHANUMERIC
    if s.startswith("+") or s.startswith("00"):
        return SenderType.INTERNATIONAL
    if len(s) <= SHORT_CODE_MAX_DIGITS:
        return SenderType.SHORT_CODE
    if s.startswith("0"):
        return SenderType.NATIONAL
    return SenderType.UNKNOWN


def e164_digits(sender: str) -> str:
    s = sender.strip()
    if s.startswith("+"):
        s = s[1:]
    elif s.startswith("00"):
        s = s[2:]
    if s.isdigit():
        return s  # only digits already (the common case): the loop below keeps them all
    return "".join(ch for ch in s if ch.isdigit())


def is_international(sender: str, ton: int | None, home_country_code: str) -> bool:
    """Whether the originator is a number of another country than `home_country_code`
    (E.164 country code, e.g. "81"). An international-format number of the home country
    is domestic."""
    return sender_type(sender, ton) is SenderType.INTERNATIONAL and is_foreign(
        sender, home_country_code)


def is_foreign(sender: str, home_country_code: str) -> bool:
    """Whether an international-format `sender` is of another country than
    `home_country_code` (every country when that is empty)."""
    return not home_country_code or country_code(sender) != home_country_code


# E.164 country codes of one and two digits (every other country code has three)
_CC1 = frozenset({"1", "7"})
_CC2 = frozenset({
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46",
    "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63",
    "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98"})


def country_code(sender: str) -> str:
    """The E.164 country code of an international number ("+447700..." -> "44")."""
    d = e164_digits(sender)
    if d[:1] in _CC1:
        return d[:1]
    if d[:2] in _CC2:
        return d[:2]
    return d[:3]
