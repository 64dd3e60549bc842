"""The findings pipeline: every detector reports through one function,
which emits the catalogue's event at the catalogue's level and applies the
policy of the finding's kind."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tracedsync
from tracedsync import _findings, _hooks
from tracedsync._catalogue import FINDINGS
from tracedsync._errors import DeadlockError
from tracedsync._report import Report

SOURCE = Path(tracedsync.__file__).parent


def test_only_the_pipeline_reads_policies_or_builds_finding_errors() -> None:
    # Detectors state facts; the policy is applied in one place.
    for path in SOURCE.rglob("*.py"):
        if path.name in {"_findings.py", "_policy.py", "_config.py", "__init__.py"}:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Name | ast.Attribute):
                name = node.id if isinstance(node, ast.Name) else node.attr
                assert name not in {"policy_for", "apply_order_policy"}, path


def test_the_event_carries_message_then_details_at_the_catalogue_level() -> None:
    lock = tracedsync.Lock(name="subject")
    report = Report("race", "text", ("race", 1), {"location": "x", "attribute": "y"})
    with tracedsync.record() as trace:
        _findings.report_finding("race.data", report, lock, None)
    (record,) = trace.events("race.data")
    assert list(record)[-3:] == ["message", "location", "attribute"]
    assert (record["message"], record["location"], record["attribute"]) == ("text", "x", "y")
    assert record["level"] == "warning"


@pytest.mark.parametrize("event", sorted(FINDINGS))
def test_every_catalogue_level_is_a_log_level(event: str) -> None:
    assert _findings._LEVELS[event] in {_hooks.WARNING, _hooks.ERROR}


def test_raise_undoes_first_and_attaches_the_report() -> None:
    lock = tracedsync.Lock(name="victim")
    undone: list[bool] = []
    report = Report("deadlock", "boom", ("deadlock", "victim"), {})

    def error() -> DeadlockError:
        assert undone == [True]  # undo ran before the error was built
        return DeadlockError(
            "boom", primitive="victim", thread_name="t", held_at=None, requested_at=None
        )

    with pytest.raises(DeadlockError) as caught:
        _findings.report_finding(
            "deadlock.cycle", report, lock, None, error=error, undo=lambda: undone.append(True)
        )
    assert caught.value.report is report


def test_a_failing_callback_undoes_and_propagates() -> None:
    lock = tracedsync.Lock(name="callback")
    undone: list[bool] = []
    report = Report("inversion", "x", ("inversion",), {})

    def callback(seen: Report) -> None:
        raise KeyError(seen.kind)

    tracedsync.set_policy(lock, inversion=callback)
    with pytest.raises(KeyError):
        _findings.report_finding(
            "lock_order.inversion", report, lock, None, undo=lambda: undone.append(True)
        )
    assert undone == [True]


def test_warn_and_may_raise_false_neither_raise_nor_undo() -> None:
    lock = tracedsync.Lock(name="quiet")
    report = Report("hierarchy", "x", ("hierarchy",), {})

    def never() -> DeadlockError:
        raise AssertionError("not built")

    _findings.report_finding(
        "lock_order.hierarchy", report, lock, None, error=never, may_raise=False, undo=never
    )
    tracedsync.set_policy(lock, hierarchy="warn")
    _findings.report_finding("lock_order.hierarchy", report, lock, None, error=never, undo=never)
