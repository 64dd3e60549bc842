"""Long waits: the watchdog reports waits that last longer than a threshold."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import tracedsync
import tracedsync.testing
from helpers import run_python, wait_until, wait_until_blocked
from tracedsync._watchdog import watchdog


@pytest.fixture(autouse=True)
def _watchdog_off() -> Iterator[None]:
    yield
    tracedsync.testing.reset()  # before conftest's: the check below needs it
    assert not watchdog.running


def test_a_long_lock_wait_is_reported_once_with_the_holder_and_every_stack() -> None:
    lock = tracedsync.Lock(name="db")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            holding.set()
            release.wait()  # a wait tracedsync does not see (stdlib Event)

    holder = tracedsync.Thread(target=hold, name="holder")
    holder.start()
    holding.wait()
    with tracedsync.record() as trace:
        tracedsync.configure(wait_warning=0.1)
        client = tracedsync.Thread(target=lambda: lock.acquire() and lock.release(), name="client")
        client.start()
        wait_until(lambda: trace.events("wait.long"), "the watchdog reports the wait")
        # Give it several more scans: the same wait is not reported again.
        assert not threading.Event().wait(0.3)
        release.set()
        client.join()
        holder.join()
    found = trace.events("wait.long")
    assert len(found) == 1
    event = found[0]
    assert event["level"] == "warning" and event["primitive_name"] == "db"
    assert event["blocked_thread_id"] == client.ident
    assert event["holder_thread_id"] == holder.ident
    assert event["waited_s"] >= 0.1
    message = event["message"]
    assert message.startswith("Long wait: thread 'client' has waited")
    assert "for Lock 'db' at tests/test_watchdog.py:" in message
    assert "it is held by thread 'holder', acquired at tests/test_watchdog.py:" in message
    assert "that thread is now at: tests/test_watchdog.py:" in message
    assert "all threads now:" in message and "'MainThread':" in message
    assert "tracedsync/_" not in message


def test_callback_policy_and_event_waits() -> None:
    reports: list[tracedsync.Report] = []
    tracedsync.configure(wait_warning=0.05, on_long_wait=reports.append)
    never = tracedsync.Event(name="go")
    waiter = tracedsync.Thread(target=never.wait, args=(30,), name="waiter")
    waiter.start()
    wait_until_blocked(waiter.ident)
    wait_until(lambda: reports, "the callback receives a report")
    never.set()
    waiter.join()
    assert reports[0].kind == "long_wait"
    assert "for Event 'go'" in reports[0].message
    with pytest.raises(ValueError, match="cannot raise"):
        tracedsync.configure(on_long_wait="raise")
    with pytest.raises(ValueError, match="seconds"):
        tracedsync.configure(wait_warning=-1)


def test_the_watchdog_thread_never_counts_as_able_to_release() -> None:
    tracedsync.configure(wait_warning=5)
    assert watchdog.running
    lock = tracedsync.Lock()

    def reacquire() -> None:
        lock.acquire()
        lock.acquire()

    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            reacquire()
        except tracedsync.DeadlockError as error:
            errors.append(error)

    worker = tracedsync.Thread(target=guarded)
    worker.start()
    worker.join()
    assert len(errors) == 1


def test_the_watchdog_thread_is_never_taken_for_a_program_thread() -> None:
    # From 3.13 a thread just started has a thread state without an ident
    # until it runs: a lone wait checked right after the watchdog started
    # (tracedsync run: the program's first queue.get()) took it for a thread
    # that could end the wait, and the deadlock was reported only at the
    # --hang-timeout (7 of 80 runs under load on 3.14).  configure() now
    # returns once the thread has marked itself internal.
    code = (
        "import tracedsync\n"
        "from _thread import get_ident\n"
        "from tracedsync._waits import waits\n"
        "tracedsync.configure(wait_warning=30)\n"
        "print(waits.others_exist(get_ident()))\n"
    )
    for _ in range(3):
        result = run_python(code)
        assert result.stdout == "False\n", result.stderr
