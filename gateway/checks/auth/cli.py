"""`mamori auth`: answer "why did this mail fail DMARC?" and produce DMARC reports.

    mamori auth --zone ZONEFILE --jsonl < inputs.jsonl
    mamori auth report [--date YYYY-MM-DD] [--gzip]

Each input line is `{"ip", "helo", "mail_from", "message"}` (`message`: path of an RFC 5322
file, optional); each output line has the `spf`, `dkim`, `dmarc` and `arc` results and the
Authentication-Results header mamori would add. The checks are the gateway's own (the same
pipeline code); `--zone` replaces live DNS with a zonedata file (YAML or JSON, TIMEOUT
entries included).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import click
import orjson

from gateway.errors import GatewayError

MAX_MESSAGE_BYTES = 50 * 1024 * 1024


def _fail(msg: str) -> None:
    click.echo(f"mamori: error: {msg}", err=True)
    sys.exit(2)


def summarise(data: dict[str, Any], header: str | None) -> dict[str, Any]:
    """The JSON line for one input, from the checks' published results."""
    from gateway.checks.auth.check import ARC_KEY, DKIM_KEY, DMARC_KEY, SPF_KEY

    spf = data.get(SPF_KEY)
    dkim = data.get(DKIM_KEY)
    arc = data.get(ARC_KEY)
    dmarc = data.get(DMARC_KEY)
    dkim_json: dict[str, Any] | None = None
    if dkim is not None:
        results = [d.result for d in dkim]
        overall = "pass" if "pass" in results else (results[0] if results else "none")
        dkim_json = {"result": overall, "signatures": [d.to_json() for d in dkim]}
    return {
        "spf": spf.to_json() if spf is not None else {"result": "none", "reason": "check did not run"},
        "dkim": dkim_json or {"result": "none", "signatures": []},
        "dmarc": dmarc.to_json() if dmarc is not None else {"result": "none"},
        "arc": arc.to_json() if arc is not None else {"result": "none"},
        "authentication_results": header,
    }


def _parse_line(line: bytes, lineno: int) -> dict[str, Any]:
    from gateway.message import Channel, Message, Peer

    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return {"error": f"invalid JSON: {exc}", "line": lineno}
    if not isinstance(obj, dict):
        return {"error": "expected a JSON object", "line": lineno}
    fields: dict[str, str] = {}
    for key in ("ip", "helo", "mail_from", "message"):
        v = obj.get(key)
        if v is not None and not isinstance(v, str):
            return {"error": f"{key} must be a string", "line": lineno}
        fields[key] = v or ""
    peer = Peer(ip=fields["ip"] or None, helo=fields["helo"] or None)
    if fields["message"]:
        path = Path(fields["message"])
        try:
            if path.stat().st_size > MAX_MESSAGE_BYTES:
                return {"error": "message file too large", "line": lineno}
            raw = path.read_bytes()
        except OSError as exc:
            return {"error": f"cannot read message: {exc.strerror}", "line": lineno}
        msg = Message.email(raw, peer=peer)  # without mail_from: the Return-Path
        if "mail_from" in obj:
            msg = dataclasses.replace(msg, sender=fields["mail_from"])
    else:
        msg = Message(channel=Channel.EMAIL, sender=fields["mail_from"], peer=peer)
    return {"message": msg}


@click.group(invoke_without_command=True)
@click.option("--zone", "zone", type=click.Path(dir_okay=False, path_type=Path),
              help="zonedata file (YAML or JSON) answering every DNS query instead of live DNS")
@click.option("--jsonl", is_flag=True, help='read {"ip","helo","mail_from","message"} lines from stdin')
@click.pass_context
def auth(ctx: click.Context, zone: Path | None, jsonl: bool) -> None:
    """Authenticate mail (SPF, DKIM, DMARC, ARC) as the gateway does, one JSON line per input."""
    if ctx.invoked_subcommand is not None:
        return
    if not jsonl:
        raise click.UsageError("give --jsonl and JSON lines on standard input")
    from gateway.checks.auth import build_auth_checks
    from gateway.config import load_settings
    from gateway.dns import CachingResolver, ZoneBackend, build_resolver
    from gateway.message import ScanContext
    from gateway.pipeline import Pipeline
    from gateway.policy import DEFAULT_POLICY
    from gateway.scoring import Scores

    try:
        settings = load_settings()
        settings = settings.model_copy(update={"auth": settings.auth.model_copy(update={"reports": False})})
        if zone is not None:
            resolver = CachingResolver(ZoneBackend.from_file(zone))
        else:
            a = settings.auth
            resolver = build_resolver(zone_file=a.zone_file, timeout=a.dns_timeout,
                                      nameservers=a.nameservers)
        checks = build_auth_checks(settings, resolver)
        pipeline = Pipeline(checks, Scores(weights={}, thresholds={}, strength={}),
                            deadline=settings.pipeline.deadline)
    except GatewayError as exc:
        _fail(str(exc))
        return
    out = sys.stdout.buffer

    async def go() -> None:
        await pipeline.start()
        try:
            for lineno, line in enumerate(sys.stdin.buffer, 1):
                if not line.strip():
                    continue
                item = _parse_line(line, lineno)
                if "error" in item:
                    out.write(orjson.dumps(item) + b"\n")
                    continue
                sctx = ScanContext(item["message"], DEFAULT_POLICY,
                                   deadline=time.monotonic() + pipeline.deadline)
                await pipeline.run_checks(sctx)
                header = dict(sctx.extra_headers).get("Authentication-Results")
                line_out = summarise(sctx.data, header)
                failed = {r.check: r.error for r in sctx.results.values() if r.error}
                if failed:
                    line_out["failed_checks"] = failed
                out.write(orjson.dumps(line_out) + b"\n")
                out.flush()
        finally:
            await pipeline.close()

    asyncio.run(go())


@auth.command()
@click.option("--date", "day", help="UTC day to report, YYYY-MM-DD (default: yesterday)")
@click.option("--gzip", "compress", is_flag=True, help="write .xml.gz files")
@click.option("--all-domains", is_flag=True, help="also report domains that publish no rua")
@click.option("--send", is_flag=True, help="also mail them to their rua through MAMORI_AUTH__REPORT_SMTP")
def report(day: str | None, compress: bool, all_domains: bool, send: bool) -> None:
    """Write the DMARC aggregate reports (RFC 7489 XML) of one day under the report directory."""
    from gateway.checks.auth.reports import write_reports, yesterday_utc
    from gateway.config import load_settings, parse_hostport

    try:
        settings = load_settings()
        when = date.fromisoformat(day) if day else yesterday_utc()
    except ValueError:
        _fail(f"invalid date {day!r}: expected YYYY-MM-DD")
        return
    except GatewayError as exc:
        _fail(str(exc))
        return
    a = settings.auth
    directory = Path(a.report_dir) if a.report_dir else settings.data_dir / "dmarc-reports"
    receiver = a.authserv_id or settings.smtp.hostname
    relay: tuple[str, int] | None = None
    if send:
        if not a.report_smtp:
            _fail("--send needs MAMORI_AUTH__REPORT_SMTP (host:port of an SMTP relay)")
            return
        try:
            relay = parse_hostport(a.report_smtp)
        except GatewayError as exc:
            _fail(str(exc))
            return
    try:
        files = write_reports(directory, when, receiver=receiver, org_name=a.report_org_name,
                              email=a.report_email, compress=compress, only_with_rua=not all_domains)
    except OSError as exc:
        _fail(f"cannot write reports: {exc.strerror}")
        return
    for f in files:
        click.echo(orjson.dumps({"report": str(f)}).decode())
    click.echo(f"{len(files)} report(s) for {when.isoformat()} in {directory}", err=True)
    if relay is not None and files:
        _send(files, settings, relay, receiver)


def _send(files: list[Path], settings: Any, relay: tuple[str, int], receiver: str) -> None:
    from gateway.checks.auth import shared_resolver
    from gateway.checks.auth.reports import send_reports

    index = orjson.loads((files[0].parent / "index.json").read_bytes())
    try:
        resolver = shared_resolver(settings, {})
    except GatewayError as exc:
        _fail(str(exc))
        return
    a = settings.auth
    results = asyncio.run(send_reports(files, index, resolver=resolver, relay=relay,
                                       sender=a.report_email, submitter=receiver))
    for r in results:
        click.echo(orjson.dumps(r).decode())
    if any(r["status"] == "failed" for r in results):
        sys.exit(1)
