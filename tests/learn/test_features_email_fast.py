"""The shortcuts of the e3 featuriser (gateway/learn/features_email.py) give, bit for bit, what
the steps they stand for give (the corpus-wide check: perf/feature_rows.py)."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from gateway.learn import features as f2
from gateway.learn import features_email as E

_PIECES = ["a", "Z", "0", "7", " ", "\n", "the", "WORD", "\u00e9", "\u6771\u4eac", "\udce9",
           "\U0001f600", "_", "-", "http://x.example/a?b=1", "\u0661"]


def _as_three_blocks(words: list[str], ctext: str, head: str) -> tuple[np.ndarray, np.ndarray]:
    wi, wv = f2._block(f2._word_ids(words), E.BLOCK_WEIGHTS["w"])
    ci, cv = f2._block(E._char_ids(ctext, (3, 4)), E.BLOCK_WEIGHTS["c"])
    ri, rv = f2._block(E._char_ids(head, (4,), E._R_SEED), E.BLOCK_WEIGHTS["r"])
    return np.concatenate((wi, ci, ri)), np.concatenate((wv, cv, rv))


def _check(words: list[str], ctext: str, head: str) -> None:
    cols, vals, kc, kr = E._hashed_blocks(words, ctext, head)
    ei, ev = _as_three_blocks(words, ctext, head)
    assert cols.dtype == np.int64 and vals.dtype == np.float64
    assert cols.tobytes() == ei.tobytes()
    assert vals.tobytes() == ev.tobytes()
    assert kc == f2._block(f2._word_ids(words), 1.0)[0].size
    assert cols.size - kr == f2._block(E._char_ids(head, (4,), E._R_SEED), 1.0)[0].size


@given(st.lists(st.sampled_from(_PIECES), max_size=40), st.lists(st.sampled_from(_PIECES),
                                                                  max_size=12))
def test_hashed_blocks_as_the_three_blocks(body: list[str], header: list[str]) -> None:
    text0, words = f2._text0_words("".join(body))
    _check(words, text0[:E.MAX_CHAR_CHARS], "".join(header).lower())


def test_hashed_blocks_of_short_long_and_repetitive_text() -> None:
    """Every length around the n-gram sizes, blocks left empty one by one, texts long enough
    for the sorted runs, and counts above the term-frequency table."""
    for n in range(7):
        t = "abcdefg"[:n]
        for words in ([], ["w"], ["w", "v"]):
            _check(words, t, t)
            _check(words, "", t)
            _check(words, t, "")
    rnd = random.Random(11)
    pool = "ab c\u00e9\u6771\udce9\U0001f600"
    for size in (100, 1000, 3000):
        t = "".join(rnd.choice(pool) for _ in range(size))
        words = t.split()
        _check(words, t[:E.MAX_CHAR_CHARS], t[:E.MAX_HEADER_CHARS])
    _check(["spam"] * 9000, "x" * 1000, "y" * 2000)  # counts of 9,000 and 1,000+
