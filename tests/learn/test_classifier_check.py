"""The classifier check with the shipped models: spam scores high, ham low, models verified."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.errors import ConfigError, ModelError
from gateway.events import NullSink
from gateway.learn.registry import live_dir, load_model
from gateway.message import Channel, Message
from gateway.plugins import PluginEnv
from gateway.runtime import Gateway
from gateway.store.policy import MemoryPolicyStore
from gateway.verdict import Action

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"


def _gw(settings, **overrides) -> Gateway:
    env = PluginEnv(settings)
    env.overrides.update(overrides)
    return Gateway.create(settings, env=env, events=NullSink(), policies=MemoryPolicyStore())


def _scan(gw: Gateway, msg: Message):
    return asyncio.run(gw.pipeline.scan(msg))


@pytest.mark.parametrize("channel", list(Channel))
def test_shipped_live_model_loads(channel: Channel) -> None:
    d = live_dir(MODELS, channel)
    assert d is not None, f"no live {channel} model shipped"
    m = load_model(d)
    assert m.channel is channel
    assert m.scorer is not None  # the fast path agrees with predict_proba


def test_sms_spam_high_ham_low(settings) -> None:
    gw = _gw(settings)
    spam = _scan(gw, Message.sms("URGENT! You have WON a £1000 cash prize. Call 09061213237 now "
                                 "to claim. T&C apply, 18+"))
    ham = _scan(gw, Message.sms("Hey, are we still on for lunch tomorrow? I'll be a bit late"))
    assert spam.action in (Action.REJECT, Action.QUARANTINE)
    assert spam.symbols["CLASSIFIER_SPAM"].score >= 9
    assert ham.action is Action.ACCEPT and ham.score < 5
    assert spam.model_version and spam.model_version.startswith("sms-")


def test_corrupt_model_refuses_to_start(settings, tmp_path: Path) -> None:
    import shutil

    src = live_dir(MODELS, Channel.SMS)
    assert src is not None
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    with (bad / "model.skops").open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00garbage\x00")
    with pytest.raises((ModelError, ConfigError), match="sha256"):
        _gw(settings, **{"model.sms": bad})
    with pytest.raises((ModelError, ConfigError), match="does not exist"):
        _gw(settings, **{"model.sms": tmp_path / "missing"})


SPAM_EMAIL = (b"From: \"Best Deals\" <offers@cheap-pills-online.biz>\r\nTo: undisclosed-recipients:;\r\n"
              b"Subject: CHEAP VIAGRA 80% OFF!!! Limited time offer\r\nContent-Type: text/html\r\n\r\n"
              b"<html><body><a href=\"http://192.168.10.5/buy\">Click here</a> to buy cheap meds "
              b"online, no prescription needed! Best prices guaranteed. Remove me from your list "
              b"<a href=\"http://bit.ly/x\">here</a></body></html>\r\n")
HAM_EMAIL = (b"From: Alice Smith <alice@example.org>\r\nTo: bob@example.org\r\n"
             b"Subject: Re: notes from Tuesday's meeting\r\nDate: Tue, 3 Sep 2024 10:00:00 +0200\r\n"
             b"Message-ID: <abc123@example.org>\r\nIn-Reply-To: <xyz@example.org>\r\n\r\n"
             b"Hi Bob,\r\n\r\nthanks for the notes. I think the second option for the build "
             b"script is fine; can you push the patch to the branch so I can review it "
             b"tomorrow?\r\n\r\nAlice\r\n")


def test_email_spam_high_ham_low(settings) -> None:
    gw = _gw(settings)
    spam = _scan(gw, Message.email(SPAM_EMAIL))
    ham = _scan(gw, Message.email(HAM_EMAIL))
    assert spam.symbols["CLASSIFIER_SPAM"].score >= 9, spam.to_json()
    assert ham.score < 5, ham.to_json()
    assert spam.model_version and spam.model_version.startswith("email-")


@pytest.mark.parametrize("raw", [b"", b"\x00\xff" * 5000, b"Content-Type: multipart/mixed; "
                                 b"boundary=x\r\n\r\n--x\r\nContent-Type: text/plain; charset=bogus"
                                 b"\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!notbase64",
                                 b"Subject: big\r\n\r\n" + b"word " * 2_000_000])
def test_malformed_and_huge_email_never_crash(settings, raw: bytes) -> None:
    v = _scan(_gw(settings), Message.email(raw))
    assert "classifier_email" not in v.failed_checks
    assert v.model_version is not None


def test_empty_sms_and_contract(settings) -> None:
    gw = _gw(settings)
    v = _scan(gw, Message.sms(""))
    assert v.action is Action.ACCEPT and "classifier_sms" not in v.failed_checks
    for c in gw.pipeline.checks:
        if c.name.startswith("classifier_"):
            assert {s.name for s in c.symbols} == {"CLASSIFIER_SPAM"}


def test_model_setting_selects_the_model(settings, tiny_models: Path) -> None:
    """MAMORI_MODEL__SMS (settings.model.sms) overrides the live pointer."""
    from gateway.config import load_settings

    s = load_settings(data_dir=settings.data_dir, hash_key="k" * 24,
                      model={"sms": str(tiny_models / "sms-tiny" / "2")})
    v = _scan(_gw(s), Message.sms("WIN a free prize now"))
    assert v.model_version == "sms-tiny/2"
    wrong = load_settings(data_dir=settings.data_dir, hash_key="k" * 24,
                          model={"sms": str(tiny_models / "email-tiny" / "1")})
    with pytest.raises((ModelError, ConfigError), match="not sms"):
        _gw(wrong)
