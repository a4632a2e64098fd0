"""Helpers of the fault and soak tests: a real `mamori serve` process, a next-hop SMTP sink."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

HASH_KEY = "reliability-test-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"mamori serve exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


class Sink:
    """A next-hop MTA: stores every message it accepts (thread-safe list)."""

    def __init__(self, reply: str = "250 OK") -> None:
        self.messages: list[bytes] = []
        self.reply = reply
        self._lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.reply.startswith("250"):
            with self._lock:
                self.messages.append(bytes(envelope.original_content or envelope.content))
        return self.reply

    def __enter__(self) -> Sink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


class Serve:
    """`mamori serve` in a child process with the given MAMORI_* settings (plus a data dir)."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MAMORI_")}
        self.env.update({"MAMORI_DATA_DIR": str(data_dir), "MAMORI_HASH_KEY": HASH_KEY,
                         "MAMORI_LOG_LEVEL": "WARNING", "MAMORI_API__LISTEN": "",
                         "MAMORI_SMTP__LISTEN": "", "MAMORI_RETENTION__INTERVAL_HOURS": "0"})
        self.env.update(env)
        self.log = data_dir / "serve.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *ports: int) -> Serve:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT)
        for p in ports:
            wait_port(p, proc=self.proc)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.terminate()
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


@contextlib.contextmanager
def serving(data_dir: Path, ports: tuple[int, ...], **env: str) -> Iterator[Serve]:
    s = Serve(data_dir, **env)
    try:
        yield s.start(*ports)
    finally:
        s.stop()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def smtp_send(port: int, n: int, *, subject: str = "hello") -> tuple[int, list[str]]:
    """Send one message through an SMTP filter; (reply code, [message id header])."""
    import aiosmtplib

    mid = f"<fault-{n}@example.org>"
    raw = (f"From: a{n}@example.org\r\nTo: user@example.test\r\nSubject: {subject} {n}\r\n"
           f"Message-ID: {mid}\r\n\r\nSee you at 7, n={n}\r\n").encode()
    try:
        await aiosmtplib.send(raw, sender=f"a{n}@example.org", recipients=["user@example.test"],
                              hostname="127.0.0.1", port=port, timeout=30)
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code, [mid]
    return 250, [mid]
