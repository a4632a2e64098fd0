"""The milter service speaking to an MTA-side client over loopback: actions, per-recipient
policy, limits, failures."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.ingress import milter as milter_mod
from gateway.ingress import milter_codec as mc
from gateway.policy import Policy
from gateway.runtime import Gateway
from gateway.verdict import Action

from .milter_support import HAM_BODY, HAM_HEADERS, FailingPolicyStore, make_gateway, with_verdict
from .milter_support import milter_rig as milter_rig

SENDER = "alice@sender.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"


async def open_client(address: str) -> mc.MilterClient:
    client = await mc.MilterClient.open(address)
    # (no reply: mamori asks for none at CONNECT)
    assert await client.connect("mx.sender.test", "192.0.2.7", 40000, macros={"j": "mx.example.test"}) is None
    return client


async def send(address: str, headers=HAM_HEADERS, body: bytes = HAM_BODY, rcpts=(BOB,), **kw) -> mc.MilterResult:
    client = await open_client(address)
    try:
        return await client.message(SENDER, list(rcpts), headers, body, helo="mx.sender.test", **kw)
    finally:
        await client.close()


def header(res: mc.MilterResult, name: str) -> str | None:
    return next((v for n, v in res.added_headers if n == name), None)


async def test_negotiation_asks_for_what_it_needs(milter_rig) -> None:
    async with milter_rig() as rig:
        client = await mc.MilterClient.open(rig.address)
        neg = client.negotiated
        assert neg is not None and neg.version == 6
        for flag in (mc.SMFIF_ADDHDRS, mc.SMFIF_CHGHDRS, mc.SMFIF_DELRCPT, mc.SMFIF_QUARANTINE):
            assert neg.actions & flag
        assert not neg.actions & mc.SMFIF_CHGBODY
        assert neg.protocol & mc.SMFIP_NR_HDR and neg.protocol & mc.SMFIP_SKIP
        # no reply slot for steps only ever continued (without a client rate limit, MAIL is
        # one: a busy client is refused at end of message); none at all for those unused
        for flag in (mc.SMFIP_NR_CONN, mc.SMFIP_NR_HELO, mc.SMFIP_NR_MAIL, mc.SMFIP_NR_RCPT,
                     mc.SMFIP_NR_DATA, mc.SMFIP_NR_EOH, mc.SMFIP_NR_UNKN, mc.SMFIP_NR_BODY,
                     mc.SMFIP_NODATA, mc.SMFIP_NOEOH, mc.SMFIP_NOUNKNOWN):
            assert neg.protocol & flag
        for flag in (mc.SMFIP_NOCONNECT, mc.SMFIP_NOHELO, mc.SMFIP_NOMAIL, mc.SMFIP_NORCPT,
                     mc.SMFIP_NOHDRS, mc.SMFIP_NOBODY):
            assert not neg.protocol & flag
        await client.close()
    # with a client rate limit, MAIL has a reply: a client over it is refused there
    async with milter_rig(client_rate_per_minute=5) as rig:
        client = await mc.MilterClient.open(rig.address)
        assert client.negotiated is not None
        assert not client.negotiated.protocol & mc.SMFIP_NR_MAIL
        assert client.negotiated.protocol & mc.SMFIP_NR_CONN
        await client.close()


async def test_ham_is_accepted_with_headers_and_message_is_built(milter_rig) -> None:
    async with milter_rig() as rig:
        res = await send(rig.address, rcpts=(BOB, CAROL),
                         macros={mc.SMFIC_MAIL: {"i": "4F2AB1", "auth_authen": "alice"}})
        assert res.final == mc.SMFIR_ACCEPT and res.early is None
        assert header(res, "X-Mamori-Action") == "accept"
        assert header(res, "X-Mamori-Score") == "0.00"
        assert header(res, "X-Mamori-Symbols") is None  # no symbol hit
        assert res.deleted_recipients == [] and res.quarantine is None
        (msg, verdict, ingress), = rig.captured.verdicts
        assert ingress == "milter" and verdict.action is Action.ACCEPT
        assert msg.sender == SENDER and msg.recipients == (BOB, CAROL)
        assert msg.headers == tuple(HAM_HEADERS) and msg.body == HAM_BODY
        assert (msg.peer.ip, msg.peer.port, msg.peer.helo, msg.peer.hostname) == (
            "192.0.2.7", 40000, "mx.sender.test", "mx.sender.test")
        assert msg.protocol["i"] == "4F2AB1" and msg.protocol["auth_authen"] == "alice"
        assert msg.protocol["j"] == "mx.example.test"


async def test_tag_adds_symbols(milter_rig) -> None:
    async with milter_rig() as rig:
        res = await send(rig.address, headers=with_verdict("tag"))
        assert res.final == mc.SMFIR_ACCEPT
        assert header(res, "X-Mamori-Action") == "tag"
        assert header(res, "X-Mamori-Score") == "6.00"
        assert "TEST_TAG(6.00)" in (header(res, "X-Mamori-Symbols") or "")


async def test_verdict_headers_are_added_first(milter_rig) -> None:
    async with milter_rig() as rig:
        res = await send(rig.address, headers=with_verdict("authres"))
        assert [n for n, _ in res.added_headers] == [
            "Authentication-Results", "X-Mamori-Action", "X-Mamori-Score"]
        assert header(res, "Authentication-Results") == "mx.example.test; spf=pass"


async def test_quarantine_is_sent_before_the_final_reply(milter_rig) -> None:
    async with milter_rig() as rig:
        client = await open_client(rig.address)
        client.writer.write(b"".join([
            mc.encode_strings(mc.SMFIC_MAIL, [f"<{SENDER}>"]),
            mc.encode_strings(mc.SMFIC_RCPT, [f"<{BOB}>"]),
        ]))
        # (no reply to MAIL or RCPT: NR_MAIL, NR_RCPT)
        for name, value in with_verdict("quarantine"):  # no reply expected (NR_HDR)
            client.writer.write(mc.encode_strings(mc.SMFIC_HEADER, [name, value]))
        client.writer.write(mc.encode(mc.SMFIC_EOH) + mc.encode(mc.SMFIC_BODYEOB, HAM_BODY))
        order = []  # (no reply to EOH either: NR_EOH)
        while True:
            cmd, _data = await mc.read_packet(client.reader)
            order.append(cmd)
            if cmd == mc.SMFIR_ACCEPT:
                break
        assert order[-2:] == [mc.SMFIR_QUARANTINE, mc.SMFIR_ACCEPT]
        assert order.count(mc.SMFIR_ADDHEADER) == 3
        await client.close()
        (msg, verdict, _), = rig.captured.verdicts
        assert verdict.action is Action.QUARANTINE and msg.body == HAM_BODY


async def test_whole_transaction_in_one_write_is_answered_in_order(milter_rig) -> None:
    """An MTA that wants every reply (no SMFIP_NR_*) but sends a whole transaction at once:
    the packets of one read are handled together and each gets its reply, in order."""
    async with milter_rig() as rig:
        client = await mc.MilterClient.open(rig.address, protocol=mc.SMFIP_SKIP)
        assert client.negotiated is not None and client.negotiated.protocol == mc.SMFIP_SKIP
        headers = with_verdict("tag")
        client.writer.write(b"".join([
            mc.encode_macros(mc.SMFIC_CONNECT, {"j": "mx.example.test"}),
            mc.encode_connect("mx.sender.test", "192.0.2.7", 40000),
            mc.encode_strings(mc.SMFIC_HELO, ["mx.sender.test"]),
            mc.encode_strings(mc.SMFIC_MAIL, [f"<{SENDER}>"]),
            mc.encode_strings(mc.SMFIC_RCPT, [f"<{BOB}>"]),
            mc.encode(mc.SMFIC_DATA),
            *(mc.encode_strings(mc.SMFIC_HEADER, [n, v]) for n, v in headers),
            mc.encode(mc.SMFIC_EOH),
            mc.encode(mc.SMFIC_BODY, HAM_BODY),
            mc.encode(mc.SMFIC_BODYEOB),
        ]))
        replies = []
        while not replies or replies[-1][0] != mc.SMFIR_ACCEPT:
            pkt = await mc.read_packet(client.reader)
            assert pkt is not None
            replies.append(pkt)
        # connect, helo, mail, rcpt, data, each header, eoh, body; then the end of message
        assert [c for c, _ in replies[:7 + len(headers)]] == [mc.SMFIR_CONTINUE] * (7 + len(headers))
        assert (mc.SMFIR_ADDHEADER, mc.add_header("X-Mamori-Action", "tag")[5:]) in replies
        await client.close()
        (msg, verdict, _), = rig.captured.verdicts
        assert verdict.action is Action.TAG
        assert msg.headers == tuple(headers) and msg.body == HAM_BODY
        assert msg.peer.helo == "mx.sender.test" and msg.recipients == (BOB,)


async def test_reject_has_our_reply_text(milter_rig) -> None:
    async with milter_rig() as rig:
        res = await send(rig.address, headers=with_verdict("reject"))
        assert res.final == mc.SMFIR_REPLYCODE
        assert res.reply.startswith("550 5.7.1 Message rejected as spam or fraud by mamori (ref ")
        assert res.added_headers == []


async def test_block_list_rejects_through_the_real_policy(milter_rig) -> None:
    async with milter_rig(reject_reply="554 5.7.1 Not delivered: blocked") as rig:
        await rig.gw.policies.put(Policy(subscriber=BOB, block=frozenset({"sender.test"})))
        res = await send(rig.address)
        assert res.final == mc.SMFIR_REPLYCODE and res.reply.startswith("554 5.7.1 Not delivered: blocked")
        (_, verdict, _), = rig.captured.verdicts
        assert "POLICY_BLOCKLIST" in verdict.symbols


async def test_recipients_with_different_policies(milter_rig) -> None:
    """Bob blocks the sender, Carol does not: Carol gets the mail, Bob is removed and his
    copy goes to the hooks (quarantine) with his own verdict."""
    async with milter_rig() as rig:
        await rig.gw.policies.put(Policy(subscriber=BOB, block=frozenset({SENDER})))
        res = await send(rig.address, rcpts=(BOB, CAROL))
        assert res.final == mc.SMFIR_ACCEPT
        assert res.deleted_recipients == [BOB]
        assert header(res, "X-Mamori-Action") == "accept"
        by_rcpt = {m.recipients: (m, v) for m, v, _ in rig.captured.verdicts}
        assert set(by_rcpt) == {(BOB,), (CAROL,)}
        bob_msg, bob_v = by_rcpt[(BOB,)]
        assert bob_v.action is Action.REJECT and bob_v.subscriber == BOB and bob_msg.subscriber == BOB
        assert by_rcpt[(CAROL,)][1].action is Action.ACCEPT
        assert bob_msg.id != by_rcpt[(CAROL,)][0].id and bob_v.message_id == bob_msg.id
        assert rig.gw.events.events  # per-recipient verdict events were emitted
        # Bob's copy is kept in the quarantine store, with his verdict
        (kept_msg, kept_v), = rig.gw.quarantine.items
        assert kept_msg.recipients == (BOB,) and kept_v.action is Action.REJECT
        assert kept_msg.body == HAM_BODY


async def test_recipient_policy_lookup_ignores_case(milter_rig) -> None:
    async with milter_rig() as rig:
        await rig.gw.policies.put(Policy(subscriber=BOB, block=frozenset({SENDER})))
        res = await send(rig.address, rcpts=("Bob@Example.TEST", CAROL))
        assert res.deleted_recipients == ["Bob@Example.TEST"]


async def test_mildest_blocking_action_wins_and_stricter_are_removed(milter_rig) -> None:
    """Quarantine for Carol (default policy), reject for Bob (block list): the transaction is
    held in quarantine without Bob."""
    async with milter_rig() as rig:
        await rig.gw.policies.put(Policy(subscriber=BOB, block=frozenset({SENDER})))
        res = await send(rig.address, headers=with_verdict("quarantine"), rcpts=(BOB, CAROL))
        assert res.final == mc.SMFIR_ACCEPT and res.quarantine is not None
        assert res.deleted_recipients == [BOB]
        assert header(res, "X-Mamori-Action") == "quarantine"


async def test_policies_differing_only_in_weights_share_one_run(milter_rig) -> None:
    """Carol weighs TEST_TAG higher than Bob: one run of the checks, two decisions."""
    async with milter_rig() as rig:
        await rig.gw.policies.put(Policy(subscriber=CAROL, weights={"TEST_TAG": 10.0}))
        res = await send(rig.address, headers=with_verdict("tag"), rcpts=(BOB, CAROL))
        assert res.final == mc.SMFIR_ACCEPT
        # Carol's verdict is quarantine (weight 10): she is removed, Bob gets it tagged
        assert res.deleted_recipients == [CAROL]
        assert header(res, "X-Mamori-Action") == "tag"
        actions = {m.recipients: v.action for m, v, _ in rig.captured.verdicts}
        assert actions == {(BOB,): Action.TAG, (CAROL,): Action.QUARANTINE}
        assert rig.check.runs == 1  # one run of the checks for both policies


async def test_policies_differing_in_lists_get_their_own_run(milter_rig) -> None:
    async with milter_rig() as rig:
        await rig.gw.policies.put(Policy(subscriber=BOB, allow=frozenset({"friend.test"})))
        res = await send(rig.address, rcpts=(BOB, CAROL))
        assert res.final == mc.SMFIR_ACCEPT and res.deleted_recipients == []
        assert rig.check.runs == 2


async def test_spoofed_mamori_headers_are_removed(milter_rig) -> None:
    async with milter_rig() as rig:
        spoof = [*HAM_HEADERS, ("X-Mamori-Action", "accept"), ("x-mamori-action", "accept")]
        res = await send(rig.address, headers=spoof)
        assert res.changed_headers == [(2, "x-mamori-action", ""), (1, "x-mamori-action", "")]
        assert header(res, "X-Mamori-Action") == "accept"
        (msg, _, _), = rig.captured.verdicts
        assert msg.headers == tuple(spoof)  # the scan sees what the client sent


async def test_default_action_tempfail_when_mamori_fails(milter_rig) -> None:
    async with milter_rig() as rig:
        res = await send(rig.address, rcpts=(FailingPolicyStore.BROKEN,))
        assert res.final == mc.SMFIR_REPLYCODE and res.reply.startswith("451 4.3.0")
        # the service keeps serving
        assert (await send(rig.address)).final == mc.SMFIR_ACCEPT


async def test_default_action_accept_when_mamori_fails(milter_rig) -> None:
    async with milter_rig(default_action="accept") as rig:
        spoof = [*HAM_HEADERS, ("X-Mamori-Action", "accept")]
        res = await send(rig.address, headers=spoof, rcpts=(FailingPolicyStore.BROKEN,))
        assert res.final == mc.SMFIR_ACCEPT
        assert header(res, "X-Mamori-Action") == "unscanned"
        assert res.changed_headers == [(1, "x-mamori-action", "")]


async def test_scan_time_limit_tempfails(milter_rig) -> None:
    async with milter_rig(timeout=0.2) as rig:
        res = await send(rig.address, headers=with_verdict("slow"))
        assert res.final == mc.SMFIR_REPLYCODE and res.reply.startswith("451 4.3.2")


async def test_back_pressure_tempfails_beyond_inflight_limit(milter_rig) -> None:
    async with milter_rig(max_inflight=1, queue_timeout=0.1) as rig:
        first = asyncio.create_task(send(rig.address, headers=with_verdict("gate")))
        while rig.check.entered == 0:
            await asyncio.sleep(0.01)
        second = await send(rig.address)
        assert second.final == mc.SMFIR_REPLYCODE and second.reply.startswith("451 4.3.2")
        rig.check.gate.set()
        assert (await first).final == mc.SMFIR_ACCEPT
        assert (await send(rig.address)).final == mc.SMFIR_ACCEPT


async def test_body_limit_skips_the_rest(milter_rig) -> None:
    async with milter_rig(max_body_size=1000) as rig:
        body = b"x" * 999 + b"\r\n" + b"y" * 200_000
        res = await send(rig.address, body=body)
        assert res.final == mc.SMFIR_ACCEPT
        (msg, _, _), = rig.captured.verdicts
        assert len(msg.body) == 1000 and msg.protocol["truncated"] == "1"


async def test_several_messages_abort_and_quit_nc_on_one_connection(milter_rig) -> None:
    async with milter_rig() as rig:
        client = await open_client(rig.address)
        assert (await client.message(SENDER, [BOB], with_verdict("tag"), HAM_BODY)).final == mc.SMFIR_ACCEPT
        # an aborted transaction leaves nothing behind
        await client.command(mc.encode_strings(mc.SMFIC_MAIL, ["<x@y.test>"]))
        await client.command(mc.encode_strings(mc.SMFIC_RCPT, [f"<{CAROL}>"]))
        await client.abort()
        res = await client.message(SENDER, [BOB], HAM_HEADERS, HAM_BODY)
        assert header(res, "X-Mamori-Action") == "accept"
        client.writer.write(mc.encode(mc.SMFIC_QUIT_NC))
        assert await client.connect("other.test", "198.51.100.1", 1) is None  # (NR_CONN)
        res = await client.message(SENDER, [CAROL], HAM_HEADERS, HAM_BODY)
        assert res.final == mc.SMFIR_ACCEPT
        await client.close()
        msgs = [m for m, _, _ in rig.captured.verdicts]
        assert [m.recipients for m in msgs] == [(BOB,), (BOB,), (CAROL,)]
        assert msgs[2].peer.ip == "198.51.100.1" and msgs[2].peer.helo is None


async def test_connection_limit_tempfails_the_session(milter_rig) -> None:
    async with milter_rig(max_connections=2) as rig:
        clients = [await open_client(rig.address) for _ in range(2)]
        # an MTA that waits for the CONNECT reply is refused there
        extra = await mc.MilterClient.open(rig.address, protocol=mc.ALL_PROTOCOL & ~mc.SMFIP_NR_CONN)
        assert await extra.connect("h", "192.0.2.1", 1) == mc.SMFIR_REPLYCODE
        await extra.close()
        # by default no step before end of message has a reply: refused there, unscanned
        extra = await open_client(rig.address)
        res = await extra.message(SENDER, [BOB], HAM_HEADERS, HAM_BODY)
        assert res.final == mc.SMFIR_REPLYCODE and res.reply.startswith("451 4.3.2")
        await extra.close()
        # an MTA that sends body replies: refused at the first body chunk
        extra = await mc.MilterClient.open(rig.address, protocol=mc.ALL_PROTOCOL & ~mc.SMFIP_NR_BODY)
        await extra.connect("h", "192.0.2.1", 1)
        res = await extra.message(SENDER, [BOB], HAM_HEADERS, HAM_BODY)
        assert res.early == mc.SMFIR_REPLYCODE
        await extra.close()
        assert rig.captured.verdicts == []
        for c in clients:
            await c.close()
    # with a client rate limit, MAIL has a reply: refused there
    async with milter_rig(max_connections=1, client_rate_per_minute=100) as rig:
        first = await open_client(rig.address)
        extra = await open_client(rig.address)
        res = await extra.message(SENDER, [BOB], HAM_HEADERS, HAM_BODY)
        assert res.early == mc.SMFIR_REPLYCODE and res.final != mc.SMFIR_ACCEPT
        await extra.close()
        await first.close()
        assert rig.captured.verdicts == []


async def test_unix_socket(settings: Settings, tmp_path: Path) -> None:
    sock = tmp_path / "milter.sock"
    sock.write_text("")  # not a socket: refuse to delete it
    s = settings.model_copy(update={"milter": settings.milter.model_copy(
        update={"listen": f"unix:{sock}", "socket_mode": "0666"})})
    gw, _, captured = make_gateway(s)
    with pytest.raises(ConfigError):
        await milter_mod.start(gw)
    sock.unlink()
    service = await milter_mod.start(gw)
    assert service is not None
    try:
        assert oct(os.stat(sock).st_mode & 0o777) == "0o666"
        res = await send(f"unix:{sock}")
        assert res.final == mc.SMFIR_ACCEPT and captured.verdicts
    finally:
        await service.stop()
    assert not sock.exists()
    # a stale socket from an earlier run is replaced
    service = await milter_mod.start(gw)
    assert service is not None
    await service.stop()
    await gw.close()


async def test_start_is_off_without_listen_address(settings: Settings) -> None:
    gw = Gateway.create(settings)
    assert await milter_mod.start(gw) is None
    await gw.close()


async def test_mamori_serve_starts_the_milter(settings: Settings, tmp_path: Path) -> None:
    """`mamori serve` with MAMORI_MILTER__LISTEN set serves the milter with the installed
    pipeline, and stops it cleanly."""
    from gateway import serve

    sock = tmp_path / "serve.sock"
    s = settings.model_copy(update={
        "milter": settings.milter.model_copy(update={"listen": f"unix:{sock}"}),
        "api": settings.api.model_copy(update={"listen": ""}),
        "smtp": settings.smtp.model_copy(update={"listen": ""}),
    })
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve.run(s, ready=ready, stop=stop))
    async with asyncio.timeout(30):
        await ready.wait()
    try:
        res = await send(f"unix:{sock}", headers=[("Subject", "no from, no date")])
        assert res.final == mc.SMFIR_ACCEPT
        symbols = header(res, "X-Mamori-Symbols") or ""
        assert "MISSING_FROM" in symbols  # the shipped checks ran
    finally:
        stop.set()
        await task
    assert not sock.exists()


async def test_mta_that_allows_no_changes(milter_rig) -> None:
    """An MTA offering no actions: no headers; quarantine becomes reject (never deliver what
    should be held); mixed recipients are tempfailed (never deliver to a blocking policy)."""
    async with milter_rig() as rig:
        await rig.gw.policies.put(Policy(subscriber=BOB, block=frozenset({SENDER})))

        async def run(headers, rcpts) -> mc.MilterResult:
            client = await mc.MilterClient.open(rig.address, actions=0, protocol=0)
            assert client.negotiated is not None and client.negotiated.actions == 0
            await client.connect("mx.test", "192.0.2.1", 1)
            try:
                return await client.message(SENDER, rcpts, headers, HAM_BODY)
            finally:
                await client.close()

        ham = await run(HAM_HEADERS, [CAROL])
        assert ham.final == mc.SMFIR_ACCEPT and ham.added_headers == []
        held = await run(with_verdict("quarantine"), [CAROL])
        assert held.final == mc.SMFIR_REPLYCODE and held.reply.startswith("550 ")
        mixed = await run(HAM_HEADERS, [BOB, CAROL])
        assert mixed.final == mc.SMFIR_REPLYCODE and mixed.reply.startswith("451 4.7.1")


async def test_stop_lets_messages_being_scanned_get_their_answer(milter_rig) -> None:
    async with milter_rig() as rig:
        idle = await open_client(rig.address)
        scanning = asyncio.create_task(send(rig.address, headers=with_verdict("gate")))
        while rig.check.entered == 0:
            await asyncio.sleep(0.01)
        stopping = asyncio.create_task(rig.service.stop())
        await asyncio.sleep(0.05)
        assert not stopping.done()
        rig.check.gate.set()
        assert (await scanning).final == mc.SMFIR_ACCEPT
        await stopping
        assert not rig.service.sessions
        assert await idle.reader.read() == b""  # the idle connection was closed
        await idle.close()


async def test_reply_texts_are_validated_at_start(settings: Settings) -> None:
    for bad in ({"reject_reply": "250 ok"}, {"reject_reply": "451 4.7.1 not a reject"},
                {"tempfail_reply": "550 5.7.1 not a tempfail"}, {"tempfail_reply": "soon"}):
        ms = settings.milter.model_copy(update={"listen": "127.0.0.1:0", **bad})
        gw, _, _ = make_gateway(settings.model_copy(update={"milter": ms}))
        with pytest.raises(ConfigError):
            await milter_mod.MilterService(gw).start()



async def test_quarantine_without_a_store_is_delivered_tagged(milter_rig) -> None:
    """As for every ingress: a quarantine verdict stands only once a copy is stored."""
    async with milter_rig() as rig:
        rig.gw.quarantine = None
        res = await send(rig.address, headers=with_verdict("quarantine"))
        assert res.final == mc.SMFIR_ACCEPT and res.quarantine is None
        assert header(res, "X-Mamori-Action") == "tag"
        # the same for a recipient among others: not removed, gets it tagged
        await rig.gw.policies.put(Policy(subscriber=CAROL, weights={"TEST_TAG": 10.0}))
        res = await send(rig.address, headers=with_verdict("tag"), rcpts=(BOB, CAROL))
        assert res.final == mc.SMFIR_ACCEPT and res.deleted_recipients == []


async def test_quarantine_store_failure_tempfails(milter_rig) -> None:
    async with milter_rig() as rig:
        rig.gw.quarantine.broken = True
        res = await send(rig.address, headers=with_verdict("quarantine"))
        assert res.final == mc.SMFIR_REPLYCODE and res.reply.startswith("451 4.3.0")
        # a removed recipient's copy cannot be kept either: nobody loses the message
        await rig.gw.policies.put(Policy(subscriber=CAROL, weights={"TEST_TAG": 10.0}))
        res = await send(rig.address, headers=with_verdict("tag"), rcpts=(BOB, CAROL))
        assert res.final == mc.SMFIR_REPLYCODE and res.reply.startswith("451 4.3.0")
