"""Settings are read and checked once (issue 13): a typo in a variable or an
argument is said in one line naming it, its bad value and what it accepts,
never ignored silently; every documented variable works."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

import tracedsync
from tracedsync._config import settings


def _import_with(**environment: str) -> subprocess.CompletedProcess[str]:
    program = (
        "import tracedsync\n"
        "from tracedsync._config import settings\n"
        "from tracedsync._watchdog import watchdog\n"
        "print(settings.enabled, settings.strict, settings.lock_order, settings.log_level,"
        " settings.log_format, watchdog.running)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEDSYNC")}
    env.update(environment)
    return subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )


@pytest.mark.parametrize(
    ("variable", "value", "accepted", "used"),
    [
        ("TRACEDSYNC_LOG", "warn", "debug, info, warning, error, critical, off", "error"),
        ("TRACEDSYNC_LOG", "bogus", "debug, info, warning, error, critical, off", "error"),
        ("TRACEDSYNC", "maybe", "1, true, yes, on, 0, false, no, off", "on"),
        ("TRACEDSYNC_LOCK_ORDER", "perhaps", "1, true, yes, on, 0, false, no, off", "on"),
        ("TRACEDSYNC_STRICT", "sure", "1, true, yes, on, 0, false, no, off", "off"),
        ("TRACEDSYNC_LOG_FORMAT", "xml", "console, json", "console"),
    ],
)
@pytest.mark.timeout(60)
def test_a_bad_variable_is_named_in_one_line(
    variable: str, value: str, accepted: str, used: str
) -> None:
    finished = _import_with(**{variable: value})
    assert finished.stderr == (
        f"tracedsync: {variable}={value!r} is not one of {accepted}; using {used!r}\n"
    )
    assert finished.stdout == "True False True 40 console False\n"


@pytest.mark.timeout(60)
def test_good_variables_are_taken() -> None:
    finished = _import_with(
        TRACEDSYNC_LOG="Warning",
        TRACEDSYNC_LOCK_ORDER="off",
        TRACEDSYNC_STRICT="yes",
        TRACEDSYNC_LOG_FORMAT="json",
    )
    assert finished.stderr == ""
    assert finished.stdout == "True True False 30 json False\n"


@pytest.mark.timeout(60)
def test_wait_warning_variable_starts_the_watchdog_at_import() -> None:
    # Documented, but only read once configure(wait_warning=...) was called.
    finished = _import_with(TRACEDSYNC_WAIT_WARNING="5")
    assert finished.stdout.split()[-1] == "True"


def test_configure_takes_a_logging_level_number() -> None:
    before = settings.log_level
    try:
        tracedsync.configure(log_level=logging.WARNING)
        assert settings.log_level == 30
    finally:
        settings.log_level = before


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"strict": "yes"}, TypeError),
        ({"lock_order": 1}, TypeError),
        ({"log_level": 35}, ValueError),
        ({"log_level": "warn"}, ValueError),
        ({"log_level": 1.5}, TypeError),
        ({"log_format": "xml"}, ValueError),
        ({"wait_warning": True}, TypeError),
    ],
)
def test_configure_refuses_bad_arguments_and_changes_nothing(
    arguments: dict[str, object], error: type[Exception]
) -> None:
    before = (settings.strict, settings.lock_order, settings.log_level, settings.log_format)
    with pytest.raises(error, match=next(iter(arguments))):
        tracedsync.configure(**arguments)  # type: ignore[arg-type]
    after = (settings.strict, settings.lock_order, settings.log_level, settings.log_format)
    assert after == before


@pytest.mark.parametrize(
    "make",
    [
        tracedsync.Lock,
        tracedsync.RLock,
        tracedsync.Event,
        tracedsync.Condition,
        tracedsync.Semaphore,
        tracedsync.BoundedSemaphore,
    ],
)
def test_a_name_must_be_a_string(make: object) -> None:
    with pytest.raises(TypeError, match="name must be a str"):
        make(name=123)  # type: ignore[operator]
