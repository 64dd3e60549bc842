"""The JSON Lines sink's fast encoder writes exactly the documented event
dictionary as compact JSON (the reference encoding), for every kind of record."""

from __future__ import annotations

import contextlib
import threading

from hypothesis import given
from hypothesis import strategies as st

import tracedsync
from tracedsync._jsonl import _reference_json, record_to_json


def _records_of_every_primitive() -> list[object]:
    lock = tracedsync.Lock(name='quote " and \\ backslash')
    rlock = tracedsync.RLock(name="ünïcode ☃")
    condition = tracedsync.Condition(rlock)
    event, semaphore = tracedsync.Event(), tracedsync.BoundedSemaphore(1)
    barrier = tracedsync.Barrier(1)
    first, second = tracedsync.Lock(name="first"), tracedsync.Lock(name="second")
    with tracedsync.record() as trace:
        with lock:
            pass
        lock.acquire(timeout=0.5)
        lock.acquire(False)  # would block: a dict of data
        lock.release()
        with contextlib.suppress(RuntimeError):
            lock.release()
        with rlock, rlock, condition:
            condition.notify()
            condition.wait(0.001)
        event.set()
        event.wait(1.5)
        event.clear()
        event.wait(0.001)
        with semaphore:
            pass
        with contextlib.suppress(ValueError):
            semaphore.release()
        barrier.wait()
        with first, second:  # one order...
            pass
        thread = tracedsync.Thread(target=lambda: None, name="worker")
        thread.start()
        thread.join()
        holder = threading.Event()
        done = threading.Event()

        def hold() -> None:
            with second, first:  # ...and the other: an inversion report with a chain
                holder.set()
            done.wait(5)

        other = tracedsync.Thread(target=hold)
        other.start()
        holder.wait(5)
        done.set()
        other.join()
    return list(trace._records)


def test_every_real_record_encodes_exactly_as_the_reference() -> None:
    records = _records_of_every_primitive()
    names = {record[3] for record in records}  # type: ignore[index]
    assert {"lock.acquire", "rlock.release", "condition.wait", "lock_order.inversion"} <= names
    for record in records:
        assert record_to_json(record) == _reference_json(record)  # type: ignore[arg-type]


_atoms = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
_values = st.recursive(_atoms, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
_keys = st.text(min_size=1) | st.sampled_from(["event", "seq", "outcome", "line", "{0}", "}{"])


@given(
    name=st.text(),
    thread_name=st.text(),
    data=st.dictionaries(_keys, _values, max_size=5),
    as_pairs=st.booleans(),
    created=st.none() | st.text(),
    instance=st.text(),
)
def test_any_record_encodes_exactly_as_the_reference(
    name: str,
    thread_name: str,
    data: dict[str, object],
    as_pairs: bool,
    created: str | None,
    instance: str,
) -> None:
    code = test_any_record_encodes_exactly_as_the_reference.__code__
    pairs = tuple(item for pair in data.items() for item in pair)
    record = (
        7,
        123_456_789,
        (1, thread_name, 2, 3),
        "lock.acquire",
        10,
        ("Lock", 99, name, created, instance),
        code,
        0,
        (pairs if as_pairs else data) or None,
    )
    line = record_to_json(record)  # type: ignore[arg-type]
    assert line == _reference_json(record)  # type: ignore[arg-type]
    assert "\n" not in line
