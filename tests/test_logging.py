"""The verdict line: written straight to the stream when logging is as `setup_logging` leaves
it, the same line `JsonFormatter` makes through a log record otherwise."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from gateway import logging as glog

RECORD = {"message_id": "ab" * 16, "action": "reject", "score": 7.25,
          "symbols": {"URL_FRAUD_LIST": 6.0}, "subscriber": "h" * 16, "size": 812}


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(x) for x in buf.getvalue().splitlines()]


def test_direct_line_is_the_formatters_line(restore_logging: None) -> None:
    direct = io.StringIO()
    glog.setup_logging("INFO", stream=direct)
    assert glog._plain_json_handler() is not None
    glog.log_verdict(RECORD)
    # the same record through the formatter (another handler on the way: no direct path)
    formatted = io.StringIO()
    extra = logging.StreamHandler(formatted)
    extra.setFormatter(glog.JsonFormatter())
    logging.getLogger().addHandler(extra)
    assert glog._plain_json_handler() is None
    glog.log_verdict(RECORD)
    (a, b), (c,) = lines(direct), lines(formatted)
    assert b == c  # both handlers got the record's line
    for line in (a, c):
        assert isinstance(line.pop("ts"), float)
    assert a == c == {"level": "info", "logger": "mamori.verdict", "msg": "verdict",
                      "verdict": RECORD}


def test_filters_levels_and_disabled_logging_are_honoured(restore_logging: None) -> None:
    buf = io.StringIO()
    glog.setup_logging("WARNING", stream=buf)
    glog.log_verdict(RECORD)
    assert buf.getvalue() == ""
    glog.setup_logging("INFO", stream=buf)
    glog.verdict_log.addFilter(lambda r: False)
    try:
        assert glog._plain_json_handler() is None
        glog.log_verdict(RECORD)
    finally:
        glog.verdict_log.filters.clear()
    assert buf.getvalue() == ""
    logging.disable(logging.INFO)
    try:
        glog.log_verdict(RECORD)
    finally:
        logging.disable(logging.NOTSET)
    assert buf.getvalue() == ""
    glog.log_verdict(RECORD)
    assert len(lines(buf)) == 1
