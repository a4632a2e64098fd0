"""Digests of the verdicts of mamori's own email checks (structure, URLs, SPF/DKIM/DMARC/ARC
from an empty DNS zone, everything but the classifier, whose model others retrain) for a fixed
sample of 300 corpus messages: action, score, symbols with their scores and options. Used by
test_email_checks_stable.py; run as a script to print the digests of the current code:

    MAMORI_SHARED_DATA=... python -m tests.urls.email_digest > tests/urls/data/email_check_digests.json
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

from tests.digests import corpus_sample


def sample_paths(corpus: Path) -> list[Path]:
    """300 corpus messages, every 20th by path order, from the 7th."""
    return corpus_sample(corpus, start=7)


async def _digests(corpus: Path, data_dir: Path) -> dict[str, str]:
    from gateway.config import Settings
    from gateway.events import NullSink
    from gateway.message import Message
    from gateway.runtime import Gateway
    from gateway.store.policy import MemoryPolicyStore

    zone = data_dir / "zone.json"
    zone.write_text("{}")
    settings = Settings(data_dir=data_dir, hash_key="digest-key-0123456789",
                        auth={"zone_file": str(zone), "reports": False},
                        pipeline={"disabled_checks": ["classifier_email", "classifier_sms"]})
    gw = Gateway.create(settings, events=NullSink(), policies=MemoryPolicyStore())
    await gw.start()
    out: dict[str, str] = {}
    try:
        for path in sample_paths(corpus):
            v = await gw.pipeline.scan(Message.email(
                path.read_bytes(), sender="sender@example.org", recipients=["user@example.test"]))
            seen = [v.action.value, round(v.score, 6),
                    sorted((n, round(s.score, 6), [str(o) for o in s.options])
                           for n, s in v.symbols.items())]
            out[str(path.relative_to(corpus))] = hashlib.sha256(
                json.dumps(seen).encode()).hexdigest()[:32]
    finally:
        await gw.close()
    return out


def digests(corpus: Path) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_digests(corpus, Path(tmp)))


if __name__ == "__main__":
    base = Path(os.environ["MAMORI_SHARED_DATA"]) / "email" / "spamassassin"
    sys.stdout.write(json.dumps(digests(base), indent=0, sort_keys=True) + "\n")
