"""Digests of what scanning computes from a message for the shipped models: the classifier's
hashed feature row (indices and values, bit for bit) and the URLs extracted. Used by
test_features_stable.py; run as a script to print the digests of the current code:

    MAMORI_SHARED_DATA=... python -m tests.learn.feature_digest > tests/learn/data/feature_digests.json
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tests.digests import corpus_sample, row_hash


def sample_paths(corpus: Path) -> list[Path]:
    """300 corpus messages, every 20th by path order."""
    return corpus_sample(corpus)


def digests(corpus: Path) -> dict[str, str]:
    from gateway.learn.features import Features, row
    from gateway.message import Message, ScanContext
    from gateway.policy import DEFAULT_POLICY
    from gateway.urls.extract import extract_urls

    out: dict[str, str] = {}
    for path in sample_paths(corpus):
        ctx = ScanContext(Message.email(path.read_bytes()), DEFAULT_POLICY)
        idx, val = row(Features.from_context(ctx))
        plain, html = ctx.text_parts
        urls = [(u.url, u.source, u.host, u.evasions, u.display_host)
                for u in extract_urls(plain, html=html)]
        h = row_hash(idx, val)
        h.update(json.dumps(urls).encode())
        out[str(path.relative_to(corpus))] = h.hexdigest()[:32]
    return out


if __name__ == "__main__":
    base = Path(os.environ["MAMORI_SHARED_DATA"]) / "email" / "spamassassin"
    sys.stdout.write(json.dumps(digests(base), indent=0, sort_keys=True) + "\n")
