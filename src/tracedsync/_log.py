"""Diagnostics written through structlog without configuring structlog.

A library must not call ``structlog.configure()``: the application owns that.
Unconfigured structlog prints every level to stdout, so tracedsync keeps its
own bound logger, built with :func:`structlog.wrap_logger` and explicit
processors, that writes to the *current* ``sys.stderr`` and only at or above
the level the user chose (errors by default).
"""

from __future__ import annotations

import sys
from typing import Any

import structlog

from tracedsync._config import LOG_LEVELS, settings

__all__ = ["emit"]


class _StderrLogger:
    """A structlog logger writing each rendered line to ``sys.stderr`` as it is now.

    Looking ``sys.stderr`` up per line (not once at import) lets test runners
    and applications that redirect stderr capture our diagnostics.
    """

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    debug = info = warning = error = critical = msg


_logger = structlog.wrap_logger(
    _StderrLogger(),
    processors=[
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.dev.ConsoleRenderer(colors=False),
    ],
    wrapper_class=structlog.BoundLogger,
    context_class=dict,
    cache_logger_on_first_use=False,
    logger_name="tracedsync",
)


def emit(level: str, event: str, **fields: Any) -> None:
    """Write one diagnostic if ``level`` is at or above the configured level."""
    if LOG_LEVELS[level] >= settings.log_level:
        getattr(_logger, level)(event, **fields)
