"""Process-wide settings, read once from the environment and changed by
:func:`tracedsync.configure` (:mod:`tracedsync._configure`).

A leaf module: it imports nothing of tracedsync's, so every part may read
the settings.

Settings are plain attributes read on slow paths only; the hot path of an
uncontended acquire reads a single flag derived from them
(:data:`tracedsync._hooks.observing`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "Settings", "settings"]

#: Level names accepted by ``TRACEDSYNC_LOG`` and :func:`configure`, with the
#: numbers of the standard :mod:`logging` levels so both sort the same way.
LOG_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50, "off": 100}
LOG_FORMATS = ("console", "json")
#: What ``TRACEDSYNC_IMPL`` accepts.
IMPLEMENTATIONS = ("auto", "c", "python")


#: What a yes/no variable accepts.
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _refuse_variable(name: str, value: str, accepted: Iterable[str], used: str) -> None:
    """One line on stderr for a setting that would otherwise be ignored
    silently (a typo that hides findings): the variable, its bad value, what
    it accepts and what is used instead.  Not an exception: importing
    tracedsync must not stop the program it was asked to watch."""
    print(
        f"tracedsync: {name}={value!r} is not one of {', '.join(accepted)}; using {used!r}",
        file=sys.stderr,
    )


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    if value:
        _refuse_variable(name, value, (*_TRUE, *_FALSE), "on" if default else "off")
    return default


def _env_choice(name: str, choices: tuple[str, ...] | dict[str, int], default: str) -> str:
    value = os.environ.get(name, "").strip().lower()
    if value in choices:
        return value
    if value:
        _refuse_variable(name, value, choices, default)
    return default


class Settings:
    """The current settings; one instance, :data:`settings`."""

    __slots__ = ("enabled", "impl", "lock_order", "log_format", "log_level", "strict")

    def __init__(self) -> None:
        #: ``False`` (``TRACEDSYNC=off``): the factories return plain
        #: ``threading`` objects.
        self.enabled: bool = _env_flag("TRACEDSYNC", True)
        #: Raise :class:`DeadlockError` at once on every blocking self
        #: re-acquire of a ``Lock``, even when another thread could release it.
        self.strict: bool = _env_flag("TRACEDSYNC_STRICT", False)
        #: Events at or above this level are rendered through structlog.
        #: Errors (deadlocks) by default: an application that merely imports
        #: tracedsync sees nothing else.
        self.log_level: int = LOG_LEVELS[_env_choice("TRACEDSYNC_LOG", LOG_LEVELS, "error")]
        #: Check the order locks are taken in (lock-order inversions).
        self.lock_order: bool = _env_flag("TRACEDSYNC_LOCK_ORDER", True)
        #: ``"console"`` lines or ``"json"`` lines, when tracedsync renders
        #: events itself (the application has not configured structlog).
        self.log_format: str = _env_choice("TRACEDSYNC_LOG_FORMAT", LOG_FORMATS, "console")
        #: Which implementation of the locks' hot path to use, read once at
        #: import (see :mod:`tracedsync._accel`): ``"auto"`` (the C
        #: accelerator when it is built), ``"c"`` or ``"python"``.
        self.impl: str = _env_choice("TRACEDSYNC_IMPL", IMPLEMENTATIONS, "auto")


settings = Settings()

#: The settings as the environment gave them at import.
_AT_IMPORT = {name: getattr(settings, name) for name in Settings.__slots__}


def restore() -> None:
    """Put back the settings read from the environment at import
    (:func:`tracedsync.testing.reset`)."""
    for name, value in _AT_IMPORT.items():
        setattr(settings, name, value)
