"""Process-wide settings, read once from the environment and changed by
:func:`tracedsync.configure`.

Settings are plain module attributes read on slow paths only; the hot path of
an uncontended acquire never consults them.
"""

from __future__ import annotations

import os

__all__ = ["LOG_LEVELS", "Settings", "configure", "settings"]

#: Level names accepted by ``TRACEDSYNC_LOG`` and :func:`configure`, with the
#: numbers of the standard :mod:`logging` levels so both sort the same way.
LOG_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50, "off": 100}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _env_level(name: str, default: str) -> int:
    value = os.environ.get(name, default).strip().lower()
    return LOG_LEVELS.get(value, LOG_LEVELS[default])


class Settings:
    """The current settings; one instance, :data:`settings`."""

    __slots__ = ("log_level", "strict")

    def __init__(self) -> None:
        #: Raise :class:`DeadlockError` at once on every blocking self
        #: re-acquire of a ``Lock``, even when another thread could release it.
        self.strict: bool = _env_flag("TRACEDSYNC_STRICT")
        #: Diagnostics at or above this level are written to stderr.  Errors
        #: (deadlocks) by default; an application that merely imports
        #: tracedsync sees nothing else.
        self.log_level: int = _env_level("TRACEDSYNC_LOG", "error")


settings = Settings()


def configure(*, strict: bool | None = None, log_level: str | None = None) -> None:
    """Change tracedsync's process-wide settings; ``None`` leaves one as it is.

    ``strict``: raise :class:`~tracedsync.DeadlockError` at once when a thread
    re-acquires a ``Lock`` it holds with a blocking ``acquire()``, without
    first checking whether another thread could still release it (the
    go-deadlock rule).  A lock's own ``strict=`` argument overrides this.

    ``log_level``: the lowest level of diagnostics written to stderr, one of
    ``"debug"``, ``"info"``, ``"warning"``, ``"error"`` (the default),
    ``"critical"`` or ``"off"``.  The same as the ``TRACEDSYNC_LOG``
    environment variable.  This never touches structlog's or logging's global
    configuration.
    """
    if strict is not None:
        settings.strict = bool(strict)
    if log_level is not None:
        try:
            settings.log_level = LOG_LEVELS[log_level.lower()]
        except KeyError:
            choices = ", ".join(LOG_LEVELS)
            raise ValueError(f"unknown log_level {log_level!r}; use one of {choices}") from None
