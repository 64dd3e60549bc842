"""Defects found by running real test suites under tracedsync
(``benchmarks/real_suites.py``), one regression test each."""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest

import tracedsync
from tracedsync import _hooks
from tracedsync._summary import Summary


def _lock_records() -> list[Any]:
    """The live records of one acquire and release of a traced Lock."""
    records: list[Any] = []
    lock = tracedsync.Lock()
    _hooks.add_sink(records.append)
    try:
        with lock:
            pass
    finally:
        _hooks.remove_sink(records.append)
    assert [r[3] for r in records] == ["lock.acquire", "lock.release"]
    return records


@pytest.mark.timeout(60)
def test_summary_sink_is_exact_when_threads_deliver_at_once() -> None:
    # CPython's test_queue under `tracedsync run` (3.13): the summary sink,
    # called by many threads at once, raised KeyError (a release matched an
    # acquire that another thread's record had just removed) and was
    # disabled for the rest of the run; its counters lost increments.
    acquire, release = _lock_records()
    summary = Summary()
    threads_n, rounds = 4, 20_000
    start = threading.Barrier(threads_n)
    disabled: list[str] = []

    def deliver() -> None:
        start.wait()
        for _ in range(rounds):
            # what _hooks does for a sink: a sink that raises is dropped
            try:
                summary.add_record(acquire)
                summary.add_record(release)
            except Exception as exc:
                disabled.append(repr(exc))
                return

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        workers = [threading.Thread(target=deliver) for _ in range(threads_n)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(interval)
    assert disabled == []
    (stats,) = summary.locks.values()
    assert stats.acquired == threads_n * rounds
    assert summary.events == 2 * threads_n * rounds
