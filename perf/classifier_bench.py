"""Classifier and pipeline throughput per core (CPU time, so a busy machine does not skew it).

    .venv/bin/python perf/classifier_bench.py [--n 3000] [--emails 300]

Prints, for the live SMS and email models:
- classifier only, one message at a time (featurise + score)
- classifier only, in batches (vectorise a batch, one sparse product)
- SMS: the check itself (`run`, and the batch entry point `run_many`)
- the whole pipeline (`Pipeline.scan`, every registered check), one message at a time
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.config import load_settings  # noqa: E402
from gateway.events import NullSink  # noqa: E402
from gateway.learn.datasets import load  # noqa: E402
from gateway.learn.features import Features  # noqa: E402
from gateway.learn.registry import live_dir, load_model  # noqa: E402
from gateway.message import Channel, Message, ScanContext  # noqa: E402
from gateway.policy import DEFAULT_POLICY  # noqa: E402
from gateway.runtime import Gateway  # noqa: E402
from gateway.store.policy import MemoryPolicyStore  # noqa: E402

SHARED = Path(os.environ.get("MAMORI_SHARED_DATA") or next(
    (p for p in (ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data")
     if p.is_dir()), ROOT.parent / "shared" / "data"))


def cpu() -> float:
    return time.process_time()


def report(label: str, n: int, secs: float) -> None:
    print(f"{label:<58} {n / secs:>10,.0f} msg/s per core  {secs / n * 1e6:>9.1f} us/msg")


def bench_model(channel: Channel, messages: list[Message], batch: int,
                model_dir: Path | None = None) -> None:
    model = load_model(model_dir or live_dir(ROOT / "models", channel))  # type: ignore[arg-type]
    row = model.features.row  # the feature version the model was trained with
    print(f"\n{channel.value}: model {model.ident} (features {model.features.version}), "
          f"{len(messages)} messages")
    ctxs = [ScanContext(m, DEFAULT_POLICY) for m in messages]
    t = cpu()
    feats = [Features.from_context(c) for c in ctxs]
    report("  parse + text extraction (shared with other checks)", len(ctxs), cpu() - t)
    t = cpu()
    for f in feats:
        model.proba_row(*row(f))
    report("  classifier, one at a time (featurise + score)", len(feats), cpu() - t)
    t = cpu()
    for f in feats:
        row(f)
    report("    of which featurise", len(feats), cpu() - t)
    t = cpu()
    for i in range(0, len(feats), batch):
        model.proba(feats[i : i + batch])
    report(f"  classifier, batches of {batch} (LoadedModel.proba)", len(feats), cpu() - t)
    if channel is Channel.SMS:
        from gateway.checks.classifier import ModelSlot, SmsClassifierCheck

        check = SmsClassifierCheck(channel, ModelSlot(channel, fixed=model.path))
        fresh = [ScanContext(m, DEFAULT_POLICY) for m in messages]
        t = cpu()
        for c in fresh:
            check.run(c)
        report("  check.run, one at a time (Features + featurise + score)", len(fresh), cpu() - t)
        fresh = [ScanContext(m, DEFAULT_POLICY) for m in messages]
        t = cpu()
        for i in range(0, len(fresh), batch):
            check.run_many(fresh[i : i + batch])
        report(f"  check.run_many, batches of {batch}", len(fresh), cpu() - t)


def bench_pipeline(channel: Channel, messages: list[Message]) -> None:
    settings = load_settings()
    gw = Gateway.create(settings, events=NullSink(), policies=MemoryPolicyStore())

    async def go() -> None:
        await gw.start()
        try:
            for m in messages[:50]:  # warm up
                await gw.pipeline.scan(m)
            t = cpu()
            for m in messages:
                await gw.pipeline.scan(m)
            report(f"  whole pipeline ({len(gw.pipeline.checks)} checks), sequential",
                   len(messages), cpu() - t)
            t = cpu()
            for i in range(0, len(messages), 64):
                await asyncio.gather(*(gw.pipeline.scan(m) for m in messages[i : i + 64]))
            report("  whole pipeline, 64 concurrent", len(messages), cpu() - t)
        finally:
            await gw.close()

    asyncio.run(go())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000, help="SMS messages")
    ap.add_argument("--emails", type=int, default=300, help="emails")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--sms-model", type=Path, default=None, help="SMS model dir (default: live)")
    ap.add_argument("--no-pipeline", action="store_true", help="the classifier only")
    ap.add_argument("--email-model", action="append", type=Path, default=[],
                    help="email model directory to bench (repeatable; default: the live one)")
    ap.add_argument("--spread", action="store_true",
                    help="emails spread over the whole corpus (ham and spam), not the first N")
    ap.add_argument("--email-only", action="store_true", help="skip SMS and the pipelines")
    a = ap.parse_args()
    if not a.email_only:
        sms = [r.text for r in load(SHARED / "sms" / "uci_sms_spam_train.tsv")]
        sms = (sms * (a.n // len(sms) + 1))[: a.n]
        sms_msgs = [Message.sms(t, sender="+819012345678") for t in sms]
        bench_model(Channel.SMS, sms_msgs, a.batch, a.sms_model)
        if not a.no_pipeline:
            bench_pipeline(Channel.SMS, sms_msgs)
    emails = [r.raw for r in load(SHARED / "email" / "spamassassin")]
    emails = emails[:: max(1, len(emails) // a.emails)][: a.emails] if a.spread else emails[: a.emails]
    mail_msgs = [Message.email(raw) for raw in emails]
    avg = sum(len(r) for r in emails) / max(len(emails), 1)
    print(f"\n(email sample: SpamAssassin corpus, mean size {avg / 1024:.1f} KiB)")
    for d in a.email_model or [None]:
        bench_model(Channel.EMAIL, mail_msgs, min(a.batch, 64), d)
    if not (a.email_only or a.no_pipeline):
        bench_pipeline(Channel.EMAIL, mail_msgs)


if __name__ == "__main__":
    main()
