"""`mamori urls update / check / lists / evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.config import Settings


@pytest.fixture
def runner(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("MAMORI_DATA_DIR", str(settings.data_dir))
    return CliRunner()


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def check(runner: CliRunner, lines: list[str]) -> list[dict]:
    r = runner.invoke(main, ["urls", "check"], input="\n".join(lines) + "\n")
    assert r.exit_code == 0, r.output
    return [json.loads(x) for x in r.stdout.splitlines()]


def test_update_then_check(runner: CliRunner, tmp_path: Path) -> None:
    feed = write(tmp_path, "202312.csv", "date,URL,description\n"
                 "2023/12/01 10:00:00,https://phish-one.example/login,Amazon\n"
                 "2023/12/01 10:00:00,bogus line without url,Amazon\n")
    r = runner.invoke(main, ["urls", "update", "--format", "jpcert", "-q", str(feed)])
    assert r.exit_code == 0, r.output
    assert "1 accepted" in r.stderr and "1 rejected" in r.stderr
    assert "line 3" in r.stderr
    out = check(runner, ["https://phish-one.example/other",
                         "お荷物の確認 phish-one.example/x をご覧ください",
                         "hello, no link here",
                         "https://amazon-security-xyz.top/"])
    assert [o["input"] for o in out] == [1, 2, 3, 4]
    assert out[0]["score"] >= 12 and "URL_LISTED" in out[0]["symbols"]
    assert out[0]["symbols"]["URL_LISTED"]["options"] == [
        "phish-one.example", "list:jpcert", "brand:Amazon"]
    assert "URL_LISTED" in out[1]["symbols"]
    assert out[2] == {"input": 3, "score": 0, "symbols": {}, "urls": []}
    assert 5 <= out[3]["score"] < 12 and "URL_BRAND_ABUSE" in out[3]["symbols"]


def test_carrier_allow_and_block_lists(runner: CliRunner, tmp_path: Path) -> None:
    block = write(tmp_path, "block.txt", "bad.example\n")
    allow = write(tmp_path, "allow.txt", "amazon-campaign.example\n")
    assert runner.invoke(main, ["urls", "update", "--format", "plain", "--list", "carrier-block",
                                "-q", str(block)]).exit_code == 0
    assert runner.invoke(main, ["urls", "update", "--format", "plain", "--list", "carrier-allow",
                                "--allow", "-q", str(allow)]).exit_code == 0
    out = check(runner, ["http://bad.example/", "http://amazon-campaign.example/"])
    assert "list:carrier-block" in out[0]["symbols"]["URL_LISTED"]["options"]
    assert set(out[1]["symbols"]) == {"URL_ALLOWLISTED"}
    r = runner.invoke(main, ["urls", "lists"])
    info = json.loads(r.stdout)
    assert set(info["lists"]) == {"carrier-block", "carrier-allow"}
    assert info["lists"]["carrier-allow"]["kind"] == "allow"
    r = runner.invoke(main, ["urls", "lists", "--remove", "carrier-block"])
    assert r.exit_code == 0
    assert "URL_LISTED" not in check(runner, ["http://bad.example/"])[0]["symbols"]


def test_update_replaces_unless_append(runner: CliRunner, tmp_path: Path) -> None:
    a = write(tmp_path, "a.txt", "https://one.example/\n")
    b = write(tmp_path, "b.txt", "https://two.example/\n")
    runner.invoke(main, ["urls", "update", "--format", "openphish", "-q", str(a)])
    runner.invoke(main, ["urls", "update", "--format", "openphish", "-q", str(b)])
    out = check(runner, ["https://one.example/", "https://two.example/"])
    assert [bool(o["symbols"]) for o in out] == [False, True]
    runner.invoke(main, ["urls", "update", "--format", "openphish", "--append", "-q", str(a)])
    out = check(runner, ["https://one.example/", "https://two.example/"])
    assert [bool(o["symbols"]) for o in out] == [True, True]


def test_wrong_format_is_refused_and_index_kept(runner: CliRunner, tmp_path: Path) -> None:
    good = write(tmp_path, "good.txt", "https://one.example/\n")
    runner.invoke(main, ["urls", "update", "--format", "openphish", "-q", str(good)])
    junk = write(tmp_path, "junk.json", json.dumps({"not": "a list"}) + "\nmore junk\n")
    r = runner.invoke(main, ["urls", "update", "--format", "openphish", "-q", str(junk)])
    assert r.exit_code == 2
    assert "index is unchanged" in r.stderr
    assert "Traceback" not in r.output
    assert check(runner, ["https://one.example/"])[0]["symbols"]


def test_missing_file_and_bad_list_name(runner: CliRunner, tmp_path: Path) -> None:
    r = runner.invoke(main, ["urls", "update", "--format", "plain", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "no such file" in r.stderr
    f = write(tmp_path, "x.txt", "a.example\n")
    r = runner.invoke(main, ["urls", "update", "--format", "plain", "--list", "../evil", str(f)])
    assert r.exit_code == 2 and "list name" in r.stderr


def test_check_without_index(runner: CliRunner) -> None:
    out = check(runner, ["https://whatever.example/", ""])
    assert out[0]["score"] == 0 and out[1]["score"] == 0


def test_evaluate_small(runner: CliRunner, tmp_path: Path) -> None:
    jp = tmp_path / "jp"
    jp.mkdir()
    write(jp, "202312.csv", "date,URL,description\n"
          "2023/12/01 10:00:00,https://old-phish.example/a,Amazon\n")
    write(jp, "202401.csv", "date,URL,description\n"
          "2024/01/01 10:00:00,https://old-phish.example/b,Amazon\n"
          "2024/01/01 10:00:00,https://amazon-login-jp.top/,Amazon\n"
          "2024/01/01 10:00:00,https://qwzx.example/,Amazon\n")
    sa = tmp_path / "sa"
    (sa / "easy-ham-1").mkdir(parents=True)
    write(sa, "labels.csv", "path,group,label\neasy-ham-1/1.txt,easy-ham-1,ham\n")
    write(sa / "easy-ham-1", "1.txt", "From: a@b.example\nSubject: x\n\n"
          "see http://www.python.org/ and http://amazon-login-jp.top/\n")
    r = runner.invoke(main, ["urls", "evaluate", "--jpcert", str(jp), "--spamassassin", str(sa)])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["test"]["urls"] == 3
    assert res["caught_by_list"]["urls"] == 1
    assert res["caught_with_lookalikes"]["urls"] == 2
    assert res["ham"]["distinct_hosts"] == 2
    assert res["ham"]["lookalike_fp_hosts"] == 1


@pytest.mark.slow
def test_evaluate_on_shared_data(runner: CliRunner, shared_data: Path) -> None:
    """The figures in docs/urls.md: second half of 2023 (a quicker run than 2024)."""
    r = runner.invoke(main, ["urls", "evaluate", "--split", "2023-10", "--until", "2023-12",
                             "--jpcert", str(shared_data / "urls" / "jpcert_phishurl"),
                             "--spamassassin", str(shared_data / "email" / "spamassassin")])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["test"]["urls"] > 5000
    listed = res["caught_by_list"]["percent"]
    assert res["caught_with_lookalikes"]["percent"] > listed
    assert res["ham"]["messages"] == 4150
    assert res["ham"]["lookalike_fp_rate_hosts_percent"] < 1.0


def test_update_into_unwritable_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         settings: Settings) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    monkeypatch.setenv("MAMORI_DATA_DIR", str(blocker))
    feed = write(tmp_path, "f.txt", "bad.example\n")
    r = CliRunner().invoke(main, ["urls", "update", "--format", "plain", "-q", str(feed)])
    assert r.exit_code == 2
    assert "error" in r.stderr and "Traceback" not in r.output
