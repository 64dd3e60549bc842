"""One wait protocol for the six blocking waits, one explorer interface.

Every wait that blocks (a contended lock acquire, ``Condition.wait``,
``Semaphore.acquire``, ``Event.wait``, ``Barrier.wait``, ``Thread.join``)
goes through ``_blocking.begin_blocked``: one ``.blocked`` event, one
registration, one outcome event.  The primitives reach the explorer only
through ``_control``.
"""

from __future__ import annotations

import ast
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import tracedsync
from helpers import PATIENCE, wait_until_blocked
from tracedsync import _control
from tracedsync._waits import waits

SOURCE = Path(tracedsync.__file__).parent


def _sources() -> list[tuple[Path, ast.AST]]:
    return [(path, ast.parse(path.read_text(encoding="utf-8"))) for path in SOURCE.rglob("*.py")]


def test_only_the_blocking_path_registers_waits() -> None:
    for path, tree in _sources():
        if path.name in {"_blocking.py", "_deadlock.py", "_waits.py"}:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in {"begin", "end"}:
                value = node.value
                assert not (isinstance(value, ast.Name) and value.id == "waits"), path


def test_no_primitive_spells_a_blocked_event() -> None:
    for path, tree in _sources():
        if path.name == "_blocking.py" or path.parent.name == "_cli":  # readers of traces
            continue
        # A sink may recognise the suffix (``event.endswith(".blocked")``, as
        # the explorer's step footprints do); only spelling one is the wait
        # protocol's job.
        readers = {
            id(node.args[0])
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "endswith"
            and node.args
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in readers
            ):
                assert not node.value.endswith(".blocked"), (path, node.value)


def test_only_the_package_root_imports_the_explorer() -> None:
    for path, tree in _sources():
        if path.parent.name == "_explore" or path.name == "__init__.py":
            continue  # the explorer itself, and the public facade
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or "", *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            assert not any(name.startswith("tracedsync._explore") for name in names), path


def test_the_explorer_is_installed_only_while_exploring() -> None:
    assert _control.explorer is None
    assert _control.controlled() is None
    seen: list[bool] = []

    def body() -> None:
        seen.append(_control.controlled() is not None)

    tracedsync.explore(body, runs=1)
    assert seen == [True]
    assert _control.explorer is None


def _six_waits() -> list[tuple[str, Callable[[], tuple[Callable[[], object], Callable[[], None]]]]]:
    """Each wait, as (a call that blocks, the action that ends the wait)."""

    def lock() -> tuple[Callable[[], object], Callable[[], None]]:
        held = tracedsync.Lock(name="w-lock")
        held.acquire()
        return (lambda: (held.acquire(), held.release())), held.release

    def condition() -> tuple[Callable[[], object], Callable[[], None]]:
        cond = tracedsync.Condition(name="w-cond")
        flag: list[bool] = []

        def wait() -> object:
            with cond:
                return cond.wait_for(lambda: flag)

        def end() -> None:
            with cond:
                flag.append(True)
                cond.notify_all()

        return wait, end

    def semaphore() -> tuple[Callable[[], object], Callable[[], None]]:
        sem = tracedsync.Semaphore(0, name="w-sem")
        return sem.acquire, sem.release

    def event() -> tuple[Callable[[], object], Callable[[], None]]:
        flag = tracedsync.Event(name="w-event")
        return flag.wait, flag.set

    def barrier() -> tuple[Callable[[], object], Callable[[], None]]:
        gate = tracedsync.Barrier(2, name="w-barrier")
        return gate.wait, lambda: threading.Thread(target=gate.wait).start()

    def join() -> tuple[Callable[[], object], Callable[[], None]]:
        release = threading.Event()
        worker = tracedsync.Thread(target=release.wait, name="w-joined")
        worker.start()
        return worker.join, release.set

    return [
        ("lock.acquire", lock),
        ("condition.wait", condition),
        ("semaphore.acquire", semaphore),
        ("event.wait", event),
        ("barrier.wait", barrier),
        ("thread.join", join),
    ]


@pytest.mark.parametrize(("event", "make"), _six_waits(), ids=[e for e, _ in _six_waits()])
def test_each_wait_is_registered_and_reported_the_same_way(
    event: str, make: Callable[[], tuple[Callable[[], object], Callable[[], None]]]
) -> None:
    registered: list[bool] = []
    with tracedsync.record() as trace:
        call, end = make()
        waiter = threading.Thread(target=call)
        waiter.start()
        wait_until_blocked(waiter.ident)
        registered.append(True)
        end()
        waiter.join(PATIENCE)
        assert not waiter.is_alive()
    assert waiter.ident not in waits.snapshot()[1]  # unregistered however it ended
    records = [r for r in trace.events() if r["thread_id"] == waiter.ident]
    names = [r["event"] for r in records]
    assert f"{event}.blocked" in names, names
    blocked = names.index(f"{event}.blocked")
    outcome = next(r for r in records[blocked + 1 :] if r["event"] == event)
    assert outcome["outcome"] not in {"error", "timed_out"}
    assert outcome["waited_ns"] >= 0
    assert registered == [True]
