"""The worker's log lines as JSON (``--log-format json`` / ``FLOORWATCH_LOG_FORMAT=json``): one object a line.

Every line has ``ts`` (ISO-8601, UTC), ``level``, ``logger`` and ``message``; ``exc`` when the record
carries a traceback; and whatever the code passed as ``extra=`` (the ready line's model versions, say).
The formatter is python-json-logger's, so a field that is not JSON (a datetime, an exception) is written
as text rather than failing the line. Each line is scrubbed of the settings' secrets, in their raw and
JSON-escaped forms, whatever logger or library quoted them.

Faust's Worker (mode) configures logging itself when it starts: ``logging_config`` gives it this
configuration instead of its colour handler, and ``use_json_logs`` installs the same before it runs,
for the lines logged while the models load and for a start-up error.
"""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Literal

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]
# The first keys of every line, in this order; the record's own attributes under these names.
_RENAMES = {"levelname": "level", "name": "logger", "exc_info": "exc", "stack_info": "stack"}


class JsonLogFormatter(JsonFormatter):
    """One JSON object per record: ts, level, logger, message, [exc], then the record's extra fields."""

    def __init__(self, secrets: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__("{levelname}{name}{message}", style="{", rename_fields=dict(_RENAMES), **kwargs)
        # Longest first, so a secret that contains another is masked whole; each also as JSON escapes it.
        raw = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._secrets = [(form, "***") for s in raw for form in dict.fromkeys((s, json.dumps(s)[1:-1]))]

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["ts"] = iso_utc(record.created)
        super().add_fields(log_data, record, message_dict)

    def format(self, record: logging.LogRecord) -> str:
        return self.scrub(super().format(record))

    def scrub(self, text: str) -> str:
        """``text`` with every secret masked."""
        for secret, mask in self._secrets:
            text = text.replace(secret, mask)
        return text

    def line(self, level: int, logger: str, message: str, **fields: Any) -> str:
        """A line for text that did not come through ``logging`` (a supervisor's own messages)."""
        record = logging.LogRecord(logger, level, "", 0, message, None, None)
        record.__dict__.update(fields)
        return self.format(record)


def iso_utc(epoch_s: float) -> str:
    """ISO-8601 in UTC, to the millisecond: ``2026-11-26T15:04:05.123Z``."""
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_logging_config(level: str | int, secrets: Sequence[str] = ()) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` that sends every record at ``level`` and above to stderr as JSON."""
    level = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLogFormatter, "secrets": list(secrets)}},
        # The stream is taken now: Faust later points sys.stderr at a logger, which would loop.
        "handlers": {"json": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "json", "level": level}},
        "root": {"level": level, "handlers": ["json"]},
    }


def use_json_logs(level: str | int, secrets: Sequence[str] = ()) -> None:
    """Send this process's log records to stderr as JSON lines from now on."""
    logging.config.dictConfig(json_logging_config(level, secrets))


def json_logs_active() -> bool:
    """Whether the root logger writes JSON lines (``use_json_logs`` or Faust's Worker given that config)."""
    return any(isinstance(h.formatter, JsonLogFormatter) for h in logging.root.handlers)
