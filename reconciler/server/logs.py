"""Structured logs: one JSON object a line on stderr, for whatever collects them.

`event(logger, message, **fields)` adds fields to a line; uvicorn's own lines come out
in the same form. Nothing logged carries a secret: git output is scrubbed where it is
read, and plans never hold clear sensitive values.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

from reconciler.redact import masked

_FIELDS = "reconciler_fields"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(getattr(record, _FIELDS, {}))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        # The last line of defence: a URL with credentials in any message or field.
        return masked(json.dumps(data, default=str, sort_keys=False))


def configure(stream: IO[str] | None = None, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # One line per platform call drowns the runs; failures surface in the run's own line.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def event(logger: logging.Logger, message: str, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, message, extra={_FIELDS: fields})
