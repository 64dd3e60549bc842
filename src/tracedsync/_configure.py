"""``tracedsync.configure()``: change the settings, and tell the parts
that depend on them (the event flags, the policies, the log file, the
watchdog).

Apart from :mod:`tracedsync._config` (the settings themselves, a leaf) so
that reading a setting never imports the parts a change must reach.
"""

from __future__ import annotations

import os

from tracedsync import _hooks, _policy
from tracedsync._config import LOG_FORMATS, LOG_LEVELS, settings
from tracedsync._jsonl import open_log_file
from tracedsync._sites import register_internal_module
from tracedsync._typenames import Any
from tracedsync._watchdog import watchdog

__all__ = ["configure"]

register_internal_module(__file__)


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
