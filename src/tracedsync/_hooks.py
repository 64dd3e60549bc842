"""The event hook: every operation of every primitive is reported here.

This is tracedsync's single choke point for *observing*.  A primitive that
changes state or waits calls :func:`emit` (or :func:`stamp` then
:func:`deliver`); the hook turns the call into a compact record, a plain tuple
(see :data:`RECORD_FIELDS`), and hands it to every registered sink (the
in-memory recorders, the JSON Lines file) and, at or above the configured
level, to structlog.  Records are converted to dictionaries and rendered only
by the sinks that need it, never on the primitive's own path.

While nothing observes (no sink and a log level above ``debug``) and the
lock-order checker is off, the primitives do not call in here at all: their
hot path checks :data:`active`, one module attribute.

Sequence numbers come from one process-wide :func:`itertools.count`, whose
``next()`` is a single C call.  A release-like operation (release, set,
notify) takes its number *before* it changes the primitive's state, and an
acquire-like one (acquire, a wait returning) *after*, so the sequence order
never shows an acquire before the release that enabled it.
"""

from __future__ import annotations

import itertools
import os
import threading
from _thread import _local, allocate_lock, get_ident
from collections.abc import Callable
from time import monotonic_ns
from types import CodeType, FrameType
from typing import Any

from tracedsync._config import LOG_LEVELS, settings
from tracedsync._sites import INTERNAL_FILES, describe_line, register_internal_module, user_frame

__all__ = [
    "DEBUG",
    "ERROR",
    "RECORD_FIELDS",
    "SCHEMA_VERSION",
    "WARNING",
    "Identity",
    "Record",
    "ThreadInfo",
    "add_sink",
    "bind_thread",
    "deliver",
    "emit",
    "identity",
    "observing",
    "remove_sink",
    "stamp",
    "thread_info",
]

register_internal_module(__file__)

#: Version of the event schema documented in ``docs/events.md``; carried in
#: every event as ``schema``.
SCHEMA_VERSION = 1

DEBUG = LOG_LEVELS["debug"]
WARNING = LOG_LEVELS["warning"]
ERROR = LOG_LEVELS["error"]

#: A primitive as events name it: (kind, id, name, creation site as
#: ``"file.py:line"`` or ``None``).  Built once per primitive.
Identity = tuple[str, int, str, "str | None"]

#: The order of the fields of a record tuple.
RECORD_FIELDS = (
    "seq",
    "time_ns",
    "thread",
    "event",
    "level",
    "primitive",
    "code",
    "offset",
    "data",
)

Record = tuple[
    int, int, "ThreadInfo", str, int, Identity, CodeType | None, int, dict[str, Any] | None
]


class ThreadInfo:
    """What events say about the thread that emitted them.

    One per thread, created at the thread's first event.  ``token`` is unique
    for the life of the process, unlike ``ident``, which the OS recycles.
    """

    __slots__ = ("ident", "name", "pid", "token")

    def __init__(self, ident: int, name: str, pid: int, token: int) -> None:
        self.ident = ident
        self.name = name
        self.pid = pid
        self.token = token


_per_thread = _local()
_tokens = itertools.count(1)
_sequence = itertools.count(1)

#: The sinks, replaced as a whole (never mutated) so readers need no lock.
_sinks: tuple[Callable[[Record], None], ...] = ()
_sinks_guard = allocate_lock()

#: Whether any operation must be reported: a sink is registered, or the log
#: level lets debug events through.
observing = False
#: Whether the lock-order checker (:mod:`tracedsync._lockorder`) is on.
ordering = False
#: ``observing or ordering``: the one flag the hot path reads on every
#: acquire and release.
active = False


def _current_thread_name(ident: int) -> str:
    # threading._active maps idents of running threading.Thread objects;
    # reading it does not create a _DummyThread for foreign threads.
    thread = threading._active.get(ident)  # type: ignore[attr-defined]
    return thread.name if thread is not None else f"Dummy-{ident}"


def thread_info() -> ThreadInfo:
    """The calling thread's :class:`ThreadInfo`."""
    try:
        info: ThreadInfo = _per_thread.info
    except AttributeError:
        ident = get_ident()
        info = ThreadInfo(ident, _current_thread_name(ident), os.getpid(), next(_tokens))
        _per_thread.info = info
    return info


def describe_error(error: BaseException) -> str:
    """``"ValueError: boom"``: how events spell an exception."""
    return f"{type(error).__qualname__}: {error}"


def bind_thread(name: str) -> None:
    """Give the calling thread its :class:`ThreadInfo` up front, under ``name``
    (a starting ``Thread`` is not yet in ``threading``'s registry)."""
    ident = get_ident()
    _per_thread.info = ThreadInfo(ident, name, os.getpid(), next(_tokens))


def identity(primitive: Any) -> Identity:
    """The primitive's (kind, id, name, creation site), cached on it after the
    first event."""
    found: Identity | None = primitive._identity
    if found is None:
        site = getattr(primitive, "_creation_site", None)
        created = None if site is None else describe_line(*site())
        found = (primitive._kind, id(primitive), primitive.name, created)
        primitive._identity = found
    return found


def stamp() -> tuple[int, int]:
    """Take the next sequence number and the time, for :func:`deliver`."""
    return next(_sequence), monotonic_ns()


def deliver(
    stamped: tuple[int, int],
    event: str,
    primitive: Any,
    frame: FrameType | None,
    data: dict[str, Any] | None = None,
    level: int = DEBUG,
) -> None:
    """Build the record of an operation stamped earlier and hand it on."""
    _deliver(stamped[0], stamped[1], event, primitive, frame, data, level)


def emit(
    event: str,
    primitive: Any,
    frame: FrameType | None,
    data: dict[str, Any] | None = None,
    level: int = DEBUG,
) -> int:
    """Report an operation that just happened; return its timestamp (ns)."""
    now = monotonic_ns()
    _deliver(next(_sequence), now, event, primitive, frame, data, level)
    return now


def _deliver(
    seq: int,
    now: int,
    event: str,
    primitive: Any,
    frame: FrameType | None,
    data: dict[str, Any] | None,
    level: int,
) -> None:
    # One function, few calls: this runs for every observed operation.
    if frame is None:
        code, offset = None, 0
    else:
        if frame.f_code.co_filename in INTERNAL_FILES:
            frame = user_frame(frame)
        code, offset = (None, 0) if frame is None else (frame.f_code, frame.f_lasti)
    try:
        info = _per_thread.info
    except AttributeError:
        info = thread_info()
    found = primitive._identity
    if found is None:
        found = identity(primitive)
    record: Record = (seq, now, info, event, level, found, code, offset, data)
    for sink in _sinks:
        sink(record)
    if level >= settings.log_level:
        from tracedsync._log import log_record

        log_record(record)


def _update_observing() -> None:
    global observing, ordering, active
    observing = bool(_sinks) or settings.log_level <= DEBUG
    ordering = settings.lock_order
    active = observing or ordering


def add_sink(sink: Callable[[Record], None]) -> None:
    """Start handing every record to ``sink`` (called in the emitting thread)."""
    global _sinks
    with _sinks_guard:
        _sinks = (*_sinks, sink)
        _update_observing()


def remove_sink(sink: Callable[[Record], None]) -> None:
    """Stop handing records to ``sink``; unknown sinks are ignored."""
    global _sinks
    with _sinks_guard:
        _sinks = tuple(existing for existing in _sinks if existing != sink)
        _update_observing()


def settings_changed() -> None:
    """Recompute :data:`observing` after :func:`tracedsync.configure`."""
    with _sinks_guard:
        _update_observing()


def _reset_after_fork() -> None:
    global _per_thread, _sinks_guard
    _per_thread = _local()
    _sinks_guard = allocate_lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)

_update_observing()
