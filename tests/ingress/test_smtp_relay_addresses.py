"""The relay's fast path for envelope addresses agrees with aiosmtplib's own parse."""

from __future__ import annotations

import random

import aiosmtplib.email
import aiosmtplib.smtp
import pytest

from gateway.ingress import smtp_relay

ALPHABET = "abcXYZ019._+=-@\"<> ,;:()[]\\\r\n\t!#$%&'*/?^`{|}~é"


def library(address: str) -> str | type[ValueError]:
    try:
        return aiosmtplib.email.parse_address(address)
    except ValueError:
        return ValueError


def ours(address: str) -> str | type[ValueError]:
    try:
        return smtp_relay.parse_address(address)
    except ValueError:
        return ValueError


@pytest.mark.parametrize("address", [
    "user@example.test", "a.b+c=d_e-f@mail-1.example.co.jp", "x@y", "", " user@example.test",
    "user@example.test ", "a..b@example.test", ".a@example.test", "user@example.test.",
    "user@-example.test", "Name <user@example.test>", "user@example.test> NOTIFY=NEVER",
    "\"quoted local\"@example.test", "user@[192.0.2.1]", "user", "@example.test",
    "user@example.test\r\nRCPT TO:<x@y>", "ユーザ@example.test",
])
def test_same_as_the_library(address: str) -> None:
    assert ours(address) == library(address)


def test_same_as_the_library_on_random_addresses() -> None:
    rnd = random.Random(7)
    plain = 0
    for _ in range(5000):
        n = rnd.randint(1, 24)
        address = "".join(rnd.choice(ALPHABET) for _ in range(n))
        if rnd.random() < 0.5:  # mostly plain ones, which take the fast path
            address = "".join(rnd.choice("abz09._+=-") for _ in range(n)) + "@" + "".join(
                rnd.choice("abz09.-") for _ in range(rnd.randint(1, 12)))
        plain += bool(smtp_relay._PLAIN_ADDRESS.match(address))
        assert ours(address) == library(address), address
    assert plain > 500  # the fast path was exercised


def test_the_client_uses_it() -> None:
    assert aiosmtplib.smtp.parse_address is smtp_relay.parse_address
    assert aiosmtplib.smtp.quote_address("user@example.test") == "<user@example.test>"
