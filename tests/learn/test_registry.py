"""Model loading safety, promote/rollback, hot swap in a running check, shadow mode."""

from __future__ import annotations

import asyncio
import shutil
import zipfile
from pathlib import Path

import orjson
import pytest

from gateway.checks import classifier as C
from gateway.errors import ModelError
from gateway.events import MemorySink
from gateway.learn import registry as R
from gateway.message import Channel, Message, ScanContext
from gateway.policy import DEFAULT_POLICY


def test_load_verifies_and_fast_path_matches(tiny_models: Path) -> None:
    m = R.load_model(tiny_models / "sms-tiny" / "1")
    assert m.channel is Channel.SMS and m.ident == "sms-tiny/1"
    assert m.scorer is not None
    meta = orjson.loads((tiny_models / "sms-tiny" / "1" / "metrics.json").read_bytes())
    assert meta["sha256"] == R.sha256_file(tiny_models / "sms-tiny" / "1" / "model.skops")
    assert "sha256" in (tiny_models / "sms-tiny" / "1" / "card.md").read_text()


def test_tampered_file_is_refused(tiny_models: Path, tmp_path: Path) -> None:
    d = tmp_path / "m"
    shutil.copytree(tiny_models / "sms-tiny" / "1", d)
    with (d / "model.skops").open("ab") as fh:
        fh.write(b"x")
    with pytest.raises(ModelError, match="sha256"):
        R.load_model(d)


def test_untrusted_type_is_refused(tiny_models: Path, tmp_path: Path) -> None:
    """A skops file naming a type outside the allow-list never loads, even with a right hash."""
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    d = tmp_path / "evil"
    shutil.copytree(tiny_models / "sms-tiny" / "1", d)
    sio.dump(FunctionTransformer(func=print), d / "model.skops",
             compression=zipfile.ZIP_DEFLATED)
    meta = orjson.loads((d / "metrics.json").read_bytes())
    meta["sha256"] = R.sha256_file(d / "model.skops")
    (d / "metrics.json").write_bytes(orjson.dumps(meta))
    with pytest.raises(ModelError, match="allow-list"):
        R.load_model(d)


def test_feature_version_mismatch(tiny_models: Path, tmp_path: Path) -> None:
    d = tmp_path / "old"
    shutil.copytree(tiny_models / "sms-tiny" / "1", d)
    meta = orjson.loads((d / "metrics.json").read_bytes())
    meta["features_version"] = "f0"
    (d / "metrics.json").write_bytes(orjson.dumps(meta))
    with pytest.raises(ModelError, match="retrain"):
        R.load_model(d)


def test_promote_rollback_list(tiny_models: Path, tmp_path: Path) -> None:
    root = tmp_path / "models"
    shutil.copytree(tiny_models, root)
    with pytest.raises(ModelError):
        R.rollback(root, "sms")
    assert R.promote(root, root / "sms-tiny" / "1") == (None, "sms-tiny/1")
    assert R.promote(root, root / "sms-tiny" / "2") == ("sms-tiny/1", "sms-tiny/2")
    assert R.read_pointer(root, "sms") == "sms-tiny/2"
    live = {r["ref"] for r in R.list_models(root) if r["live"]}
    assert live == {"sms-tiny/2"}
    assert R.rollback(root, "sms") == ("sms-tiny/2", "sms-tiny/1")
    assert R.read_pointer(root, "sms") == "sms-tiny/1"
    with pytest.raises(ModelError):
        R.rollback(root, "sms")
    # email pointer is independent
    R.promote(root, root / "email-tiny" / "1")
    assert R.read_pointer(root, "email") == "email-tiny/1"
    assert R.read_pointer(root, "sms") == "sms-tiny/1"


async def test_running_check_follows_promote(tiny_models: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "models"
    shutil.copytree(tiny_models, root)
    R.promote(root, root / "sms-tiny" / "1")
    monkeypatch.setattr(C, "WATCH_INTERVAL", 0.01)
    slot = C.ModelSlot(Channel.SMS, models_dir=root)
    check = C.SmsClassifierCheck(Channel.SMS, slot)
    await check.start()
    try:
        ctx = ScanContext(Message.sms("WIN a free prize now"), DEFAULT_POLICY)
        check.run(ctx)
        assert ctx.versions["model"] == "sms-tiny/1"
        R.promote(root, root / "sms-tiny" / "2")
        for _ in range(300):
            await asyncio.sleep(0.01)
            if slot.model is not None and slot.model.ident == "sms-tiny/2":
                break
        ctx = ScanContext(Message.sms("WIN a free prize now"), DEFAULT_POLICY)
        check.run(ctx)
        assert ctx.versions["model"] == "sms-tiny/2"
    finally:
        await check.close()


def test_missing_live_model_fails_the_check_not_the_scan(tmp_path: Path) -> None:
    from gateway.errors import CheckError

    slot = C.ModelSlot(Channel.SMS, models_dir=tmp_path)
    check = C.SmsClassifierCheck(Channel.SMS, slot)
    with pytest.raises(CheckError, match="no live sms model"):
        check.run(ScanContext(Message.sms("hi"), DEFAULT_POLICY))


def test_shadow_scores_to_events_only(tiny_models: Path) -> None:
    sink = MemorySink()
    live = C.ModelSlot(Channel.SMS, fixed=tiny_models / "sms-tiny" / "1")
    shadow = C.ModelSlot(Channel.SMS, fixed=tiny_models / "sms-tiny" / "2")
    with_shadow = C.SmsClassifierCheck(Channel.SMS, live, shadow, sink)
    without = C.SmsClassifierCheck(Channel.SMS, live)
    text = "URGENT: your account is suspended, verify at http://secure-1.xyz/login"
    ctx1 = ScanContext(Message.sms(text), DEFAULT_POLICY)
    ctx2 = ScanContext(Message.sms(text), DEFAULT_POLICY)
    assert with_shadow.run(ctx1) == without.run(ctx2)  # the action never changes
    assert ctx1.versions["shadow_model"] == "sms-tiny/2"
    (stream, _, ev), = sink.events
    assert stream == "shadow" and ev["live"] == "sms-tiny/1" and ev["shadow"] == "sms-tiny/2"
    assert "text" not in ev


def test_factor_mapping_reaches_each_action() -> None:
    w = C.REJECT_WEIGHT
    assert C.factor_for(0.3, 0.4, 0.7, 0.9) == 0.0
    assert w * C.factor_for(0.4, 0.4, 0.7, 0.9) == pytest.approx(5.0)
    assert 5.0 < w * C.factor_for(0.69, 0.4, 0.7, 0.9) < 9.0  # tagged, never blocked
    assert w * C.factor_for(0.7, 0.4, 0.7, 0.9) == pytest.approx(9.0)
    assert w * C.factor_for(0.9, 0.4, 0.7, 0.9) == pytest.approx(12.0)
    assert C.factor_for(1.0, 0.4, 0.7, 0.9) == pytest.approx(1.1)
    # a missing reject point falls back between quarantine and 1
    assert 9.0 < w * C.factor_for(0.8, 0.4, 0.7, float("nan")) < 12.0
    # an old model without a tag threshold tags from p = 0.5
    assert w * C.factor_for(0.5, float("nan"), 0.7, 0.9) == pytest.approx(5.0)


def test_feature_sets_side_by_side(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model trained with another feature version is scored with that version's code, also
    as a shadow next to a live model on the default version; unknown versions are refused."""
    import numpy as np

    from gateway.errors import InputError
    from gateway.learn import features as F
    from gateway.learn import featuresets as FS
    from gateway.learn.train import train

    from .conftest import make_model, tiny_records

    calls: list[str] = []

    def words_only(f: F.Features) -> tuple[np.ndarray, np.ndarray]:
        calls.append(f.text)
        cols = np.array(sorted({F._token_hash(w) % 1024 for w in f.text.lower().split()}),
                        dtype=np.int64)
        return cols, np.ones(cols.size)

    monkeypatch.setitem(FS.SETS, "test-words", FS.FeatureSet("test-words", 1024, words_only))
    train(Channel.SMS, tiny_records(), tmp_path / "w" / "1", cv_folds=0, progress=False,
          features_version="test-words", log=lambda s: None)
    meta = orjson.loads((tmp_path / "w" / "1" / "metrics.json").read_bytes())
    assert meta["features_version"] == "test-words" and meta["n_features"] == 1024
    live = C.ModelSlot(Channel.SMS, fixed=make_model(tmp_path / "f2" / "1"))
    shadow = C.ModelSlot(Channel.SMS, fixed=tmp_path / "w" / "1")
    assert shadow.model is not None and shadow.model.features.version == "test-words"
    sink = MemorySink()
    check = C.SmsClassifierCheck(Channel.SMS, live, shadow, sink)
    calls.clear()
    ctx = ScanContext(Message.sms("WIN a free prize now! call 090612 to claim"), DEFAULT_POLICY)
    check.run(ctx)
    assert len(calls) == 1 and {f"classifier.features.{FS.DEFAULT_VERSION[Channel.SMS]}",
                                "classifier.features.test-words"} \
        <= set(ctx.data)
    (_, _, ev), = sink.events
    assert ev["shadow"].endswith("/1") and 0.0 <= ev["shadow_p"] <= 1.0
    with pytest.raises(InputError, match=r"unknown features version 'nope'.*f2"):
        train(Channel.SMS, tiny_records(), tmp_path / "x", cv_folds=0, progress=False,
              features_version="nope", log=lambda s: None)
    monkeypatch.delitem(FS.SETS, "test-words")
    R._CACHE.clear()
    with pytest.raises(ModelError, match=r"'test-words', this code has .*f2"):
        R.load_model(tmp_path / "w" / "1")
