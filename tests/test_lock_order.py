"""Potential deadlocks: lock-order inversions, reported even when this run
did not deadlock."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tracedsync
from tracedsync import _lockorder
from tracedsync._lockorder import graph


@pytest.fixture(autouse=True)
def _fresh_graph() -> Iterator[None]:
    graph.clear()
    # Earlier tests may leave locks acquired and never released by this
    # thread (CPython's own suite does, on purpose): start from no held lock.
    _lockorder.thread_state().clear()
    yield
    graph.clear()
    tracedsync.configure(on_inversion="warn", lock_order=True)


def _in_thread(body: object, name: str) -> None:
    thread = tracedsync.Thread(target=body, name=name)  # type: ignore[arg-type]
    thread.start()
    thread.join()


def _inversions(trace: tracedsync.Trace) -> list[dict[str, object]]:
    return trace.events("lock_order.inversion")


def test_opposite_orders_in_two_threads_are_reported_once() -> None:
    accounts = tracedsync.Lock(name="accounts")
    audit = tracedsync.Lock(name="audit")

    def transfer() -> None:
        with accounts, audit:
            pass

    def report() -> None:
        with audit, accounts:
            pass

    with tracedsync.record() as trace:
        _in_thread(transfer, "transfer")
        _in_thread(report, "report")
        _in_thread(report, "report-again")  # the same cycle: not reported twice
        _in_thread(transfer, "transfer-again")
    found = _inversions(trace)
    assert len(found) == 1
    event = found[0]
    assert event["level"] == "warning" and event["thread_name"] == "report"
    message = str(event["message"])
    assert message.startswith("Possible deadlock: lock-order inversion")
    assert "thread 'report' acquires Lock 'accounts' at tests/test_lock_order.py:" in message
    assert "while holding 'audit', acquired at tests/test_lock_order.py:" in message
    assert "'accounts' -> 'audit': thread 'transfer' acquired 'audit'" in message
    assert "tracedsync/_" not in message
    chain = event["chain"]
    assert [(edge["before"], edge["after"]) for edge in chain] == [
        ("audit", "accounts"),
        ("accounts", "audit"),
    ]
    assert all(edge["stack"] for edge in chain)


def test_consistent_order_rlock_recursion_and_conditions_are_not_reported() -> None:
    outer, inner = tracedsync.RLock(name="outer"), tracedsync.Lock(name="inner")
    condition = tracedsync.Condition(name="ready")
    items: list[int] = []

    def producer() -> None:
        for item in range(50):
            with outer, outer, inner:
                pass
            with condition:
                items.append(item)
                condition.notify()

    with tracedsync.record() as trace:
        thread = tracedsync.Thread(target=producer)
        thread.start()
        with condition:
            condition.wait_for(lambda: len(items) == 50, timeout=20)
        thread.join()
        with outer, inner:
            pass
    assert _inversions(trace) == []


def test_a_common_gate_lock_makes_the_cycle_harmless() -> None:
    gate = tracedsync.Lock(name="gate")
    first, second = tracedsync.Lock(name="first"), tracedsync.Lock(name="second")
    with tracedsync.record() as trace:
        with gate, first, second:
            pass
        with gate, second, first:
            pass
    assert _inversions(trace) == []
    # Without the gate, the same order is reported.
    with tracedsync.record() as trace, second, first:
        pass
    assert len(_inversions(trace)) == 1


def test_handoff_locks_are_kept_out_of_the_order_graph() -> None:
    handed = tracedsync.Lock(name="handed")
    other = tracedsync.Lock(name="other")
    handed.acquire()
    _in_thread(handed.release, "releaser")  # a handoff
    with tracedsync.record() as trace:
        with handed, other:
            pass
        with other, handed:
            pass
    assert _inversions(trace) == []


def test_locks_of_one_class_are_ordered_by_instance() -> None:
    accounts = [tracedsync.Lock(name=f"account-{n}") for n in range(3)]
    with tracedsync.record() as trace:
        with accounts[0], accounts[1]:
            pass
        with accounts[1], accounts[2]:
            pass
    assert _inversions(trace) == []  # same class, consistent instance order
    with tracedsync.record() as trace, accounts[1], accounts[0]:
        pass
    found = _inversions(trace)
    assert len(found) == 1
    assert "'account-0' -> 'account-1'" in str(found[0]["message"])


def test_dead_locks_leave_the_instance_graph() -> None:
    def nest_two() -> None:
        pair = [tracedsync.Lock() for _ in range(2)]
        with pair[0], pair[1]:
            pass

    nest_two()
    assert len(graph.edges) == 1
    gc.collect()
    with tracedsync.Lock(), tracedsync.RLock():  # the next new chain purges them
        pass
    assert all(not isinstance(edge[0], int) for edge in graph.edges)


def test_raise_policy_refuses_the_acquire_and_leaves_the_lock_free() -> None:
    tracedsync.configure(on_inversion="raise")
    first, second = tracedsync.Lock(name="first"), tracedsync.RLock(name="second")
    with first, second:
        pass
    with second:
        with pytest.raises(tracedsync.LockOrderError, match="lock-order inversion") as caught:
            first.acquire()
        assert not first.locked()
        assert isinstance(caught.value, tracedsync.DeadlockError)
        assert caught.value.report.kind == "inversion"
    # A non-blocking or timed acquire is reported but never raises.
    graph.clear()
    with first, second:
        pass
    with second:
        assert first.acquire(timeout=1) is True
        first.release()


def test_callback_policy_per_lock() -> None:
    reports: list[tracedsync.Report] = []
    first, second = tracedsync.Lock(name="first"), tracedsync.Lock(name="second")
    tracedsync.set_policy(first, inversion=reports.append)
    with first, second:
        pass
    with second, first:
        pass
    assert [report.kind for report in reports] == ["inversion"]
    assert reports[0].signature == ("inversion", ("first", "second"), ("second", "first"))


def test_the_graph_is_bounded_and_says_so_once() -> None:
    graph.max_edges = 3
    try:
        locks = [tracedsync.Lock(name=f"bounded-{n}") for n in range(6)]
        with tracedsync.record() as trace:
            for n in range(5):
                with locks[n], locks[n + 1]:
                    pass
        assert len(graph.edges) == 3
        assert len(trace.events("lock_order.graph_full")) == 1
    finally:
        graph.max_edges = 20_000


def test_lock_order_can_be_switched_off() -> None:
    tracedsync.configure(lock_order=False)
    first, second = tracedsync.Lock(), tracedsync.Lock()
    with tracedsync.record() as trace:
        with first, second:
            pass
        with second, first:
            pass
    assert _inversions(trace) == []


# One global order: any multi-thread program that takes locks only in that
# order never produces a report.  Reversing one pair produces exactly one.
orders = st.lists(st.lists(st.integers(0, 4), min_size=1, max_size=4), min_size=1, max_size=4)


def _run(programs: list[list[int]], locks: list[tracedsync.Lock]) -> None:
    def body(indices: list[int]) -> None:
        taken = [locks[index] for index in indices]
        for lock in taken:
            lock.acquire()
        for lock in reversed(taken):
            lock.release()

    threads = [threading.Thread(target=body, args=(program,)) for program in programs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@given(orders)
def test_programs_respecting_one_global_order_never_report(programs: list[list[int]]) -> None:
    graph.clear()
    locks = [tracedsync.Lock(name=f"ordered-{n}") for n in range(5)]
    ordered = [sorted(set(program)) for program in programs]
    with tracedsync.record() as trace:
        _run(ordered, locks)
    assert _inversions(trace) == []


@given(orders, st.data())
def test_one_reversed_pair_is_reported_exactly_once(
    programs: list[list[int]], data: st.DataObject
) -> None:
    graph.clear()
    locks = [tracedsync.Lock(name=f"ordered-{n}") for n in range(5)]
    first, second = sorted(data.draw(st.sets(st.integers(0, 4), min_size=2, max_size=2)))
    ordered = [sorted(set(program)) for program in programs]
    with tracedsync.record() as trace:
        _run([*ordered, [first, second]], locks)
        _run([[second, first]], locks)
        _run([[second, first]], locks)  # the same cycle again: no second report
    found = _inversions(trace)
    assert len(found) == 1
    assert {(e["before"], e["after"]) for e in found[0]["chain"]} >= {
        (f"ordered-{second}", f"ordered-{first}")
    }


def test_known_orders_of_locks_made_at_one_site_describe_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Locks created on one line are ordered by instance, so every nested
    # acquire of them goes through the graph; describing the call site (a
    # path and line lookup, a thread name) is for new edges only: it made
    # such pairs about 85x a threading.Lock pair.
    first, second = (tracedsync.Lock() for _ in range(2))
    with first, second:
        pass  # the edge is new here
    described: list[object] = []
    original = _lockorder.describe_offset

    def counting(*args: object) -> object:
        described.append(args)
        return original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_lockorder, "describe_offset", counting)
    for _ in range(100):
        with first, second:
            pass
    assert described == []
