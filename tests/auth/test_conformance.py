"""Conformance suites run through mamori's own auth checks (pipeline, resolver, zone files):
the openspf RFC 7208 suite, the ValiMail ARC validation suite, and dkimpy's signed messages."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import spf as pyspf
import yaml

from gateway.message import Message, Peer
from tests.auth.conftest import run_auth, zone_resolver

# file -> (scenarios, cases): the RFC 7208 suite is the one that must pass; the older RFC 4408
# suite passes too and is kept as a regression net
SPF_SUITES = {"rfc7208-tests.yml": (16, 203), "rfc4408-tests.yml": (15, 191)}
ARC_SCENARIOS = 10
ARC_CASES = 171


def _load_suite(path: Path, scenarios: int, cases: int) -> list[dict[str, Any]]:
    """A multi-document YAML suite, checked to be complete (no case may go missing)."""
    with open(path, encoding="utf-8") as fh:
        docs = list(yaml.safe_load_all(fh))
    assert len(docs) == scenarios
    assert sum(len(d["tests"]) for d in docs) == cases
    return docs


@pytest.fixture(scope="module")
def spf_suites(shared_data: Path) -> dict[str, list[dict[str, Any]]]:
    return {name: _load_suite(shared_data / "conformance" / "spf" / name, *size)
            for name, size in SPF_SUITES.items()}


@pytest.fixture(scope="module")
def arc_suite(shared_data: Path) -> list[dict[str, Any]]:
    return _load_suite(shared_data / "conformance" / "arc" / "arc-draft-validation-tests.yml",
                       ARC_SCENARIOS, ARC_CASES)


@pytest.mark.parametrize(("suite", "scenario"),
                         [(name, i) for name, (n, _cases) in SPF_SUITES.items() for i in range(n)])
async def test_spf_suite(spf_suites: dict[str, list[dict[str, Any]]], suite: str, scenario: int) -> None:
    doc = spf_suites[suite][scenario]
    resolver = zone_resolver(doc["zonedata"])
    wrong = []
    for name, case in doc["tests"].items():
        msg = Message.email(b"Subject: t\r\n\r\nbody\r\n", sender=case["mailfrom"],
                            peer=Peer(ip=case["host"], helo=case["helo"]))
        msg = _with_sender(msg, case["mailfrom"])
        run = await run_auth(msg, resolver)
        res = run.result("spf")
        expected = case["result"] if isinstance(case["result"], list) else [case["result"]]
        if res.result not in expected:
            wrong.append(f"{name}: {res.result} not in {expected} ({case.get('spec')})")
            continue
        exp = case.get("explanation")
        if exp is not None:
            want = pyspf.EXPLANATIONS[res.result] if exp == "DEFAULT" else exp
            if res.explanation != want:
                wrong.append(f"{name}: explanation {res.explanation!r} != {want!r}")
        assert f"SPF_{res.result.upper()}" in run.symbols
    assert not wrong, "\n".join(wrong)


def _with_sender(msg: Message, sender: str) -> Message:
    # Message.email falls back to Return-Path for an empty sender; the suite means null
    import dataclasses

    return dataclasses.replace(msg, sender=sender)


@pytest.mark.parametrize("scenario", range(ARC_SCENARIOS))
async def test_arc_validation_suite(arc_suite: list[dict[str, Any]], scenario: int) -> None:
    doc = arc_suite[scenario]
    resolver = zone_resolver({name: [{"TXT": txt}] for name, txt in doc["txt-records"].items()})
    wrong = []
    for name, case in doc["tests"].items():
        msg = Message.email(case["message"].encode("utf-8"), peer=Peer(ip="192.0.2.1", helo="x"))
        run = await run_auth(msg, resolver)
        got = run.result("arc").result
        # The suite leaves cv empty where an earlier hop already sealed cv=fail (dkimpy
        # answers None): RFC 8617 5.2 makes such a chain "fail".
        want = (case["cv"] or "fail").strip().lower()
        if got != want:
            wrong.append(f"{name}: arc={got}, expected {want} ({run.result('arc').reason})")
        assert f"ARC_{got.upper()}" in run.symbols
        assert f"arc={got}" in (run.header or "")
    assert not wrong, "\n".join(wrong)


def _signed_messages(dkim_data: Path) -> dict[str, Any]:
    with open(dkim_data / "verified_signed_messages.json", encoding="utf-8") as fh:
        return json.load(fh)  # type: ignore[no-any-return]


def _zone(dns_txt: dict[str, str]) -> dict[str, Any]:
    return {name: [{"TXT": value.strip()}] for name, value in dns_txt.items()}


def _tamper_body(raw: bytes) -> bytes:
    head, sep, body = raw.partition(b"\n\n")
    if not sep:
        head, sep, body = raw.partition(b"\r\n\r\n")
    return head + sep + body.replace(b"a", b"o", 1) + b"one more line\n"


def _tamper_from(raw: bytes) -> bytes:
    """Change the From address (a signed header field in every DKIM signature)."""
    return re.sub(rb"(?im)^(from:[^\r\n]*?)@", rb"\1x@", raw, count=1)


@pytest.mark.parametrize("name", ["test2.message", "rfc6376.signed.msg", "rfc6376.signed.rsa.msg",
                                  "ed25519test2.msg"])
async def test_signed_messages_verify_and_tampered_fail(dkim_data: Path, name: str) -> None:
    info = _signed_messages(dkim_data)[name]
    raw = (dkim_data / "dkimpy-data" / name).read_bytes()
    resolver = zone_resolver(_zone(info["dns_txt"]))
    run = await run_auth(Message.email(raw), resolver)
    results = run.result("dkim")
    assert [r.result == "pass" for r in results] == info["verify_each_signature"]
    assert "DKIM_PASS" in run.symbols and "DKIM_FAIL" not in run.symbols
    assert "dkim=pass" in run.header
    for tamper in (_tamper_body, _tamper_from):
        bad = tamper(raw)
        assert bad != raw
        run = await run_auth(Message.email(bad), resolver)
        results = run.result("dkim")
        assert results and all(r.result == "fail" for r in results), [r.reason for r in results]
        assert "DKIM_FAIL" in run.symbols and "DKIM_PASS" not in run.symbols
