"""``tracedsync.record()``: the events of all threads, in memory.

A :class:`Trace` is a sink: while it records, the hook hands it every record
and it keeps them, up to ``capacity``; beyond that it counts what it dropped
(:attr:`Trace.dropped`), so a drop is never silent.  Records stay compact
tuples until asked for; the query helpers return the documented event
dictionaries.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import TracebackType

from tracedsync import _hooks, _pairing
from tracedsync._guards import internal_lock
from tracedsync._hooks import Record
from tracedsync._jsonl import record_to_json
from tracedsync._schema import record_to_dict
from tracedsync._sites import register_internal_module
from tracedsync._typenames import IO, Any

__all__ = ["Trace", "record"]

register_internal_module(__file__)

DEFAULT_CAPACITY = 1_000_000


class Trace:
    """Events recorded by :func:`record`, in sequence order.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`).
    Iterating gives event dictionaries (schema in ``docs/events.md``).
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        #: The records, and chunks of them (see _hooks.add_sink) past
        #: ``_settled``: read its first _settle() items only.
        self._records: list[Record] = []
        self._settled = 0
        self._dropped = 0
        self._overflow_guard = internal_lock()
        self._cache: list[dict[str, Any]] | None = None

    # -- recording -------------------------------------------------------
    # The sink is the records list's own ``append``: a C call per event, no
    # Python frame.  The hook checks the capacity (see _hooks.BoundedSink)
    # only when the sequence number says the list may be full, then hands the
    # later records to _count_dropped.  Threads racing at that point may
    # append a few more, never an unbounded number.
    def room(self) -> int:
        """How many more events the trace keeps (the hook asks)."""
        return self.capacity - self._settle()

    def overflow_sink(self) -> _hooks.Sink:
        """What receives the events once the trace is full."""
        return self._count_dropped

    def _count_dropped(self, record: Record) -> None:
        with self._overflow_guard:
            self._dropped += 1

    def start(self) -> Trace:
        """Start receiving the events of every thread."""
        _hooks.add_sink(self._records.append, bounded=self, takes_chunks=True)
        return self

    def stop(self) -> None:
        """Stop receiving events (those recorded so far are kept)."""
        _hooks.remove_sink(self._records.append)
        _hooks.remove_sink(self._count_dropped)

    def __enter__(self) -> Trace:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def dropped(self) -> int:
        """How many events arrived after the trace was full and were not kept.

        Nothing kept back in a thread's buffer counts: events are kept back
        only below the sequence number where the trace may be full."""
        return self._dropped

    # -- reading ---------------------------------------------------------
    def _settle(self) -> int:
        """How many of ``_records``, from the start, are records: every event
        that happened before the call.  Those the C accelerator keeps back in
        per-thread buffers are handed on, and the chunks they arrive in are
        replaced by their records (see _hooks.add_sink).  Other threads may
        append more (chunks too) meanwhile: read only this many."""
        _hooks.flush_deferred()
        self._settled = settled = _hooks.expand_chunks(self._records, self._settled)
        return settled

    def _sorted_records(self, settled: int | None = None) -> list[Record]:
        if settled is None:
            settled = self._settle()
        return sorted(self._records[:settled], key=lambda record: record[0])

    def _events(self) -> list[dict[str, Any]]:
        settled = self._settle()
        if self._cache is None or len(self._cache) != settled:
            self._cache = [record_to_dict(record) for record in self._sorted_records(settled)]
        return self._cache

    def __len__(self) -> int:
        return self._settle()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._events())

    def events(
        self,
        event: str | None = None,
        *,
        primitive: object = None,
        thread: object = None,
    ) -> list[dict[str, Any]]:
        """The recorded events, optionally only those matching every filter.

        ``event``: an event name (``"lock.acquire"``) or a prefix ending in a
        dot (``"lock."``).  ``primitive``: a primitive object or its name.
        ``thread``: a ``threading.Thread``, a thread ident or a thread name.
        """
        selected = self._events()
        if event is not None:
            if event.endswith("."):
                selected = [e for e in selected if e["event"].startswith(event)]
            else:
                selected = [e for e in selected if e["event"] == event]
        if primitive is not None:
            if isinstance(primitive, str):
                selected = [e for e in selected if e["primitive_name"] == primitive]
            else:
                selected = [e for e in selected if e["primitive_id"] == id(primitive)]
        if thread is not None:
            if isinstance(thread, str):
                selected = [e for e in selected if e["thread_name"] == thread]
            else:
                ident = thread if isinstance(thread, int) else getattr(thread, "ident", None)
                selected = [e for e in selected if e["thread_id"] == ident]
        return selected

    def names(self) -> list[str]:
        """The event names in sequence order (handy in assertions)."""
        return [event["event"] for event in self._events()]

    # -- checking --------------------------------------------------------
    def pairing_violations(self) -> list[str]:
        """Every place the trace breaks the acquire/release pairing rules.

        A ``Lock`` must be released between two acquisitions, and only a held
        ``Lock`` may be released (by any thread).  An ``RLock`` may be
        acquired only when free or by its owner, released only by its owner,
        and its recorded depth must count every acquire and release (a
        condition wait releases and restores every level at once).
        Failed operations (``outcome`` other than ``acquired`` or
        ``released``) change nothing.
        """
        return _pairing.pairing_violations(self._events())

    def assert_pairing(self) -> None:
        """Raise ``AssertionError`` listing every pairing violation, if any."""
        violations = self.pairing_violations()
        if violations:
            raise AssertionError("lock pairing violated:\n  " + "\n  ".join(violations))

    # -- exporting -------------------------------------------------------
    def to_jsonl(self, target: str | os.PathLike[str] | IO[str]) -> int:
        """Write the events as JSON Lines to a path or an open text file.

        Returns the number of lines written.
        """
        records = self._sorted_records()
        lines = "".join(record_to_json(record) + "\n" for record in records)
        if isinstance(target, (str, os.PathLike)):
            with open(target, "w", encoding="utf-8") as file:
                file.write(lines)
        else:
            target.write(lines)
        return len(records)

    def __repr__(self) -> str:
        return f"<Trace events={len(self)} dropped={self.dropped} capacity={self.capacity}>"


def record(capacity: int = DEFAULT_CAPACITY) -> Trace:
    """Record the events of all threads in memory: ``with record() as trace:``.

    About ``capacity`` events are kept (threads racing for the last slot
    may add a few more); later ones are counted in :attr:`Trace.dropped`,
    never silently lost.  Several traces may record at once.
    """
    return Trace(capacity)
