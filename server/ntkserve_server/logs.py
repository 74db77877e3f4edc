"""Log set-up: `key=value` text lines (the default) or one JSON object per line.

Call lines carry their fields (request id, method, code, ms, bytes) as `extra={"fields":
{...}}`; the JSON format puts them at the top level of the object, so a log pipeline can
filter on `request_id` or `code` without parsing the message.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str, fmt: str = "text") -> None:
    """Root logging at `level`, in `fmt` ("text" or "json"), on stderr."""
    if fmt not in FORMATS:
        raise ValueError(f"log format: expected one of {FORMATS}, got {fmt!r}")
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # no "no TPU" noise
