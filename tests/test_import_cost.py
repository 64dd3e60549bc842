"""What ``import tracedsync`` and ``tracedsync run`` load: facts, not timings.

``import tracedsync`` stays cheap (docs/performance.md, "Start-up") because it
loads none of the standard library's heavy modules: each is imported where it
is needed (the explorer at its first use, ``json`` for the first value that is
not a string, number, bool or None...).  A module level import of any of them
anywhere in the import path fails here.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

#: Modules ``import tracedsync`` must not load (each costs milliseconds of
#: CPU, several of them more than the whole package).
HEAVY = (
    "typing",
    "json",
    "dataclasses",
    "inspect",
    "ast",
    "dis",
    "tokenize",
    "re",
    "enum",
    "platform",
    "sysconfig",
    "importlib.util",
    "importlib.metadata",
    "random",
    "base64",
    "traceback",
    "textwrap",
    "contextlib",
    "structlog",
    "tracedsync._explore",
    "tracedsync._races",
    "tracedsync._cli",
    "tracedsync._log",
    "tracedsync._guarded",
    "tracedsync._locktrace",
    "tracedsync._patch",
)


def _loaded_by(code: str, setup: str = "import threading") -> list[str]:
    """The modules running ``code`` adds to ``sys.modules`` after ``setup``,
    in a fresh interpreter."""
    script = "\n".join(
        [
            "import sys",
            setup,
            "before = set(sys.modules)",
            textwrap.dedent(code),
            "print(' '.join(sorted(set(sys.modules) - before)))",
        ]
    )
    finished = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return finished.stdout.splitlines()[-1].split()


def _heavy(loaded: list[str]) -> list[str]:
    return [name for name in loaded if name in HEAVY or name.startswith(HEAVY_PACKAGES)]


HEAVY_PACKAGES = tuple(f"{name}." for name in HEAVY)


def test_import_tracedsync_loads_no_heavy_module() -> None:
    loaded = _loaded_by("import tracedsync")
    assert "tracedsync._lock" in loaded  # the check sees the package load
    assert _heavy(loaded) == []


def test_the_check_sees_a_heavy_module() -> None:
    assert _heavy(_loaded_by("import tracedsync._explore.runs")) != []


def test_the_explorer_loads_at_its_first_use() -> None:
    loaded = _loaded_by("import tracedsync; tracedsync.explore; from tracedsync import schedules")
    assert "tracedsync._explore.runs" in loaded
    assert "tracedsync._explore.schedules" in loaded


def test_every_lazy_name_is_its_modules_and_public() -> None:
    import importlib

    import tracedsync

    assert len(tracedsync._LAZY) == 13
    for name, source in tracedsync._LAZY.items():
        where = source
        if source == "_explore":
            where = "_explore.schedules" if name == "schedules" else "_explore.runs"
        module = importlib.import_module(f"tracedsync.{where}")
        assert getattr(tracedsync, name) is getattr(module, name)
        assert name in tracedsync.__all__


def test_lazy_classes_are_shown_as_tracedsyncs_however_imported() -> None:
    loaded = _loaded_by(
        "from tracedsync._explore.runs import InterleavingError\n"
        "from tracedsync._locktrace import LockTrace\n"
        "assert InterleavingError.__module__ == LockTrace.__module__ == 'tracedsync'"
    )
    assert "tracedsync._locktrace" in loaded


def test_an_unknown_attribute_is_still_an_attribute_error() -> None:
    import tracedsync

    with pytest.raises(AttributeError, match="no_such_name"):
        tracedsync.no_such_name


def test_a_log_file_value_does_not_load_json() -> None:
    """Strings, numbers, bools and None are written without ``json``."""
    loaded = _loaded_by(
        "from tracedsync._jsonl import record_to_json, _encode\n"
        "assert _encode.__name__ == '_first_encode'\n"
        "record_to_json((1, 2, (3, 'main', 4, 5), 'lock.acquire', 10, "
        "('Lock', 6, 'a', None, 'a'), None, 0, ('outcome', 'ok', 'held_ns', 7, 'flag', True)))",
    )
    assert "tracedsync._jsonl" in loaded
    assert "json" not in loaded


def test_the_first_other_value_loads_json_once() -> None:
    from tracedsync import _jsonl

    assert _jsonl.record_to_json(
        (1, 2, (3, "main", 4, 5), "x", 10, ("Lock", 6, "a", None, "a"), None, 0, ("v", [1.5]))
    ).endswith(',"v":[1.5]}')
    assert _jsonl._encode.__name__ == "encode"  # the encoder's own method now


def test_the_run_command_loads_none_of_the_other_commands() -> None:
    """Building the parser (every command) reads no package metadata (only
    ``--version`` does); running a program loads neither the explorer, nor
    the race detector, nor the trace readers."""
    loaded = _loaded_by(
        "from tracedsync._cli import main, run\nmain._parser()",
    )
    assert "tracedsync._cli.run" in loaded
    unexpected = [
        name
        for name in loaded
        if name.startswith(("importlib.metadata", "tracedsync._explore", "tracedsync._races"))
        or name
        in (
            "tempfile",
            "tracedsync._cli.timeline",
            "tracedsync._cli.tracefile",
            "tracedsync._cli.demo",
            "tracedsync._log",
            "structlog",
        )
    ]
    assert unexpected == []


def test_version_still_reads_the_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    from tracedsync._cli import main

    with pytest.raises(SystemExit) as stopped:
        main._parser().parse_args(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.startswith("tracedsync ")
