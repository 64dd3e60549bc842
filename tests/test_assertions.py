"""The assertion API: assert_held / assert_not_held, held_locks,
assert_no_locks_held, guarded_by and declared lock hierarchies."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import tracedsync
from tracedsync import _hierarchy, _lockorder
from tracedsync._lockorder import graph
from tracedsync._report import Report


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    graph.clear()
    _lockorder.thread_state().clear()
    yield
    graph.clear()
    tracedsync.configure(
        lock_order=True, on_inversion="warn", on_hierarchy="raise", on_unguarded="raise"
    )


def in_thread(body: Callable[[], Any], name: str = "other") -> Any:
    """Run ``body`` in a traced thread; return its result or raise its exception."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = body()
        except BaseException as error:  # handed back to the test thread
            outcome["error"] = error

    thread = tracedsync.Thread(target=run, name=name)
    thread.start()
    thread.join(20)
    assert not thread.is_alive()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


# -- assert_held / assert_not_held ------------------------------------------------


@pytest.mark.parametrize("make", [tracedsync.Lock, tracedsync.RLock])
def test_assert_held_and_not_held_in_the_holder_and_elsewhere(make: Any) -> None:
    lock = make(name="state")
    lock.assert_not_held()
    with pytest.raises(
        AssertionError,
        match=r"^\w*Lock 'state' is not held by thread "
        r"'MainThread': it is not locked$",
    ):
        lock.assert_held()
    with lock:
        lock.assert_held()
        with pytest.raises(
            AssertionError,
            match=r"is held by thread 'MainThread', acquired "
            r"at tests/test_assertions.py:\d+ \(in test_assert_held",
        ):
            lock.assert_not_held()
        error = None
        try:
            in_thread(lock.assert_held, name="checker")
        except AssertionError as caught:
            error = caught
        assert error is not None
        assert str(error).startswith(f"{lock._kind} 'state' is not held by thread 'checker': ")
        assert "it is held by thread 'MainThread', acquired at tests/test_assertions.py:" in str(
            error
        )
        in_thread(lock.assert_not_held)
    lock.assert_not_held()


def test_rlock_is_held_at_every_depth_and_not_during_a_condition_wait() -> None:
    lock = tracedsync.RLock(name="r")
    condition = tracedsync.Condition(lock)
    observed: list[bool] = []
    with lock, lock:
        lock.assert_held()

    def waiter() -> None:
        with condition:
            condition.wait_for(lambda: bool(observed))
            lock.assert_held()  # held again once wait() returns

    thread = tracedsync.Thread(target=waiter, name="waiter")
    with condition:
        thread.start()
    # The waiter holds the lock until wait() releases it; acquiring it here
    # proves it is released, and the waiter's wait() then no longer holds it.
    with condition:
        observed.append(True)
        condition.notify()
    thread.join(20)
    assert not thread.is_alive()


def test_a_lock_released_by_another_thread_is_no_longer_held() -> None:
    lock = tracedsync.Lock(name="handoff")
    lock.acquire()
    lock.assert_held()
    in_thread(lock.release)
    with pytest.raises(AssertionError, match="it is not locked"):
        lock.assert_held()


# -- held_locks / assert_no_locks_held ---------------------------------------------


def test_held_locks_lists_this_threads_locks_outermost_first() -> None:
    outer, middle, inner = (
        tracedsync.RLock(name="outer"),
        tracedsync.Lock(name="middle"),
        tracedsync.Lock(name="inner"),
    )
    assert tracedsync.held_locks() == []
    with outer, outer, middle, inner:
        assert tracedsync.held_locks() == [outer, middle, inner]
        assert in_thread(tracedsync.held_locks) == []
        middle.release()  # out of order
        assert tracedsync.held_locks() == [outer, inner]
        middle.acquire()
    assert tracedsync.held_locks() == []


def test_held_locks_skips_a_lock_another_thread_released() -> None:
    lock = tracedsync.Lock(name="passed-on")
    lock.acquire()
    in_thread(lock.release)
    assert tracedsync.held_locks() == []


def test_assert_no_locks_held_names_each_lock_and_its_site() -> None:
    tracedsync.assert_no_locks_held()
    first, second = tracedsync.Lock(name="first"), tracedsync.RLock(name="second")
    with first, second, pytest.raises(AssertionError) as caught:
        tracedsync.assert_no_locks_held()
    message = str(caught.value)
    lines = message.splitlines()
    assert lines[0] == "thread 'MainThread' holds 2 locks:"
    assert lines[1].startswith("  Lock 'first', acquired at tests/test_assertions.py:")
    assert lines[2].startswith("  RLock 'second', acquired at tests/test_assertions.py:")
    assert "(in test_assert_no_locks_held_names_each_lock_and_its_site)" in lines[2]
    tracedsync.assert_no_locks_held()


def test_held_locks_refuses_to_answer_without_lock_tracking() -> None:
    tracedsync.configure(lock_order=False)
    with pytest.raises(RuntimeError, match=r"needs lock tracking, which is off"):
        tracedsync.held_locks()
    with pytest.raises(RuntimeError, match=r"needs lock tracking"):
        tracedsync.assert_no_locks_held()
    lock = tracedsync.Lock()
    with lock:  # the per-lock assertions need no tracking
        lock.assert_held()


# -- guarded_by --------------------------------------------------------------------


class Account:
    balance: int = tracedsync.guarded_by("_lock")
    history: list[int] = tracedsync.guarded_by("_lock")

    def __init__(self, balance: int = 0) -> None:
        self._lock = tracedsync.Lock(name="account")
        self.balance = balance  # construction is exempt
        self._start_history()

    def _start_history(self) -> None:
        self.history = [self.balance]  # still construction: called from __init__

    def deposit(self, amount: int) -> None:
        with self._lock:
            self.balance += amount
            self.history.append(amount)

    def racy_deposit(self, amount: int) -> None:
        self.balance += amount


def test_guarded_attribute_with_its_lock_and_during_construction() -> None:
    account = Account(10)
    account.deposit(5)
    in_thread(lambda: account.deposit(1))
    with account._lock:
        assert account.balance == 16
        assert account.history == [10, 5, 1]
    assert isinstance(Account.balance, object)
    assert repr(Account.__dict__["balance"]) == "<guarded_by('_lock') Account.balance>"


def test_unguarded_read_write_and_delete_raise_before_the_access() -> None:
    account = Account(10)
    with pytest.raises(tracedsync.UnguardedAccessError) as caught:
        account.racy_deposit(5)
    error = caught.value
    assert isinstance(error, AssertionError)
    assert (error.attribute, error.access, error.lock, error.thread_name) == (
        "Account.balance",
        "read",
        "account",
        "MainThread",
    )
    message = str(error)
    assert message.startswith(
        "Unguarded access: thread 'MainThread' read Account.balance at tests/test_assertions.py:"
    )
    assert "(in racy_deposit) without holding Lock 'account' (balance is guarded_by('_lock'));" in (
        message
    )
    assert "the lock is free." in message
    assert "Hold self._lock around every read and write of Account.balance." in message
    assert isinstance(error.report, Report) and error.report.kind == "unguarded"
    with pytest.raises(tracedsync.UnguardedAccessError, match=r"wrote Account\.balance"):
        account.balance = 0
    with pytest.raises(tracedsync.UnguardedAccessError, match=r"deleted Account\.history"):
        del account.history
    with account._lock:
        assert account.balance == 10  # nothing was written
        assert account.history == [10]


def test_a_data_race_in_another_thread_names_the_holder() -> None:
    account = Account()
    with account._lock, pytest.raises(tracedsync.UnguardedAccessError) as caught:
        in_thread(lambda: account.racy_deposit(1), name="racer")
    message = str(caught.value)
    assert message.startswith("Unguarded access: thread 'racer' read Account.balance")
    assert "it is held by thread 'MainThread' (acquired at tests/test_assertions.py:" in message


def test_warn_policy_records_the_access_and_lets_it_happen() -> None:
    tracedsync.configure(on_unguarded="warn")
    account = Account()
    with tracedsync.record() as trace:
        account.racy_deposit(3)
    with account._lock:
        assert account.balance == 3
    found = trace.events("guard.violation")
    assert [(event["access"], event["attribute"]) for event in found] == [
        ("read", "Account.balance"),
        ("write", "Account.balance"),
    ]
    assert all(event["level"] == "warning" for event in found)
    assert found[0]["primitive_name"] == "account"
    assert found[0]["function"] == "racy_deposit"
    assert str(found[0]["message"]).startswith("Unguarded access: thread 'MainThread' read")


def test_callable_policy_per_lock_receives_the_report() -> None:
    account = Account()
    reports: list[Report] = []
    tracedsync.set_policy(account._lock, unguarded=reports.append)
    account.racy_deposit(1)
    assert [report.details["access"] for report in reports] == ["read", "write"]
    with pytest.raises(tracedsync.UnguardedAccessError):
        Account().racy_deposit(1)


@dataclass
class Inventory:
    lock: Any = field(default_factory=lambda: tracedsync.RLock(name="inventory"))
    items: dict[str, int] = field(default_factory=dict)


class Guarded:
    """guarded_by with each kind of lock it accepts."""

    value: int = tracedsync.guarded_by("guard")

    def __init__(self, guard: Any) -> None:
        self.guard = guard
        self.value = 0


@pytest.mark.parametrize(
    "make",
    [
        tracedsync.Lock,
        tracedsync.RLock,
        tracedsync.Condition,
        lambda: tracedsync.Condition(tracedsync.Lock()),
        threading.RLock,
        threading.Lock,
        lambda: threading.Condition(threading.RLock()),
    ],
    ids=[
        "Lock",
        "RLock",
        "Condition",
        "Condition(Lock)",
        "threading.RLock",
        "threading.Lock",
        "threading.Condition",
    ],
)
def test_every_kind_of_lock_guards(make: Callable[[], Any]) -> None:
    guarded = Guarded(make())
    with guarded.guard:
        guarded.value += 1
    with pytest.raises(tracedsync.UnguardedAccessError):
        guarded.value += 1
    with guarded.guard:
        assert guarded.value == 1


def test_exact_owner_check_except_for_a_plain_threading_lock() -> None:
    exact = Guarded(threading.RLock())
    with exact.guard, pytest.raises(tracedsync.UnguardedAccessError):
        in_thread(lambda: exact.value)
    owner_unknown = Guarded(threading.Lock())
    with owner_unknown.guard:  # locked by someone: all a plain Lock can tell
        assert in_thread(lambda: owner_unknown.value) == 0


def test_guarded_by_misuse_is_reported_clearly() -> None:
    class NoLock:
        value: int = tracedsync.guarded_by("_lock")

    with pytest.raises(AttributeError, match=r"NoLock.value is guarded_by\('_lock'\), but"):
        _ = NoLock().value

    class NotALock:
        value: int = tracedsync.guarded_by("_lock")

        def __init__(self) -> None:
            self._lock = 42

    with pytest.raises(TypeError, match="is not a lock"):
        _ = NotALock().value

    class Slotted:
        __slots__ = ("_lock",)
        value: int = tracedsync.guarded_by("_lock")

        def __init__(self) -> None:
            self._lock = tracedsync.Lock()

    slotted = Slotted()
    with slotted._lock, pytest.raises(TypeError, match=r"needs instances with a __dict__"):
        slotted.value = 1
    with pytest.raises(TypeError, match="name of the lock attribute"):
        tracedsync.guarded_by("not an identifier")

    inventory = Inventory()
    assert inventory.items == {}  # a dataclass without guarded fields is untouched


def test_the_off_switch_at_class_creation_leaves_a_plain_attribute() -> None:
    tracedsync.disable()
    try:

        class Plain:
            value: int = tracedsync.guarded_by("_lock")

            def __init__(self) -> None:
                self._lock = tracedsync.Lock()

    finally:
        tracedsync.enable()
    assert "value" not in Plain.__dict__
    plain = Plain()
    plain.value = 1  # no lock, no check
    assert plain.value == 1


# -- declared lock hierarchies ----------------------------------------------------------


def test_declared_order_violation_is_reported_at_the_first_wrong_acquisition() -> None:
    accounts, ledger = tracedsync.Lock(name="accounts"), tracedsync.Lock(name="ledger")
    tracedsync.declare_order(accounts, ledger)
    with tracedsync.record() as trace, ledger:
        # The opposite order (accounts, then ledger) never happened.
        with pytest.raises(tracedsync.LockOrderError) as caught:
            accounts.acquire()
        assert not accounts.locked()  # the acquire was undone
        assert tracedsync.held_locks() == [ledger]
    error = caught.value
    message = str(error)
    lines = message.splitlines()
    assert lines[0].startswith(
        "Lock hierarchy violated: thread 'MainThread' acquires Lock 'accounts' at "
        "tests/test_assertions.py:"
    )
    assert lines[1].startswith(
        "  while holding Lock 'ledger', acquired at tests/test_assertions.py:"
    )
    assert lines[2] == "  the declared order takes 'accounts' before 'ledger':"
    assert lines[3].startswith(
        "    declare_order('accounts', 'ledger') at tests/test_assertions.py:"
    )
    assert lines[4].startswith("  stack: tests/test_assertions.py:")
    assert lines[-1] == "Acquire 'accounts' before 'ledger', or release 'ledger' first."
    assert (error.primitive, error.thread_name) == ("accounts", "MainThread")
    assert isinstance(error.report, Report) and error.report.kind == "hierarchy"
    assert error.report.details["held"] == "ledger"
    [event] = trace.events("lock_order.hierarchy")
    assert event["level"] == "warning" and event["message"] == message
    assert trace.events("lock_order.inversion") == []
    with accounts, ledger:  # the declared order is fine
        pass


def test_declared_orders_chain_and_contradictions_are_refused() -> None:
    a, b, c = (tracedsync.RLock(name=name) for name in "abc")
    tracedsync.declare_order(a, b)
    tracedsync.declare_order(b, c)
    with c, pytest.raises(tracedsync.LockOrderError) as caught:
        a.acquire()
    lines = str(caught.value).splitlines()
    assert lines[2] == "  the declared order takes 'a' before 'c':"
    assert lines[3].startswith("    declare_order('a', 'b') at ")
    assert lines[4].startswith("    declare_order('b', 'c') at ")
    with pytest.raises(ValueError, match="'c' before 'a' contradicts an earlier declaration"):
        tracedsync.declare_order(c, a)
    with a, b, c:
        pass
    with pytest.raises(TypeError, match="at least two locks"):
        tracedsync.declare_order(a)
    with pytest.raises(ValueError, match="same lock twice"):
        tracedsync.declare_order(a, a)
    with pytest.raises(TypeError, match=r"needs tracedsync\.Lock or tracedsync\.RLock"):
        tracedsync.declare_order(a, threading.Lock())


def test_levels_order_locks_and_equal_levels_are_free() -> None:
    table = tracedsync.Lock(name="table")
    rows = [tracedsync.Lock(name=f"row-{index}") for index in range(2)]
    tracedsync.declare_level(table, 1)
    for row in rows:
        tracedsync.declare_level(row, 2)
    with table, rows[0], rows[1]:
        pass
    with rows[1], rows[0]:  # one level: not ordered by the hierarchy
        pass
    with rows[0], pytest.raises(tracedsync.LockOrderError) as caught:
        table.acquire()
    assert "'table' has level 1 (declared at tests/test_assertions.py:" in str(caught.value)
    assert "and 'row-0' level 2 (declared at tests/test_assertions.py:" in str(caught.value)
    assert "lower levels are acquired first" in str(caught.value)
    with pytest.raises(TypeError, match="int level"):
        tracedsync.declare_level(table, "high")  # type: ignore[arg-type]


def test_hierarchy_in_another_thread_and_through_warn_and_callable_policies() -> None:
    first, second = tracedsync.Lock(name="first"), tracedsync.Lock(name="second")
    tracedsync.declare_order(first, second)

    def wrong_order() -> None:
        with second, first:
            pass

    with pytest.raises(tracedsync.LockOrderError, match="thread 'worker' acquires Lock 'first'"):
        in_thread(wrong_order, name="worker")
    tracedsync.configure(on_hierarchy="warn")
    with tracedsync.record() as trace:
        wrong_order()
        wrong_order()
    assert len(trace.events("lock_order.hierarchy")) == 2  # every wrong acquisition
    reports: list[Report] = []
    tracedsync.set_policy(first, hierarchy=reports.append)
    wrong_order()
    assert [report.details["acquired"] for report in reports] == ["first"]


def test_acquisitions_that_cannot_block_forever_report_but_never_raise() -> None:
    first, second = tracedsync.Lock(name="first"), tracedsync.Lock(name="second")
    tracedsync.declare_order(first, second)
    with tracedsync.record() as trace, second:
        assert first.acquire(blocking=False)
        first.release()
        assert first.acquire(timeout=1)
        first.release()
    assert len(trace.events("lock_order.hierarchy")) == 2


def test_declarations_hold_locks_weakly() -> None:
    before, after = tracedsync.Lock(), tracedsync.Lock()
    tracedsync.declare_order(before, after)
    keys = {id(before), id(after)}
    assert keys <= set(_hierarchy.ranks)
    del before, after
    gc.collect()
    assert not keys & set(_hierarchy.ranks)


def test_a_long_lived_lock_declared_before_many_short_lived_ones_stays_bounded() -> None:
    table = tracedsync.Lock(name="table")
    for _ in range(1000):
        row = tracedsync.Lock(name="row")
        tracedsync.declare_order(table, row)
        with table, row:
            pass
        del row
    gc.collect()
    assert len(_hierarchy.ranks[id(table)].after) <= 128
    survivor = tracedsync.Lock(name="survivor")
    tracedsync.declare_order(table, survivor)
    with survivor, pytest.raises(tracedsync.LockOrderError):
        table.acquire()


def test_off_switch_makes_declarations_no_ops() -> None:
    tracedsync.disable()
    try:
        plain = [tracedsync.Lock(), tracedsync.Lock()]
        tracedsync.declare_order(*plain)
        tracedsync.declare_level(plain[0], 1)
    finally:
        tracedsync.enable()
    assert not {id(lock) for lock in plain} & set(_hierarchy.ranks)
