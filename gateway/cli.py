"""The `mamori` command line."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import click
import orjson

from gateway.config import describe_settings, load_settings
from gateway.errors import GatewayError


def _settings_help() -> str:
    rows = describe_settings()
    width = max(len(r[0]) for r in rows)
    lines = ["Settings (environment variables):", ""]
    for env, default, desc in rows:
        lines.append(f"  {env.ljust(width)}  {desc}" + (f" [default: {default}]" if default else ""))
    return "\n".join(lines)


class _SettingsHelp(click.Command):
    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write("\n")
        with formatter.indentation():
            for line in _settings_help().splitlines():
                formatter.write(line + "\n")


# Subcommands that live beside their subsystem, imported only when used.
LAZY_COMMANDS = {
    "auth": "gateway.checks.auth.cli:auth",
    "model": "gateway.learn.cli:model",
    "urls": "gateway.urls.cli:urls",
    "retention": "gateway.retention:retention_cli",
    "events": "gateway.events_cli:events",
    "quarantine": "gateway.store.quarantine_cli:quarantine",
}


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


class _LazyGroup(click.Group):
    def _load(self, name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(name)
        if target is None:
            return None
        modname, _, attr = target.partition(":")
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name and modname.startswith(exc.name):
                return None  # this build does not have that subsystem
            raise
        cmd = getattr(mod, attr, None)
        return cmd if isinstance(cmd, click.Command) else None

    def list_commands(self, ctx: click.Context) -> list[str]:
        lazy = [n for n, t in LAZY_COMMANDS.items()
                if module_exists(t.partition(":")[0]) and self._load(n) is not None]
        return sorted({*super().list_commands(ctx), *lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return super().get_command(ctx, name) or self._load(name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mamori")
def main() -> None:
    """mamori: spam and fraud filtering gateway for SMS and email."""


def _fail(exc: Exception) -> None:
    click.echo(f"mamori: error: {exc}", err=True)
    sys.exit(2)


# -- scan ------------------------------------------------------------------------------


def _sms_inputs(stream: TextIO, jsonl: bool) -> Iterator[dict[str, Any]]:
    for lineno, line in enumerate(stream, 1):
        line = line.rstrip("\r\n")
        if jsonl:
            if not line.strip():
                yield {"error": "empty line", "line": lineno}
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield {"error": f"invalid JSON: {exc}", "line": lineno}
                continue
            if not isinstance(obj, dict) or not isinstance(obj.get("text", ""), str):
                yield {"error": "expected an object with a string 'text'", "line": lineno}
                continue
            yield {"text": obj.get("text", ""), "sender": str(obj.get("sender") or ""),
                   "recipient": str(obj.get("recipient") or "")}
        else:
            yield {"text": line, "sender": "", "recipient": ""}


@main.command()
@click.option("--channel", type=click.Choice(["sms", "email"]), required=True)
@click.option("--jsonl", is_flag=True, help="SMS: read JSON objects with text, sender, recipient")
@click.option("--model", "model_dir", type=click.Path(path_type=Path),
              help="scan with this model directory instead of the live one")
@click.argument("inputs", nargs=-1)
def scan(channel: str, jsonl: bool, model_dir: Path | None, inputs: tuple[str, ...]) -> None:
    """Scan messages and print one JSON verdict per input, in input order.

    Email: mamori scan --channel email FILE...   (RFC 5322 files)
    SMS:   mamori scan --channel sms -           (one text per line on standard input)
    """
    from gateway.message import Message
    from gateway.plugins import PluginEnv
    from gateway.runtime import Gateway

    try:
        settings = load_settings()
        env = PluginEnv(settings)
        if model_dir is not None:
            if not model_dir.is_dir():
                raise GatewayError(f"model directory {model_dir} does not exist")
            env.overrides[f"model.{channel}"] = model_dir
        from gateway.events import NullSink
        from gateway.store.policy import MemoryPolicyStore

        gw = Gateway.create(settings, env=env, events=NullSink(), policies=MemoryPolicyStore())
    except GatewayError as exc:
        _fail(exc)
        return

    out = sys.stdout.buffer

    def emit(obj: dict[str, Any]) -> None:
        out.write(orjson.dumps(obj) + b"\n")

    async def go() -> None:
        await gw.start()
        try:
            if channel == "email":
                if not inputs:
                    raise click.UsageError("give one or more RFC 5322 files")
                for name in inputs:
                    try:
                        raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
                    except OSError as exc:
                        emit({"path": name, "error": f"cannot read: {exc.strerror}"})
                        continue
                    v = await gw.pipeline.scan(Message.email(raw))
                    emit({**v.to_json(), "path": name})
            else:
                if inputs not in ((), ("-",)):
                    raise click.UsageError("SMS text is read from standard input: use '-'")
                stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
                for item in _sms_inputs(stdin, jsonl):
                    if "error" in item:
                        emit(item)
                        continue
                    msg = Message.sms(item["text"], sender=item["sender"], recipient=item["recipient"])
                    v = await gw.pipeline.scan(msg)
                    emit(v.to_json())
        finally:
            await gw.close()
            out.flush()

    try:
        asyncio.run(go())
    except GatewayError as exc:
        _fail(exc)


# -- serve ------------------------------------------------------------------------------


@main.command(cls=_SettingsHelp)
def serve() -> None:
    """Start the gateway with every ingress whose listen address is set."""
    import os

    from gateway.logging import setup_logging

    try:
        settings = load_settings()
        setup_logging(settings.log_level)
        workers = settings.workers or os.cpu_count() or 1
        if workers > 1:  # MAMORI_WORKERS: a supervisor and pre-forked serving processes
            from gateway.workers import supervise

            sys.exit(supervise(settings, workers))
        from gateway.serve import run
        from gateway.workers import event_loop_factory

        with asyncio.Runner(loop_factory=event_loop_factory(settings)) as runner:
            runner.run(run(settings))
    except GatewayError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
