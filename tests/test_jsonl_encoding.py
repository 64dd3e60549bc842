"""The JSON Lines sink's fast encoder writes exactly the documented event
dictionary as compact JSON (the reference encoding), for every kind of record."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tracedsync
from tracedsync import _accel, _jsonl
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
    return list(trace._sorted_records())


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


# -- the C accelerator's batch encoder against record_to_json ---------------------

needs_c = pytest.mark.skipif(not _accel.available(), reason=f"no C accelerator: {_accel.reason()}")


def _python_lines(records: list[Any]) -> bytes:
    return "".join(record_to_json(record) + "\n" for record in records).encode()


def _c_lines(records: list[Any]) -> bytes:
    from tracedsync import _speedups  # type: ignore[attr-defined]

    lines: bytes = _speedups.json_lines(records, _jsonl._PIECES)
    return lines


@needs_c
def test_the_c_encoder_writes_real_records_as_the_reference() -> None:
    records = _records_of_every_primitive()
    assert _c_lines(records) == _python_lines(records)
    assert _c_lines([]) == b""


def _outcome(encode: Callable[[list[Any]], bytes], records: list[Any]) -> object:
    try:
        return encode(records)
    except Exception as error:  # the same exception, whichever encoder
        return type(error)


_levels = st.sampled_from([10, 20, 30, 40, 50, 10, 20, 30, 40, 50, 7])  # 7: no such level
_codes = st.sampled_from(
    [None, test_any_record_encodes_exactly_as_the_reference.__code__, _c_lines.__code__]
)
_field_values = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.lists(st.integers(), max_size=2)
)
_pairs = st.lists(st.tuples(_keys, _field_values), max_size=4).map(
    lambda items: tuple(item for pair in items for item in pair)
)
_data = (
    st.none()
    | _pairs
    | _pairs.map(lambda pairs: (*pairs, "odd"))
    | st.dictionaries(_keys | st.integers(0, 3), _field_values, max_size=4)
)
_records = st.tuples(
    st.integers(-(2**70), 2**70),
    st.integers(0, 2**64),
    st.tuples(st.integers(0, 2**64), st.text(), st.integers(1, 2**22), st.integers(1, 99)),
    st.text() | st.sampled_from(["lock.acquire", "rlock.release"]),
    _levels,
    st.tuples(
        st.sampled_from(["Lock", "RLock", "Event"]),
        st.integers(0, 2**64),
        st.text(),
        st.none() | st.text(),
        st.text(),
    ),
    _codes,
    st.integers(0, 400),
    _data,
)


@needs_c
@given(st.lists(_records, max_size=12))
def test_the_c_encoder_writes_any_record_as_the_reference(records: list[Any]) -> None:
    # Odd pairs, unknown levels, floats, lists and shadowing keys exercise
    # its hand-over to the reference; repeated objects its caches.
    for record in records:
        assert _outcome(_c_lines, [record]) == _outcome(_python_lines, [record])
    encodable = [record for record in records if type(_outcome(_python_lines, [record])) is bytes]
    batch = encodable + encodable[::-1]
    assert _c_lines(batch) == _python_lines(batch)


@needs_c
@pytest.mark.usefixtures("restore_implementation")
def test_the_sink_writes_with_the_active_implementation(tmp_path: Path) -> None:
    records = _records_of_every_primitive()
    written = {}
    for implementation in ("python", "c"):
        _accel.select(implementation)
        sink = _jsonl.JsonLinesSink(tmp_path / f"{implementation}.jsonl")
        for record in records:
            sink(record)
        sink.close()
        written[implementation] = (tmp_path / f"{implementation}.jsonl").read_bytes()
    assert written["c"] == written["python"] == _python_lines(records)
