"""`mamori urls`: load feeds into the index, check URLs or messages, evaluate on JPCERT data."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
import orjson

from gateway.config import load_settings
from gateway.errors import GatewayError

# JPCERT/CC lists sites it confirmed as phishing, nearly all on hosts the fraudsters own:
# the whole host is blocked. Malware and community feeds list URLs on compromised sites too.
DEFAULT_SCOPES = {"jpcert": "host"}


def _fail(msg: str) -> None:
    click.echo(f"mamori urls: error: {msg}", err=True)
    sys.exit(2)


@click.group()
def urls() -> None:
    """Fraud URL lists, lookups and lookalike detection."""


@urls.command()
@click.option("--format", "fmt", type=click.Choice(["jpcert", "urlhaus", "phishtank", "openphish",
                                                    "plain"]), required=True)
@click.option("--list", "list_name", default="",
              help="name of the list in the index (default: the format); a carrier's own list "
                   "gets its own name, e.g. carrier-block")
@click.option("--allow", is_flag=True, help="the entries are allowed (carrier allow list)")
@click.option("--append", is_flag=True,
              help="add to the list's entries instead of replacing them (feeds are snapshots)")
@click.option("--max-rejected-rate", type=float, default=0.5, show_default=True,
              help="refuse to replace a list when more than this share of lines is rejected")
@click.option("--scope", type=click.Choice(["url", "host", "domain"]), default=None,
              help="what an entry blocks: the URL (Safe Browsing path-prefix match), its whole "
                   "host, or its registered domain [default: host for jpcert, url otherwise]")
@click.option("--quiet", "-q", is_flag=True, help="no progress bar")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def update(fmt: str, list_name: str, allow: bool, append: bool, max_rejected_rate: float,
           scope: str | None, quiet: bool, paths: tuple[Path, ...]) -> None:
    """Load feed files into the URL index under MAMORI_DATA_DIR/urls.

    The running gateway picks the new index up within a second, without a restart.
    """
    import re

    from tqdm import tqdm

    from gateway.urls.feeds import FeedReport, load_feed
    from gateway.urls.index import IndexStore, ListBuilder

    name = list_name or fmt
    scope = scope or DEFAULT_SCOPES.get(fmt, "url")
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,40}", name):
        _fail(f"list name {name!r}: use lower-case letters, digits, - and _")
    try:
        settings = load_settings()
        store = IndexStore(settings.data_dir)
        kind = "allow" if allow else "block"
        builder = ListBuilder(name, kind)
        if append and name in store.list_names():
            old = store.load_list(name)
            if old.kind != kind:
                _fail(f"list {name} is a {old.kind} list")
            builder.extend_from(old)
        reports: list[FeedReport] = []
        for path in paths:
            if not path.is_file():
                _fail(f"{path}: no such file")
            report = FeedReport(str(path))
            with path.open("rb") as f:
                total = sum(1 for _ in f)
            with tqdm(total=total, unit=" lines", desc=path.name, disable=quiet,
                      file=sys.stderr, leave=False) as bar:
                load_feed(path, fmt, builder, report, progress=bar.update, scope=scope)
            reports.append(report)
        accepted = sum(r.accepted for r in reports)
        rejected = sum(r.rejected for r in reports)
        for r in reports:
            click.echo(f"{r.path}: {r.accepted} accepted, {r.duplicates} duplicates, "
                       f"{r.rejected} rejected", err=True)
            for reason, n in r.reasons.most_common():
                click.echo(f"  rejected {n}: {reason}", err=True)
            for s in r.samples[:10]:
                click.echo(f"  line {s.line}: {s.reason}: {s.text}", err=True)
        if accepted == 0:
            _fail("no valid entries: the index is unchanged")
        if rejected > max_rejected_rate * (accepted + rejected):
            _fail(f"{rejected} of {accepted + rejected} lines rejected (more than "
                  f"{max_rejected_rate:.0%}): wrong --format? the index is unchanged")
        t0 = time.perf_counter()
        store.save_list(builder.build({"updated": time.time(),
                                       "sources": [str(p) for p in paths], "format": fmt,
                                       "scope": scope}))
        meta = store.rebuild()
        click.echo(f"list {name} ({kind}): {len(builder)} entries; index generation "
                   f"{meta['generation']}, {sum(v['count'] for v in meta['lists'].values())} "
                   f"entries in {len(meta['lists'])} lists, built in "
                   f"{time.perf_counter() - t0:.2f}s: {store.index_path}", err=True)
    except (GatewayError, OSError, ValueError) as exc:
        _fail(str(exc))


@urls.command("lists")
@click.option("--remove", default="", help="remove this list and rebuild the index")
def lists_cmd(remove: str) -> None:
    """Show the lists in the index (or remove one)."""
    from gateway.urls.index import IndexStore, UrlIndex

    try:
        settings = load_settings()
        store = IndexStore(settings.data_dir)
        if remove:
            if not store.remove_list(remove):
                _fail(f"no list named {remove}")
            store.rebuild()
        if not store.index_path.exists():
            click.echo("no URL index yet: load one with `mamori urls update`")
            return
        idx = UrlIndex.open(store.index_path)
        click.echo(orjson.dumps({"generation": idx.generation, "entries": len(idx),
                                 "lists": idx.meta.get("lists", {})},
                                option=orjson.OPT_INDENT_2).decode())
    except (GatewayError, OSError) as exc:
        _fail(str(exc))


@urls.command()
@click.argument("source", default="-", required=False)
def check(source: str) -> None:
    """Check URLs or whole message texts, one per line on standard input.

    Prints one JSON line per input: {"input": N, "score": S, "symbols": {...}, "urls": [...]}
    where score is 0 when nothing matched.
    """
    from gateway.urls.extract import extract_urls
    from gateway.urls.scan import UrlScanner, url_weights

    if source != "-":
        raise click.UsageError("input is read from standard input: use '-' or nothing")
    try:
        settings = load_settings()
        scanner = UrlScanner.from_settings(settings)
        weights = url_weights(settings)
    except (GatewayError, OSError, ValueError) as exc:
        _fail(str(exc))
        return
    out = sys.stdout.buffer
    import io

    stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    for n, line in enumerate(stdin, 1):
        text = line.rstrip("\r\n")
        found = extract_urls(text)
        symbols = scanner.scan(found, text=text, sms=True)
        scored: dict[str, Any] = {
            s.name: {"score": round(weights.get(s.name, 0.0) * s.factor, 3),
                     "options": list(s.options)} for s in symbols}
        score = round(sum(v["score"] for v in scored.values()), 3)
        out.write(orjson.dumps({"input": n, "score": score, "symbols": scored,
                                "urls": [f.host for f in found]}) + b"\n")
    out.flush()


@urls.command()
@click.option("--jpcert", "jpcert_dir", type=click.Path(path_type=Path), default=None,
              help="folder of JPCERT/CC monthly CSVs (default: MAMORI_SHARED_DATA/urls/jpcert_phishurl)")
@click.option("--spamassassin", "sa_dir", type=click.Path(path_type=Path), default=None,
              help="SpamAssassin corpus folder (default: MAMORI_SHARED_DATA/email/spamassassin)")
@click.option("--split", default="2024-01", show_default=True,
              help="lists are built from months before this, evaluated on the months from it")
@click.option("--until", default="9999-99", help="last month evaluated (YYYY-MM; default: all)")
@click.option("--scope", type=click.Choice(["url", "host", "domain"]), default="host",
              show_default=True, help="list entry scope for the headline figure")
def evaluate(jpcert_dir: Path | None, sa_dir: Path | None, split: str, until: str,
             scope: str) -> None:
    """Recall on later JPCERT/CC URLs (list alone, list + lookalikes) and the lookalike
    false-positive rate on URLs of SpamAssassin ham. Prints JSON."""
    from gateway.urls.evaluate import run_evaluation

    settings = load_settings()
    shared = settings.shared_data
    try:
        result = run_evaluation(jpcert_dir or shared / "urls" / "jpcert_phishurl",
                                sa_dir or shared / "email" / "spamassassin", split=split,
                                scope_default=scope, until=until,
                                progress=lambda m: click.echo(m, err=True))
    except (GatewayError, OSError) as exc:
        _fail(str(exc))
        return
    click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
