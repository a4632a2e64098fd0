"""`mamori scan` as specified: one JSON object per input, in input order, exit 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_mamori(args: list[str], stdin: bytes = b"", tmp_path: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAMORI_") or k == "MAMORI_SHARED_DATA"}
    if tmp_path is not None:
        env["MAMORI_DATA_DIR"] = str(tmp_path / "data")
    return subprocess.run([sys.executable, "-m", "gateway", *args], input=stdin, capture_output=True,
                          env=env, timeout=300, check=False)


def lines(out: bytes) -> list[dict]:
    return [json.loads(line) for line in out.decode().splitlines()]


def test_scan_sms_lines_in_order(tmp_path: Path) -> None:
    texts = ["hello there", "", "WINNER!! claim your prize now http://x.example", "こんにちは"]
    r = run_mamori(["scan", "--channel", "sms", "-"], "\n".join(texts).encode() + b"\n", tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    out = lines(r.stdout)
    assert len(out) == len(texts)
    for o in out:
        assert set(o) >= {"action", "score", "symbols", "model_version"}
        assert o["action"] in ("accept", "tag", "quarantine", "soft_reject", "reject")


def test_scan_sms_jsonl_with_bad_lines(tmp_path: Path) -> None:
    stdin = (b'{"text": "hi", "sender": "+819011112222", "recipient": "+819033334444"}\n'
             b'not json\n[1,2]\n{"text": "ok"}\n')
    r = run_mamori(["scan", "--channel", "sms", "--jsonl", "-"], stdin, tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    out = lines(r.stdout)
    assert len(out) == 4
    assert "action" in out[0] and "action" in out[3]
    assert "invalid JSON" in out[1]["error"] and out[1]["line"] == 2
    assert "expected an object" in out[2]["error"]


def test_scan_email_files_with_paths_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.eml"
    good.write_bytes(b"From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n")
    empty = tmp_path / "empty.eml"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.eml"
    garbage.write_bytes(os.urandom(20000))
    missing = tmp_path / "missing.eml"
    r = run_mamori(["scan", "--channel", "email", str(good), str(empty), str(garbage), str(missing)],
                   tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    out = lines(r.stdout)
    assert [o["path"] for o in out] == [str(good), str(empty), str(garbage), str(missing)]
    assert out[1]["symbols"].get("EMPTY_MESSAGE")
    assert "action" in out[2]
    assert out[3]["error"].startswith("cannot read")
    assert b"Traceback" not in r.stderr


def test_scan_email_50mb(tmp_path: Path) -> None:
    big = tmp_path / "big.eml"
    with big.open("wb") as fh:
        fh.write(b"From: a@example.org\r\nSubject: big\r\n\r\n")
        chunk = (b"B" * 76 + b"\r\n") * 10000
        for _ in range(50 * 1024 * 1024 // len(chunk)):
            fh.write(chunk)
    r = run_mamori(["scan", "--channel", "email", str(big)], tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    assert "action" in lines(r.stdout)[0]


def test_usage_errors_are_clear(tmp_path: Path) -> None:
    r = run_mamori(["scan", "--channel", "email"], tmp_path=tmp_path)
    assert r.returncode == 2 and b"Traceback" not in r.stderr
    r = run_mamori(["scan", "--channel", "sms", "--model", str(tmp_path / "nope"), "-"], tmp_path=tmp_path)
    assert r.returncode == 2 and b"does not exist" in r.stderr and b"Traceback" not in r.stderr


@pytest.mark.parametrize("cmd", [["--help"], ["serve", "--help"], ["scan", "--help"]])
def test_help(cmd: list[str], tmp_path: Path) -> None:
    r = run_mamori(cmd, tmp_path=tmp_path)
    assert r.returncode == 0
    if cmd[0] == "serve":
        assert b"MAMORI_SMTP__LISTEN" in r.stdout and b"MAMORI_DATA_DIR" in r.stdout
