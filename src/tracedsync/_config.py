"""Process-wide settings, read once from the environment and changed by
:func:`tracedsync.configure`.

Settings are plain attributes read on slow paths only; the hot path of an
uncontended acquire reads a single flag derived from them
(:data:`tracedsync._hooks.observing`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "Settings", "configure", "settings"]

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


def configure(
    *,
    strict: bool | None = None,
    log_level: str | int | None = None,
    log_format: str | None = None,
    log_file: str | os.PathLike[str] | None = None,
    lock_order: bool | None = None,
    on_deadlock: Any = None,
    on_inversion: Any = None,
    wait_warning: float | None = None,
    on_long_wait: Any = None,
    on_hierarchy: Any = None,
    on_unguarded: Any = None,
) -> None:
    """Change tracedsync's process-wide settings; ``None`` leaves one as it is.

    ``strict``: raise :class:`~tracedsync.DeadlockError` at once when a thread
    re-acquires a ``Lock`` it holds with a blocking ``acquire()``, without
    first checking whether another thread could still release it (the
    go-deadlock rule).  A lock's own ``strict=`` argument overrides this.

    ``log_level``: the lowest level of events rendered through structlog, one
    of ``"debug"`` (every operation), ``"info"``, ``"warning"`` (suspicious
    things such as a self re-acquire), ``"error"`` (deadlocks; the default),
    ``"critical"`` or ``"off"``, or a ``logging`` level number such as
    ``logging.WARNING``.  The same as ``TRACEDSYNC_LOG``.

    ``log_format``: ``"console"`` (the default) or ``"json"`` lines on stderr,
    used when the application has not configured structlog itself; if it has,
    events go through ``structlog.get_logger("tracedsync")`` and its
    processors.  The same as ``TRACEDSYNC_LOG_FORMAT``.

    ``log_file``: also write every event, at every level, to this JSON Lines
    file (replacing any file set before).  The same as ``TRACEDSYNC_LOG_FILE``.

    ``lock_order``: check the order in which each thread takes locks and
    report lock-order inversions (on by default; ``TRACEDSYNC_LOCK_ORDER=0``
    turns it off).

    ``on_deadlock``, ``on_inversion``: what happens when a wait closes a
    wait-for cycle (default ``"raise"``: :class:`~tracedsync.DeadlockError`
    in the thread closing it) or an acquisition makes the lock-order graph
    cyclic (default ``"warn"``): ``"raise"``, ``"warn"`` (emit the finding's
    event, shown on stderr when ``log_level`` lets its level through, and
    carry on as the stdlib would) or a callable receiving the
    :class:`~tracedsync.Report`.  :func:`~tracedsync.set_policy` overrides
    them per primitive.

    ``wait_warning``: report (event ``wait.long``, level warning) every
    blocking acquire, wait or join still blocked after this many seconds,
    with the stack of every thread; ``0`` turns the watchdog off (the
    default).  The same as ``TRACEDSYNC_WAIT_WARNING``.  ``on_long_wait``:
    ``"warn"`` (the default) or a callable receiving the report.

    ``on_hierarchy``: what happens when a thread acquires a lock against the
    order declared with :func:`~tracedsync.declare_order` or
    :func:`~tracedsync.declare_level`; ``on_unguarded``: when a
    :func:`~tracedsync.guarded_by` attribute is touched without its lock.
    Both default to ``"raise"`` (a declared contract was broken), or
    ``"warn"`` (record the finding as an event and carry on) or a callable
    receiving the :class:`~tracedsync.Report`.

    This never touches structlog's or logging's global configuration.
    """
    from tracedsync import _hooks, _policy

    _check_type("strict", strict, bool)
    _check_type("lock_order", lock_order, bool)
    _check_type("log_format", log_format, str)
    if isinstance(wait_warning, bool) or not isinstance(wait_warning, (int, float, type(None))):
        raise TypeError(f"wait_warning must be a number of seconds, not {wait_warning!r}")
    level = None if log_level is None else _log_level(log_level)
    if log_format is not None and log_format.lower() not in LOG_FORMATS:
        raise ValueError(f"unknown log_format {log_format!r}; use one of console, json")
    if strict is not None:
        settings.strict = strict
    if level is not None:
        settings.log_level = level
    if log_format is not None:
        settings.log_format = log_format.lower()
    if log_file is not None:
        from tracedsync._jsonl import open_log_file

        open_log_file(log_file)
    if lock_order is not None:
        settings.lock_order = lock_order
    if on_deadlock is not None:
        _policy.set_global("deadlock", on_deadlock)
    if on_inversion is not None:
        _policy.set_global("inversion", on_inversion)
    if on_long_wait is not None:
        _policy.set_global("long_wait", on_long_wait)
    if on_hierarchy is not None:
        _policy.set_global("hierarchy", on_hierarchy)
    if on_unguarded is not None:
        _policy.set_global("unguarded", on_unguarded)
    if wait_warning is not None:
        from tracedsync._watchdog import watchdog

        watchdog.configure(wait_warning)
    _hooks.settings_changed()


def _check_type(name: str, value: object, expected: type) -> None:
    if value is not None and not isinstance(value, expected):
        raise TypeError(f"{name} must be {expected.__name__} or None, not {value!r}")


def _log_level(value: object) -> int:
    """A level name (``"warning"``) or a standard ``logging`` level number
    (``logging.WARNING``) as tracedsync's level number."""
    if isinstance(value, str):
        found = LOG_LEVELS.get(value.lower())
    elif isinstance(value, int) and not isinstance(value, bool):
        found = value if value in LOG_LEVELS.values() else None
    else:
        raise TypeError(f"log_level must be a level name or a logging level, not {value!r}")
    if found is None:
        choices = ", ".join(LOG_LEVELS)
        raise ValueError(
            f"unknown log_level {value!r}; use one of {choices} (or logging.DEBUG ... CRITICAL)"
        )
    return found
