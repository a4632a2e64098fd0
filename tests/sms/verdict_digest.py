"""Digests of the verdicts of a fixed SMS sample, for the speed work's "same verdicts" test.

    python -m tests.sms.verdict_digest OUT.json   # writes the digests of this code

The sample: the first 300 SMS of the shared UCI corpus and the SMS benchmark's mix (ham,
fraud with URLs, long messages, Japanese), from domestic, foreign, alphanumeric and short-code
senders, for subscribers with the default policy and with stricter or switched-off ones, with
flood thresholds low enough that the repeated texts trip them. Each verdict is reduced to what
a peer or subscriber sees (action, score, reason, policy version, model, symbols with scores
and options) and hashed. Only APIs present before the speed work are used, so the same module
computes the reference on the old code.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "sms-linear" / "1.1.0"

HAM = ["Running late, see you at 7", "Can you pick up milk on the way home?",
       "Meeting moved to 3pm, room B", "Happy birthday! Dinner on Saturday?",
       "Your verification code is 482913. Do not share it."]
FRAUD = ["Your parcel is held. Pay the fee: https://sagawa-delivery.example/p?{}",
         "[MyBank] Your card is locked. Verify now https://mybank-secure.example/{}",
         "Win a prize! Claim at http://bit.ly/x{} now"]
JP = ("【重要】お客様のアカウントで不審なログインを検知しました。以下のリンクから本人確認を"
      "お願いいたします。確認がない場合はご利用を制限させていただきます。https://example-jp.top/{}")
SENDERS = [("+819012345{:03d}", "1"), ("+447700900{:03d}", "1"), ("MyBank", "5"),
           ("Amazon", "5"), ("{:05d}", "3"), ("0901234{:04d}", "2"), ("+1202555{:04d}", "")]


def sample(shared_data: Path) -> list[tuple[str, str, str, str]]:
    """(text, sender, ton, recipient) of every message, in order."""
    lines = (shared_data / "sms" / "uci_sms_spam_train.tsv").read_text("utf-8").splitlines()
    texts = [ln.split("\t", 1)[1] for ln in lines[:300] if "\t" in ln]
    for i in range(60):
        texts.append(HAM[i % len(HAM)])
        texts.append(FRAUD[i % len(FRAUD)].format(i % 4))
        if i % 3 == 0:
            texts.append(JP.format(i % 2))
            texts.append(("This is a long message about your account. " * 8)[:450])
    out = []
    for i, text in enumerate(texts):
        sender, ton = SENDERS[i % len(SENDERS)]
        out.append((text, sender.format(i % 997) if "{" in sender else sender, ton,
                    f"+8180{i % 97:08d}"))
    return out


def policies() -> dict[str, Any]:
    from gateway.policy import DEFAULT_POLICY

    out: dict[str, Any] = {}
    for i in range(97):
        sub = f"+8180{i:08d}"
        if i % 7 == 0:
            out[sub] = replace(DEFAULT_POLICY, subscriber=sub, block_international=True,
                               block_url_unknown_senders=True)
        elif i % 11 == 0:
            out[sub] = replace(DEFAULT_POLICY, subscriber=sub,
                               contacts=frozenset({"+819012345011", "mybank"}))
        elif i % 13 == 0:
            out[sub] = replace(DEFAULT_POLICY, subscriber=sub, protection=False)
    return out


def digest(verdict: Any) -> str:
    shown = {
        "action": verdict.action.value, "score": round(verdict.score, 6), "reason": verdict.reason,
        "policy_version": verdict.policy_version, "model": verdict.model_version,
        "failed": list(verdict.failed_checks),
        "symbols": {n: [round(s.score, 6), list(s.options)] for n, s in verdict.symbols.items()},
    }
    return hashlib.sha256(orjson.dumps(shown, option=orjson.OPT_SORT_KEYS)).hexdigest()[:20]


async def verdicts(shared_data: Path, data_dir: Path, *, batch: bool = False) -> list[str]:
    """The digest of every verdict of the sample, in order (`batch`: `Gateway.process_many`)."""
    from gateway.config import load_settings
    from gateway.events import MemorySink
    from gateway.message import Message
    from gateway.runtime import Gateway
    from gateway.store.policy import MemoryPolicyStore

    settings = load_settings(
        data_dir=data_dir, hash_key="verdict-digest-key-0123", model={"sms": str(MODEL)},
        sms={"flood_recipients": 5, "burst_recipients": 8, "flood_window": 1e7},
        urls={"expand_shorteners": False})
    store = MemoryPolicyStore()
    for p in policies().values():
        await store.put(p)
    gw = Gateway.create(settings, events=MemorySink(), policies=store)
    await gw.start()
    try:
        msgs = [Message.sms(text, sender=sender, recipient=rcpt,
                            protocol={"ton": ton, "system_id": "esme1"} if ton else {})
                for text, sender, ton, rcpt in sample(shared_data)]
        if batch:
            got = await gw.process_many(msgs, "http")  # type: ignore[attr-defined]
        else:
            got = [await gw.process(m, "http") for m in msgs]
        return [digest(v) for v in got]
    finally:
        await gw.close()


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from tests.conftest import shared_data_dir

    out = Path(sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        got = asyncio.run(verdicts(shared_data_dir(), Path(tmp)))
    out.write_bytes(orjson.dumps(got, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"{len(got)} verdict digests -> {out}")


if __name__ == "__main__":
    main()
