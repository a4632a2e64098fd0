"""A real SMTP filter in a background thread for the dialogue fuzzer (one per test session)."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from pathlib import Path

from gateway.config import load_settings
from gateway.events import MemorySink
from gateway.ingress import smtp as smtp_ingress
from gateway.runtime import Gateway
from gateway.store.policy import MemoryPolicyStore

_port: int | None = None
_lock = threading.Lock()


def smtp_rig_port() -> int:
    global _port
    with _lock:
        if _port is None:
            ready = threading.Event()
            box: dict[str, int] = {}

            def run() -> None:
                async def main() -> None:
                    data = Path(tempfile.mkdtemp(prefix="mamori-fuzz-"))
                    s = load_settings(data_dir=data, hash_key="fuzz-key-0123456789abcdef")
                    s = s.model_copy(update={"smtp": s.smtp.model_copy(update={
                        "listen": "127.0.0.1:0", "next_hop": "127.0.0.1:9", "relay_timeout": 2.0})})
                    gw = Gateway.create(s, events=MemorySink(), policies=MemoryPolicyStore())
                    await gw.start()
                    svc = await smtp_ingress.start(gw)
                    assert svc is not None
                    box["port"] = svc.port
                    ready.set()
                    await asyncio.Event().wait()

                asyncio.run(main())

            threading.Thread(target=run, daemon=True, name="fuzz-smtp").start()
            ready.wait(30)
            _port = box["port"]
        return _port
