"""Structured JSON logs: one line per event, one line per verdict, never content or parties."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

from gateway.message import Message
from gateway.privacy import PartyHasher
from gateway.verdict import Verdict

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def json_line(created: float, level: str, logger: str, msg: str, extra: dict[str, Any]) -> str:
    """One log line as JSON: time, level, logger and message, then the record's own fields."""
    out: dict[str, Any] = {"ts": round(created, 3), "level": level, "logger": logger, "msg": msg}
    out.update(extra)
    return orjson.dumps(out, default=str).decode()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = {key: value for key, value in record.__dict__.items()
                 if key not in _RESERVED and not key.startswith("_")}
        if record.exc_info and record.exc_info[0] is not None:
            extra["exc_type"] = record.exc_info[0].__name__
        return json_line(record.created, record.levelname.lower(), record.name,
                         record.getMessage(), extra)


def setup_logging(level: str = "INFO", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiosqlite logs SQL parameters (subscriber ids) at DEBUG: never below WARNING
    for noisy in ("aiokafka", "uvicorn.access", "mail.log", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


verdict_log = logging.getLogger("mamori.verdict")

_last_second: tuple[int, str] = (-1, "")


def _utc_second(ts: float) -> str:
    """ISO 8601 UTC time of `ts` to the second (formatted once per second, not per verdict)."""
    global _last_second
    sec = int(ts)
    last = _last_second
    if last[0] == sec:
        return last[1]
    text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec))
    _last_second = (sec, text)
    return text


def verdict_record(message: Message, verdict: Verdict, hasher: PartyHasher, ingress: str) -> dict[str, Any]:
    """Metadata of one verdict: ids, channel, action, score, symbol names, versions, keyed
    hashes of the parties. Shared by the verdict log line and the verdict event."""
    return {
        "message_id": message.id,
        "time": _utc_second(message.received_at),
        "ingress": ingress,
        "channel": verdict.channel,
        "action": verdict.action.value,
        "score": round(verdict.score, 3),
        "symbols": {n: round(s.score, 3) for n, s in verdict.symbols.items()},
        "failed_checks": list(verdict.failed_checks),
        "policy_version": verdict.policy_version,
        "model_version": verdict.model_version,
        "subscriber": hasher(verdict.subscriber),
        "sender": hasher(message.sender),
        "recipients": [hasher(r) for r in message.recipients[:50]],
        "size": message.size,
        "elapsed_ms": round(verdict.elapsed_ms, 3),
    }


def log_verdict(record: dict[str, Any]) -> None:
    """One line per verdict. The log record is made directly (no caller lookup, which is most
    of `Logger.info`'s cost and which the JSON line does not show); filters, handlers and
    propagation are the logger's own (`Logger.handle`). When logging is as `setup_logging`
    leaves it (one JSON stream handler on the root, nothing else on the way), the line is
    written straight to that stream: the same line `JsonFormatter` makes, without a record."""
    if not verdict_log.isEnabledFor(logging.INFO):
        return
    handler = _plain_json_handler()
    if handler is not None:
        line = json_line(time.time(), "info", verdict_log.name, "verdict",
                         {"verdict": record}) + handler.terminator
        handler.acquire()
        try:
            handler.stream.write(line)
            handler.flush()
            return
        except Exception:  # (a closed or failing stream: the handler's own error handling)
            pass
        finally:
            handler.release()
    rec = verdict_log.makeRecord(verdict_log.name, logging.INFO, "", 0, "verdict", (), None,
                                 extra={"verdict": record})
    verdict_log.handle(rec)


def _plain_json_handler() -> logging.StreamHandler[Any] | None:
    """The root's one handler when a verdict record would reach only it, unfiltered and
    formatted by `JsonFormatter`; else None (tests' capture handlers, other set-ups)."""
    root = logging.root
    if len(root.handlers) != 1 or verdict_log.filters or not verdict_log.propagate:
        return None
    handler = root.handlers[0]
    if (type(handler) is not logging.StreamHandler or type(handler.formatter) is not JsonFormatter
            or handler.filters or handler.level > logging.INFO):
        return None
    logger: Any = verdict_log
    while logger is not None and logger is not root:  # nothing of its own on the way up
        if logger.handlers or not logger.propagate:
            return None
        logger = logger.parent
    return handler
