"""Structured JSON logs: one object per line, extra fields (requestId, orderId, eventId...) carried through.

Every text field is passed through `osml.dataset_access.mask_secrets`: a URL's password (a datasetRef, a
database URL in an error) never reaches a log line.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from osml.dataset_access import mask_secrets

_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": mask_secrets(record.getMessage()),
        }
        payload.update(
            {k: mask_secrets(v) if isinstance(v, str) else v for k, v in vars(record).items() if k not in _RESERVED}
        )
        if record.exc_info:
            payload["exc"] = mask_secrets(self.formatException(record.exc_info))
        return orjson.dumps(payload, default=str).decode()


def configure_logging(level: str = "INFO") -> None:
    """Route every logger to stderr as JSON lines. Idempotent."""
    # The JSON lines never carry the caller's frame, thread or process: skip collecting them for every record
    # (the logging HOWTO's "Optimization" settings; ~10 us of a facade request's log line)
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
