"""`mamori auth --zone --jsonl`, `mamori auth report`, the report XML, and robustness of
the checks on hostile or incomplete input."""

from __future__ import annotations

import dataclasses
import gzip
import json
from datetime import date
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml
from click.testing import CliRunner

from gateway.checks.auth.check import authentication_results
from gateway.checks.auth.reports import ReportLog, write_reports
from gateway.cli import main
from gateway.message import Message, Peer
from tests.auth.conftest import run_auth, zone_resolver

ZONE = {
    "example.com": [{"TXT": "v=spf1 ip4:192.0.2.10 -all"}],
    "_dmarc.example.com": [{"TXT": "v=DMARC1; p=reject; rua=mailto:dmarc@example.com"}],
    "slow.example": ["TIMEOUT"],
    "_dmarc.slow.example": ["TIMEOUT"],
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("MAMORI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MAMORI_HASH_KEY", "test-hash-key-0123456789")
    return tmp_path


def test_cli_jsonl_with_zone(clean_env: Path) -> None:
    zone = clean_env / "zone.yml"
    zone.write_text(yaml.safe_dump(ZONE))
    msg = clean_env / "m.eml"
    msg.write_bytes(b"From: a@example.com\r\nSubject: x\r\n\r\nhi\r\n")
    lines = [
        {"ip": "192.0.2.10", "helo": "mx.example.com", "mail_from": "b@example.com", "message": str(msg)},
        {"ip": "203.0.113.1", "helo": "evil", "mail_from": "b@example.com", "message": str(msg)},
        {"ip": "203.0.113.1", "helo": "h", "mail_from": "x@slow.example"},
        {"ip": "203.0.113.1", "mail_from": "x@example.com", "message": str(clean_env / "absent.eml")},
        {"ip": 5},
    ]
    stdin = "\n".join(json.dumps(x) for x in lines) + "\nnot json\n"
    res = CliRunner().invoke(main, ["auth", "--zone", str(zone), "--jsonl"], input=stdin)
    assert res.exit_code == 0, res.output
    out = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(out) == 6
    assert out[0]["spf"]["result"] == "pass" and out[0]["dmarc"]["result"] == "pass"
    assert out[0]["dkim"]["result"] == "none" and out[0]["arc"]["result"] == "none"
    assert out[1]["spf"]["result"] == "fail" and out[1]["dmarc"]["result"] == "fail"
    assert out[1]["dmarc"]["disposition"] == "reject"
    assert "dmarc=fail" in out[1]["authentication_results"]
    assert out[2]["spf"]["result"] == "temperror"
    assert "error" in out[3] and "error" in out[4] and out[5]["line"] == 6
    assert not (clean_env / "data" / "dmarc-reports").exists()  # diagnostics write no report data


def test_cli_usage_and_bad_zone(clean_env: Path) -> None:
    res = CliRunner().invoke(main, ["auth"], input="")
    assert res.exit_code == 2 and "--jsonl" in res.output
    bad = clean_env / "z.yml"
    bad.write_text("a.example: [{BOGUS: 1}]\n")
    res = CliRunner().invoke(main, ["auth", "--zone", str(bad), "--jsonl"], input="{}\n")
    assert res.exit_code == 2 and "unsupported type" in res.output and "Traceback" not in res.output


def _row(ip: str, disposition: str = "reject", ts: float = 1_700_000_000.0) -> dict[str, object]:
    return {
        "ts": ts, "header_from": "example.com", "policy_domain": "example.com",
        "policy_published": {"domain": "example.com", "adkim": "r", "aspf": "r", "p": "reject",
                             "sp": "reject", "pct": 100, "np": "reject"},
        "rua": ["mailto:dmarc@example.com"], "source_ip": ip, "disposition": disposition,
        "dkim": "fail", "spf": "fail", "reasons": [],
        "auth_dkim": [{"domain": "example.com", "selector": "s", "result": "fail"}],
        "auth_spf": {"domain": "example.com", "scope": "mfrom", "result": "fail"},
    }


def test_report_xml_aggregates_rows(tmp_path: Path) -> None:
    log = ReportLog(tmp_path)
    for ip in ("192.0.2.1", "192.0.2.1", "192.0.2.2"):
        log.add(_row(ip))
    log.add({**_row("192.0.2.3"), "policy_domain": "norua.example", "rua": []})
    assert log.flush() == 4
    day = date(2023, 11, 14)
    files = write_reports(tmp_path, day, receiver="mx.test", org_name="Org", email="pm@mx.test")
    assert len(files) == 1
    name = files[0].name
    assert name.startswith("mx.test!example.com!") and name.endswith(".xml")
    begin, end = (int(x) for x in name[:-4].split("!")[2:])
    assert end - begin == 86399
    root = ET.fromstring(files[0].read_bytes())
    assert root.tag == "feedback"
    assert root.findtext("policy_published/p") == "reject"
    counts = {r.findtext("row/source_ip"): int(r.findtext("row/count") or 0) for r in root.iter("record")}
    assert counts == {"192.0.2.1": 2, "192.0.2.2": 1}
    rec = next(root.iter("record"))
    assert rec.findtext("row/policy_evaluated/disposition") == "reject"
    assert rec.findtext("identifiers/header_from") == "example.com"
    assert rec.findtext("auth_results/spf/scope") == "mfrom"
    index = json.loads((files[0].parent / "index.json").read_text())
    assert index == {name: ["mailto:dmarc@example.com"]}
    # gzip, every domain, and idempotent
    files = write_reports(tmp_path, day, receiver="mx.test", org_name="Org", email="pm@mx.test",
                          compress=True, only_with_rua=False)
    assert len(files) == 2 and all(f.suffix == ".gz" for f in files)
    ET.fromstring(gzip.decompress(files[0].read_bytes()))
    assert write_reports(tmp_path, date(2023, 11, 15), receiver="r", org_name="o", email="e") == []


def test_report_command(clean_env: Path) -> None:
    log = ReportLog(clean_env / "data" / "dmarc-reports")
    log.add(_row("192.0.2.9"))
    log.flush()
    res = CliRunner().invoke(main, ["auth", "report", "--date", "2023-11-14"])
    assert res.exit_code == 0, res.output
    paths = [json.loads(x)["report"] for x in res.stdout.splitlines()]
    assert len(paths) == 1 and Path(paths[0]).is_file()
    res = CliRunner().invoke(main, ["auth", "report", "--date", "yesterdayish"])
    assert res.exit_code == 2 and "YYYY-MM-DD" in res.output


# -- robustness ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    b"",
    b"\x00\xff garbage without headers",
    b"DKIM-Signature: v=1; a=rsa-sha256; d=; s=\r\nARC-Seal: i=x; cv=\r\nFrom: <<>>@@\r\n\r\n",
    b"DKIM-Signature: garbage\r\nARC-Seal: i=1; a=rsa-sha256; cv=none; d=x.example; s=s; b=AAAA\r\n"
    b"From: a@example.com\r\n\r\nbody",
    b"From: a@" + b"x" * 300 + b".example\r\n\r\n",
])
async def test_hostile_messages_never_fail_a_check(raw: bytes) -> None:
    msg = Message.email(raw, peer=Peer(ip="not an ip", helo="\x00"))
    run = await run_auth(msg, zone_resolver(ZONE))  # run_auth asserts no check failed
    assert run.header is not None


async def test_dns_timeouts_are_temperror_everywhere() -> None:
    raw = (b"DKIM-Signature: v=1; a=rsa-sha256; d=slow.example; s=s; h=from; bh=AAAA; b=AAAA\r\n"
           b"From: a@slow.example\r\n\r\nbody\r\n")
    msg = dataclasses.replace(Message.email(raw, peer=Peer(ip="192.0.2.1", helo="h")),
                              sender="b@slow.example")
    run = await run_auth(msg, zone_resolver({"s._domainkey.slow.example": ["TIMEOUT"], **ZONE}))
    assert run.result("spf").result == "temperror"
    assert run.result("dkim")[0].result == "temperror"
    assert run.result("dmarc").result == "temperror"


async def test_dns_budget_exhaustion_is_temperror(tmp_path: Path) -> None:
    from tests.auth.conftest import auth_settings

    zone = {f"l{i}.example": [{"TXT": f"v=spf1 include:l{i + 1}.example -all"}] for i in range(8)}
    zone["l8.example"] = [{"TXT": "v=spf1 -all"}]
    msg = dataclasses.replace(Message.email(b"From: a@l0.example\r\n\r\n", peer=Peer(ip="192.0.2.1")),
                              sender="a@l0.example")
    run = await run_auth(msg, zone_resolver(zone), settings=auth_settings(tmp_path, dns_budget=4))
    assert run.result("spf").result == "temperror"
    run = await run_auth(msg, zone_resolver(zone))
    assert run.result("spf").result == "fail"


async def test_malformed_and_keyless_signatures_are_permerror() -> None:
    raw = (b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=nokey; h=from; bh=AAAA; b=AAAA\r\n"
           b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; bh=AAAA; b=AAAA\r\n"
           b"From: a@example.com\r\n\r\nbody\r\n")
    run = await run_auth(Message.email(raw), zone_resolver(ZONE))
    assert [r.result for r in run.result("dkim")] == ["permerror", "permerror"]
    assert "DKIM_PERMERROR" in run.symbols


async def test_sms_is_not_authenticated() -> None:
    from gateway.checks.auth import build_auth_checks
    from gateway.message import Channel
    from tests.auth.conftest import auth_settings

    for check in build_auth_checks(auth_settings(), zone_resolver({})):
        assert check.channels == frozenset({Channel.EMAIL})


def test_authentication_results_quotes_odd_values() -> None:
    from gateway.checks.auth.spf import SpfResult

    v = authentication_results("mx.test", {"auth.spf": SpfResult("pass", "helo", 'we"ird;name')})
    assert v == 'mx.test; spf=pass smtp.helo="we\\"ird;name"'
    assert authentication_results("mx.test", {}) is None


def test_dmarc_runs_without_a_disabled_dependency() -> None:
    from gateway.checks.auth import build_auth_checks
    from gateway.pipeline import Pipeline
    from gateway.scoring import Scores
    from tests.auth.conftest import auth_settings

    checks = [c for c in build_auth_checks(auth_settings(), zone_resolver({}), disabled=frozenset({"arc"}))
              if c.name != "arc"]
    pipeline = Pipeline(checks, Scores(weights={}, thresholds={}, strength={}))
    assert pipeline.by_name["dmarc"].depends_on == ("spf", "dkim")


# -- sending reports over SMTP --------------------------------------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.mails: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))  # type: ignore[attr-defined]
        return "250 OK"


@pytest.fixture
def smtp_relay() -> object:
    import socket

    from aiosmtpd.controller import Controller

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = _Inbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield inbox, port
    finally:
        ctl.stop()


def test_report_send_mails_authorised_destinations(clean_env: Path, smtp_relay: object,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import email

    inbox, port = smtp_relay  # type: ignore[misc]
    zone = clean_env / "zone.yml"
    zone.write_text(yaml.safe_dump({
        "example.com._report._dmarc.reports.example.net": [{"TXT": "v=DMARC1"}],
    }))
    monkeypatch.setenv("MAMORI_AUTH__ZONE_FILE", str(zone))
    monkeypatch.setenv("MAMORI_AUTH__REPORT_SMTP", f"127.0.0.1:{port}")
    monkeypatch.setenv("MAMORI_AUTH__REPORT_EMAIL", "dmarc-noreply@mx.test")
    log = ReportLog(clean_env / "data" / "dmarc-reports")
    row = _row("192.0.2.9")
    row["rua"] = ["mailto:dmarc@example.com", "mailto:agg@reports.example.net!10m",
                  "mailto:x@unauthorised.example", "mailto:small@example.com!1k", "mailto:tiny@example.com!100",
                  "https://example.com/r"]
    log.add(row)
    log.flush()
    res = CliRunner().invoke(main, ["auth", "report", "--date", "2023-11-14", "--send"])
    assert res.exit_code == 0, res.output
    results = [json.loads(x) for x in res.stdout.splitlines() if '"status"' in x]
    status = {r["to"]: r["status"] for r in results}
    assert status == {"dmarc@example.com": "sent", "agg@reports.example.net": "sent",
                      "x@unauthorised.example": "skipped", "small@example.com": "sent",
                      "tiny@example.com": "skipped", "https://example.com/r": "skipped"}
    assert sorted(r for _f, rcpts, _c in inbox.mails for r in rcpts) == [
        "agg@reports.example.net", "dmarc@example.com", "small@example.com"]
    mail = email.message_from_bytes(inbox.mails[0][2])
    assert mail["Subject"].startswith("Report Domain: example.com Submitter: ")
    part = next(p for p in mail.walk() if p.get_content_type() == "application/gzip")
    root = ET.fromstring(gzip.decompress(part.get_payload(decode=True)))
    assert root.findtext("policy_published/domain") == "example.com"


def test_report_send_needs_a_relay(clean_env: Path) -> None:
    res = CliRunner().invoke(main, ["auth", "report", "--date", "2023-11-14", "--send"])
    assert res.exit_code == 2 and "MAMORI_AUTH__REPORT_SMTP" in res.output


async def test_signatures_beyond_the_limit_are_ignored() -> None:
    from gateway.checks.auth.dkim import MAX_SIGNATURES

    sig = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s%d; h=from; bh=AAAA; b=AAAA\r\n"
    raw = b"".join(sig % i for i in range(50)) + b"From: a@example.com\r\n\r\nbody\r\n"
    run = await run_auth(Message.email(raw), zone_resolver(ZONE))
    assert len(run.result("dkim")) == MAX_SIGNATURES
    assert run.ctx.data["auth.dns"].queries <= MAX_SIGNATURES + 4


async def test_too_many_arc_sets_fail_without_lookups() -> None:
    seal = b"ARC-Seal: i=%d; a=rsa-sha256; cv=pass; d=x%d.example; s=s; b=AAAA\r\n"
    raw = b"".join(seal % (i, i) for i in range(1, 61)) + b"From: a@example.com\r\n\r\nbody\r\n"
    run = await run_auth(Message.email(raw), zone_resolver(ZONE))
    assert run.result("arc").result == "fail" and "more than 50" in run.result("arc").reason
    assert run.ctx.data["auth.dns"].queries <= 4  # SPF/DMARC only
