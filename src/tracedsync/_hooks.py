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
import sys
import threading
from _thread import _local, get_ident
from collections.abc import Callable
from time import monotonic_ns
from types import CodeType, FrameType

from tracedsync._config import LOG_LEVELS, settings
from tracedsync._guards import internal_lock
from tracedsync._sites import INTERNAL_FILES, describe_line, register_internal_module, user_frame
from tracedsync._typenames import Any, Protocol

__all__ = [
    "DEBUG",
    "ERROR",
    "RECORD_FIELDS",
    "WARNING",
    "BoundedSink",
    "Identity",
    "PairsData",
    "Record",
    "ThreadInfo",
    "add_sink",
    "bind_thread",
    "deliver",
    "emit",
    "identity",
    "observing",
    "publish",
    "record_data",
    "remove_sink",
    "sequence",
    "stamp",
    "thread_info",
]

register_internal_module(__file__)

DEBUG = LOG_LEVELS["debug"]
WARNING = LOG_LEVELS["warning"]
ERROR = LOG_LEVELS["error"]

#: A primitive as events name it: (kind, id, name, creation site as
#: ``"file.py:line"`` or ``None``, instance label).  Built once per primitive.
Identity = tuple[str, int, str, "str | None", str]

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

#: A record's operation-specific fields as a flat tuple of alternating keys
#: and values, ``("outcome", "released", "held_ns", 42)``: what the locks'
#: hot path builds.  Unlike a dictionary, a tuple of atomic values lets the
#: garbage collector stop tracking the record (see :data:`ThreadInfo`), and
#: it is smaller.  Other operations pass a dictionary.
PairsData = tuple[Any, ...]

Record = tuple[
    int,
    int,
    "ThreadInfo",
    str,
    int,
    Identity,
    CodeType | None,
    int,
    dict[str, Any] | PairsData | None,
]

#: What events say about the thread that emitted them: (ident, name, pid,
#: token).  One per thread, created at the thread's first event.  ``token`` is
#: unique for the life of the process, unlike ``ident``, which the OS
#: recycles.  A plain tuple of atomic values, not a class instance: the
#: garbage collector stops tracking such a tuple, and so every record holding
#: it, at its first pass, so a long recording does not make every later
#: collection walk all its records.
ThreadInfo = tuple[int, str, int, int]


_per_thread = _local()
#: Replaced (by a new object) whenever a thread's :data:`ThreadInfo` may
#: change: the C accelerator keeps each thread's info in its thread state and
#: reads ``_per_thread`` again once this is no longer the object it saw.
_info_epoch: object = object()
_tokens = itertools.count(1)
#: The process-wide event sequence: ``next(sequence)`` numbers one event.
sequence = itertools.count(1)

Sink = Callable[[Record], None]

#: The sinks, replaced as a whole (never mutated) so readers need no lock.
_sinks: tuple[Sink, ...] = ()
_sinks_guard = internal_lock()


class BoundedSink(Protocol):
    """The owner of a sink that takes only so many records (a :class:`Trace`).

    Its sink can then be a C function such as ``list.append``, with no
    capacity test of its own on every record: the hook checks the owner's
    :meth:`room` only when the sequence number reaches the point where it
    could be full, and then swaps the sink for :meth:`overflow_sink`.
    """

    def room(self) -> int:
        """How many more records the sink can keep (with ``takes_chunks``,
        counting those kept back: see :func:`add_sink`)."""

    def overflow_sink(self) -> Sink:
        """The sink that takes the records arriving once it is full."""


#: Bounded sinks and their owners (changed under ``_sinks_guard``).
_bounded: dict[Sink, BoundedSink] = {}
#: The sequence number from which some bounded sink may be full: records
#: numbered below it need no check.
_room_check_at = sys.maxsize
#: Whether debug events are rendered through structlog (log level ``debug``).
_logging_debug = False
#: Whether handing a record on can take time worth leaving out of the holds
#: and waits events report (see :data:`spent`): some sink is not a C
#: function (``list.append``, a trace's own sink) or records are rendered.
#: Otherwise the two clock reads would cost more than what they measure.
_charging = False
#: Whether the C accelerator may keep the records of the locks' common
#: events in per-thread buffers and hand them on later, in bulk (see
#: ``_eventbuffers.c``): every sink is a bounded recording's own (a
#: :class:`~tracedsync.Trace`'s ``list.append``, which has room) and nothing
#: is rendered.  A recording's reader calls :func:`flush_deferred` first.
_deferring = False
#: Hands on every record kept back that way, as chunks (see
#: :func:`expand_chunks`); set by :mod:`tracedsync._accel` while the C
#: accelerator is installed, with:
_flush_deferred: Callable[[], None] | None = None
#: ``_expand_records(records, start)``: replace the chunks in a list, from
#: index ``start`` on, by their records; return the length up to which none is left.
_expand_records: Callable[[list[Any], int], int] | None = None
#: The sinks that take chunks of records (see :func:`add_sink`).
_chunked: set[Sink] = set()
#: The type of C functions and methods (``len``, ``[].append``).
_C_FUNCTION: type = type(len)

#: Whether any operation must be reported: a sink is registered, or the log
#: level lets debug events through.
observing = False
#: Whether the lock-order checker (:mod:`tracedsync._lockorder`) is on.
ordering = False
#: ``observing or ordering``: the one flag the hot path reads on every
#: acquire and release.
active = False

#: Called as ``release_edge(primitive)`` by a release-like operation (a lock
#: release that unlocks, ``Semaphore.release``, ``Event.set``,
#: ``Condition.notify``/``notify_all``, ``Barrier.wait`` arriving,
#: ``Thread.start``) in the acting
#: thread, after its sequence number is taken and *before* the primitive's
#: state changes, while something observes; ``None`` otherwise.  The
#: data-race detector (:mod:`tracedsync._races`) sets it: a sink sees a
#: release only after the state change, so a thread the release lets through
#: may deliver its acquire first, and a happens-before edge must be
#: published before anyone can pass.  It must not raise, block or call a
#: traced primitive.
release_edge: Callable[[Any], None] | None = None


def _current_thread_name(ident: int) -> str:
    # threading._active maps idents of running threading.Thread objects;
    # reading it does not create a _DummyThread for foreign threads.
    thread = threading._active.get(ident)  # type: ignore[attr-defined]
    return thread.name if thread is not None else f"Dummy-{ident}"


def thread_info() -> ThreadInfo:
    """The calling thread's :data:`ThreadInfo`."""
    try:
        info: ThreadInfo = _per_thread.info
    except AttributeError:
        ident = get_ident()
        info = (ident, _current_thread_name(ident), os.getpid(), next(_tokens))
        _per_thread.info = info
        if len(spent) >= _spent_prune_at:
            _prune_spent()
    return info


def record_data(record: Record) -> dict[str, Any]:
    """A record's operation-specific fields as a dictionary, whichever form
    (:data:`PairsData` or a dictionary) the primitive delivered them in."""
    data = record[8]
    if data is None:
        return {}
    if type(data) is tuple:
        return dict(zip(data[::2], data[1::2], strict=True))
    return data  # type: ignore[return-value]


def describe_error(error: BaseException) -> str:
    """``"ValueError: boom"``: how events spell an exception."""
    return f"{type(error).__qualname__}: {error}"


def bind_thread(name: str) -> None:
    """Give the calling thread its :data:`ThreadInfo` up front, under ``name``
    (a starting ``Thread`` is not yet in ``threading``'s registry)."""
    global _info_epoch
    ident = get_ident()
    _per_thread.info = (ident, name, os.getpid(), next(_tokens))
    _info_epoch = object()
    if len(spent) >= _spent_prune_at:
        _prune_spent()


def identity(primitive: Any) -> Identity:
    """The primitive's (kind, id, name, creation site, instance label),
    cached on it after the first event."""
    found: Identity | None = primitive._identity
    if found is None:
        site = getattr(primitive, "_creation_site", None)
        created = None if site is None else describe_line(*site())
        name = primitive.name
        label = getattr(primitive, "_instance_label", None)
        instance = name if label is None else label()
        found = (primitive._kind, id(primitive), name, created, instance)
        primitive._identity = found
    return found


#: Per thread (by ident): the nanoseconds tracedsync has spent on the
#: thread's behalf in its costly parts, handing records to the sinks and to
#: structlog (unless every sink is a C function: see :data:`_charging`), and
#: learning lock orders.  The holds and waits the events report leave that
#: time out (a lock held while tracedsync works is not the program's hold):
#: a start is stored less the thread's count then, an end subtracts its count
#: then (see ``Lock._observe_acquired``).  Each thread writes its own entry.
#: Bounded: entries of threads ``threading`` no longer lists are dropped as a
#: new thread first records, once there are :data:`_spent_prune_at` of them
#: (see :func:`_prune_spent`).  The dictionary is never replaced: the C
#: accelerator keeps a reference to it.
spent: dict[int, int] = {}

#: :data:`spent` is pruned at this many entries, at least
#: :data:`SPENT_PRUNE_MINIMUM` and otherwise twice what the last pruning kept.
SPENT_PRUNE_MINIMUM = 256
_spent_prune_at = SPENT_PRUNE_MINIMUM


def _prune_spent() -> None:
    """Drop the :data:`spent` entries of threads that have ended.

    Thread idents are reused, so without this the dictionary would only be
    bounded by how many distinct idents a long-running program's threads ever
    had.  Alive is what ``threading`` lists, and the calling thread; a thread
    started with ``_thread`` alone that has never asked ``threading`` about
    itself loses its entry too, and its holds and waits in progress then
    count tracedsync's time in it so far (a rare, small overstatement).
    """
    global _spent_prune_at
    alive = set(threading._active)  # type: ignore[attr-defined]
    alive.add(get_ident())
    for ident in [ident for ident in list(spent) if ident not in alive]:
        spent.pop(ident, None)
    _spent_prune_at = max(SPENT_PRUNE_MINIMUM, 2 * len(spent))


def charge(started_ns: int, ident: int) -> None:
    """Count the time since ``started_ns`` as tracedsync's, in thread ``ident``."""
    spent[ident] = spent.get(ident, 0) + monotonic_ns() - started_ns


def stamp() -> tuple[int, int]:
    """Take the next sequence number and the time, for :func:`deliver`."""
    return next(sequence), monotonic_ns()


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
    *,
    log: bool = True,
) -> int:
    """Report an operation that just happened; return its timestamp (ns).

    ``log`` false hands the record to the sinks only, whatever its level (a
    finding about to be raised as an exception, which is its report)."""
    now = monotonic_ns()
    _deliver(next(sequence), now, event, primitive, frame, data, level, log)
    return now


def _deliver(
    seq: int,
    now: int,
    event: str,
    primitive: Any,
    frame: FrameType | None,
    data: dict[str, Any] | None,
    level: int,
    log: bool = True,
) -> None:
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
    if seq >= _room_check_at:
        _check_room(seq)
    started = monotonic_ns() if _charging else 0
    for sink in _sinks:
        try:
            sink(record)
        except Exception as error:  # the fault barrier: see sink_failed
            sink_failed(sink, error)
    if log and level >= settings.log_level:
        render(record)
    if started:
        charge(started, info[0])


def publish(
    seq: int,
    now: int,
    event: str,
    primitive: Any,
    code: CodeType | None,
    offset: int,
    data: PairsData,
) -> None:
    """Hand on a debug-level record whose number, time and user site the
    caller already has: the locks' hot path, one call per event.

    ``data`` (see :data:`PairsData`) may be shared by many records (the
    common acquire's).
    """
    try:
        info = _per_thread.info
    except AttributeError:
        info = thread_info()
    found = primitive._identity
    if found is None:
        found = identity(primitive)
    record: Record = (seq, now, info, event, DEBUG, found, code, offset, data)
    if seq >= _room_check_at:
        _check_room(seq)
    started = monotonic_ns() if _charging else 0
    for sink in _sinks:
        try:
            sink(record)
        except Exception as error:  # the fault barrier: see sink_failed
            sink_failed(sink, error)
    if _logging_debug:
        render(record)
    if started:
        ident = info[0]  # charge(), inlined: the hot path
        spent[ident] = spent.get(ident, 0) + monotonic_ns() - started


def sink_failed(sink: Sink, error: Exception) -> None:
    """The fault barrier around sinks (trio's ``Instruments`` is the model):
    a sink that raises (a trace file on a full disk, a broken callback) never
    changes what the primitive does (no lock left held, no foreign exception
    out of ``acquire()``).  It is removed, and the failure is reported once
    on stderr, saying that the sink gets no more events.

    ``BaseException`` that is not an ``Exception`` (``KeyboardInterrupt``,
    the explorer's own unwinding) passes through: it is not a fault.
    """
    remove_sink(sink)
    _say(
        f"tracedsync: event sink {sink!r} raised {type(error).__name__}: {error}; "
        "it is disabled and gets no more events (the program goes on)"
    )


#: Whether rendering through structlog has failed once (then events are
#: printed as plain lines: see :func:`render`).
_rendering_failed = False


def reset_rendering() -> None:
    """Try structlog again after rendering failed once."""
    global _rendering_failed
    _rendering_failed = False


def render(record: Record) -> None:
    """Log one event through structlog, behind the same fault barrier as the
    sinks: a failing processor or renderer (the application's own, or a
    field it cannot take) costs the event its formatting, never the
    program its exception or its lock."""
    global _rendering_failed
    if not _rendering_failed:
        # Not at the top: structlog costs start-up time that a program
        # whose first event worth a log line never comes should not pay
        # (and _log reads records through this module).
        from tracedsync._log import log_record

        try:
            log_record(record)
            return
        except Exception as error:
            _rendering_failed = True
            _say(
                f"tracedsync: rendering an event through structlog failed "
                f"({type(error).__name__}: {error}); events are printed as plain lines"
            )
    data = record_data(record)
    message = data.get("message")
    _say(
        f"tracedsync: {record[3]} {record[5][0]} {record[5][4]!r}"
        + (f"\n{message}" if message else "")
    )


def _say(line: str) -> None:
    """Write a line of tracedsync's own to stderr, if stderr still works."""
    # Not contextlib.suppress: contextlib costs start-up time.
    try:  # noqa: SIM105
        print(line, file=sys.stderr, flush=True)
    except Exception:  # a closed or broken stderr: nothing to tell
        pass


def _check_room(seq: int) -> None:
    """Swap every full bounded sink for its overflow sink, and compute the
    next sequence number at which one may be full."""
    global _sinks, _room_check_at
    with _sinks_guard:
        check_at = sys.maxsize
        for sink, owner in list(_bounded.items()):
            room = owner.room()
            if room > 0:
                check_at = min(check_at, seq + room)
                continue
            del _bounded[sink]
            overflow = owner.overflow_sink()
            _sinks = tuple(overflow if existing == sink else existing for existing in _sinks)
        _update_charging()
        _room_check_at = check_at


def _update_charging() -> None:
    global _charging, _deferring
    _charging = _logging_debug or any(type(sink) is not _C_FUNCTION for sink in _sinks)
    _deferring = (
        not _charging
        and bool(_sinks)
        and all(sink in _bounded and sink in _chunked for sink in _sinks)
    )


def expand_chunks(records: list[Any], start: int = 0) -> int:
    """Replace the chunks of kept-back records that a sink which takes chunks
    received in ``records`` (from index ``start`` on) by the records they
    hold, in place; return the length of ``records`` up to which there is no
    chunk left (a later call may start there).  Other threads may append to
    ``records`` meanwhile."""
    expand = _expand_records
    return len(records) if expand is None else expand(records, start)


def flush_deferred() -> None:
    """Hand every record the C accelerator has kept back to its sinks.

    Called before anything reads what a sink received or counts it (a
    :class:`~tracedsync.Trace`'s records, its ``room()``), and after a sink
    is removed, so that it has every event that happened before.  Nothing to
    do without the accelerator.
    """
    flush = _flush_deferred
    if flush is not None:
        flush()


def _update_observing() -> None:
    global observing, ordering, active, _logging_debug
    _logging_debug = settings.log_level <= DEBUG
    _update_charging()
    observing = bool(_sinks) or _logging_debug
    ordering = settings.lock_order
    active = observing or ordering


def add_sink(sink: Sink, bounded: BoundedSink | None = None, *, takes_chunks: bool = False) -> None:
    """Start handing every record to ``sink`` (called in the emitting thread).

    With ``bounded``, ``sink`` keeps only ``bounded.room()`` records; later
    ones go to ``bounded.overflow_sink()`` (see :class:`BoundedSink`).

    ``takes_chunks`` says that ``sink`` (a list's ``append``) may also
    receive, in place of records, chunks of them: while every sink does, the
    C accelerator keeps the records of the locks' common events back in
    per-thread buffers and hands each buffer on whole, as a chunk, when it is
    full or on :func:`flush_deferred`; the sink's owner turns them into
    records with :func:`expand_chunks` when it reads (a
    :class:`~tracedsync.Trace`), and ``bounded.room()`` counts records.
    """
    global _sinks, _room_check_at
    with _sinks_guard:
        _sinks = (*_sinks, sink)
        if takes_chunks:
            _chunked.add(sink)
        if bounded is not None:
            _bounded[sink] = bounded
            _room_check_at = 0  # the next record computes the real point
        _update_observing()


def remove_sink(sink: Sink) -> None:
    """Stop handing records to ``sink``; unknown sinks are ignored.

    ``sink`` has received every event that happened before this call
    (records kept back are handed on: see :func:`flush_deferred`)."""
    global _sinks
    with _sinks_guard:
        _sinks = tuple(existing for existing in _sinks if existing != sink)
        _bounded.pop(sink, None)
        _chunked.discard(sink)
        _update_observing()
    flush_deferred()


def settings_changed() -> None:
    """Recompute :data:`observing` after :func:`tracedsync.configure`."""
    with _sinks_guard:
        _update_observing()


def _reset_after_fork() -> None:
    global _per_thread, _info_epoch
    _per_thread = _local()
    _info_epoch = object()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)

_update_observing()
