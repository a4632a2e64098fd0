"""The settings page in a real headless Chromium (Debian's package): toggle a setting, release
a quarantined message, check the stored state, and save a screenshot.

The screenshot goes to the test's temporary directory, or to docs/img/settings-page.png when
MAMORI_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from gateway.api import server
from gateway.config import Settings
from gateway.message import Message
from gateway.policy import Policy

from .cdp import Browser
from .conftest import make_settings, open_gateway, token

CHROMIUM_AT_IMPORT = os.environ.get("MAMORI_TEST_CHROMIUM", "")
UPDATE = os.environ.get("MAMORI_UPDATE_SCREENSHOTS", "") == "1"
ROOT = Path(__file__).resolve().parents[2]
SUB = "+819011112222"


def chromium() -> str:
    if CHROMIUM_AT_IMPORT:
        return CHROMIUM_AT_IMPORT
    found = shutil.which("chromium")
    if found:
        return found
    from conftest import service_env

    return service_env("MAMORI_TEST_CHROMIUM")


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_settings_page_in_chromium(settings: Settings, backend: str, tmp_path: Path) -> None:
    exe = chromium()
    from .server_thread import free_port

    port = free_port()
    s = make_settings(settings, backend, listen=f"127.0.0.1:{port}")
    gw, _ = await open_gateway(s)
    assert gw.stores is not None
    await gw.start()
    svc = await server.start(gw)
    assert svc is not None
    try:
        # two blocked messages for the subscriber
        await gw.stores.policies.put(Policy(subscriber=SUB, block=frozenset({"+15550001234"})))
        held = []
        for text in ("【重要】お客様のアカウントが停止されました。こちらで確認: http://bad.example/jp",
                     "Your parcel is waiting: pay the customs fee at http://bad.example/pay"):
            m = Message.sms(text, sender="+15550001234", subscriber=SUB)
            assert (await gw.process(m, ingress="sms")).action.blocks
            held.append(m.id)
        await gw.stores.policies.put(Policy(subscriber=SUB, block=frozenset({"+15550001234"})))

        async with Browser(exe) as b:
            await b.navigate(f"http://127.0.0.1:{port}/settings?lang=ja#token={token(SUB)}")
            await b.wait_for("document.getElementById('status').dataset.state === 'ready'")
            assert await b.eval("location.hash") == ""  # the token left the URL
            assert await b.eval("document.documentElement.lang") == "ja"
            assert await b.eval("document.querySelectorAll('#quarantine-list li[data-message-id]')"
                                ".length") == 2
            assert await b.eval("document.getElementById('f-youth').checked") is False

            # toggle a setting
            await b.click("#f-youth")
            await b.wait_for("document.getElementById('status').dataset.state === 'saved'")
            assert await b.eval("document.getElementById('f-youth').checked") is True
            stored = await gw.stores.policy_db.get(SUB)
            assert stored.youth is True and stored.block == frozenset({"+15550001234"})

            # release a quarantined message
            mid = held[0]
            await b.click(f"li[data-message-id='{mid}'] button.release")
            await b.wait_for(f"!document.querySelector(\"li[data-message-id='{mid}'] button\")"
                             f" && !!document.querySelector(\"li[data-message-id='{mid}'] .released\")")
            item = await gw.stores.quarantine.get(SUB, mid)
            assert item is not None and item.status == "released"
            other = await gw.stores.quarantine.get(SUB, held[1])
            assert other is not None and other.status == "held"

            # the reasons are shown, as text
            reasons = await b.eval("document.querySelector('.reasons').textContent")
            assert "常にブロック" in reasons  # the Japanese explanation of POLICY_BLOCKLIST
            assert b.problems() == []
            shot = (ROOT / "docs" / "img" / "settings-page.png") if UPDATE else (
                tmp_path / "settings-page.png")
            await b.screenshot(shot)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        await svc.stop()
        await gw.close()
