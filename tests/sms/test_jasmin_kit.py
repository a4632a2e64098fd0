"""The Jasmin interceptor script against mamori's real HTTP server (uvicorn on loopback)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.api import server as api_server
from gateway.config import Settings
from gateway.runtime import Gateway
from gateway.sms.encoding import concat_udh
from gateway.sms.registry import SenderIdEntry, registry_for

from .conftest import free_port

SCRIPT = Path(__file__).resolve().parents[2] / "plugins" / "jasmin" / "mamori_intercept.py"


def pdu(params: dict[str, Any], nxt: Any = None) -> Any:
    return SimpleNamespace(params=params, nextPdu=nxt)


@pytest.fixture
async def api(settings: Settings):  # type: ignore[no-untyped-def]
    port = free_port()
    s = settings.model_copy(update={"api": settings.api.model_copy(update={
        "listen": f"127.0.0.1:{port}", "keys": {"jk": ["sms:check"]}})})
    gw = Gateway.create(s)
    await gw.start()
    registry_for(gw.env.resources, s.data_dir).put(
        SenderIdEntry("MyBank", "My Bank", frozenset({"bank"})))
    svc = await api_server.start(gw)
    yield gw, {"MAMORI_URL": f"http://127.0.0.1:{port}", "MAMORI_API_KEY": "jk",
               "MAMORI_TIMEOUT": "5"}
    assert svc is not None
    await svc.stop()
    await gw.close()


def run_script(routable: Any, env: dict[str, str]) -> dict[str, Any]:
    ns: dict[str, Any] = {"__name__": "jasmin_interceptor"}
    exec(compile(SCRIPT.read_text(), str(SCRIPT), "exec"), ns)  # as interceptord does
    smpp, http = ns["check"](routable, env=env)
    return {"smpp_status": smpp, "http_status": http}


async def test_ham_passes_spoof_refused(api) -> None:  # type: ignore[no-untyped-def]
    _gw, env = api
    ham = SimpleNamespace(user=SimpleNamespace(uid="shop"), pdu=pdu({
        "source_addr": b"+819011112222", "destination_addr": b"+818033334444",
        "short_message": b"Your order has shipped", "data_coding": 0, "esm_class": 0}))
    assert await asyncio.to_thread(run_script, ham, env) == {"smpp_status": None,
                                                             "http_status": None}
    spoof = SimpleNamespace(user=SimpleNamespace(uid="shop"), pdu=pdu({
        "source_addr": b"MyBank", "destination_addr": b"+818033334444",
        "short_message": b"Card locked, verify now", "data_coding": 0, "source_addr_ton": 5}))
    assert await asyncio.to_thread(run_script, spoof, env) == {"smpp_status": 0x102,
                                                               "http_status": 403}


async def test_chained_ucs2_parts_judged_together(api) -> None:  # type: ignore[no-untyped-def]
    gw, env = api
    seen: list[str] = []

    async def hook(m, v, ingress):  # type: ignore[no-untyped-def]
        seen.append(m.text)

    gw.hooks.append(hook)
    a, b = "お荷物をお預かりして", "おります。"
    p2 = pdu({"short_message": concat_udh(1, 2, 2) + b.encode("utf-16-be"), "esm_class": 0x40,
              "data_coding": 8})
    p1 = pdu({"source_addr": "Sagawa", "destination_addr": "+818033334444", "data_coding": 8,
              "short_message": concat_udh(1, 2, 1) + a.encode("utf-16-be"), "esm_class": 0x40},
             p2)
    out = await asyncio.to_thread(run_script, SimpleNamespace(pdu=p1), env)
    assert out["smpp_status"] is None
    assert seen == [a + b]


async def test_unreachable_fail_open_or_closed() -> None:
    r = SimpleNamespace(pdu=pdu({"source_addr": "x", "destination_addr": "y",
                                 "short_message": b"hi"}))
    env = {"MAMORI_URL": f"http://127.0.0.1:{free_port()}", "MAMORI_TIMEOUT": "0.5"}
    assert await asyncio.to_thread(run_script, r, env) == {"smpp_status": None,
                                                           "http_status": None}
    env["MAMORI_FAIL_OPEN"] = "0"
    assert await asyncio.to_thread(run_script, r, env) == {"smpp_status": 0x100,
                                                           "http_status": 503}
