"""``LockTrace``: a recorded trace with questions a test asks about locks.

The ``locktrace`` pytest fixture gives one; ``with tracedsync.LockTrace()
as trace:`` works anywhere.  Every question is answered from the recorded
events alone, so it says what happened in this run, in every thread.
"""

from __future__ import annotations

from tracedsync import _hooks
from tracedsync._recorder import DEFAULT_CAPACITY, Trace
from tracedsync._sites import register_internal_module, short_path
from tracedsync._typenames import Any

__all__ = ["LockTrace"]

register_internal_module(__file__)

_LOCK_EVENTS = frozenset({"lock.acquire", "lock.release", "rlock.acquire", "rlock.release"})


def _check_traced(primitive: object) -> None:
    """Refuse, in one line, a primitive tracedsync never records (a plain
    ``threading.Lock``, made while threading was not patched): a query about
    it could only fail with a confusing message, or answer vacuously."""
    __tracebackhide__ = True
    if isinstance(primitive, str) or hasattr(primitive, "_identity"):
        return
    raise TypeError(
        f"{primitive!r} is not a tracedsync primitive, so nothing about it is recorded: "
        "create it with tracedsync (tracedsync.Lock()...), or let threading make traced ones "
        "(pytest --tracedsync, @pytest.mark.tracedsync or tracedsync.patch())"
    )


def _describe(event: dict[str, Any]) -> str:
    return f"{short_path(event['file'])}:{event['line']} (in {event['function']})"


class LockTrace(Trace):
    """A :class:`Trace` with lock-discipline queries and assertions.

    Primitives are given as the objects themselves or by name.  Durations are
    in seconds.  A question about something that never happened (the wait
    of a lock nobody waited for, the order of two locks never held together)
    fails instead of answering vacuously.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        super().__init__(capacity)

    def clear(self) -> None:
        """Forget every event recorded so far (and the drop count)."""
        _hooks.flush_deferred()  # those kept back were recorded so far too
        self._records.clear()
        self._settled = 0
        self._dropped = 0
        self._cache = None

    @staticmethod
    def _label(primitive: object) -> str:
        _check_traced(primitive)
        return repr(primitive) if isinstance(primitive, str) else repr(primitive.name)  # type: ignore[attr-defined]

    def acquisitions(self, lock: object, *, thread: object = None) -> list[dict[str, Any]]:
        """The successful acquire events of ``lock`` (recursive ones included),
        optionally only those of one thread."""
        _check_traced(lock)
        return [
            event
            for event in self.events(primitive=lock, thread=thread)
            if event["event"] in {"lock.acquire", "rlock.acquire", "semaphore.acquire"}
            and event.get("outcome") == "acquired"
        ]

    def max_wait(self, primitive: object) -> float:
        """The longest time, in seconds, any thread waited for ``primitive``
        (an acquire, a condition or event wait, a join...), timed-out and
        failed waits included.  Fails if no wait on it was recorded."""
        __tracebackhide__ = True  # pytest: show the caller, not this method
        _check_traced(primitive)
        waits = [
            event["waited_ns"]
            for event in self.events(primitive=primitive)
            if event.get("waited_ns") is not None
        ]
        if not waits:
            raise AssertionError(f"no wait on {self._label(primitive)} was recorded")
        return float(max(waits)) / 1e9

    def max_hold(self, lock: object) -> float:
        """The longest time, in seconds, ``lock`` was held (acquire to the
        release that freed it).  Fails if no completed hold was recorded."""
        __tracebackhide__ = True  # pytest: show the caller, not this method
        _check_traced(lock)
        holds = [
            event["held_ns"]
            for event in self.events(primitive=lock)
            if event["event"] in {"lock.release", "rlock.release"}
            and event.get("held_ns") is not None
        ]
        if not holds:
            raise AssertionError(f"no release of {self._label(lock)} was recorded")
        return float(max(holds)) / 1e9

    def assert_acquired_before(self, first: object, second: object) -> None:
        """Assert that ``first`` is taken before ``second`` whenever a thread
        holds both (clang's ``ACQUIRED_BEFORE``).

        Fails, naming the sites, if any thread acquired ``first`` while
        holding ``second``; fails too if no thread ever held both, since the
        order was then never exercised.
        """
        __tracebackhide__ = True  # pytest: show the caller, not this method
        _check_traced(first)
        _check_traced(second)

        def matches(event: dict[str, Any], primitive: object) -> bool:
            if isinstance(primitive, str):
                return bool(event["primitive_name"] == primitive)
            return bool(event["primitive_id"] == id(primitive))

        held: dict[int, dict[int, dict[str, Any]]] = {}  # thread token -> lock id -> acquire
        holder: dict[int, int] = {}  # lock id -> thread token
        nested = 0
        for event in self._events():
            name = event["event"]
            if name not in _LOCK_EVENTS:
                continue
            outcome = event.get("outcome")
            key = event["primitive_id"]
            if name.endswith(".acquire") and outcome == "acquired":
                if event.get("depth", 1) != event.get("levels", 1):
                    continue  # a recursive re-entry: held already
                mine = held.setdefault(event["thread_token"], {})
                if matches(event, second) and any(matches(e, first) for e in mine.values()):
                    nested += 1
                if matches(event, first):
                    for other in mine.values():
                        if matches(other, second):
                            raise AssertionError(
                                f"{self._label(first)} was acquired after "
                                f"{self._label(second)}: thread {event['thread_name']!r} "
                                f"acquired {event['primitive_name']!r} at {_describe(event)} "
                                f"while holding {other['primitive_name']!r} (acquired at "
                                f"{_describe(other)})"
                            )
                mine[key] = event
                holder[key] = event["thread_token"]
            elif name.endswith(".release") and outcome == "released" and not event.get("depth"):
                owner = holder.pop(key, None)
                if owner is not None:
                    held.get(owner, {}).pop(key, None)
        if not nested:
            raise AssertionError(
                f"{self._label(first)} and {self._label(second)} were never held together "
                "by one thread: their order was not exercised"
            )

    def findings(self) -> list[dict[str, Any]]:
        """The events at level warning or above: deadlocks, lock-order
        inversions, hierarchy violations, unguarded accesses..."""
        return [
            event for event in self._events() if event["level"] in {"warning", "error", "critical"}
        ]

    def __repr__(self) -> str:
        return f"<LockTrace events={len(self)} dropped={self.dropped} capacity={self.capacity}>"


# Shown as the package's: ``tracedsync.LockTrace`` is its public name.
LockTrace.__module__ = "tracedsync"
