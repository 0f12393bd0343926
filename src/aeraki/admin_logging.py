"""Runtime log levels for the admin ports of both planes, as Envoy's ``/logging``.

``GET /logging`` lists the project's loggers and their effective levels; ``POST /logging?level=
debug`` sets every one of them, ``POST /logging?proxy.xds_client=debug`` one (named in full or
relative to ``aeraki``). Levels take Envoy's names (``trace`` is DEBUG, ``off`` silences).
Changing a level costs nothing per request: the loggers' own level check is what the hot path
already pays (``logging.Logger.isEnabledFor`` caches per level).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aeraki.admin_http import Response

__all__ = ["LOG_LEVELS", "ROOT_LOGGER", "logging_get", "logging_post", "set_log_levels"]

#: Every logger of the project lives under this one; ``/logging`` names are relative to it.
ROOT_LOGGER = "aeraki"
#: Envoy's level names (``trace`` and ``critical``/``off`` included) -> Python levels.
LOG_LEVELS: dict[str, int] = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "off": logging.CRITICAL + 10,
}


def _project_loggers() -> dict[str, logging.Logger]:
    """Every logger created so far under :data:`ROOT_LOGGER`, by full name."""
    found = {ROOT_LOGGER: logging.getLogger(ROOT_LOGGER)}
    for name, logger in logging.root.manager.loggerDict.items():
        if name.startswith(ROOT_LOGGER + ".") and isinstance(logger, logging.Logger):
            found[name] = logger
    return found


def _level_name(level: int) -> str:
    if level > logging.CRITICAL:
        return "off"
    return logging.getLevelName(level).lower()


def _logging_text() -> str:
    lines = ["active loggers:"]
    for name, logger in sorted(_project_loggers().items()):
        lines.append(f"  {name}: {_level_name(logger.getEffectiveLevel())}")
    return "\n".join(lines) + "\n"


def set_log_levels(params: Mapping[str, str]) -> str:
    """Apply Envoy-style level changes; returns what was done.

    ``level=X`` sets :data:`ROOT_LOGGER` and every logger under it; ``NAME=X`` sets one
    logger, named in full (``aeraki.proxy.pool``) or relative to the root (``proxy.pool``).
    Everything is checked before anything changes, so a bad request changes nothing.

    Raises:
        ValueError: an unknown level or logger (the message names it).
    """
    loggers = _project_loggers()
    changes: list[tuple[list[logging.Logger], int, str]] = []
    for key, value in params.items():
        level = LOG_LEVELS.get(value.lower())
        if level is None:
            raise ValueError(
                f"unknown level {value!r} for {key!r}; use one of: {' '.join(LOG_LEVELS)}"
            )
        if key == "level":
            changes.append((list(loggers.values()), level, f"all loggers: {value.lower()}"))
            continue
        name = key if key.startswith(ROOT_LOGGER) else f"{ROOT_LOGGER}.{key}"
        if name not in loggers:
            raise ValueError(f"unknown logger {key!r} (GET /logging lists them)")
        changes.append(([loggers[name]], level, f"{name}: {value.lower()}"))
    if not changes:
        raise ValueError("give level=LEVEL or LOGGER=LEVEL")
    for targets, level, _ in changes:
        for logger in targets:
            logger.setLevel(level)
    return "\n".join(what for _, _, what in changes) + "\n"


def logging_get() -> Response:
    """``GET /logging``: every project logger and its effective level."""
    return 200, "text/plain", _logging_text()


def logging_post(params: Mapping[str, str]) -> Response:
    """``POST /logging?…``: change levels (no parameters: list them, as Envoy does)."""
    if not params:
        return 200, "text/plain", _logging_text()
    try:
        done = set_log_levels(params)
    except ValueError as exc:
        return 400, "text/plain", f"{exc}\n"
    return 200, "text/plain", done + _logging_text()
