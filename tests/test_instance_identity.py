"""Instance identity: locks made on one line are told apart in every report,
event, table and timeline track (``primitive_instance``)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

import tracedsync
from helpers import PATIENCE, wait_until, wait_until_blocked
from tracedsync._cli import summary as _summary
from tracedsync._cli.summary import Summary
from tracedsync._cli.timeline import LOCKS_PROCESS_OFFSET, write_timeline
from tracedsync._cli.tracefile import check_event
from tracedsync._watchdog import watchdog

HERE = "tests/test_instance_identity.py"

#: The classic two-account transfer: each thread holds its source account's
#: lock and waits for its target's, in opposite orders, so they deadlock.
BANK = """\
import threading

class Account:
    def __init__(self, balance):
        self.lock = threading.Lock()
        self.balance = balance

def transfer(source, target, amount, ready):
    with source.lock:
        ready.wait()
        with target.lock:
            source.balance -= amount
            target.balance += amount

a, b = Account(100), Account(100)
ready = threading.Barrier(2)
one = threading.Thread(target=transfer, args=(a, b, 10, ready), name="A")
two = threading.Thread(target=transfer, args=(b, a, 10, ready), name="B")
one.start(); two.start(); one.join(); two.join()
"""


def _run(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracedsync", *arguments],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=PATIENCE * 3,
        check=False,
    )


def _two_locks() -> list[tracedsync.Lock]:
    return [tracedsync.Lock() for _ in range(2)]  # one line, two instances


def test_locks_made_on_one_line_are_numbered_in_events() -> None:
    line = _two_locks.__code__.co_firstlineno + 1
    first, second = _two_locks()
    named = tracedsync.Lock(name="accounts")
    with tracedsync.record() as trace:
        for lock in (first, second, named):
            with lock:
                pass
    instances = [trace.events("lock.acquire", primitive=lock)[0] for lock in (first, second)]
    # The name (the class key) is kept; the instance tells them apart.
    assert {event["primitive_name"] for event in instances} == {f"Lock@{HERE}:{line}"}
    assert [event["primitive_instance"] for event in instances] == [
        f"Lock@{HERE}:{line}#1",
        f"Lock@{HERE}:{line}#2",
    ]
    # A given name stays as given.
    assert trace.events("lock.acquire", primitive=named)[0]["primitive_instance"] == "accounts"
    assert repr(first).startswith(f"<unlocked tracedsync.Lock object 'Lock@{HERE}:{line}' at")


def test_other_primitives_are_numbered_too() -> None:
    events = [tracedsync.Event() for _ in range(2)]
    with tracedsync.record() as trace:
        for event in events:
            event.set()
    labels = [trace.events("event.set", primitive=item)[0]["primitive_instance"] for item in events]
    assert labels[0].endswith("#1") and labels[1].endswith("#2")
    assert labels[0].startswith("Event@") and labels[0][:-2] == labels[1][:-2]


def test_the_bank_deadlock_names_both_accounts_locks_in_report_and_table(tmp_path: Path) -> None:
    (tmp_path / "bank.py").write_text(BANK)
    result = _run(tmp_path, "run", "--trace", "t.jsonl", "bank.py")
    assert result.returncode == 86, result.stderr
    report = result.stderr
    waits = {
        line.strip()
        for line in report.splitlines()
        if line.strip().startswith(("thread 'A' waits for", "thread 'B' waits for"))
    }
    assert waits == {
        "thread 'A' waits for Lock 'Lock@bank.py:5#2' at bank.py:11 (in transfer)",
        "thread 'B' waits for Lock 'Lock@bank.py:5#1' at bank.py:11 (in transfer)",
    }
    # The summary: one row per lock, and the inversion is not "none".
    summary = report[report.index("tracedsync: ") :]
    rows = [line.split()[0] for line in summary.splitlines() if line.startswith("    Lock@bank")]
    assert sorted(rows) == ["Lock@bank.py:5#1", "Lock@bank.py:5#2"]
    assert "  lock-order inversions: none besides the 1 deadlock above" in summary
    # The events name the instances, and report reads them back the same.
    cycle = next(
        json.loads(line)
        for line in (tmp_path / "t.jsonl").read_text().splitlines()
        if '"deadlock.cycle"' in line
    )
    assert sorted(entry["waits_for_instance"] for entry in cycle["cycle"]) == [
        "Lock@bank.py:5#1",
        "Lock@bank.py:5#2",
    ]
    assert {entry["waits_for"] for entry in cycle["cycle"]} == {"Lock@bank.py:5"}
    reread = _run(tmp_path, "report", "t.jsonl").stdout
    assert "Lock@bank.py:5#1  bank.py:5" in reread and "Lock@bank.py:5#2  bank.py:5" in reread


def _transfer(source: tracedsync.Lock, target: tracedsync.Lock) -> None:
    with source, target:
        pass


def _in_thread(function: Any, *arguments: Any) -> None:
    thread = threading.Thread(target=function, args=arguments)
    thread.start()
    thread.join()


def test_an_inversion_between_two_locks_of_one_class_names_both() -> None:
    accounts = [tracedsync.Lock() for _ in range(2)]
    line = test_an_inversion_between_two_locks_of_one_class_names_both.__code__.co_firstlineno + 1
    site = f"Lock@{HERE}:{line}"
    with tracedsync.record() as trace:
        _in_thread(_transfer, accounts[0], accounts[1])
        _in_thread(_transfer, accounts[1], accounts[0])  # the opposite order
    (inversion,) = trace.events("lock_order.inversion")
    headline = inversion["message"].splitlines()[0]
    assert headline == (
        f"Possible deadlock: lock-order inversion between Lock '{site}#1' and "
        f"Lock '{site}#2' (taken in opposite orders)."
    )
    chain = inversion["chain"]
    assert {(edge["before_instance"], edge["after_instance"]) for edge in chain} == {
        (f"{site}#1", f"{site}#2"),
        (f"{site}#2", f"{site}#1"),
    }
    # The class key stays the creation site, for both locks.
    assert {edge["before_class"] for edge in chain} == {site}
    summary = Summary()
    for event in trace.events():
        summary.add_event(event)
    lines = summary.render(full=False).splitlines()
    # The summary's headline is the whole first sentence, never cut (wrapped).
    start = lines.index("  lock-order inversions: 1") + 1
    shown = [line.strip() for line in lines[start : start + 3]]
    end = next(i for i, line in enumerate(shown) if line.endswith("."))
    assert " ".join(shown[: end + 1]) == headline


def test_the_summary_headline_is_a_whole_sentence_wrapped() -> None:
    message = "A first line that stops\nin the middle of its sentence.\nDetails follow."
    assert _summary._first_sentence(message) == (
        "A first line that stops in the middle of its sentence."
    )
    long = "word " * 40 + "end.\nmore"
    wrapped = _summary._first_sentence(long).splitlines()
    assert len(wrapped) == 3 and all(len(line) <= 100 for line in wrapped)
    assert wrapped[1].startswith("  ")


def test_a_stranded_wait_names_the_instance() -> None:
    locks = [tracedsync.Lock() for _ in range(2)]
    line = test_a_stranded_wait_names_the_instance.__code__.co_firstlineno + 1
    never = tracedsync.Event(name="never-set")
    holding = threading.Event()

    def holder() -> None:
        with locks[1]:
            holding.set()
            never.wait()

    holder_thread = tracedsync.Thread(target=holder, name="holder")
    holder_thread.start()
    holding.wait()
    wait_until_blocked(holder_thread.ident)
    client = tracedsync.Thread(
        target=lambda: locks[1].acquire() and locks[1].release(), name="client"
    )
    client.start()
    wait_until_blocked(client.ident)
    with pytest.raises(tracedsync.DeadlockError) as caught:
        client.join()
    assert f"thread 'client' waits for Lock 'Lock@{HERE}:{line}#2'" in str(caught.value)
    never.set()
    client.join()
    holder_thread.join()
    assert caught.value.report is not None


def test_the_watchdog_names_the_instance() -> None:
    locks = [tracedsync.Lock() for _ in range(2)]
    line = test_the_watchdog_names_the_instance.__code__.co_firstlineno + 1
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with locks[0]:
            holding.set()
            release.wait()

    holder = tracedsync.Thread(target=hold, name="holder")
    holder.start()
    holding.wait()
    try:
        with tracedsync.record() as trace:
            tracedsync.configure(wait_warning=0.05)
            client = tracedsync.Thread(
                target=lambda: locks[0].acquire() and locks[0].release(), name="client"
            )
            client.start()
            wait_until(lambda: trace.events("wait.long"), "the watchdog reports the wait")
            release.set()
            client.join()
            holder.join()
    finally:
        tracedsync.configure(wait_warning=0)
    (event,) = trace.events("wait.long", primitive=locks[0])
    assert event["primitive_instance"] == f"Lock@{HERE}:{line}#1"
    assert f"for Lock 'Lock@{HERE}:{line}#1' at" in event["message"]
    assert not watchdog.running


def test_the_console_puts_a_reports_data_on_its_header_not_after_its_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    tracedsync.configure(log_level="warning", log_format="console")
    accounts = [tracedsync.Lock() for _ in range(2)]
    _in_thread(_transfer, accounts[0], accounts[1])
    _in_thread(_transfer, accounts[1], accounts[0])
    lines = capsys.readouterr().err.splitlines()
    start = next(i for i, line in enumerate(lines) if "lock_order.inversion" in line)
    header, text = lines[start], lines[start + 1 :]
    assert "primitive_instance=" in header and "primitive_kind=Lock" in header
    assert text[0].startswith("Possible deadlock: lock-order inversion between")
    assert text[-1] == "Take these locks in one consistent order everywhere."
    assert not any("primitive_kind=" in line for line in text)


def _event(seq: int, name: str, instance: str | None, **fields: Any) -> dict[str, Any]:
    event = {
        "schema": 1,
        "seq": seq,
        "time_ns": 1_000 * seq,
        "event": name,
        "level": "debug",
        "pid": 7,
        "thread_id": 1,
        "thread_name": "worker",
        "thread_token": 1,
        "primitive_kind": "Lock",
        "primitive_id": 100 + seq % 2,
        "primitive_name": "accounts",
        "primitive_created": "bank.py:5",
        "file": None,
        "line": None,
        "function": None,
        **fields,
    }
    if instance is not None:
        event["primitive_instance"] = instance
    return event


def test_the_table_tells_apart_two_locks_given_one_name() -> None:
    summary = Summary()
    for seq in (1, 2):  # two live locks (ids 101, 100), both named "accounts"
        summary.add_event(_event(seq, "lock.acquire", "accounts", outcome="acquired"))
    text = summary.render()
    assert "    accounts (1)  bank.py:5" in text and "    accounts (2)  bank.py:5" in text


def test_traces_written_before_primitive_instance_still_read() -> None:
    old = _event(1, "lock.acquire", None, outcome="acquired")
    assert check_event(old, "line 1") is old  # not a required field
    summary = Summary()
    summary.add_event(old)
    assert "    accounts  bank.py:5" in summary.render()
    with pytest.raises(Exception, match="primitive_instance"):
        check_event(_event(1, "lock.acquire", None, primitive_instance=3), "line 1")


def test_a_lock_still_held_at_the_end_is_drawn_to_the_end_of_the_timeline() -> None:
    locks = [tracedsync.Lock() for _ in range(2)]
    line = test_a_lock_still_held_at_the_end_is_drawn_to_the_end_of_the_timeline.__code__
    site = f"Lock@{HERE}:{line.co_firstlineno + 1}"
    with tracedsync.record() as trace:
        with locks[0]:
            pass
        locks[1].acquire()  # never released: held when the trace ends
        tracedsync.Event(name="later").set()
    locks[1].release()
    output = io.StringIO()
    write_timeline(trace.events(), output)
    slices = [
        item
        for item in json.loads(output.getvalue())["traceEvents"]
        if item["ph"] == "X" and item["pid"] >= LOCKS_PROCESS_OFFSET
    ]
    tracks = {
        item["args"]["name"]: item["tid"]
        for item in json.loads(output.getvalue())["traceEvents"]
        if item["ph"] == "M" and item["name"] == "thread_name"
    }
    assert f"Lock '{site}#1'" in tracks and f"Lock '{site}#2'" in tracks
    (still,) = (item for item in slices if item["args"].get("still_held"))
    assert still["tid"] == tracks[f"Lock '{site}#2'"]
    assert still["name"] == "held by 'MainThread' (still held at the end)"
    last = max(item["ts"] for item in json.loads(output.getvalue())["traceEvents"] if "ts" in item)
    assert still["ts"] + still["dur"] == pytest.approx(last, abs=0.002)
    released = [item for item in slices if not item["args"].get("still_held")]
    assert [item["tid"] for item in released] == [tracks[f"Lock '{site}#1'"]]


def test_run_timeline_draws_the_deadlocked_locks_to_the_end(tmp_path: Path) -> None:
    (tmp_path / "bank.py").write_text(textwrap.dedent(BANK))
    result = _run(tmp_path, "run", "--timeline", "t.json", "bank.py")
    assert result.returncode == 86, result.stderr
    document = json.loads((tmp_path / "t.json").read_text())
    still = {
        item["args"]["primitive_instance"]
        for item in document["traceEvents"]
        if item["ph"] == "X" and item["args"].get("still_held")
    }
    assert "Lock@bank.py:5#1" in still or "Lock@bank.py:5#2" in still
