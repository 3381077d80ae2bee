"""structlog, configured once at start-up: readable lines on a terminal, JSON lines otherwise."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

from ollamatopo._printable import printable

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}


def wants_json(log_format: str) -> bool:
    return log_format == "json" or (log_format == "auto" and not sys.stdout.isatty())


def escape_controls(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """Text values as a terminal should show them: a service name, an engine error or a
    warning can hold escape sequences or bidi overrides. Only top-level strings: the
    renderers repr or JSON-encode everything else, which escapes these already."""
    for key, value in event.items():
        if type(value) is str:
            event[key] = printable(value)
    return event


def configure_logging(log_format: str, level: str, stream: TextIO | None = None) -> None:
    """Compose the processors once; every logger of the process uses them. Lines go to
    `stream` (stdout by default; the live progress board when one is shown)."""
    json_lines = wants_json(log_format)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        escape_controls,
    ]
    if json_lines:
        processors += [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty(),
                                                        exception_formatter=structlog.dev.plain_traceback))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stdout),
        cache_logger_on_first_use=True,
    )
