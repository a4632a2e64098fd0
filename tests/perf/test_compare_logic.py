"""perf/compare's parsing and statistics with fake data: no daemons, no corpus, fast."""

from __future__ import annotations

import asyncio
import math
import struct
import sys
from pathlib import Path

import pytest

# perf/ is a folder of the checkout, not part of the installed distribution
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from perf.bench import milter  # noqa: E402
from perf.bench.corpus import Sample, read_labels, select  # noqa: E402
from perf.bench.drive import Reply, measure, run_clients  # noqa: E402
from perf.bench.ingest import envelope_sender, header_value, split_message  # noqa: E402
from perf.bench.mamori import interpret_milter, interpret_smtp  # noqa: E402
from perf.bench.rspamd import interpret_milter as rspamd_milter  # noqa: E402
from perf.bench.rspamd import parse_check_reply, read_response  # noqa: E402
from perf.bench.spamassassin import parse_spamc_check  # noqa: E402
from perf.bench.stats import (  # noqa: E402
    Outcome,
    Quality,
    SystemResult,
    goals,
    goals_text,
    merge,
    percentile,
    quality,
    ratios,
    round_ratios,
    table,
)


def test_percentile_interpolates_and_handles_edges() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0], 50) == 1.5
    assert percentile(list(range(101)), 99) == 99.0
    assert percentile([5.0], 99) == 5.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_quality_counts_errors_apart() -> None:
    outs = [Outcome(True, True, 0.1), Outcome(True, False, 0.1), Outcome(True, None, 0.1),
            Outcome(False, True, 0.1), Outcome(False, False, 0.1), Outcome(False, False, 0.1)]
    q = quality(outs)
    assert (q.tp, q.fn, q.fp, q.tn, q.errors) == (1, 1, 1, 2, 1)
    assert q.recall == 0.5 and q.fpr == pytest.approx(1 / 3)
    assert math.isnan(Quality().recall)


def _result(system: str, iface: str, n: int, cpu: float, lat: list[float], q: Quality) -> SystemResult:
    return SystemResult(system, iface, "1", "t", n, wall_s=1.0, cpu_s=cpu, client_cpu_s=0.0,
                        concurrency=4, latencies=lat, quality=q)


def test_ratios_and_table_are_mamori_over_peer() -> None:
    m = _result("mamori", "smtp", 100, 0.5, [0.001] * 100, Quality(tp=9, fn=1, fp=0, tn=90))
    r = _result("rspamd", "checkv2", 100, 1.0, [0.004] * 100, Quality(tp=8, fn=2, fp=1, tn=89))
    s = _result("spamassassin", "spamc", 100, 20.0, [0.2] * 100, Quality(tp=7, fn=3, fp=0, tn=90))
    assert m.per_core == 200.0 and m.cpu_ms == 5.0
    rat = {x["peer"]: x for x in ratios([m, r, s])}
    assert rat["rspamd/checkv2"]["per_core"] == pytest.approx(2.0)
    assert rat["spamassassin/spamc"]["per_core"] == pytest.approx(40.0)
    assert rat["rspamd/checkv2"]["p99"] == pytest.approx(0.25)
    assert rat["rspamd/checkv2"]["recall_diff"] == pytest.approx(0.1)
    text = table([m, r, s])
    assert "mamori/smtp / spamassassin/spamc" in text and "40.00x" in text
    js = m.to_json()
    assert js["messages_per_cpu_second"] == 200.0 and js["quality"]["spam_recall"] == 0.9


def test_goals_of_the_issue() -> None:
    m = _result("mamori", "smtp", 100, 0.5, [0.001], Quality(tp=9, fn=1, fp=1, tn=99))
    r = _result("rspamd", "checkv2", 100, 1.0, [0.004], Quality(tp=5, fn=5, fp=0, tn=100))
    r2 = _result("rspamd", "milter", 100, 0.4, [0.004], Quality(tp=5, fn=5, fp=0, tn=100))
    s = _result("spamassassin", "spamc", 100, 20.0, [0.2], Quality(tp=7, fn=3, fp=2, tn=98))
    (g,) = goals([m, r, r2, s])
    # 200/s per core: above rspamd/checkv2's 100 but below rspamd/milter's 250 (its best)
    assert g["per_core_vs_rspamd"] is False and g["per_core_vs_10x_spamd"] is True
    assert g["recall_vs_peers"] is True and g["fpr_vs_peers"] is False
    assert "per core >= rspamd: NO" in goals_text([m, r, r2, s])
    (alone,) = goals([m])
    assert alone["per_core_vs_rspamd"] is None and alone["fpr_vs_peers"] is None


def test_rounds_merge_into_one_row_and_ratios_per_round() -> None:
    q = Quality(tp=9, fn=1, fp=0, tn=90)
    m1 = _result("mamori", "milter", 100, 0.2, [0.001] * 100, q)
    m2 = _result("mamori", "milter", 100, 0.3, [0.003] * 100, q)
    r1 = _result("rspamd", "milter", 100, 0.25, [0.002] * 100, q)
    r2 = _result("rspamd", "milter", 100, 0.27, [0.002] * 100, q)
    row = merge([m1, m2])
    assert row.n == 200 and row.cpu_ms == pytest.approx(2.5)  # the mean over rounds
    assert row.rounds_cpu_ms == pytest.approx([2.0, 3.0])
    assert row.quality.recall == pytest.approx(0.9) and row.quality.tp == 18
    assert len(row.latencies) == 200 and row.to_json()["rounds_cpu_ms_per_message"] == [2.0, 3.0]
    per = round_ratios([[m1, r1], [m2, r2]])
    assert per["mamori/milter / rspamd/milter"] == pytest.approx([1.25, 0.9])
    assert "rounds_cpu_ms_per_message" not in m1.to_json()


def test_zero_cpu_is_not_a_division_error() -> None:
    z = _result("mamori", "smtp", 10, 0.0, [], Quality())
    assert math.isnan(z.per_core)
    assert ratios([z, _result("rspamd", "checkv2", 10, 1.0, [0.1], Quality())])[0]["per_core"] is None
    assert "-" in table([z])


def test_labels_and_stratified_sample(tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    rows = ["path,group,label"] + [f"s{i}.txt,spam-1,spam" for i in range(30)] + \
           [f"h{i}.txt,easy-ham-1,ham" for i in range(70)]
    csv.write_text("\n".join(rows) + "\n")
    labels = read_labels(csv)
    assert len(labels) == 100 and sum(r[2] for r in labels) == 30
    picked = select(labels, 10, seed=3)
    assert len(picked) == 10 and sum(r[2] for r in picked) == 3
    assert picked == select(labels, 10, seed=3)  # deterministic
    assert len(select(labels, None)) == 100
    bad = tmp_path / "bad.csv"
    bad.write_text("path,group,label\nx.txt,g,maybe\n")
    with pytest.raises(ValueError, match="spam or ham"):
        read_labels(bad)


def test_rspamd_reply_parsing() -> None:
    r = parse_check_reply(200, b'{"action": "add header", "score": 7.5, "required_score": 15}')
    assert r == Reply(True, 7.5, "add header")
    assert not parse_check_reply(200, b'{"action": "greylist", "score": 4.1}').flagged
    assert not parse_check_reply(200, b'{"action": "no action", "score": 0}').flagged
    with pytest.raises(ValueError):
        parse_check_reply(500, b"oops")
    with pytest.raises(ValueError):
        parse_check_reply(200, b'{"score": 1}')


def test_http_response_reader() -> None:
    async def go() -> None:
        r = asyncio.StreamReader()
        r.feed_data(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n{}"
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n")
        assert await read_response(r) == (200, {"content-length": "2", "connection": "keep-alive"}, b"{}")
        status, _, body = await read_response(r)
        assert (status, body) == (200, b"abc")
        bad = asyncio.StreamReader()
        bad.feed_data(b"garbage\r\n\r\n")
        with pytest.raises(ValueError):
            await read_response(bad)

    asyncio.run(go())


def test_spamc_output_parsing() -> None:
    assert parse_spamc_check(1, b"27.3/5.0\n") == Reply(True, 27.3, "27.3/5.0")
    assert parse_spamc_check(0, b"0.1/5.0\n").flagged is False
    with pytest.raises(ValueError):
        parse_spamc_check(69, b"0/0\n")  # spamd unreachable with -x
    with pytest.raises(ValueError):
        parse_spamc_check(0, b"9.0/5.0\n")  # exit code and score disagree
    with pytest.raises(ValueError):
        parse_spamc_check(0, b"nonsense")


def test_mamori_smtp_replies() -> None:
    assert interpret_smtp(550, "5.7.1 Message rejected", None).flagged
    assert interpret_smtp(451, "4.7.1 Message deferred", None).detail == "soft_reject"
    assert interpret_smtp(250, "2.0.0 OK: held", None).detail == "quarantine"
    assert interpret_smtp(250, "2.0.0 OK: queued", "tag") == Reply(True, None, "tag")
    assert interpret_smtp(250, "2.0.0 OK: queued", "accept") == Reply(False, None, "accept")
    with pytest.raises(ValueError):
        interpret_smtp(451, "4.3.0 Temporary failure", None)  # mamori's own failure: an error
    with pytest.raises(ValueError):
        interpret_smtp(250, "2.0.0 OK: queued", None)


def test_milter_outcome_interpretation() -> None:
    o = milter.MilterOutcome("accept", headers=[("X-Mamori-Action", "tag")])
    assert interpret_milter(o).flagged
    assert not interpret_milter(milter.MilterOutcome("accept", headers=[("X-Mamori-Action", "accept")])).flagged
    assert interpret_milter(milter.MilterOutcome("replycode", reply="550 5.7.1 no")).flagged
    assert interpret_milter(milter.MilterOutcome("accept", quarantined=True)).flagged
    with pytest.raises(ValueError):
        interpret_milter(milter.MilterOutcome("accept"))
    assert rspamd_milter(milter.MilterOutcome("accept", headers=[("X-Spam", "Yes")])).flagged
    assert rspamd_milter(milter.MilterOutcome("replycode", reply="554 5.7.1 Spam")).flagged
    assert not rspamd_milter(milter.MilterOutcome("accept")).flagged


RAW = (b"Return-Path: <a@example.org>\nFrom: A <a@example.org>\nSubject: hi\n there\n"
       b"X-Mamori-Action: tag\n\nline one\nline two\n")


def test_message_helpers() -> None:
    headers, body = split_message(RAW)
    assert headers[2] == ("Subject", "hi\r\n there")
    assert body == b"line one\r\nline two\r\n"
    assert envelope_sender(RAW) == "a@example.org"
    assert envelope_sender(b"From: x\n\nbody") == ""
    assert header_value(RAW, "subject") == "hi there"
    assert header_value(RAW, "x-mamori-action") == "tag"


def test_milter_client_against_a_fake_milter() -> None:
    """The client speaks the wire protocol: negotiation, steps the milter skips, headers it
    adds and the final reply."""
    seen: list[bytes] = []

    async def fake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                cmd, _data = await milter.read_packet(reader)
            except asyncio.IncompleteReadError:
                break
            seen.append(cmd)
            if cmd == milter.C_OPTNEG:  # skip HELO, no replies for headers
                flags = milter.P_NOHELO | milter.P_NR_HDR
                writer.write(milter.packet(b"O", struct.pack("!III", 6, 0x1FF, flags)))
            elif cmd == milter.C_EOB:
                writer.write(milter.packet(b"h", b"X-Mamori-Action\0tag\0"))
                writer.write(milter.packet(b"a"))
            elif cmd in (milter.C_CONNECT, milter.C_MAIL, milter.C_RCPT, milter.C_EOH, milter.C_BODY):
                writer.write(milter.packet(b"c"))
            elif cmd == milter.C_QUIT:
                break
            await writer.drain()
        writer.close()

    async def go() -> milter.MilterOutcome:
        server = await asyncio.start_server(fake, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await milter.check("127.0.0.1", port, RAW, sender="a@example.org",
                                      recipient="b@example.test")
        finally:
            server.close()
            await server.wait_closed()

    out = asyncio.run(go())
    assert out.final == "accept" and out.header("X-Mamori-Action") == "tag"
    assert milter.C_HELO not in seen and seen.count(milter.C_HEADER) == 4
    assert interpret_milter(out).flagged


def test_clients_share_one_queue_and_errors_do_not_crash() -> None:
    samples = [Sample(f"m{i}", "g", i % 2 == 0, b"x") for i in range(20)]
    busy: set[int] = set()

    async def send(cid: int, s: Sample) -> Reply:
        assert cid not in busy  # one message at a time per client
        busy.add(cid)
        await asyncio.sleep(0)
        busy.discard(cid)
        if s.path == "m3":
            raise ConnectionError("boom")
        return Reply(s.spam)

    outs = asyncio.run(run_clients(samples, send, concurrency=3))
    assert len(outs) == 20 and outs[3].flagged is None and "boom" in outs[3].detail
    ticks = iter([10.0, 12.0])
    res, _ = asyncio.run(measure("mamori", "smtp", "v", "t", samples, send, lambda: next(ticks),
                                 concurrency=3, warmup=2))
    assert res.cpu_s == 2.0 and res.n == 20 and res.quality.errors == 1
    assert res.quality.recall == 1.0 and res.quality.fpr == 0.0 and len(res.latencies) == 19


def test_holdout_training_set_leaves_out_the_measured(tmp_path: Path) -> None:
    from perf.bench.holdout import write_training_set

    rows = [("a.txt", "g", True), ("b.txt", "g", False), ("c.txt", "h", False)]
    n = write_training_set(tmp_path / "train", tmp_path, rows, exclude={"b.txt"})
    lines = (tmp_path / "train" / "labels.csv").read_text().splitlines()
    assert n == 2 and lines[0] == "path,group,label" and len(lines) == 3
    assert lines[1] == f"{(tmp_path / 'a.txt').resolve()},g,spam"
    assert all("b.txt" not in line for line in lines)


def test_arguments_are_checked() -> None:
    from perf.bench.cli import parse_args

    a = parse_args(["--limit", "50", "--systems", "mamori,rspamd", "--mamori-env", "MAMORI_X=1"])
    assert a.limit == 50 and a.systems == ["mamori", "rspamd"] and a.mamori_env == {"MAMORI_X": "1"}
    for bad in (["--systems", "postfix"], ["--limit", "0"], ["--mamori-env", "X=1"],
                ["--concurrency", "0"], ["--rounds", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_daemon_stop_ends_its_whole_process_group(tmp_path: Path) -> None:
    from perf.bench.procs import Daemon, Daemons

    # a parent that ignores SIGTERM and a child: both must be gone after stop()
    script = "trap '' TERM; sleep 60 & echo $! > child; wait"
    d = Daemon("stubborn", ["sh", "-c", script], tmp_path / "log", cwd=tmp_path)
    d.stop_timeout = 0.5
    with Daemons() as ds:
        ds.start(d)
        d.wait_ready(lambda: (tmp_path / "child").is_file()
                     and (tmp_path / "child").read_text().strip() != "", 10)
        child = int((tmp_path / "child").read_text())
    assert not d.alive()
    stat = Path(f"/proc/{child}/stat")
    # gone, or a zombie waiting for init to reap it: not running either way
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
