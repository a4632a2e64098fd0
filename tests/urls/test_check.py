"""The URL check in the pipeline: symbols, weights, options, hot reload in a running gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.config import Settings
from gateway.events import NullSink
from gateway.message import Message
from gateway.plugins import PluginEnv
from gateway.runtime import Gateway
from gateway.store.policy import MemoryPolicyStore
from gateway.verdict import Action

from .conftest import save_list


def make_gateway(settings: Settings) -> Gateway:
    return Gateway.create(settings, env=PluginEnv(settings), events=NullSink(),
                          policies=MemoryPolicyStore())


@pytest.fixture
async def gw(url_settings: Settings) -> AsyncIterator[Gateway]:
    g = make_gateway(url_settings)
    yield g
    await g.close()


async def scan_sms(gw: Gateway, text: str):
    return await gw.process(Message.sms(text, sender="SENDER", recipient="+8190"), ingress="test")


async def test_listed_url_rejects_alone(url_settings: Settings, gw: Gateway) -> None:
    v = await scan_sms(gw, "荷物の確認 https://www.listed-phish.example/track?id=1")
    assert v.action is Action.REJECT
    sym = v.symbols["URL_LISTED"]
    assert sym.score >= 12
    assert sym.options == ("www.listed-phish.example", "list:jpcert", "brand:Amazon")


async def test_listed_path_prefix(url_settings: Settings, gw: Gateway) -> None:
    v = await scan_sms(gw, "see a.b.evil.example/login/x?y")
    assert "URL_LISTED" in v.symbols
    v = await scan_sms(gw, "see evil.example/other")
    assert "URL_LISTED" not in v.symbols


async def test_lookalike_is_strong_but_below_reject(url_settings: Settings, gw: Gateway) -> None:
    v = await scan_sms(gw, "Your account is locked: https://amazon-security-xyz.top/verify")
    assert "URL_BRAND_ABUSE" in v.symbols
    assert "brand:Amazon" in v.symbols["URL_BRAND_ABUSE"].options
    assert "reason:brand-plus-word" in v.symbols["URL_BRAND_ABUSE"].options
    assert "URL_RISKY_TLD" in v.symbols
    look = v.symbols["URL_BRAND_ABUSE"].score
    assert 5 <= look < 12
    v = await scan_sms(gw, "https://amazom.co.jp/")
    assert 5 <= v.symbols["URL_LOOKALIKE"].score < 12


async def test_shortener_small_score(url_settings: Settings, gw: Gateway) -> None:
    v = await scan_sms(gw, "The meeting notes are here: bit.ly/3abcDEF")
    assert 0 < v.symbols["URL_SHORTENER"].score < 3
    assert v.action is Action.ACCEPT


async def test_obfuscated_url(url_settings: Settings, gw: Gateway) -> None:
    v = await scan_sms(gw, "hxxps://listed-phish[.]example/a")
    assert "URL_LISTED" in v.symbols
    assert "reason:defanged" in v.symbols["URL_OBFUSCATED"].options


async def test_allowlisted_url_skips_other_url_symbols(url_settings: Settings, gw: Gateway) -> None:
    v = await scan_sms(gw, "Your bill: https://my.carrier.example/amazon-security")
    assert "URL_ALLOWLISTED" in v.symbols
    assert "URL_LISTED" not in v.symbols


async def test_brand_named_in_sms_with_foreign_link(url_settings: Settings, gw: Gateway) -> None:
    v = await scan_sms(gw, "【三井住友カード】ご利用確認のお願い https://random-words.example/a")
    assert "brand:三井住友カード" in v.symbols["URL_BRAND_TEXT"].options
    v = await scan_sms(gw, "【三井住友カード】ご利用確認 https://www.smbc-card.com/mem/index.jsp")
    assert "URL_BRAND_TEXT" not in v.symbols


async def test_email_href_mismatch(url_settings: Settings, gw: Gateway) -> None:
    raw = (b"From: a@b.example\r\nTo: c@d.example\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/html; charset=utf-8\r\n\r\n"
           b'<html><body><a href="http://collect.example/x">https://www.paypal.com/signin</a>'
           b"</body></html>\r\n")
    v = await gw.process(Message.email(raw), ingress="test")
    assert "shown:www.paypal.com" in v.symbols["URL_HREF_MISMATCH"].options


async def test_no_url_no_symbols(url_settings: Settings, gw: Gateway) -> None:
    v = await scan_sms(gw, "See you at 5. Bring the book.")
    assert not [s for s in v.symbols if s.startswith("URL_")]


async def test_no_index_yet_is_fine(settings: Settings) -> None:
    gw = make_gateway(settings)
    v = await scan_sms(gw, "https://listed-phish.example/")
    assert "URL_LISTED" not in v.symbols
    assert not v.failed_checks


async def test_new_index_is_picked_up_without_restart(url_settings: Settings) -> None:
    url_settings.urls.reload_interval = 0.0
    gw = make_gateway(url_settings)
    await gw.start()
    try:
        v = await scan_sms(gw, "https://fresh-campaign.example/a")
        assert "URL_LISTED" not in v.symbols
        save_list(url_settings.data_dir, "openphish", {"fresh-campaign.example": ""})
        v = await scan_sms(gw, "https://fresh-campaign.example/a")
        assert "list:openphish" in v.symbols["URL_LISTED"].options
    finally:
        await gw.close()


async def test_reload_waits_for_the_interval(url_settings: Settings) -> None:
    url_settings.urls.reload_interval = 3600.0
    gw = make_gateway(url_settings)
    await scan_sms(gw, "https://x.example/")
    save_list(url_settings.data_dir, "openphish", {"fresh-campaign.example": ""})
    v = await scan_sms(gw, "https://fresh-campaign.example/a")
    assert "URL_LISTED" not in v.symbols  # picked up at the next check, not on every message


async def test_disabling_the_url_check_keeps_its_weights_valid(url_settings: Settings) -> None:
    url_settings.pipeline.disabled_checks = ["urls"]
    gw = make_gateway(url_settings)  # scores.toml names URL_* symbols: must still start
    assert "urls" not in gw.pipeline.by_name
    v = await scan_sms(gw, "https://www.listed-phish.example/")
    assert "URL_LISTED" not in v.symbols
