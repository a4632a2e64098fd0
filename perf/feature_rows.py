"""Digests of one feature version's row (indices and values, bit for bit) for every message of
an email corpus, for speed work on a feature set: run it on two checkouts and compare.

    cd /tmp/base && PYTHONPATH=. MAMORI_SHARED_DATA=... python /path/to/perf/feature_rows.py \
        --features e3 --corpus trec07p_early > /tmp/old.json
    PYTHONPATH=. MAMORI_SHARED_DATA=... python perf/feature_rows.py --features e3 \
        --corpus trec07p_early > /tmp/new.json
    python perf/feature_rows.py --compare /tmp/old.json /tmp/new.json

The `gateway` package is the one on the import path (PYTHONPATH), so one copy of this script
digests any checkout; the output names the package it read. Corpora under
$MAMORI_SHARED_DATA/email: ``spamassassin`` (every ``*/*.txt``) or a TREC-style one (its
``index``). Each message is featurised as `mamori scan` builds it (raw bytes) and as the
milter does (header fields and body, an envelope sender). `--mutate N` digests N messages
made from the corpus' by seeded random edits (odd bytes, fields and HTML the shortcuts treat
specially) instead. Prints JSON; asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
from pathlib import Path

# what `--mutate` puts into messages: the byte sequences and header fields the e3 and f2
# shortcuts treat specially (non-ASCII digits and spaces, lone surrogates, invalid UTF-8,
# HTML tricks, odd URLs, phone numbers, money, odd Date / Message-ID / From / Received)
_PIECES = [
    b'\xe2\x80\x99', b'\xf0\x9f\x98\x80', b'\xed\xa0\x80', b'\xff', b'\x0b', b'\x0c', b'\x1c',
    b'\t', b'\r', b'   ', b'<!-- x -->', b'a<!--c-->b',
    b'<a href="http://1.2.3.4:8080/x?url=http://y">www.other.example</a>',
    b"<a href='mailto:x@y'>mail</a>", b'<font size=1>', b'<font color=#ffffff>', b'display: none',
    b'visibility:hidden', b'font-size:0px', b'&#65;&#66;&#67;&#68;&#69;',
    b'http://user@host.example/%41?id=1', b'https://xn--bcher-kva.example/', b'$100',
    b'\xc2\xa3 5', b'555-123-4567', b'1 2 3 4 5 6 7 8 9', b'\xef\xbc\x91\xef\xbc\x92\xef\xbc\x93',
    b'\xd9\xa1\xd9\xa2\xd9\xa3\xd9\xa4\xd9\xa5\xd9\xa6\xd9\xa7\xd9\xa8\xd9\xa9', b'!!!', b'??',
    b'\n>', b'<script>x</script>', b'<style>a{}</style>', b'<img src=x>', b'<form>', b'<iframe>',
    b'<table>', b'&nbsp;', b'\xe6\x9d\xb1\xe4\xba\xac', b'\xc5\xbf', b'\xe2\x84\xaa',
    b'<a\nhref=x>t</a>', b'</a>', b'<a href=', b'www.x.com', b'bit.ly/abc', b'x' * 300,
]
_FIELDS = [
    b'Subject: RE: FWD: WIN    abc123x9\r\n', b'Subject: =?utf-8?B?w6k=?=\r\n', b'Subject: \r\n',
    b'From: "JOHN DOE" <john12345678@gmail.com>\r\n', b'From: <>\r\n', b'From: nobody\r\n',
    b'Reply-To: x@yahoo.com\r\n', b'Return-Path: <>\r\n', b'To: undisclosed-recipients:;\r\n',
    b'Date: Mon, 32 Foo 2002\r\n', b'Date: 1 Jan 2002 10:00:00 EST\r\n',
    b'Date: 1 Jan 2002 10:00 +9930\r\n', b'Message-ID: <0123456789ab$01234567$89abcdef@host>\r\n',
    b'Message-ID: <x@[1.2.3.4]>\r\n', b'Message-ID: junk\r\n',
    b'X-Mailer: Microsoft Outlook Express 6\r\n', b'User-Agent: Mutt\r\n', b'X-Mailer: PHP/5\r\n',
    b'Received: from 1.2.3.4 (unknown [1.2.3.4]) by x\r\n',
    b'Received: from dsl-1-2-3.pool.example (may be forged)\r\n',
    b'Content-Type: text/html; charset="koi8-r"\r\n', b'Content-Type: multipart/mixed\r\n',
    b'MIME-Version: 1.0\r\n', b'Content-Transfer-Encoding: base64\r\n',
    b'FROM: second@x.example\r\n', b'RECEIVED: from bare\r\n',
]


def _mutated(paths: list[Path], n: int, seed: int) -> list[tuple[str, bytes]]:
    """`n` messages made from random corpus messages: fields added, doubled or dropped, the
    body made HTML, `_PIECES` inserted at random places, cut, upper-cased (deterministic)."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        raw = paths[rnd.randrange(len(paths))].read_bytes()
        head, _sep, body = raw.partition(b"\n\n")
        if rnd.random() < 0.5:
            lines = head.split(b"\n")
            for _ in range(rnd.randrange(4)):
                lines.insert(rnd.randrange(len(lines) + 1), rnd.choice(_FIELDS).rstrip(b"\r\n"))
            if rnd.random() < 0.2 and len(lines) > 2:
                del lines[rnd.randrange(len(lines))]
            head = b"\n".join(lines)
        if rnd.random() < 0.3:
            head += b"\nContent-Type: text/html"
            body = b"<html><body>" + body + b"</body></html>"
        for _ in range(rnd.randrange(8)):
            p = rnd.randrange(len(body) + 1)
            body = body[:p] + rnd.choice(_PIECES) + body[p:]
        if rnd.random() < 0.1:
            body = body[: rnd.randrange(len(body) + 1)]
        if rnd.random() < 0.05:
            body = body.upper()
        out.append((f"mutated/{i}", head + b"\n\n" + body))
    return out


def _paths(corpus: Path, limit: int | None) -> list[Path]:
    index = corpus / "index"
    if index.is_file():
        paths = [corpus / line.split()[1] for line in index.read_text().splitlines()
                 if line.strip()]
    else:
        paths = sorted(corpus.glob("*/*.txt"))
    return paths[:limit]


def run(version: str, corpus: Path, limit: int | None, mutate: int = 0,
        seed: int = 42) -> dict[str, object]:
    import gateway
    from gateway.learn.features import Features
    from gateway.learn.featuresets import SETS
    from gateway.message import Channel, Message, ScanContext, split_header_block
    from gateway.policy import DEFAULT_POLICY

    row = SETS[version].row
    out: dict[str, str] = {}
    if mutate:
        messages = _mutated(_paths(corpus, limit), mutate, seed)
    else:
        messages = [(str(p.relative_to(corpus)), p.read_bytes()) for p in _paths(corpus, limit)]
    for name, raw in messages:
        headers, body = split_header_block(raw)
        as_milter = Message(channel=Channel.EMAIL, sender="sender@example.org",
                            recipients=("user@example.test",), subscriber="user@example.test",
                            headers=headers, body=body, id="m")
        h = hashlib.sha256()
        for m in (Message.email(raw, recipients=["user@example.test"], id="s"), as_milter):
            idx, val = row(Features.from_context(ScanContext(m, DEFAULT_POLICY)))
            h.update(idx.astype("<i8").tobytes())
            h.update(b"|")
            h.update(val.astype("<f8").tobytes())
            h.update(b"#")
        out[name] = h.hexdigest()[:32]
    return {"package": str(Path(gateway.__file__).parent), "features": version, "rows": out}


def compare(old_path: str, new_path: str) -> int:
    old, new = json.loads(Path(old_path).read_text()), json.loads(Path(new_path).read_text())
    o, n = old["rows"], new["rows"]
    moved = [p for p in o if n.get(p) != o[p]]
    missing = sorted(set(o) ^ set(n))
    print(f"{old['features']}: {len(o)} messages ({old['package']} vs {new['package']}); "
          f"{len(moved)} moved, {len(missing)} not in both")
    for p in moved[:20]:
        print(f"  moved: {p}")
    return 1 if moved or missing or old["features"] != new["features"] else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", default="e3", help="feature version (default e3)")
    ap.add_argument("--corpus", default="spamassassin",
                    help="a corpus under $MAMORI_SHARED_DATA/email (default spamassassin)")
    ap.add_argument("--limit", type=int, default=None, help="first N messages")
    ap.add_argument("--mutate", type=int, default=0, metavar="N",
                    help="instead: N messages made from the corpus' by random edits")
    ap.add_argument("--seed", type=int, default=42, help="of --mutate (default 42)")
    ap.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"))
    args = ap.parse_args()
    if args.compare:
        sys.exit(compare(*args.compare))
    corpus = Path(os.environ["MAMORI_SHARED_DATA"]) / "email" / args.corpus
    sys.stdout.write(json.dumps(run(args.features, corpus, args.limit, args.mutate, args.seed),
                                indent=0, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
