"""End to end through real third-party SMPP software on 127.0.0.1:

    Kannel smsbox/bearerbox (ESME)  --SMPP-->  mamori proxy  --SMPP-->  npm `smpp` SMSC (Node.js)

The SMSC is started by scripts/services/smsc.sh (MAMORI_TEST_SMSC); Kannel is started here
with a per-test configuration pointing at the proxy this test runs. Kannel's sendsms is the
way messages enter, its dlr-url callbacks tell what happened (delivered, or refused with which
SMPP status), and the SMSC's log tells what arrived on the other side.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import queue
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest

from gateway.config import Settings
from gateway.ingress.smpp import SmppProxy
from gateway.message import Message
from gateway.runtime import Gateway
from gateway.sms.registry import SenderIdEntry, registry_for
from gateway.verdict import Verdict

pytestmark = pytest.mark.e2e


def _root_conftest() -> Any:
    """tests/conftest.py by path: with several non-package conftest.py files, the module
    named `conftest` is whichever pytest loaded last."""
    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("mamori_tests_conftest", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


service_env = _root_conftest().service_env

KANNEL_ACCOUNT = ("kannel", "kannelpw")
ADMIN_PORT, SMSBOX_PORT, SENDSMS_PORT = 13000, 13001, 13013
REJECT = "ESME_RSUBMITFAIL"  # configured for this test: Kannel reports it as NACK/0x00000045


class _Callbacks(BaseHTTPRequestHandler):
    inbox: queue.Queue[dict[str, str]]

    def do_GET(self) -> None:
        q = parse_qs(urlsplit(self.path).query)
        self.inbox.put({"path": urlsplit(self.path).path, **{k: v[0] for k, v in q.items()}})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def callbacks() -> Iterator[tuple[int, queue.Queue[dict[str, str]]]]:
    inbox: queue.Queue[dict[str, str]] = queue.Queue()
    handler = type("H", (_Callbacks,), {"inbox": inbox})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1], inbox
    srv.shutdown()
    srv.server_close()


def _kannel_conf(state: Path, proxy_port: int, cb_port: int) -> str:
    return f"""
group = core
admin-port = {ADMIN_PORT}
admin-password = adminpw
admin-allow-ip = "127.0.0.1"
smsbox-port = {SMSBOX_PORT}
box-deny-ip = "*.*.*.*"
box-allow-ip = "127.0.0.1"
log-file = "{state}/bearerbox.log"
log-level = 1
dlr-storage = internal

group = smsc
smsc = smpp
smsc-id = mamori
host = 127.0.0.1
port = {proxy_port}
transceiver-mode = true
smsc-username = {KANNEL_ACCOUNT[0]}
smsc-password = {KANNEL_ACCOUNT[1]}
system-type = ""
reconnect-delay = 1
enquire-link-interval = 30
max-pending-submits = 10

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {SMSBOX_PORT}
sendsms-port = {SENDSMS_PORT}
sendsms-interface = 127.0.0.1
log-file = "{state}/smsbox.log"
log-level = 1

group = sendsms-user
username = tester
password = testpw
max-messages = 10
concatenation = true

group = sms-service
keyword = default
catch-all = true
max-messages = 0
get-url = "http://127.0.0.1:{cb_port}/mo?from=%p&to=%P&text=%a"
"""


@dataclass
class Rig:
    gw: Gateway
    proxy: SmppProxy
    smsc_log: Path
    inbox: queue.Queue[dict[str, str]]
    cb_port: int
    scanned: list[tuple[Message, Verdict]]

    async def sendsms(self, client: httpx.AsyncClient, tag: str, **params: str) -> None:
        q = {"username": "tester", "password": "testpw", "dlr-mask": "17",
             "dlr-url": f"http://127.0.0.1:{self.cb_port}/dlr?tag={tag}&type=%d&reply=%A",
             **params}
        r = await client.get(f"http://127.0.0.1:{SENDSMS_PORT}/cgi-bin/sendsms", params=q)
        assert r.status_code == 202, r.text

    async def dlr(self, tag: str, timeout: float = 20.0) -> dict[str, str]:
        end = time.monotonic() + timeout
        pending: list[dict[str, str]] = []
        try:
            while time.monotonic() < end:
                try:
                    item = await asyncio.to_thread(self.inbox.get, True, 0.2)
                except queue.Empty:
                    continue
                if item.get("tag") == tag:
                    return item
                pending.append(item)
            raise AssertionError(f"no delivery report for {tag}")
        finally:
            for item in pending:
                self.inbox.put(item)

    def submits(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.smsc_log.read_text().splitlines() if line]


async def _wait_port(port: int, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            _r, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"port {port} did not open")


@pytest.fixture
def peers() -> dict[str, str]:
    """Read before `settings`, which clears MAMORI_* from the environment."""
    return {k: service_env(k) for k in ("MAMORI_TEST_SMSC", "MAMORI_TEST_KANNEL_BIN",
                                        "MAMORI_TEST_SMSC_LOG", "MAMORI_TEST_SMSC_SYSTEM_ID",
                                        "MAMORI_TEST_SMSC_PASSWORD")}


@pytest.fixture
async def rig(peers: dict[str, str], settings: Settings, tmp_path: Path,
              callbacks: tuple[int, queue.Queue[dict[str, str]]]) -> AsyncIterator[Rig]:
    smsc = peers["MAMORI_TEST_SMSC"]
    kannel_bin = Path(peers["MAMORI_TEST_KANNEL_BIN"])
    smsc_log = Path(peers["MAMORI_TEST_SMSC_LOG"])
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        proxy_port = sk.getsockname()[1]
    cfg = settings.smpp.model_copy(update={
        "listen": f"127.0.0.1:{proxy_port}", "upstream": smsc,
        "upstream_system_id": peers["MAMORI_TEST_SMSC_SYSTEM_ID"],
        "upstream_password": peers["MAMORI_TEST_SMSC_PASSWORD"],
        "accounts": {KANNEL_ACCOUNT[0]: KANNEL_ACCOUNT[1]}, "reject_status": REJECT,
        "concat_wait": 5.0})
    s = settings.model_copy(update={"smpp": cfg})
    gw = Gateway.create(s)
    await gw.start()
    scanned: list[tuple[Message, Verdict]] = []

    async def hook(m: Message, v: Verdict, ingress: str) -> None:
        scanned.append((m, v))

    gw.hooks.append(hook)
    # the deterministic fraud signal this test owns: a brand sender ID from the wrong account
    registry_for(gw.env.resources, s.data_dir).put(
        SenderIdEntry("MyBank", "My Bank", frozenset({"bank-a2p"})))
    proxy = SmppProxy(gw, cfg)
    await proxy.start()
    cb_port, inbox = callbacks
    state = tmp_path / "kannel"
    state.mkdir()
    conf = state / "kannel.conf"
    conf.write_text(_kannel_conf(state, proxy_port, cb_port))
    procs = [subprocess.Popen([str(kannel_bin / "bearerbox"), str(conf)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        await _wait_port(SMSBOX_PORT)
        procs.append(subprocess.Popen([str(kannel_bin / "smsbox"), str(conf)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        await _wait_port(SENDSMS_PORT)
        end = time.monotonic() + 20
        while not any(x.bound for x in proxy.sessions) and time.monotonic() < end:
            await asyncio.sleep(0.1)
        assert any(x.bound for x in proxy.sessions), "Kannel did not bind to the proxy"
        yield Rig(gw, proxy, smsc_log, inbox, cb_port, scanned)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                await asyncio.to_thread(p.wait, 10)
            except subprocess.TimeoutExpired:
                p.kill()
                await asyncio.to_thread(p.wait)
        await proxy.stop()
        await gw.close()
        if os.environ.get("MAMORI_KEEP_KANNEL_LOGS"):
            shutil.copytree(state, Path(os.environ["MAMORI_KEEP_KANNEL_LOGS"]), dirs_exist_ok=True)


async def test_kannel_through_mamori_to_smsc(rig: Rig) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        before = len(rig.submits())
        # 1. ham is delivered, and its delivery receipt finds its way back to Kannel
        await rig.sendsms(client, "ham", **{"from": "+819011112222", "to": "+818033334444",
                                            "text": "Running late, see you at 7"})
        dlr = await rig.dlr("ham")
        assert dlr["type"] == "1", dlr  # 1 = delivered (the SMSC's receipt, relayed back)
        ham = [x for x in rig.submits()[before:] if x["message"] == "Running late, see you at 7"]
        assert len(ham) == 1 and ham[0]["destination_addr"].lstrip("+") == "818033334444"
        assert ham[0]["source_addr_ton"] == 1  # Kannel sends +NUMBER as TON international

        # 2. fraud (a brand sender ID from an account not registered for it) is refused with
        #    the configured status and never reaches the SMSC
        n = len(rig.submits())
        await rig.sendsms(client, "fraud", **{"from": "MyBank", "to": "+818033334444",
                                              "text": "Your card is locked. Verify now"})
        dlr = await rig.dlr("fraud")
        assert dlr["type"] == "16", dlr  # 16 = SMSC reject
        assert "0x00000045" in dlr["reply"].upper().replace("0X", "0x"), dlr
        assert all("Verify now" not in x["message"] for x in rig.submits()[n:])
        fraud = [v for m, v in rig.scanned if m.sender == "MyBank"]
        assert fraud and fraud[0].action.value == "reject"
        assert "SMS_SENDER_SPOOFED" in fraud[0].symbols

        # 3. a three-part Japanese UCS-2 message is reassembled and judged as one
        jp = ("【お知らせ】いつもご利用いただきありがとうございます。明日の会議は午後三時から"
              "本社の第二会議室で行います。資料は事前にお送りしますので、ご確認のうえご参加"
              "ください。駐車場は地下二階をご利用いただけます。ご不明な点がございましたら"
              "総務部までお気軽にお問い合わせください。よろしくお願いいたします。")
        assert 134 < len(jp) <= 201
        n = len(rig.submits())
        n_scanned = len(rig.scanned)
        await rig.sendsms(client, "jp", **{"from": "+819055556666", "to": "+818033334444",
                                           "text": jp, "coding": "2", "charset": "UTF-8"})
        dlr = await rig.dlr("jp")
        assert dlr["type"] == "1", dlr
        parts = rig.submits()[n:]
        assert len(parts) == 3 and all(p["data_coding"] == 8 for p in parts)
        assert "".join(p["message"] for p in parts) == jp  # as the node SMSC decoded them
        judged = [m for m, _v in rig.scanned[n_scanned:] if m.sender.lstrip("+") == "819055556666"]
        assert len(judged) == 1
        assert judged[0].text == jp and judged[0].protocol["parts"] == "3"
