"""Trace ids and JSON log lines, shared by the cloud, the agent and the simulators.

Every HTTP request and every MQTT message a Denen process handles runs under a *trace
id*: the ``X-Request-ID`` a caller sent (or a new UUIDv7), or the envelope id of the MQTT
message (fixed where the message was born, so one id follows a check-in from the agent's
outbox through the broker into the cloud's log). :func:`traced` sets it for a block of
code; :class:`JsonFormatter` writes it into every log line::

    {"ts": "2026-11-26T09:12:03.120Z", "level": "INFO", "logger": "cloud.clinic.staff",
     "msg": "room 1 calls A-012", "trace_id": "0193…"}

A log line never carries a PIN, a card number or a name: that rule is the callers'
(see DESIGN.md, Principles 5); this module only shapes the lines.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

from protocol.ids import uuid7

TRACE_ID: ContextVar[str | None] = ContextVar("denen_trace_id", default=None)
# what a caller may hand us as a request id: short, printable, no quotes or spaces
_TRACE_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")

LogFormat = Literal["json", "text"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def valid_trace_id(value: str | None) -> str | None:
    """``value`` when it may be used as a trace id as it is, else None."""
    if value is not None and _TRACE_ID_RE.fullmatch(value):
        return value
    return None


def current_trace_id() -> str | None:
    return TRACE_ID.get()


@contextlib.contextmanager
def traced(trace_id: str | None = None) -> Iterator[str]:
    """Run the block under ``trace_id`` (a new UUIDv7 when None or not usable)."""
    value = valid_trace_id(trace_id) or uuid7()
    token = TRACE_ID.set(value)
    try:
        yield value
    finally:
        TRACE_ID.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, trace_id, and exc if any."""

    def __init__(self, service: str | None = None) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        trace_id = getattr(record, "trace_id", None) or TRACE_ID.get()
        if trace_id is not None:
            out["trace_id"] = trace_id
        if self.service is not None:
            out["service"] = self.service
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str | int, fmt: LogFormat = "json", *, service: str) -> None:
    """Log to stderr in ``fmt``; replaces the root logger's handlers (call once at start)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
