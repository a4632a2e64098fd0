"""`mamori model ...` end to end on generated data, and `mamori scan --model DIR`."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from gateway.cli import main
from tests.learn.conftest import tiny_records


@pytest.fixture
def data(tmp_path: Path) -> Path:
    p = tmp_path / "sms.tsv"
    p.write_text("".join(f"{'spam' if r.label else 'ham'}\t{r.text}\n" for r in tiny_records(n=160)),
                 "utf-8")
    return p


def test_train_evaluate_promote_rollback_list(data: Path, tmp_path: Path, settings,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    monkeypatch.setenv("MAMORI_MODEL__DIR", str(models))
    r = CliRunner()
    for v in ("1", "2"):
        res = r.invoke(main, ["model", "train", "--channel", "sms", "--data", str(data), "--out",
                              str(models / "sms-t" / v), "--version", v, "--cv", "3", "--quiet",
                              "--note", "trained for the test"])
        assert res.exit_code == 0, res.output
        assert "threshold" in res.output
    meta = orjson.loads((models / "sms-t" / "1" / "metrics.json").read_bytes())
    assert meta["cv"]["folds"] == 3 and meta["sources"]["sms.tsv"]["spam"] > 0
    card = (models / "sms-t" / "1" / "card.md").read_text()
    assert "Cross-validation" in card and "licence" in card and "trained for the test" in card

    res = r.invoke(main, ["model", "evaluate", str(models / "sms-t" / "1"), "--data", str(data),
                          "--report", str(tmp_path / "rep"), "--quiet", "--record"])
    assert res.exit_code == 0, res.output
    assert "Further evaluations" in (models / "sms-t" / "1" / "card.md").read_text()
    assert "on sms.tsv" in orjson.loads((models / "sms-t" / "1" / "metrics.json").read_bytes())[
        "evaluations"]
    for f in ("report.html", "roc.png", "pr.png", "hist.png", "confusion.png"):
        assert (tmp_path / "rep" / f).stat().st_size > 0
    assert "Worst false positives" in (tmp_path / "rep" / "report.html").read_text()

    res = r.invoke(main, ["model", "compare", str(models / "sms-t" / "1"),
                          str(models / "sms-t" / "2"), "--data", str(data), "--quiet"])
    assert res.exit_code == 0 and "sms-t/1" in res.output and "sms-t/2" in res.output

    assert r.invoke(main, ["model", "promote", str(models / "sms-t" / "1")]).exit_code == 0
    res = r.invoke(main, ["model", "promote", str(models / "sms-t" / "2")])
    assert "live: sms-t/2 (was sms-t/1)" in res.output
    res = r.invoke(main, ["model", "list"])
    assert "* sms-t/2" in res.output
    res = r.invoke(main, ["model", "rollback", "--channel", "sms"])
    assert res.exit_code == 0 and "live: sms-t/1" in res.output
    res = r.invoke(main, ["model", "rollback", "--channel", "sms"])
    assert res.exit_code == 2 and "no earlier sms model" in res.output

    # scan with an explicit model directory
    res = r.invoke(main, ["scan", "--channel", "sms", "--model", str(models / "sms-t" / "2"), "-"],
                   input="WIN a free prize now! call 0906111 to claim your cash award\nok see you at home\n")
    assert res.exit_code == 0, res.output
    lines = [orjson.loads(x) for x in res.output.strip().splitlines()]
    assert [x["model_version"] for x in lines] == ["sms-t/2", "sms-t/2"]
    assert lines[0]["score"] > lines[1]["score"]


def test_train_errors_are_clear(tmp_path: Path) -> None:
    r = CliRunner()
    res = r.invoke(main, ["model", "train", "--channel", "sms", "--data", str(tmp_path / "x.tsv"),
                          "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = r.invoke(main, ["model", "promote", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_shadow_summary(tmp_path: Path) -> None:
    ev = tmp_path / "shadow.jsonl"
    rows = [{"channel": "sms", "live": "a/1", "shadow": "a/2", "live_p": 0.9, "shadow_p": 0.95,
             "live_spam": True, "shadow_spam": True},
            {"channel": "sms", "live": "a/1", "shadow": "a/2", "live_p": 0.1, "shadow_p": 0.8,
             "live_spam": False, "shadow_spam": True}]
    ev.write_bytes(b"\n".join(orjson.dumps(x) for x in rows) + b"\nnot json\n")
    res = CliRunner().invoke(main, ["model", "compare", "x", "--shadow", str(ev)])
    assert res.exit_code == 0, res.output
    assert "| sms | a/1 | a/2 | 2 | 1 | 0 | 1 | 50.00% |" in res.output
    assert "1 malformed" in res.output
