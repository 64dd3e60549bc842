"""``tracedsync report`` and ``timeline`` on damaged, hostile and huge traces
(issue 17): one line per bad record naming it, exit status 2, the good records
still used, bounded memory, and never a traceback."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracedsync._cli import summary as _summary
from tracedsync._cli import tracefile as _tracefile
from tracedsync._cli.main import main
from tracedsync._cli.summary import Summary

COMMANDS = [("report",), ("timeline", "-o", "out.json")]


def event(seq: int, name: str = "lock.acquire", **fields: Any) -> dict[str, Any]:
    """A valid event of the documented schema."""
    return {
        "schema": 1,
        "seq": seq,
        "time_ns": 1_000_000 + 100 * seq,
        "event": name,
        "level": "debug",
        "pid": 7,
        "thread_id": 1001,
        "thread_name": "worker",
        "thread_token": 1,
        "primitive_kind": "Lock",
        "primitive_id": 5000,
        "primitive_name": "cache",
        "primitive_created": "app.py:3",
        "file": "app.py",
        "line": 10,
        "function": "work",
        **fields,
    }


def good_lines() -> list[str]:
    """An acquire that waited and its release: the shapes both readers use."""
    return [
        json.dumps(event(1, "lock.acquire.blocked", timeout=-1)),
        json.dumps(event(2, outcome="acquired", waited_ns=700, blocking=True, timeout=-1)),
        json.dumps(event(3, "lock.release", outcome="released", held_ns=900)),
    ]


def run(directory: Path, *command: str) -> tuple[int, str, str]:
    """``tracedsync COMMAND t.jsonl ...`` in this process: status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    arguments = [command[0], str(directory / "t.jsonl"), *command[1:]]
    if command[0] == "timeline":
        arguments[-1] = str(directory / "out.json")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(arguments)
    return status, out.getvalue(), err.getvalue()


def strict_json(text: str) -> Any:
    """Parse ``text`` as JSON proper: NaN and Infinity are not JSON."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} in the output")

    return json.loads(text, parse_constant=refuse)


BAD_LINES = {
    "held_ns as a string": (
        json.dumps(event(4, "lock.release", outcome="released", held_ns="900")),
        "field 'held_ns' has the wrong type (str; int or null expected)",
    ),
    "pid as a list": (
        json.dumps({**event(4), "pid": [7]}),
        "field 'pid' has the wrong type (array; int expected)",
    ),
    "primitive_created as an int": (
        json.dumps({**event(4), "primitive_created": 3}),
        "field 'primitive_created' has the wrong type (int; str or null expected)",
    ),
    "deep nesting": (
        json.dumps(event(4))[:-1] + ',"x":' + "[" * 100_000 + "]" * 100_000 + "}",
        "nested deeper than",
    ),
    "a 5,000-digit integer": (
        json.dumps(event(4))[:-1] + ',"waited_ns":' + "9" * 5000 + "}",
        "not valid JSON (Exceeds the limit",
    ),
    "a 30-digit integer": (
        json.dumps({**event(4), "time_ns": 10**30}),
        "an integer out of range",
    ),
    "NaN in a duration": (
        json.dumps(event(4, "lock.release", outcome="released", held_ns=float("nan"))),
        "not valid JSON (NaN is not a JSON number)",
    ),
    "1e999 in a duration": (
        json.dumps(event(4, "lock.release", outcome="released"))[:-1] + ',"held_ns":1e999}',
        "a number out of range",
    ),
    "a negative duration": (
        json.dumps(event(4, outcome="acquired", waited_ns=-5)),
        "field 'waited_ns' is negative",
    ),
    "a boolean seq": (
        json.dumps({**event(4), "seq": True}),
        "field 'seq' has the wrong type (bool; int expected)",
    ),
    "an unknown level": (json.dumps({**event(4), "level": "loud"}), "not a level name"),
    "another schema version": (json.dumps({**event(4), "schema": 2}), "schema version 2"),
    "not UTF-8": ('{"seq": "\udcff"}', "not UTF-8 text"),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command[0])
@pytest.mark.parametrize("damage", list(BAD_LINES))
def test_a_bad_record_is_one_line_and_status_2_and_the_good_ones_are_used(
    tmp_path: Path, command: tuple[str, ...], damage: str
) -> None:
    bad, reason = BAD_LINES[damage]
    lines = good_lines()
    content = "\n".join([lines[0], bad, lines[1], bad, lines[2]]) + "\n"
    (tmp_path / "t.jsonl").write_bytes(content.encode("utf-8", "surrogateescape"))
    status, out, err = run(tmp_path, *command)
    assert status == 2
    reports = err.splitlines()
    assert len(reports) == 2, err
    for number, report in zip((2, 4), reports, strict=True):
        prefix = f"tracedsync {command[0]}: error: {tmp_path / 't.jsonl'}:{number}: "
        assert report.startswith(prefix) and reason in report, report
    if command[0] == "report":
        assert out.startswith("tracedsync: 3 events from 1 thread")
        assert "cache" in out and "900.0 ns" not in out  # the contention row is there
    else:
        timeline = strict_json((tmp_path / "out.json").read_text())
        names = [trace_event["name"] for trace_event in timeline["traceEvents"]]
        assert "held by 'worker'" in names and "wait Lock 'cache'" in names


@pytest.mark.timeout(20)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command[0])
def test_an_empty_trace_is_an_error_saying_so(tmp_path: Path, command: tuple[str, ...]) -> None:
    (tmp_path / "t.jsonl").write_text("")
    status, out, err = run(tmp_path, *command)
    assert status == 2
    path = tmp_path / "t.jsonl"
    assert err == f"tracedsync {command[0]}: error: {path}: the trace is empty: no events\n"
    assert "0 events" not in out


@pytest.mark.timeout(20)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command[0])
def test_an_overlong_line_is_an_error_and_ends_the_reading(
    tmp_path: Path, command: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_tracefile, "MAX_LINE_BYTES", 1000)
    lines = good_lines()
    long_line = json.dumps({**event(4), "message": "x" * 2000})
    (tmp_path / "t.jsonl").write_text("\n".join([lines[0], long_line, *lines[1:]]) + "\n")
    status, out, err = run(tmp_path, *command)
    assert status == 2
    assert err.splitlines() == [
        f"tracedsync {command[0]}: error: {tmp_path / 't.jsonl'}:2: line longer than "
        "1,000 bytes, the limit; not a trace, the rest is not read"
    ]
    if command[0] == "report":
        assert out.startswith("tracedsync: 1 events")  # the line before it


@pytest.mark.timeout(30)
@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_reading_dev_zero_ends_with_an_error_in_bounded_memory() -> None:
    tracemalloc.start()
    try:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(["report", "/dev/zero"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 2
    assert err.getvalue().startswith("tracedsync report: error: /dev/zero:1: line longer than")
    assert peak < 3 * _tracefile.MAX_LINE_BYTES


def distinct_locks(count: int) -> Iterator[dict[str, Any]]:
    """One acquisition each of ``count`` differently named locks."""
    for number in range(count):
        yield {
            **event(number + 1, outcome="acquired", waited_ns=number % 3, blocking=True),
            "primitive_id": 10_000 + number,
            "primitive_name": f"lock-{number}",
        }


def test_the_summary_caps_the_locks_it_tells_apart_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_summary, "MAX_LOCKS", 100)
    summary = Summary()
    for each in distinct_locks(250):
        summary.add_event(each)
    assert len(summary.locks) == 101  # 100 locks and the row of the others
    other = summary.locks[(0, 0, "", "(other locks)", None)]
    assert other.acquired == 150 and summary.merged_lock_events == 150
    text = summary.render(top=200)
    assert (
        "(limit reached: the table tells apart at most 100 locks; "
        "150 events of further locks are merged into '(other locks)')" in text
    )
    assert "(other locks)" in text.split("limit reached")[1]


def test_the_summary_memory_does_not_grow_with_the_number_of_locks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_summary, "MAX_LOCKS", 1_000)

    def peak(count: int) -> int:
        tracemalloc.start()
        try:
            summary = Summary()
            for each in distinct_locks(count):
                summary.add_event(each)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(2_000), peak(40_000)
    assert large < small * 1.5 + 64_000, (small, large)


def test_the_summary_caps_the_threads_it_tells_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_summary, "MAX_THREADS", 10)
    summary = Summary()
    for token in range(25):
        summary.add_event({**event(token + 1, "event.set", flag=True), "thread_token": token})
    assert summary.threads == 10 and summary.more_threads
    assert summary.render().startswith("tracedsync: 25 events from more than 10 threads")


# -- fuzzing ----------------------------------------------------------------

VALID_TRACE = ("\n".join(good_lines()) + "\n").encode()

#: Values a damaged field may take: every JSON type, and extremes.
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
FIELDS = sorted({*json.loads(good_lines()[1]), *json.loads(good_lines()[2]), "held_ns"})


@st.composite
def damaged_traces(draw: st.DrawFn) -> bytes:
    """A valid trace with a field changed, bytes cut, inserted or replaced."""
    data = bytearray(VALID_TRACE)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        how = draw(
            st.sampled_from(["field", "field", "field", "cut", "insert", "replace", "truncate"])
        )
        if how == "field":
            lines = bytes(data).split(b"\n")
            index = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            try:
                record = json.loads(lines[index])
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            record[draw(st.sampled_from(FIELDS))] = draw(ODD_VALUES)
            lines[index] = json.dumps(record).encode()
            data = bytearray(b"\n".join(lines))
            continue
        start = draw(st.integers(min_value=0, max_value=len(data)))
        if how == "cut":
            del data[start : start + draw(st.integers(min_value=1, max_value=40))]
        elif how == "insert":
            data[start:start] = draw(st.binary(min_size=1, max_size=8))
        elif how == "replace" and start < len(data):
            data[start] = draw(st.integers(min_value=0, max_value=255))
        else:
            del data[start:]
    return bytes(data)


@pytest.mark.timeout(120)
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(trace=damaged_traces(), command=st.sampled_from(COMMANDS))
def test_a_damaged_trace_never_gives_a_traceback(trace: bytes, command: tuple[str, ...]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "t.jsonl").write_bytes(trace)
        status, _, err = run(Path(directory), *command)  # raises on a traceback
        assert status in {0, 2}
        assert all(
            line.startswith(f"tracedsync {command[0]}: error: ") for line in err.splitlines()
        )
        assert (status == 2) == bool(err)
        if command[0] == "timeline" and (Path(directory) / "out.json").exists() and status == 0:
            strict_json((Path(directory) / "out.json").read_text())
