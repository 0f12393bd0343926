"""Process logs of every ``aeraki`` command: ``--log-level`` and ``--log-format text|json``.

Text is for a terminal (``time LEVEL logger: message``); JSON is one object per line for a log
collector (``time`` in UTC ISO 8601 with milliseconds, ``level``, ``logger``, ``message``,
``exception`` when there is a traceback), so a multi-line traceback stays one record.
Access logs are separate (:mod:`aeraki.proxy.observe.access_log`).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "JsonFormatter", "configure"]

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One compact JSON object per record (with ``worker`` when the process is one)."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        entry: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.worker is not None:
            entry["worker"] = self.worker
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str = "info", fmt: str = "text", *, worker: int | None = None) -> None:
    """Send process logs to stderr at ``level`` in ``fmt`` (replacing earlier handlers).

    ``worker``: this process is proxy worker ``worker`` (``aeraki proxy --workers``); every
    line says so, as the workers share the supervisor's stderr.

    Raises:
        ValueError: an unknown level or format (the argument parser offers only valid ones).
    """
    if level.lower() not in LOG_LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LOG_LEVELS)}")
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; expected one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler()
    text = _TEXT if worker is None else _TEXT.replace("%(name)s", f"[worker {worker}] %(name)s")
    handler.setFormatter(JsonFormatter(worker) if fmt == "json" else logging.Formatter(text))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
