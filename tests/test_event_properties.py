"""Property: for any multi-thread lock program, the recorded trace obeys the
pairing rules and says exactly what each thread did, in its order."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tracedsync

# A step: (lock index, recursion depth).  Locks 0-1 are Locks (depth 1),
# locks 2-3 are RLocks taken ``depth`` times.  One lock at a time, so the
# program cannot deadlock, whatever the interleaving.
steps = st.tuples(st.integers(0, 3), st.integers(1, 3)).map(
    lambda step: (step[0], step[1] if step[0] >= 2 else 1)
)
programs = st.lists(st.lists(steps, max_size=12), min_size=1, max_size=4)


def _expected(program: list[tuple[int, int]]) -> list[tuple[str, str, int | None]]:
    expected: list[tuple[str, str, int | None]] = []
    for index, depth in program:
        name = f"lock-{index}"
        if index < 2:
            expected += [("lock.acquire", name, None), ("lock.release", name, None)]
        else:
            expected += [("rlock.acquire", name, level) for level in range(1, depth + 1)]
            expected += [("rlock.release", name, level) for level in range(depth - 1, -1, -1)]
    return expected


@pytest.mark.timeout(120)
@given(programs)
def test_recorded_trace_matches_the_program_and_obeys_pairing(
    program: list[list[tuple[int, int]]],
) -> None:
    locks: list[tracedsync.Lock | tracedsync.RLock] = [
        tracedsync.Lock(name="lock-0"),
        tracedsync.Lock(name="lock-1"),
        tracedsync.RLock(name="lock-2"),
        tracedsync.RLock(name="lock-3"),
    ]
    start = threading.Barrier(len(program))

    def run(steps_of_thread: list[tuple[int, int]]) -> None:
        start.wait()
        for index, depth in steps_of_thread:
            lock = locks[index]
            for _ in range(depth):
                lock.acquire()
            for _ in range(depth):
                lock.release()

    threads = [
        threading.Thread(target=run, args=(steps_of_thread,), name=f"program-{number}")
        for number, steps_of_thread in enumerate(program)
    ]
    with tracedsync.record() as trace:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    trace.assert_pairing()
    assert trace.dropped == 0
    for thread, steps_of_thread in zip(threads, program, strict=True):
        recorded = [
            (event["event"], event["primitive_name"], event.get("depth"))
            for event in trace.events(thread=thread)
            if not event["event"].endswith(".blocked")
        ]
        assert recorded == _expected(steps_of_thread)
        assert all(
            event["outcome"] in {"acquired", "released"}
            for event in trace.events(thread=thread)
            if not event["event"].endswith(".blocked")
        )
