"""Fault: `mamori serve` killed with SIGKILL while a client is in the middle of a message.

The client never got a 250 for it, sees the connection fail, and retries once the gateway is
back; the message then arrives. Killed after the final "." but before the reply, the next hop
may already hold a copy: the retry can make a duplicate, never a loss (SMTP's at-least-once).
A milter client (the MTA) sees the connection drop and applies its milter_default_action."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from gateway.ingress.milter_codec import MilterClient
from tests.faults.support import Serve, Sink, free_port, smtp_send

pytestmark = pytest.mark.slow

BODY = b"".join(b"line %d of a long message body, see you at 7\r\n" % i for i in range(2000))


def start_dialogue(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = s.makefile("rb")

    def reply() -> bytes:
        while True:
            line = f.readline()
            if not line or line[3:4] != b"-":
                return line

    assert reply().startswith(b"220")
    for cmd in (b"EHLO client.example.org", b"MAIL FROM:<a@example.org>",
                b"RCPT TO:<user@example.test>", b"DATA"):
        s.sendall(cmd + b"\r\n")
        assert reply()[:1] in (b"2", b"3"), cmd
    s.sendall(b"From: a@example.org\r\nTo: user@example.test\r\nSubject: kill\r\n"
              b"Message-ID: <kill@example.org>\r\n\r\n" + BODY[: len(BODY) // 2])
    return s


def finish(s: socket.socket) -> bytes:
    """Send the rest and the final dot; the reply line, or b'' when the connection failed."""
    try:
        s.sendall(BODY[len(BODY) // 2:] + b".\r\n")
        s.settimeout(10)
        return s.recv(1024)
    except OSError:
        return b""
    finally:
        s.close()


@pytest.mark.parametrize("when", ["in_data", "after_dot"])
def test_kill_9_mid_message_nothing_acknowledged_is_lost(tmp_path: Path, when: str) -> None:
    port = free_port()
    with Sink() as sink:
        env = {"MAMORI_SMTP__LISTEN": f"127.0.0.1:{port}",
               "MAMORI_SMTP__NEXT_HOP": f"127.0.0.1:{sink.port}"}
        srv = Serve(tmp_path / "data", **env).start(port)
        try:
            s = start_dialogue(port)
            if when == "in_data":
                srv.kill()
                answer = finish(s)
            else:
                s.sendall(BODY[len(BODY) // 2:] + b".\r\n")
                srv.kill()
                try:
                    s.settimeout(10)
                    answer = s.recv(1024)
                except OSError:
                    answer = b""
                s.close()
            assert not answer.startswith(b"250"), answer  # never acknowledged
            time.sleep(0.5)  # a relay cut by the kill may still land at the next hop
            copies_before_retry = len(sink.messages)
            srv = Serve(tmp_path / "data", **env).start(port)  # back (same data dir)
            code, _ = asyncio.run(smtp_send(port, 1, subject="kill"))  # the client's retry
            assert code == 250
        finally:
            srv.stop()
        assert len(sink.messages) == copies_before_retry + 1
        assert len(sink.messages) >= 1
        if when == "in_data":
            assert copies_before_retry == 0


def test_kill_9_during_milter_session_the_mta_sees_a_failure(tmp_path: Path) -> None:
    port = free_port()
    srv = Serve(tmp_path / "data", MAMORI_MILTER__LISTEN=f"inet:127.0.0.1:{port}").start(port)

    async def session() -> str:
        client = await MilterClient.open(f"127.0.0.1:{port}")
        await client.connect("mx.example.org", "192.0.2.1", 25)
        srv.kill()
        try:
            res = await client.message("a@example.org", ["user@example.test"],
                                       [("Subject", "kill")], BODY)
            return f"answered {res.final!r}"
        except (OSError, asyncio.IncompleteReadError, EOFError) as exc:
            return type(exc).__name__
        finally:
            await client.close()

    try:
        outcome = asyncio.run(session())
    finally:
        srv.stop()
    assert not outcome.startswith("answered"), outcome  # the MTA tempfails (default action)
