"""The configurations tracedsync is measured in.

Each mode is a context manager that sets tracedsync up (and puts it back
afterwards) plus an optional ``between_rounds`` hook that starts a fresh
trace or file, so a long measurement never accumulates unbounded events.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import tracedsync
from tracedsync import _jsonl

__all__ = ["MODES", "Mode", "Session"]


@dataclass
class Session:
    """What a mode's context yields: the hook to call between measured rounds."""

    between_rounds: Callable[[], None] | None = None
    #: Anything the mode keeps alive while it is active (a trace, a sink).
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Mode:
    """A named configuration of tracedsync."""

    key: str
    title: str
    description: str
    enter: Callable[[], Any]  # a context manager factory yielding a Session
    #: Whether constructors return traced objects in this mode.
    traced: bool = True


@contextmanager
def _off_switch() -> Iterator[Session]:
    tracedsync.disable()
    try:
        yield Session()
    finally:
        tracedsync.enable()


@contextmanager
def _default() -> Iterator[Session]:
    yield Session()


@contextmanager
def _recording(*, detectors: bool) -> Iterator[Session]:
    tracedsync.configure(lock_order=detectors, wait_warning=30.0 if detectors else 0)
    session = Session()
    session.state["trace"] = tracedsync.record().start()

    def fresh_trace() -> None:
        session.state["trace"].stop()
        session.state["trace"] = tracedsync.record().start()

    session.between_rounds = fresh_trace
    try:
        yield session
    finally:
        session.state["trace"].stop()
        tracedsync.configure(lock_order=True, wait_warning=0)


@contextmanager
def _json_lines_file() -> Iterator[Session]:
    directory = tempfile.mkdtemp(prefix="tracedsync-bench-")
    path = os.path.join(directory, "events.jsonl")
    session = Session()
    # configure(log_file=...) has no public counterpart that stops the sink,
    # so the benchmark opens and closes it through the sink module itself.
    session.state["sink"] = _jsonl.open_log_file(path)

    def fresh_file() -> None:
        session.state["sink"] = _jsonl.open_log_file(path)  # closes the previous one

    session.between_rounds = fresh_file
    try:
        yield session
    finally:
        session.state["sink"].close()
        os.remove(path)
        os.rmdir(directory)


@contextmanager
def _structlog_json() -> Iterator[Session]:
    previous_stderr = sys.stderr
    with open(os.devnull, "w", encoding="utf-8") as discard:
        sys.stderr = discard
        tracedsync.configure(log_level="debug", log_format="json")
        try:
            yield Session()
        finally:
            tracedsync.configure(log_level="error", log_format="console")
            sys.stderr = previous_stderr


MODES = [
    Mode(
        "off",
        "off switch",
        "`tracedsync.disable()`: the constructors return the plain `threading` objects",
        _off_switch,
        traced=False,
    ),
    Mode(
        "default",
        "default (detectors, no events)",
        "the defaults: lock-order checking and deadlock detection on, nothing observes events",
        _default,
    ),
    Mode(
        "recorded",
        "events in memory",
        "`tracedsync.record()` with `configure(lock_order=False)`: events only",
        lambda: _recording(detectors=False),
    ),
    Mode(
        "recorded_detectors",
        "recording + every detector",
        "`tracedsync.record()` with lock-order checking, deadlock detection and the "
        "long-wait watchdog (`wait_warning=30`)",
        lambda: _recording(detectors=True),
    ),
    Mode(
        "jsonl",
        "JSON Lines file",
        "`configure(log_file=...)` (a temporary file), detectors on",
        _json_lines_file,
    ),
    Mode(
        "structlog",
        "structlog JSON",
        "`configure(log_level='debug', log_format='json')`, stderr sent to `os.devnull`, "
        "detectors on",
        _structlog_json,
    ),
]
