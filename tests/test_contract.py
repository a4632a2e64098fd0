"""Contract over every registered check (built-in and plugins): declared symbols only, no
mutation of the Message, finishes within its timeout on an empty message; and the shipped
scores file names only symbols some check declares."""

from __future__ import annotations

import asyncio
import copy
import inspect
import time
import tomllib
from importlib import resources

import pytest

from gateway.config import Settings
from gateway.message import Channel, Message, ScanContext
from gateway.pipeline import Check
from gateway.plugins import PluginEnv, build_checks
from gateway.policy import DEFAULT_POLICY
from gateway.verdict import CHECK_FAILED, SYMBOL_NAME_RE, Symbol


@pytest.fixture
def checks(settings: Settings) -> list[Check]:
    return build_checks(PluginEnv(settings))


def empty_messages() -> list[Message]:
    return [Message.sms(""), Message.email(b"")]


def test_checks_are_registered(checks: list[Check]) -> None:
    names = {c.name for c in checks}
    assert {"policy_lists", "email_structure"} <= names


def test_declarations(checks: list[Check]) -> None:
    for c in checks:
        assert c.name and c.name == c.name.lower(), c.name
        for s in c.symbols:
            assert SYMBOL_NAME_RE.match(s.name), s.name
            assert s.description, f"{s.name} has no description"
            assert s.group, f"{s.name} has no group"


async def test_empty_message_contract(checks: list[Check]) -> None:
    for c in checks:
        await c.start()
    try:
        for msg in empty_messages():
            before = copy.deepcopy(msg)
            for c in checks:
                if msg.channel not in c.channels:
                    continue
                ctx = ScanContext(msg, DEFAULT_POLICY, deadline=time.monotonic() + 30)
                timeout = c.timeout or 2.0
                out = c.run(ctx)
                if inspect.isawaitable(out):
                    out = await asyncio.wait_for(out, timeout)
                declared = {s.name for s in c.symbols}
                for sym in out or ():
                    assert isinstance(sym, Symbol)
                    assert sym.name in declared, f"{c.name} emitted undeclared {sym.name}"
                assert msg == before, f"{c.name} mutated the message"
    finally:
        for c in checks:
            await c.close()


def test_shipped_scores_name_only_declared_symbols(checks: list[Check]) -> None:
    doc = tomllib.loads(resources.files("gateway.data").joinpath("scores.toml").read_text("utf-8"))
    declared = {s.name for c in checks for s in c.symbols} | {CHECK_FAILED}
    for section in ("symbols", "force_actions"):
        unknown = set(doc.get(section, {})) - declared
        assert not unknown, f"scores.toml [{section}] names undeclared symbols {sorted(unknown)}"


def test_every_channel_has_checks(checks: list[Check]) -> None:
    for ch in Channel:
        assert any(ch in c.channels for c in checks), ch
