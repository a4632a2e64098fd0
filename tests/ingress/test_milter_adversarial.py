"""Hostile and broken MTA-side peers: truncated, oversized and malformed packets, unknown
commands, disconnects mid-body, idle clients, garbage, and thousands of connections at once.
The service never crashes, answers protocol-correctly or closes, and leaks no fds or tasks."""

from __future__ import annotations

import asyncio
import os
import random
import struct

import pytest

from gateway.ingress import milter_codec as mc
from gateway.ingress.milter import WANTED_ACTIONS, WANTED_PROTOCOL

from .milter_support import HAM_BODY, HAM_HEADERS
from .milter_support import milter_rig as milter_rig

SENDER = "alice@sender.test"
BOB = "bob@example.test"
BOUND = 30.0  # safety bound for awaiting a close (never a timing assertion)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def raw_conn(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, _, port = address.rpartition(":")
    return await asyncio.open_connection(host, int(port))


NEGOTIATE = mc.OptNeg(6, mc.ALL_ACTIONS, mc.ALL_PROTOCOL).encode()


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server still sends until it closes the connection."""
    out = b""
    async with asyncio.timeout(BOUND):
        while chunk := await reader.read(65536):
            out += chunk
    return out


async def drained(rig) -> None:
    async with asyncio.timeout(BOUND):
        while rig.service.sessions:
            await asyncio.sleep(0.01)


async def still_serves(rig) -> None:
    client = await mc.MilterClient.open(rig.address)
    await client.connect("mx.test", "192.0.2.1", 1)
    res = await client.message(SENDER, [BOB], HAM_HEADERS, HAM_BODY)
    await client.close()
    assert res.final == mc.SMFIR_ACCEPT


BAD_STREAMS = {
    "truncated-length": NEGOTIATE + b"\0\0",
    "truncated-packet": NEGOTIATE + struct.pack(">I", 100) + b"Lsubject\0",
    "oversized-length": NEGOTIATE + struct.pack(">I", 0x7FFFFFFF) + b"B",
    "just-over-limit": NEGOTIATE + struct.pack(">I", mc.MAX_PACKET + 1) + b"B",
    "zero-length": NEGOTIATE + b"\0\0\0\0",
    "unknown-command": NEGOTIATE + mc.encode(b"Z", b"whatever"),
    "command-before-negotiation": mc.encode(mc.SMFIC_CONNECT, b"h\x004\0\x19127.0.0.1\0"),
    "short-optneg": mc.encode(mc.SMFIC_OPTNEG, b"\0\0\0\x06"),
    "ancient-version": mc.OptNeg(1, 0, 0).encode(),
    "malformed-connect": NEGOTIATE + mc.encode(mc.SMFIC_CONNECT, b"no-family"),
    "bad-family": NEGOTIATE + mc.encode(mc.SMFIC_CONNECT, b"h\0X\0\x19addr\0"),
    "malformed-header": NEGOTIATE + mc.encode(mc.SMFIC_HEADER, b"only-a-name\0"),
    "empty-macro": NEGOTIATE + mc.encode(mc.SMFIC_MACRO),
    "mail-without-sender": NEGOTIATE + mc.encode(mc.SMFIC_MAIL),
    "rcpt-without-recipient": NEGOTIATE + mc.encode(mc.SMFIC_RCPT),
}


TRUNCATED = {"truncated-length", "truncated-packet"}  # the peer gives up mid-packet
OUR_NEGOTIATION = mc.OptNeg(6, WANTED_ACTIONS, WANTED_PROTOCOL).encode()


@pytest.mark.parametrize("name", list(BAD_STREAMS))
async def test_bad_input_closes_the_connection_and_nothing_else(milter_rig, name: str) -> None:
    stream = BAD_STREAMS[name]
    async with milter_rig() as rig:
        reader, writer = await raw_conn(rig.address)
        writer.write(stream)
        await writer.drain()
        if name in TRUNCATED:
            writer.write_eof()
        got = await closed_by_server(reader)
        # the server closes on its own; at most our negotiation reply came back
        assert got == (OUR_NEGOTIATION if stream.startswith(NEGOTIATE) else b"")
        writer.close()
        await writer.wait_closed()
        await drained(rig)
        assert rig.captured.verdicts == []
        await still_serves(rig)


async def test_disconnect_mid_body_scans_nothing(milter_rig) -> None:
    async with milter_rig() as rig:
        before = open_fds()
        for _ in range(20):
            client = await mc.MilterClient.open(rig.address)
            await client.connect("mx.test", "192.0.2.1", 1)
            for pkt in (mc.encode_strings(mc.SMFIC_MAIL, [f"<{SENDER}>"]),
                        mc.encode_strings(mc.SMFIC_RCPT, [f"<{BOB}>"]), mc.encode(mc.SMFIC_DATA),
                        mc.encode(mc.SMFIC_EOH)):
                assert await client.command(pkt) is None  # NR_MAIL, NR_RCPT, NR_DATA, NR_EOH
            await client.command(mc.encode(mc.SMFIC_BODY, b"x" * 65535))
            client.writer.write(mc.encode(mc.SMFIC_BODY, b"partial")[:-3])  # half a packet
            client.writer.close()
            await client.writer.wait_closed()
        await drained(rig)
        assert rig.captured.verdicts == []
        assert open_fds() <= before
        await still_serves(rig)


async def test_idle_and_slowloris_clients_are_cut(milter_rig) -> None:
    async with milter_rig(idle_timeout=0.3) as rig:
        silent = await raw_conn(rig.address)
        dribble = await raw_conn(rig.address)
        dribble[1].write(NEGOTIATE + b"\0\0")  # half a length, then nothing
        assert await closed_by_server(silent[0]) == b""
        assert (await closed_by_server(dribble[0]))[4:5] == mc.SMFIC_OPTNEG
        for _, w in (silent, dribble):
            w.close()
            await w.wait_closed()
        await drained(rig)


async def test_random_garbage_after_negotiation(milter_rig) -> None:
    rnd = random.Random(4)
    async with milter_rig() as rig:
        for _ in range(150):
            reader, writer = await raw_conn(rig.address)
            junk = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 300)))
            if rnd.random() < 0.5:  # a plausible length in front of the junk
                junk = struct.pack(">I", len(junk)) + junk
            writer.write(NEGOTIATE + junk)
            writer.write_eof()
            await closed_by_server(reader)
            writer.close()
            await writer.wait_closed()
        await drained(rig)
        await still_serves(rig)


async def test_header_flood_is_bounded(milter_rig) -> None:
    async with milter_rig() as rig:
        flood = [*HAM_HEADERS] + [("X-Junk", "j" * 1000)] * 2000  # 2 MB of header fields
        client = await mc.MilterClient.open(rig.address)
        await client.connect("mx.test", "192.0.2.1", 1)
        res = await client.message(SENDER, [BOB], flood, HAM_BODY)
        # over MAMORI_LIMITS__HEADER_MAX_BYTES (1 MiB): refused, never buffered past the bound
        assert res.final == mc.SMFIR_REPLYCODE and res.reply.startswith("552 5.3.4"), res
        assert not rig.captured.verdicts
        assert rig.service.buffered == 0
        res = await client.message(SENDER, [BOB], HAM_HEADERS, HAM_BODY)  # the session goes on
        await client.close()
        assert res.final == mc.SMFIR_ACCEPT


async def test_thousands_of_concurrent_connections(milter_rig) -> None:
    """2000 MTA connections at once against a limit of 1000: the first 1000 sessions are
    served, the rest get a tempfail at connect; afterwards no fd, session or task is left."""
    n, limit = 2000, 1000
    async with milter_rig(max_connections=limit) as rig:
        await still_serves(rig)  # warm up, then take the baseline
        await drained(rig)
        fds_before, tasks_before = open_fds(), len(asyncio.all_tasks())
        all_connected = asyncio.Event()
        connected = 0
        lock = asyncio.Semaphore(200)  # pace the connects to keep within the listen backlog

        async def one(i: int) -> bytes:
            nonlocal connected
            async with lock:  # (an MTA that waits for the CONNECT reply: refused there)
                client = await mc.MilterClient.open(
                    rig.address, protocol=mc.ALL_PROTOCOL & ~mc.SMFIP_NR_CONN)
            try:
                r = await client.connect("mx.test", "192.0.2.1", 1000 + i)
                connected += 1
                if connected == n:
                    all_connected.set()
                await all_connected.wait()  # every connection is open at the same time
                if r != mc.SMFIR_CONTINUE:
                    return b"refused"
                res = await client.message(SENDER, [BOB], HAM_HEADERS, HAM_BODY)
                return res.final + res.reply[:9].encode()
            finally:
                await client.close()

        async with asyncio.timeout(300):
            results = await asyncio.gather(*(one(i) for i in range(n)))
        assert results.count(b"refused") == n - limit
        served = [r for r in results if r != b"refused"]
        # each served message got a final reply: accepted, or back-pressure's tempfail
        assert all(r in (mc.SMFIR_ACCEPT, mc.SMFIR_REPLYCODE + b"451 4.3.2") for r in served)
        assert served.count(mc.SMFIR_ACCEPT) > 0
        await drained(rig)
        assert len(rig.captured.verdicts) == served.count(mc.SMFIR_ACCEPT) + 1
        assert open_fds() <= fds_before
        assert len(asyncio.all_tasks()) == tasks_before


async def test_memory_across_connections_is_bounded(milter_rig) -> None:
    """With max_buffered reached by messages in progress, another message is tempfailed
    (back-pressure) rather than scanned without its content; every byte is given back when
    messages end or connections drop."""
    async with milter_rig(max_buffered=300_000, max_body_size=200_000) as rig:
        holders = []
        for _ in range(2):  # two transactions stuck mid-body, holding 150 KB each
            client = await mc.MilterClient.open(rig.address)
            await client.connect("mx.test", "192.0.2.1", 1)
            for pkt in (mc.encode_strings(mc.SMFIC_MAIL, [f"<{SENDER}>"]),
                        mc.encode_strings(mc.SMFIC_RCPT, [f"<{BOB}>"]), mc.encode(mc.SMFIC_EOH)):
                await client.command(pkt)
            for _ in range(3):
                await client.command(mc.encode(mc.SMFIC_BODY, b"z" * 50_000))
            holders.append(client)
        # (no body replies to wait for: NR_BODY) all of it arrives, and no more is kept
        async with asyncio.timeout(BOUND):
            while rig.service.buffered < 300_000:
                await asyncio.sleep(0.01)
        assert rig.service.buffered == 300_000
        client = await mc.MilterClient.open(rig.address)
        await client.connect("mx.test", "192.0.2.1", 1)
        res = await client.message(SENDER, [BOB], HAM_HEADERS, HAM_BODY)
        await client.close()
        assert res.final == mc.SMFIR_REPLYCODE and res.reply.startswith("451 4.3.2")
        assert rig.captured.verdicts == [] and rig.service.buffered == 300_000
        for c in holders:
            c.writer.close()
            await c.writer.wait_closed()
        await drained(rig)
        assert rig.service.buffered == 0
        await still_serves(rig)
        assert rig.service.buffered == 0
