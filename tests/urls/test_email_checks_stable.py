"""Speed work on email parsing, URL extraction and the authentication checks must not change
a verdict. `data/email_check_digests.json` holds digests of the verdicts (action, score,
symbols with scores and options) of every email check but the classifier for 300 corpus
messages, computed by the code before this speed work (commit a8b207a)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.digests import moved

from .email_digest import digests


def test_email_check_verdicts_are_unchanged(shared_data: Path) -> None:
    corpus = shared_data / "email" / "spamassassin"
    expected = json.loads((Path(__file__).parent / "data" / "email_check_digests.json").read_text())
    got = digests(corpus)
    assert len(got) == len(expected) == 300
    assert moved(expected, got) == []
