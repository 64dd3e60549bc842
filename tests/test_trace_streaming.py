"""Reading traces back: streaming in bounded memory, and the summary's arithmetic."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tracedsync._cli.summary import Summary
from tracedsync._cli.timeline import write_timeline


def synthetic_events(count: int) -> Iterator[dict[str, Any]]:
    """``count`` events of two threads contending for 50 locks, as a trace holds them."""
    seq = group = 0
    time_ns = 1_000_000
    while seq < count:
        lock = group % 50
        group += 1
        for thread, event, fields in (
            (1, "lock.acquire.blocked", {"timeout": -1}),
            (1, "lock.acquire", {"outcome": "acquired", "waited_ns": 700}),
            (2, "lock.release", {"outcome": "released", "held_ns": 900}),
            (1, "lock.release", {"outcome": "released", "held_ns": 300}),
            (2, "event.set", {"flag": True}),
        ):
            seq += 1
            time_ns += 100
            yield {
                "schema": 1,
                "seq": seq,
                "time_ns": time_ns,
                "event": event,
                "level": "debug",
                "pid": 7,
                "thread_id": 1000 + thread,
                "thread_name": f"worker-{thread}",
                "thread_token": thread,
                "primitive_kind": "Lock",
                "primitive_id": 5000 + lock,
                "primitive_name": f"Lock@app.py:{lock}",
                "primitive_created": f"app.py:{lock}",
                "file": "app.py",
                "line": 10,
                "function": "work",
                **fields,
            }


class _Discard:
    def write(self, text: str) -> int:
        return len(text)


def _peak_bytes(consume: Callable[[Iterator[dict[str, Any]]], object], count: int) -> int:
    tracemalloc.start()
    try:
        consume(synthetic_events(count))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _summarise(events: Iterator[dict[str, Any]]) -> Summary:
    summary = Summary()
    for event in events:
        summary.add_event(event)
    return summary


def test_summary_memory_does_not_grow_with_the_trace() -> None:
    small = _peak_bytes(_summarise, 1_000)
    large = _peak_bytes(_summarise, 10_000)
    assert large < small * 1.5 + 64_000, (small, large)


# 13 s on an idle 2-core machine; over the suite's 60 s at load 25 (a whole
# suite run under load, issue 17).
@pytest.mark.timeout(300)
def test_timeline_memory_does_not_grow_with_the_trace() -> None:
    def convert(events: Iterator[dict[str, Any]]) -> int:
        return write_timeline(events, _Discard())  # type: ignore[arg-type]

    small = _peak_bytes(convert, 1_000)
    large = _peak_bytes(convert, 10_000)
    assert large < small * 1.5 + 64_000, (small, large)


def test_summary_counts_acquisitions_contention_waits_and_holds() -> None:
    summary = _summarise(synthetic_events(500))
    assert summary.events == 500 and summary.threads == 2
    stats = summary.locks[(7, 5000, "Lock", "Lock@app.py:0", "app.py:0")]
    assert stats.acquired == 2  # groups 0 and 50 of the 100 are lock 0's
    assert stats.contended == 2 and stats.contended_ratio == 1.0
    assert stats.total_wait_ns == 1400 and stats.max_wait_ns == 700
    assert stats.max_hold_ns == 900
    text = summary.render(top=3)
    assert "contention (50 locks; the 3 with the most waiting):" in text
    assert "Lock@app.py:0  app.py:0" in text and "1.4 us" in text


def test_summary_lists_findings_and_rlock_reentry_is_not_an_acquisition() -> None:
    summary = Summary()
    base = {
        "seq": 1,
        "time_ns": 5,
        "thread_id": 1,
        "thread_name": "main",
        "primitive_kind": "RLock",
        "primitive_id": 9,
        "primitive_name": "r",
    }
    for depth in (1, 2, 3):
        summary.add_event({**base, "event": "rlock.acquire", "outcome": "acquired", "depth": depth})
    summary.add_event({**base, "event": "rlock.acquire", "outcome": "timed_out", "waited_ns": 50})
    summary.add_event(
        {**base, "event": "lock_order.inversion", "message": "Possible deadlock:\ndetail"}
    )
    summary.add_event({**base, "event": "thread.exit", "outcome": "raised", "exception": "E: x"})
    stats = summary.locks[(0, 9, "RLock", "r", None)]
    assert (stats.acquired, stats.failed, stats.contended, stats.total_wait_ns) == (1, 1, 1, 50)
    full, short = summary.render(full=True), summary.render(full=False)
    assert "  lock-order inversions: 1\n    Possible deadlock:\n    detail" in full
    # run shows the first sentence; one that goes on past its line is marked.
    assert "    Possible deadlock ...\n" in short and "detail" not in short
    assert "thread 'main' raised E: x" in full
