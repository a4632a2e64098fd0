"""normalise_party's digits-only shortcut gives what the character loop gives."""

from __future__ import annotations

import random

from gateway.policy import normalise_party


def _reference(value: str) -> str:
    v = value.strip().lower()
    if v.startswith("<") and v.endswith(">"):
        v = v[1:-1]
    if v and (v[0] == "+" or v[0].isdigit()) and "@" not in v:
        v = "+" + "".join(ch for ch in v if ch.isdigit()) if v[0] == "+" else "".join(
            ch for ch in v if ch.isdigit())
    return v


def test_same_as_the_character_loop() -> None:
    fixed = ["+819012345678", "819012345678", "+81 90-1234-5678", "+", "0", "<+8190>", " 090 ",
             "+\u0661\u0662\u0663", "\u0661\u0662", "12\u00b2", "+1a2", "MyBank", "a@b.example",
             "+1@x", "", "   ", "<>", "\uff11\uff12\uff13"]
    rnd = random.Random(7)
    alphabet = "0123456789+ -()<>a@.\u0663\u00b2\uff15"
    fuzz = ["".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 14))) for _ in range(3000)]
    for v in fixed + fuzz:
        assert normalise_party(v) == _reference(v), v


def test_e164_digits_same_as_the_character_loop() -> None:
    from gateway.sms.sender import e164_digits

    def ref(sender: str) -> str:
        s = sender.strip()
        if s.startswith("+"):
            s = s[1:]
        elif s.startswith("00"):
            s = s[2:]
        return "".join(ch for ch in s if ch.isdigit())

    rnd = random.Random(11)
    alphabet = "0123456789+ -()a\u0663\u00b2"
    cases = ["+819012345678", "00447700900123", "09012345678", "+", "00", "", "+81 90",
             "+\u0661\u0662", "12\u00b2"]
    cases += ["".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 14))) for _ in range(3000)]
    for v in cases:
        assert e164_digits(v) == ref(v), v
