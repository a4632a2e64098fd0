"""Fixtures for the learn tests: a tiny model trained on generated data (fast, no corpus)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from gateway.learn.datasets import Record
from gateway.learn.train import train
from gateway.message import Channel

SPAM = ["WIN a free prize now! call 0906{n} to claim your cash award",
        "URGENT: your account is suspended, verify at http://secure-{n}.xyz/login",
        "Congratulations! you won {n} pounds, txt CLAIM to 8{n}",
        "【重要】お客様のアカウントが停止されました。確認はこちら http://a{n}.top"]
HAM = ["are we still meeting at {n} for lunch?", "ok see you at home, bring milk",
       "the report is on the shared drive, page {n}", "明日{n}時に駅前で待ち合わせね"]


def tiny_records(channel: Channel = Channel.SMS, n: int = 120, seed: int = 1) -> list[Record]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        spam = i % 2 == 0
        text = rng.choice(SPAM if spam else HAM).format(n=rng.randint(10, 99999))
        text += " " + " ".join(rng.choice("abcdefghij") * rng.randint(1, 4) for _ in range(3))
        out.append(Record(channel, int(spam), text=text, source="generated", order=i))
    return out


def make_model(out: Path, channel: Channel = Channel.SMS, version: str = "1", seed: int = 1
               ) -> Path:
    train(channel, tiny_records(channel, seed=seed), out, name=f"{channel.value}-tiny",
          version=version, cv_folds=0, progress=False, log=lambda s: None)
    return out


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory with two SMS versions and one email version."""
    root = tmp_path_factory.mktemp("models")
    make_model(root / "sms-tiny" / "1", Channel.SMS, "1", seed=1)
    make_model(root / "sms-tiny" / "2", Channel.SMS, "2", seed=2)
    make_model(root / "email-tiny" / "1", Channel.EMAIL, "1", seed=3)
    return root
