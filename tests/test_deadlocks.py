"""Actual deadlocks: wait-for cycles between threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import tracedsync
from helpers import wait_until, wait_until_blocked
from tracedsync._waits import waits


def _run_all(*bodies: Callable[[], None], names: tuple[str, ...] = ()) -> list[BaseException]:
    """Run each body in its own tracedsync.Thread; return what they raised."""
    errors: list[BaseException] = []

    def guarded(body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except BaseException as error:
                errors.append(error)

        return run

    threads = [
        tracedsync.Thread(target=guarded(body), name=names[n] if names else None)
        for n, body in enumerate(bodies)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.parametrize("make_lock", [tracedsync.Lock, tracedsync.RLock])
def test_two_threads_in_opposite_order_one_victim_the_other_proceeds(
    make_lock: Callable[..., Any],
) -> None:
    first, second = make_lock(name="accounts"), make_lock(name="audit-log")
    both_hold_one = tracedsync.Barrier(2)
    finished: list[str] = []

    def transfer() -> None:
        with first:
            both_hold_one.wait()
            with second:
                finished.append("transfer")

    def audit() -> None:
        with second:
            both_hold_one.wait()
            with first:
                finished.append("audit")

    errors = _run_all(transfer, audit, names=("transfer", "audit"))
    assert len(errors) == 1 and isinstance(errors[0], tracedsync.DeadlockError)
    assert len(finished) == 1  # the survivor got both locks once the victim unwound
    error = errors[0]
    report = error.report
    assert isinstance(report, tracedsync.Report) and report.kind == "deadlock"
    text = str(error)
    assert text.startswith("Found a deadlock: 2 threads wait for each other in a cycle")
    assert "thread 'transfer' waits for" in text and "thread 'audit' waits for" in text
    assert (
        f"{make_lock.__name__} 'accounts'" in text and f"{make_lock.__name__} 'audit-log'" in text
    )
    assert "tests/test_deadlocks.py:" in text
    assert "tracedsync/_" not in text
    victim = report.details["cycle"][0]["thread"]
    assert text.rstrip().endswith(f"The wait of thread {victim!r} closes the cycle.")
    assert not waits.snapshot()[1]


def test_cycle_of_three_threads() -> None:
    locks = [tracedsync.Lock(name=f"L{n}") for n in range(3)]
    all_hold_one = tracedsync.Barrier(3)

    def body(n: int) -> Callable[[], None]:
        def run() -> None:
            with locks[n]:
                all_hold_one.wait()
                with locks[(n + 1) % 3]:
                    pass

        return run

    errors = _run_all(body(0), body(1), body(2))
    assert [type(e) for e in errors] == [tracedsync.DeadlockError]
    assert str(errors[0]).startswith("Found a deadlock: 3 threads")
    assert len(errors[0].report.details["cycle"]) == 3


def test_join_cycle_main_holds_what_the_joined_thread_waits_for() -> None:
    lock = tracedsync.Lock(name="config")
    lock.acquire()
    worker = tracedsync.Thread(target=lambda: lock.acquire() and lock.release(), name="loader")
    worker.start()
    wait_until_blocked(worker.ident)
    with pytest.raises(tracedsync.DeadlockError) as caught:
        worker.join()  # with threading this hangs forever
    assert "waits for Thread 'loader'" in str(caught.value)
    assert "thread 'loader' waits for Lock 'config'" in str(caught.value)
    lock.release()
    worker.join()


def test_threads_joining_each_other() -> None:
    joined: dict[str, tracedsync.Thread] = {}
    both_started = tracedsync.Barrier(2)
    errors: list[BaseException] = []

    def join_other(me: str, other: str) -> None:
        both_started.wait()
        try:
            joined[other].join()
        except tracedsync.DeadlockError as error:
            errors.append(error)

    joined["a"] = tracedsync.Thread(target=join_other, args=("a", "b"))
    joined["b"] = tracedsync.Thread(target=join_other, args=("b", "a"))
    for thread in joined.values():
        thread.start()
    for thread in joined.values():
        thread.join()
    assert len(errors) == 1


def test_condition_reacquire_closing_a_cycle() -> None:
    condition = tracedsync.Condition(name="ready")
    other = tracedsync.Lock(name="other")
    waiting = threading.Event()
    errors: list[BaseException] = []

    def waiter() -> None:
        with other:
            try:
                with condition:
                    waiting.set()
                    condition.wait()  # notified, then must re-acquire the RLock
            except RuntimeError as error:
                errors.append(error)

    thread = tracedsync.Thread(target=waiter, name="waiter")
    thread.start()
    waiting.wait()
    wait_until_blocked(thread.ident)
    with condition:
        condition.notify()
        # Wait until the notified waiter blocks re-acquiring the condition's lock.
        wait_until(
            lambda: getattr(waits.get(thread.ident), "primitive", None) is condition._lock,
            "the waiter re-acquires the condition's lock",
        )
        # The waiter holds `other` and waits for our RLock: taking `other`
        # would close the cycle, and it is the main thread's wait that does.
        with pytest.raises(tracedsync.DeadlockError, match="waits for Lock 'other'"):
            other.acquire()
    thread.join()
    assert errors == []


def test_timed_and_non_blocking_waits_never_raise() -> None:
    first, second = tracedsync.Lock(), tracedsync.Lock()
    both_hold_one = tracedsync.Barrier(2)
    outcomes: list[bool] = []

    def one() -> None:
        with first:
            both_hold_one.wait()
            outcomes.append(second.acquire(timeout=0.2))

    def two() -> None:
        with second:
            both_hold_one.wait()
            outcomes.append(first.acquire(blocking=False))

    assert _run_all(one, two) == []
    assert outcomes.count(True) <= 1


def test_warn_policy_reports_and_blocks_like_the_stdlib(capfd: pytest.CaptureFixture[str]) -> None:
    tracedsync.configure(on_deadlock="warn")
    lock = tracedsync.Lock(name="held-by-main")
    lock.acquire()
    worker = tracedsync.Thread(target=lambda: lock.acquire() and lock.release())
    worker.start()
    wait_until_blocked(worker.ident)
    # The cycle main -> worker (join) -> lock -> main is reported, then the
    # join blocks as the stdlib's would; a timed join lets the test go on.
    release = threading.Timer(0.2, lock.release)
    release.start()
    worker.join()
    release.join()
    assert "deadlock.cycle" in capfd.readouterr().err


class _Refused(Exception):
    pass


def test_callback_policy_per_primitive_receives_the_report() -> None:
    reports: list[tracedsync.Report] = []

    def refuse(report: tracedsync.Report) -> None:
        reports.append(report)
        raise _Refused(report.kind)  # a callback's exception reaches the victim

    first, second = tracedsync.Lock(name="x"), tracedsync.Lock(name="y")
    tracedsync.set_policy(first, deadlock=refuse)
    tracedsync.set_policy(second, deadlock=refuse)
    both_hold_one = tracedsync.Barrier(2)

    def one() -> None:
        with first:
            both_hold_one.wait()
            with second:
                pass

    def two() -> None:
        with second:
            both_hold_one.wait()
            with first:
                pass

    errors = _run_all(one, two)
    assert [type(error) for error in errors] == [_Refused]
    assert [report.kind for report in reports] == ["deadlock"]
    assert reports[0].signature == ("deadlock", "x", "y")
    tracedsync.set_policy(first, deadlock=None)  # back to the global policy
    with pytest.raises(ValueError, match="policy"):
        tracedsync.set_policy(first, deadlock="explode")
    with pytest.raises(ValueError, match="unknown finding"):
        tracedsync.set_policy(first, nonsense="warn")


def test_handoff_lock_is_never_reported_while_another_thread_could_release() -> None:
    handed = tracedsync.Lock(name="handed")
    handed.acquire()
    released_elsewhere = tracedsync.Thread(target=handed.release)
    released_elsewhere.start()
    released_elsewhere.join()  # now a handoff lock: anyone may release it
    handed.acquire()
    worker = tracedsync.Thread(target=lambda: handed.acquire() and handed.release())
    worker.start()
    wait_until_blocked(worker.ident)
    releaser = threading.Timer(0.1, handed.release)
    releaser.start()
    worker.join()  # the cycle goes through a handoff lock: no DeadlockError
    releaser.join()


def test_stranded_when_every_other_thread_is_blocked_forever() -> None:
    lock = tracedsync.Lock(name="db")
    never = tracedsync.Event(name="never-set")
    holding = threading.Event()

    def holder() -> None:
        with lock:
            holding.set()
            never.wait()  # nobody will set it: the lock is held forever

    holder_thread = tracedsync.Thread(target=holder, name="holder")
    holder_thread.start()
    holding.wait()
    wait_until_blocked(holder_thread.ident)
    client = tracedsync.Thread(target=lambda: lock.acquire() and lock.release(), name="client")
    client.start()
    wait_until_blocked(client.ident)
    with pytest.raises(tracedsync.DeadlockError) as caught:
        client.join()  # every other thread is blocked forever: this would hang
    message = str(caught.value)
    assert "every other thread is blocked forever or has exited" in message
    assert "thread 'client' waits for Lock 'db'" in message
    assert "thread 'holder' waits for Event 'never-set'" in message
    assert caught.value.report.details["blocked"]
    never.set()
    client.join()
    holder_thread.join()


def test_worker_reacquire_after_the_main_thread_finished() -> None:
    from helpers import run_python

    result = run_python(
        "import tracedsync\n"
        "lock = tracedsync.Lock()\n"
        "def work():\n"
        "    lock.acquire()\n"
        "    try:\n"
        "        lock.acquire()\n"
        "    except tracedsync.DeadlockError:\n"
        "        print('worker got DeadlockError')\n"
        "tracedsync.Thread(target=work).start()\n"
    )
    assert (result.returncode, result.stdout) == (0, "worker got DeadlockError\n")
