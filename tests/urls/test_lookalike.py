"""Lookalike and impersonation detection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.urls.lookalike import Lookalikes, load_brands, skeleton
from gateway.urls.scan import url_data


@pytest.fixture(scope="module")
def look() -> Lookalikes:
    return Lookalikes.default(risky_tlds=url_data()["risky_tlds"])


@pytest.mark.parametrize(("host", "brand", "reason"), [
    ("amazon-security-xyz.top", "Amazon", "brand-plus-word"),
    ("smbccard-jp.com", "三井住友カード", "brand-plus-word"),
    ("appleidverify.net", "Apple ID", "brand-plus-word"),
    ("amazon.co.jp.evil.top", "Amazon", "brand-in-subdomain"),
    ("www.rakuten-card.secure-login.com", "楽天", "brand-in-subdomain"),
    ("xn--pple-43d.com", "Apple ID", "homoglyph"),  # Cyrillic a
    ("rnercari.jp", "メルカリ", "homoglyph"),
    ("amazom.co.jp", "Amazon", "edit-distance"),
    ("rakutenn.com", "楽天", "edit-distance"),
    ("mercari.top", "メルカリ", "other-tld"),
])
def test_lookalikes(look: Lookalikes, host: str, brand: str, reason: str) -> None:
    hit = look.classify(host)
    assert hit is not None, host
    assert (hit.brand, hit.reason) == (brand, reason)


@pytest.mark.parametrize("host", [
    "www.amazon.co.jp", "smile.amazon.com", "www.smbc-card.com", "mail.yahoo.co.jp",
    "pineapple.com", "example.com", "ajcbx.com", "news.ycombinator.com", "www.linux.org",
    "yahoo.com.au", "lindows.com", "family.zawodny.com", "1.2.3.4", "",
])
def test_not_lookalikes(look: Lookalikes, host: str) -> None:
    assert look.classify(host) is None


def test_official_domains(look: Lookalikes) -> None:
    b = look.is_official("www.eki-net.com")
    assert b is not None and b.name == "えきねっと"
    assert look.is_official("eki-net.com.evil.top") is None


def test_skeleton_maps_confusables() -> None:
    assert skeleton("\u0440aypa\u04cf") == "paypal"
    assert skeleton("g00gle") == "google"
    assert skeleton("rnicrosoft") == "microsoft"


def test_brands_file_is_complete() -> None:
    brands = load_brands()
    assert len(brands) >= 60
    for b in brands:
        assert b.domains and b.name
        assert all(len(k) >= 3 for k in b.keywords)


def test_japanese_messages(shared_data: Path) -> None:
    """Real Japanese texts: legitimate ones raise no brand symbol, and prose glued to a domain
    does not become part of it."""
    from gateway.config import load_settings
    from gateway.urls.extract import extract_urls
    from gateway.urls.scan import UrlScanner

    scanner = UrlScanner.from_settings(load_settings(data_dir=shared_data / "no-index-here"))
    brand_symbols = {"URL_LOOKALIKE", "URL_BRAND_ABUSE", "URL_BRAND_TEXT"}
    legit = 0
    for line in (shared_data / "ja" / "ja_messages_dev.jsonl").read_text("utf-8").splitlines():
        msg = json.loads(line)
        found = extract_urls(msg["text"])
        for f in found:
            assert not any("\u3040" <= ch <= "\u9fff" for ch in f.url), f.url
        if msg["label"] == "legit":
            legit += 1
            names = {s.name for s in scanner.scan(found, text=msg["text"], sms=True)}
            assert not names & brand_symbols, (msg["brand"], names)
    assert legit >= 5
