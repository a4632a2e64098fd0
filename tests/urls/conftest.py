"""Fixtures of the URL tests: a data dir with a small index."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.urls.canon import list_expression
from gateway.urls.index import IndexStore, ListBuilder


def save_list(data_dir: Path, name: str, entries: dict[str, str], kind: str = "block") -> dict:
    store = IndexStore(data_dir)
    b = ListBuilder(name, kind)
    for e, label in entries.items():
        b.add(list_expression(e), label)
    store.save_list(b.build())
    return store.rebuild()


@pytest.fixture
def url_settings(settings: Settings) -> Settings:
    save_list(settings.data_dir, "jpcert", {"listed-phish.example/": "Amazon",
                                            "evil.example/login": "楽天"})
    save_list(settings.data_dir, "carrier-allow", {"carrier.example": ""}, "allow")
    return settings
