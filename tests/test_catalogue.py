"""The catalogue of findings is the one place their events and kinds are
spelled: every finding tracedsync can emit is in it, and every consumer
(policies, summary, timeline, pytest plugin) knows every entry."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import _tracedsync_pytestplugin
import tracedsync
from tracedsync import _catalogue, _policy
from tracedsync._catalogue import (
    FINDINGS,
    HEADINGS,
    POLICY_KINDS,
    TEST_FAILING_KINDS,
    TEST_KINDS,
    TEST_REPORTED_KINDS,
)
from tracedsync._cli import summary as _summary
from tracedsync._cli import timeline as _timeline
from tracedsync._pytest import plugin as pytest_plugin

SOURCE = Path(tracedsync.__file__).parent

#: Functions whose first argument is an event name.
EMITTERS = {"emit", "publish", "deliver"}
#: Functions whose first argument is always a finding's event name.
FINDING_EMITTERS = {"_apply", "report_finding"}
#: The level arguments that make an emitted event a finding.
FINDING_LEVELS = {"WARNING", "ERROR"}


def _emitted_findings() -> set[str]:
    """Every event name the source emits at warning or error level."""
    found: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            function = node.func
            if isinstance(function, ast.Attribute):
                name = function.attr
            elif isinstance(function, ast.Name):
                name = function.id
            else:
                continue
            if name not in EMITTERS | FINDING_EMITTERS or not node.args:
                continue
            levels = {
                argument.attr for argument in node.args[1:] if isinstance(argument, ast.Attribute)
            }
            if name in EMITTERS and not levels & FINDING_LEVELS:
                continue
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.add(first.value)
            elif isinstance(first, ast.IfExp):
                found.update(
                    branch.value
                    for branch in (first.body, first.orelse)
                    if isinstance(branch, ast.Constant) and isinstance(branch.value, str)
                )
    return found


def test_every_finding_emitted_anywhere_is_in_the_catalogue() -> None:
    emitted = _emitted_findings()
    assert "deadlock.cycle" in emitted  # the scan itself works
    assert emitted <= set(FINDINGS), emitted - set(FINDINGS)


def test_summary_and_timeline_know_every_finding() -> None:
    for event, finding in FINDINGS.items():
        assert _summary.FINDING_EVENTS[event] == finding.heading
        assert finding.heading in HEADINGS
        assert event in _timeline._GLOBAL_INSTANTS


def test_policies_and_pytest_kinds_come_from_the_catalogue() -> None:
    assert set(_policy.KINDS) == set(POLICY_KINDS)
    kinds = {finding.kind for finding in FINDINGS.values()} - {None}
    assert set(POLICY_KINDS) <= kinds
    assert kinds <= set(POLICY_KINDS) | set(TEST_KINDS)
    assert pytest_plugin.KINDS == TEST_KINDS
    for event, kind in pytest_plugin.FINDING_EVENTS.items():
        assert FINDINGS[event].kind == kind
    # The pytest entry point may not import tracedsync: it keeps a copy.
    assert ", ".join(TEST_KINDS) == _tracedsync_pytestplugin.KINDS_HELP
    assert ", ".join(TEST_REPORTED_KINDS) == _tracedsync_pytestplugin.REPORTED_HELP
    assert set(TEST_FAILING_KINDS) | set(TEST_REPORTED_KINDS) == set(TEST_KINDS)
    assert pytest_plugin.Options(1.0, frozenset(), True).fail_on == set(TEST_FAILING_KINDS)


def test_declared_order_and_guard_findings_reach_the_run_summary() -> None:
    # Both were missing from the summary: "run" printed "none" for them.
    summary = _summary.Summary()
    lock = tracedsync.Lock(name="a")
    with tracedsync.record() as trace:
        first, second = tracedsync.Lock(name="first"), tracedsync.Lock(name="second")
        tracedsync.declare_order(first, second)
        with second, pytest.raises(tracedsync.LockOrderError), first:
            pass
    for record in trace._sorted_records():
        summary.add_record(record)
    text = summary.render(full=False)
    assert "declared lock orders broken: 1" in text, text
    del lock


def test_catalogue_module_has_no_dependencies() -> None:
    tree = ast.parse(Path(_catalogue.__file__).read_text(encoding="utf-8"))
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    # tracedsync._typenames is typing's stand-in, a leaf itself.
    assert imported <= {"__future__", "typing", "tracedsync._typenames"}
