"""Fault: the model file missing or corrupt.

- a model named in the configuration (MAMORI_MODEL__SMS / __EMAIL) that is missing, corrupt
  (sha256 mismatch) or not a model: `mamori serve` refuses to start with one clear line and
  exit status 2, no traceback;
- the live model (models/live-<channel>) missing or corrupt: the gateway starts, the classifier
  check fails with CHECK_FAILED and the reason, every message is still scanned and answered."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import Settings, repo_models_dir
from gateway.message import Message
from gateway.runtime import Gateway
from gateway.verdict import CHECK_FAILED
from tests.faults.support import HASH_KEY, free_port

SMS_MODEL = repo_models_dir() / "sms-linear" / "1.0.0"


def corrupt_copy(tmp: Path, how: str) -> Path:
    d = tmp / "model"
    if how == "missing":
        return d
    shutil.copytree(SMS_MODEL, d)
    f = d / "model.skops"
    if how == "flipped":  # one byte changed: the sha256 check catches it
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0xFF
        f.write_bytes(bytes(data))
    elif how == "not_a_model":
        f.write_bytes(b"PK\x03\x04 this is not a skops archive")
    elif how == "no_card":
        (d / "metrics.json").unlink()
    return d


@pytest.mark.parametrize("how", ["missing", "flipped", "not_a_model", "no_card"])
def test_configured_model_missing_or_corrupt_refuses_to_start(tmp_path: Path, how: str) -> None:
    d = corrupt_copy(tmp_path, how)
    env = {"PATH": "/usr/bin:/bin", "MAMORI_DATA_DIR": str(tmp_path / "data"),
           "MAMORI_HASH_KEY": HASH_KEY, "MAMORI_MODEL__SMS": str(d),
           "MAMORI_API__LISTEN": f"127.0.0.1:{free_port()}", "MAMORI_SMTP__LISTEN": ""}
    p = subprocess.run([sys.executable, "-m", "gateway", "serve"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    err = p.stderr.strip()
    assert "Traceback" not in err, err[-2000:]
    assert err.startswith("mamori: error:") and "model" in err.lower(), err


@pytest.mark.parametrize("how", ["missing", "flipped", "truncated"])
async def test_live_model_missing_or_corrupt_check_failed_scan_goes_on(
        settings: Settings, tmp_path: Path, how: str) -> None:
    models = tmp_path / "models"
    shutil.copytree(repo_models_dir(), models, ignore=shutil.ignore_patterns("*-linear"))
    live = models / (repo_models_dir() / "live-sms").read_text().strip()
    if how != "missing":
        shutil.copytree(SMS_MODEL, live)
        f = live / "model.skops"
        data = f.read_bytes()
        f.write_bytes(data[:1000] if how == "truncated" else data[:-1] + bytes([data[-1] ^ 1]))
    s = settings.model_copy(update={"model": settings.model.model_copy(update={"dir": str(models)})})
    gw = Gateway.create(s)
    await gw.start()
    try:
        for i in range(3):
            v = await gw.process(Message.sms(f"Your parcel is waiting {i}", sender="+819011112222",
                                             recipient="+818033334444"), "smpp")
            assert CHECK_FAILED in v.symbols
            assert any(o.startswith("classifier_sms") for o in v.symbols[CHECK_FAILED].options)
            assert v.action is not None
    finally:
        await gw.close()
