"""A failing sink or renderer never changes what a primitive does (issue 13):
no lock left held, no foreign exception out of ``acquire()``; the sink is
disabled and the failure reported once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import tracedsync
from tracedsync import _hooks


@pytest.fixture
def failing_sink() -> Iterator[list[Any]]:
    calls: list[Any] = []

    def sink(record: Any) -> None:
        calls.append(record)
        raise OSError(28, "No space left on device")

    _hooks.add_sink(sink)
    try:
        yield calls
    finally:
        _hooks.remove_sink(sink)


def test_a_raising_sink_leaves_acquire_and_release_as_the_stdlib(
    failing_sink: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    lock = tracedsync.Lock()
    assert lock.acquire() is True  # no OSError, and the lock is held
    assert lock.locked()
    lock.release()
    assert not lock.locked()
    with lock:
        pass
    assert len(failing_sink) == 1  # disabled after its first failure
    err = capsys.readouterr().err
    assert err.count("raised OSError") == 1
    assert "disabled" in err


def test_a_raising_sink_does_not_stop_other_sinks(failing_sink: list[Any]) -> None:
    with tracedsync.record() as trace:
        lock = tracedsync.Lock()
        with lock:
            pass
    assert trace.names() == ["lock.acquire", "lock.release"]


def test_a_finding_rendered_at_warning_level_raises_its_own_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The report's "stack" field collided with a key structlog's
    # ConsoleRenderer reserves: TypeError instead of LockOrderError.
    tracedsync.configure(log_level="warning")
    try:
        first, second = tracedsync.Lock(name="first"), tracedsync.Lock(name="second")
        tracedsync.declare_order(first, second)
        with second, pytest.raises(tracedsync.LockOrderError):
            first.acquire()
        assert not first.locked()
        # Raised, the error is the report and nothing is logged; logged
        # (policy "warn"), the event renders.
        assert "lock_order.hierarchy" not in capsys.readouterr().err
        tracedsync.set_policy(first, hierarchy="warn")
        with second, first:
            pass
    finally:
        tracedsync.configure(log_level="error")
    err = capsys.readouterr().err
    assert "lock_order.hierarchy" in err
    assert "user_stack" not in err  # shown in the message, not repeated


def test_a_failing_renderer_falls_back_to_plain_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tracedsync import _log

    def broken(record: Any) -> None:
        raise ValueError("renderer broke")

    monkeypatch.setattr(_log, "log_record", broken)
    monkeypatch.setattr(_hooks, "_rendering_failed", False)
    outer, inner = tracedsync.Lock(name="outer"), tracedsync.Lock(name="inner")
    tracedsync.configure(log_level="warning")
    try:
        with outer, inner:
            pass
        with inner, outer:  # the inversion's warning is rendered: the renderer fails
            pass
    finally:
        tracedsync.configure(log_level="error")
    err = capsys.readouterr().err
    assert "rendering an event through structlog failed (ValueError: renderer broke)" in err
    assert "lock_order.inversion Lock 'outer'" in err
