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
