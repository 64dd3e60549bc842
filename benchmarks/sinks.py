"""Throughput of the event sinks, in events per second on one thread (one core)."""

from __future__ import annotations

import math
import os
import sys
import tempfile
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any

import measure
import tracedsync
from tracedsync import _hooks, _jsonl, _log

__all__ = ["json_lines_rate", "run", "sample_records"]


def sample_records(count: int) -> list[_hooks.Record]:
    """``count`` records of a typical mix: Lock and RLock pairs, Event and
    Semaphore operations, recorded from real primitives."""
    lock, rlock = tracedsync.Lock(name="sample-lock"), tracedsync.RLock()
    event, semaphore = tracedsync.Event(), tracedsync.Semaphore(2)
    with tracedsync.record(capacity=count) as trace:
        while len(trace) < count:
            with lock:
                pass
            with rlock, rlock:
                pass
            event.set()
            event.wait()
            event.clear()
            with semaphore:
                pass
    # The trace's compact records are what every sink receives.
    return trace._records[:count]


def _best_rate(rounds: int, events: int, timed: Callable[[], int]) -> float:
    best = math.inf
    for _ in range(rounds):
        best = min(best, timed())
    return events * 1e9 / best if best > 0 else math.nan


def json_lines_rate(records: list[_hooks.Record], rounds: int) -> float:
    """Events per second of the JSON Lines sink fed ``records`` (best of ``rounds``)."""
    directory = tempfile.mkdtemp(prefix="tracedsync-bench-")
    path = os.path.join(directory, "events.jsonl")

    def timed() -> int:
        sink = _jsonl.JsonLinesSink(path)  # not registered: fed directly
        start = perf_counter_ns()
        for record in records:
            sink(record)
        sink.flush()
        elapsed = perf_counter_ns() - start
        sink.close()
        return elapsed

    try:
        return _best_rate(rounds, len(records), timed)
    finally:
        os.remove(path)
        os.rmdir(directory)


def _structlog_rate(records: list[_hooks.Record], rounds: int) -> float:
    previous_stderr = sys.stderr
    previous_format = tracedsync._config.settings.log_format

    def timed() -> int:
        start = perf_counter_ns()
        for record in records:
            _log.log_record(record)
        return perf_counter_ns() - start

    with open(os.devnull, "w", encoding="utf-8") as discard:
        sys.stderr = discard
        tracedsync._config.settings.log_format = "json"
        try:
            return _best_rate(rounds, len(records), timed)
        finally:
            tracedsync._config.settings.log_format = previous_format
            sys.stderr = previous_stderr


def _end_to_end_rate(pairs: int, rounds: int) -> float:
    """Lock pairs with the file sink registered: events (two per pair) per second."""
    directory = tempfile.mkdtemp(prefix="tracedsync-bench-")
    path = os.path.join(directory, "events.jsonl")
    lock = tracedsync.Lock()

    def timed() -> int:
        sink = _jsonl.open_log_file(path)
        start = perf_counter_ns()
        for _ in range(pairs):
            lock.acquire()
            lock.release()
        sink.flush()
        elapsed = perf_counter_ns() - start
        sink.close()
        return elapsed

    try:
        return _best_rate(rounds, 2 * pairs, timed)
    finally:
        os.remove(path)
        os.rmdir(directory)


def run(budget: measure.Budget, progress: Callable[[str], None]) -> dict[str, Any]:
    """Events per second of the JSON Lines sink and of structlog JSON rendering."""
    count = 2_000 if budget.smoke else 200_000
    rounds = budget.rounds
    progress("sinks: sample records")
    records = sample_records(count)
    progress("sinks: JSON Lines sink")
    json_lines = json_lines_rate(records, rounds)
    progress("sinks: JSON Lines end to end")
    end_to_end = _end_to_end_rate(count // 2, rounds)
    progress("sinks: structlog JSON")
    structlog_records = records[: max(count // 20, 100)]
    structlog_rate = _structlog_rate(structlog_records, rounds)
    return {
        "events": count,
        "json_lines_events_per_s": json_lines,
        "json_lines_end_to_end_events_per_s": end_to_end,
        "structlog_json_events_per_s": structlog_rate,
    }
