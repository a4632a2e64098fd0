"""PartyHasher's precomputed HMAC states give the bytes of hmac.digest (HMAC-SHA256)."""

from __future__ import annotations

import hmac

import pytest

from gateway.policy import normalise_party
from gateway.privacy import PartyHasher


@pytest.mark.parametrize("key", [b"k" * 16, b"bench-hash-key-0123456789", bytes(range(64)),
                                 bytes(range(65)), b"\xff" * 200])
def test_same_as_hmac_digest(key: bytes) -> None:
    h = PartyHasher(key)
    for party in ["+81 90-1234-5678", "819012345678", "Alice@Example.COM", "MyBank", "\u9280\u884c",
                  "+81 90-1234-5678"]:  # the last one again: from the memo
        want = hmac.digest(key, normalise_party(party).encode("utf-8"), "sha256").hex()[:32]
        assert h(party) == "h1:" + want
    assert h("") is None and h(None) is None
