"""Structured JSON logs: one event per state change, metadata only, never payloads.

Call sites log an event name and keyword facts (``uuid``, ``nachrichtentyp``, ``agency``,
``reason``...). Only those facts are written; message bodies never reach a logger.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["configure_logging", "event"]

_FACTS = "xbroker_facts"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(getattr(record, _FACTS, {}))
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str = "INFO", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # signxml logs every canonicalized document at DEBUG: that is payload, never logged.
    for noisy in ("aio_pika", "aiormq", "uvicorn", "signxml"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **facts: Any) -> None:
    """Log one event with its facts (metadata only)."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={_FACTS: facts})
