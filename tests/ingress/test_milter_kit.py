"""The integration kit in plugins/postfix-milter is valid for both sides."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.config import Settings

KIT = Path(__file__).resolve().parents[2] / "plugins" / "postfix-milter"


def test_postfix_accepts_the_kit_lines(tmp_path: Path) -> None:
    if shutil.which("postconf") is None:
        pytest.skip("postfix is not installed (scripts/services/postfix.sh install)")
    (tmp_path / "main.cf").write_text((KIT / "main.cf").read_text())
    shutil.copy("/etc/postfix/master.cf.proto", tmp_path / "master.cf")
    out = subprocess.run(["postconf", "-c", str(tmp_path), "-n"], capture_output=True, text=True)
    assert out.returncode == 0 and "warning" not in out.stderr, out.stderr
    conf = dict(line.split(" = ", 1) for line in out.stdout.splitlines())
    assert conf["smtpd_milters"] == "inet:127.0.0.1:8891"
    assert conf["non_smtpd_milters"] == "$smtpd_milters"
    assert conf["milter_default_action"] == "tempfail"
    assert conf["milter_protocol"] == "6"


def test_sendmail_line_is_present() -> None:
    mc = (KIT / "sendmail.mc").read_text()
    assert "INPUT_MAIL_FILTER(`mamori', `S=inet:8891@127.0.0.1, F=T" in mc


def test_mamori_side_settings_load(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    for line in (KIT / "mamori-milter.env").read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            monkeypatch.setenv(key, value)
    ms = Settings().milter
    assert ms.listen == "127.0.0.1:8891" and ms.default_action == "tempfail"
    # mamori answers inside Postfix's milter_command_timeout (30 s) of the kit
    assert ms.timeout + ms.queue_timeout < 30
