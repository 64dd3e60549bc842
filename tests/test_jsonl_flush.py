"""The JSON Lines sink never writes a batch inside a critical section.

A batch is a ``write()`` of thousands of lines: written by a thread that
holds one of the program's locks, it would lengthen that critical section by
the whole write, and every thread waiting for the lock with it.
"""

from __future__ import annotations

import json
from _thread import get_ident
from collections.abc import Iterator
from pathlib import Path

import pytest

import tracedsync
from tracedsync import _hooks, _jsonl

pytestmark = pytest.mark.timeout(60)

BATCH = 8


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[_jsonl.JsonLinesSink]:
    made = _jsonl.JsonLinesSink(tmp_path / "events.jsonl", batch=BATCH)
    _hooks.add_sink(made)
    try:
        yield made
    finally:
        made.close()


def _watch_writes(
    sink: _jsonl.JsonLinesSink, locks: list[tracedsync.Lock | tracedsync.RLock]
) -> list[bool]:
    """For each batch written: whether the writing thread held one of ``locks``."""
    writes: list[bool] = []
    write = sink._flush_locked

    def watched() -> None:
        if sink._buffer:
            writes.append(any(lock._owner == get_ident() for lock in locks))
        write()

    sink._flush_locked = watched  # type: ignore[method-assign]
    return writes


def _lines(sink: _jsonl.JsonLinesSink) -> list[dict[str, object]]:
    return [json.loads(line) for line in Path(sink.path).read_text().splitlines()]


def test_a_thread_holding_a_lock_leaves_the_batch_for_later(
    sink: _jsonl.JsonLinesSink,
) -> None:
    outer, inner, reentrant = tracedsync.Lock(), tracedsync.Lock(), tracedsync.RLock()
    writes = _watch_writes(sink, [outer, inner, reentrant])
    with outer:
        for _ in range(3 * BATCH):
            with inner:
                pass
    assert writes == [False]  # one batch, once outer was released
    with reentrant:
        for _ in range(3 * BATCH):
            with reentrant:  # released to depth 1: still held
                pass
    assert writes == [False, False]
    sink.close()
    lines = _lines(sink)
    assert len(lines) == 2 * (2 + 6 * BATCH)
    assert sink.written_under_lock == 0


def test_a_lock_held_through_a_condition_wait_is_not_held_meanwhile(
    sink: _jsonl.JsonLinesSink,
) -> None:
    # wait() releases the condition's lock (a release record) and takes it
    # back (an acquire record): between the two the thread holds nothing.
    lock = tracedsync.Lock()
    condition = tracedsync.Condition(lock)
    writes = _watch_writes(sink, [lock])
    with condition:
        for _ in range(BATCH):
            condition.wait(0)
    assert writes and not any(writes)


def test_a_lock_released_by_another_thread_is_not_held_by_its_acquirer(
    sink: _jsonl.JsonLinesSink,
) -> None:
    handed, other = tracedsync.Lock(), tracedsync.Lock()
    writes = _watch_writes(sink, [handed, other])
    handed.acquire()
    releaser = tracedsync.Thread(target=handed.release)
    releaser.start()
    releaser.join()
    for _ in range(BATCH):
        with other:
            pass
    assert writes, "no batch written: the sink still thinks the acquirer holds the lock"
    assert not any(writes)


def test_a_lock_never_released_still_gets_its_events_written(
    sink: _jsonl.JsonLinesSink,
) -> None:
    # Memory stays bounded: past DEFERRED_BATCHES batches the buffer is
    # written under the lock, and counted.
    outer, inner = tracedsync.Lock(), tracedsync.Lock()
    writes = _watch_writes(sink, [outer])
    pairs = BATCH * _jsonl.DEFERRED_BATCHES // 2 + 1
    with outer:
        for _ in range(pairs):
            with inner:
                pass
        assert writes == [True]
        assert sink.written_under_lock == 1
        assert len(sink._buffer) < BATCH * _jsonl.DEFERRED_BATCHES
    sink.close()
    assert len(_lines(sink)) == 2 + 2 * pairs
