"""Real test suites, plainly and traced: ``python benchmarks/real_suites.py``.

Runs the test suites of real PyPI packages that use threads, and CPython's
own threading-related test modules, three ways each:

``plain``
    ``python -m pytest`` (or unittest) with nothing of tracedsync;
``plugin``
    ``python -m pytest --tracedsync`` (pytest suites only);
``run``
    ``tracedsync run -m pytest`` (or ``tracedsync run`` of a unittest driver).

and prints, per suite: the counts of each mode, every test whose outcome
differs from the plain run (by id), the exit statuses and the wall-time ratio
to the plain run.  A difference is a tracedsync bug until shown otherwise: see
``docs/real-suites.md`` for the last table and what each difference was.

Setting up (once per Python; nothing is installed into the checkout)::

    S=/tmp/realsuites-src; V=/tmp/realsuites-venv-3.11
    mkdir -p $S && cd $S
    python3.11 -m venv $V
    $V/bin/pip install hatchling hatch-vcs hatch-fancy-pypi-readme \\
        setuptools setuptools_scm wheel
    $V/bin/pip download --no-build-isolation --no-binary :all: --no-deps \\
        filelock==3.16.1 watchdog==7.1.0 apscheduler==3.11.3 \\
        prometheus-client==0.21.1 janus==2.0.0 readerwriterlock==1.0.10
    for f in *.tar.gz; do tar xzf $f; done
    $V/bin/pip install --no-build-isolation ./*.tar.gz
    $V/bin/pip install pytest pytest-timeout pytest-mock pytest-asyncio \\
        pytest-cov virtualenv flaky tornado sqlalchemy typing_extensions \\
        pytz tzlocal pyyaml
    # virtualenv upgrades filelock: put the version whose tests we have back
    $V/bin/pip install --no-deps --force-reinstall --no-build-isolation \
        filelock-3.16.1.tar.gz
    $V/bin/pip install -e /path/to/tracedsync
    $V/bin/python /path/to/tracedsync/benchmarks/real_suites.py

(the sdists carry the packages' tests; newer filelock and prometheus-client
sdists do not build offline with these backends, hence the pins).  The
interpreter running this script is the one used for every suite, so run it
with the venv's ``python``.  A suite whose package (or CPython test module) is
not installed is skipped with one line saying so.

Options: ``--suite NAME`` (repeatable; ``--list`` shows the names),
``--all`` (the default leaves out the slow ``readerwriterlock`` suite, 400 s
plainly), ``--modes plain,plugin,run``, ``--src DIR`` (where the sdists were
unpacked, default ``$REALSUITES_SRC`` or ``/tmp/realsuites-src``),
``--timeout SECONDS`` per run (default 900), ``--keep DIR`` to keep each
run's output and outcomes, ``--markdown`` for a table row per suite.
The exit status is 0 when no suite showed a difference, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: pytest options every pytest suite gets, in every mode: no cache, the
#: packages' own addopts (coverage, xdist) dropped, a per-test timeout so a
#: hang is one failed test, not a lost run.
PYTEST_COMMON = ["-p", "no:cacheprovider", "-o", "addopts=", "--timeout=120", "-q"]

#: Jobstore tests of apscheduler that need a database server.
_SERVICES = "not mongodb and not redis and not rethinkdb and not etcd and not zookeeper"


@dataclass
class Suite:
    name: str
    kind: str  # "pytest" or "unittest"
    module: str  # what must be importable for the suite to run
    directory: str = ""  # pytest: the unpacked sdist, under --src
    args: list[str] = field(default_factory=list)
    slow: bool = False
    #: unittest: tests left out (id suffixes), each with its reason in SUITES
    exclude: list[str] = field(default_factory=list)


SUITES = [
    Suite("watchdog", "pytest", "watchdog", "watchdog-7.1.0", ["tests"]),
    Suite(
        "apscheduler",
        "pytest",
        "apscheduler",
        "apscheduler-3.11.3",
        ["tests", "-k", _SERVICES],
    ),
    Suite(
        "prometheus-client",
        "pytest",
        "prometheus_client",
        "prometheus_client-0.21.1",
        ["tests"],
    ),
    Suite(
        "janus",
        "pytest",
        "janus",
        "janus-2.0.0",
        ["tests", "--ignore=tests/test_benchmarks.py"],
    ),
    Suite("filelock", "pytest", "filelock", "filelock-3.16.1", ["tests"]),
    Suite(
        "readerwriterlock",
        "pytest",
        "readerwriterlock",
        "readerwriterlock-1.0.10",
        ["tests"],
        slow=True,
    ),
    Suite(
        "test_threading",
        "unittest",
        "test.test_threading",
        # plainly, its exponential recursion in a subprocess ran for over 6
        # minutes on 3.13.0 on a loaded 2-core machine (regrtest has a
        # per-test timeout; this driver has none); it uses no lock
        exclude=["ThreadingExceptionTests.test_print_exception_gh_102056"],
    ),
    Suite("test_queue", "unittest", "test.test_queue"),
    Suite("test_thread", "unittest", "test.test_thread"),
    Suite("test_threading_local", "unittest", "test.test_threading_local"),
    Suite("test_logging", "unittest", "test.test_logging"),
    Suite("test_concurrent_futures", "unittest", "test.test_concurrent_futures"),
]


@dataclass
class Outcome:
    status: int | None  # None: killed at the timeout
    seconds: float
    tests: dict[str, str]
    output: str


_RANK = ["passed", "skipped", "xfailed", "xpassed", "error", "failed"]


def _fold(lines: list[str]) -> dict[str, str]:
    """One outcome per test id from the phase lines (the worst phase wins)."""
    tests: dict[str, str] = {}
    for line in lines:
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 3 or parts[2] not in _RANK:
            continue
        test, when, outcome = parts
        if when != "call" and outcome == "failed":
            outcome = "error"  # a setup or teardown failure
        previous = tests.get(test, "passed")
        tests[test] = max(previous, outcome, key=_RANK.index)
    return tests


def command(suite: Suite, mode: str, outcomes: Path) -> list[str]:
    py = sys.executable
    if suite.kind == "pytest":
        target = ["-m", "pytest", "-p", "_realsuites_pytest", *PYTEST_COMMON, *suite.args]
        if mode == "plain":
            return [py, *target]
        if mode == "plugin":
            return [py, *target, "--tracedsync"]
        return [py, "-m", "tracedsync", "run", *target]
    driver = [str(HERE / "_realsuites_unittest.py"), str(outcomes)]
    for name in suite.exclude:
        driver += ["--exclude", name]
    driver.append(suite.module)
    if mode == "plain":
        return [py, *driver]
    return [py, "-m", "tracedsync", "run", *driver]


def run_one(suite: Suite, mode: str, src: Path, timeout: float, keep: Path | None) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="realsuites-") as tmp:
        outcomes = Path(tmp) / "outcomes.tsv"
        outcomes.touch()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), *filter(None, [env.get("PYTHONPATH")])])
        env["REALSUITES_OUTCOMES"] = str(outcomes)
        env.pop("TRACEDSYNC", None)
        cwd = src / suite.directory if suite.kind == "pytest" else Path(tmp)
        start = time.perf_counter()
        proc = subprocess.Popen(
            command(suite, mode, outcomes),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=timeout)
            status: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            status = None
        seconds = time.perf_counter() - start
        lines = outcomes.read_text(encoding="utf-8").splitlines()
        text = output.decode("utf-8", "replace")
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            (keep / f"{suite.name}.{mode}.out").write_text(text, encoding="utf-8")
            (keep / f"{suite.name}.{mode}.tsv").write_text("\n".join(lines), encoding="utf-8")
        return Outcome(status, seconds, _fold(lines), text)


def counts(outcome: Outcome) -> str:
    c = Counter(outcome.tests.values())
    order = ["passed", "failed", "error", "skipped", "xfailed", "xpassed"]
    parts = [f"{c[k]} {k}" for k in order if c[k]]
    status = "killed at timeout" if outcome.status is None else f"status {outcome.status}"
    return f"{', '.join(parts) or 'no tests'} ({status}, {outcome.seconds:.1f} s)"


def differences(plain: Outcome, traced: Outcome) -> list[str]:
    diffs = []
    for test in sorted(set(plain.tests) | set(traced.tests)):
        a = plain.tests.get(test, "not run")
        b = traced.tests.get(test, "not run")
        if a != b:
            diffs.append(f"{test}: {a} plainly, {b} traced")
    if plain.status != traced.status and not diffs:
        diffs.append(f"exit status {plain.status} plainly, {traced.status} traced")
    return diffs


def available(suite: Suite, src: Path) -> str | None:
    """Why the suite cannot run here, or None."""
    try:
        found = importlib.util.find_spec(suite.module) is not None
    except ImportError:
        found = False
    if not found:
        return f"{suite.module} is not installed for {sys.executable}"
    if suite.kind == "pytest" and not (src / suite.directory).is_dir():
        return f"its tests are not unpacked at {src / suite.directory}"
    return None


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", action="append", default=[])
    parser.add_argument("--all", action="store_true")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--modes", default="plain,plugin,run")
    parser.add_argument(
        "--src", type=Path, default=Path(os.environ.get("REALSUITES_SRC", "/tmp/realsuites-src"))
    )
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--keep", type=Path)
    parser.add_argument("--markdown", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if args.list:
        for s in SUITES:
            print(f"{s.name:26} {s.kind}{'  (slow: only with --all or --suite)' if s.slow else ''}")
        return 0
    unknown = set(args.suite) - {s.name for s in SUITES}
    if unknown:
        print(f"unknown suite(s): {', '.join(sorted(unknown))} (see --list)", file=sys.stderr)
        return 2
    chosen = [s for s in SUITES if (s.name in args.suite if args.suite else args.all or not s.slow)]
    modes = [m for m in args.modes.split(",") if m]
    version = ".".join(map(str, sys.version_info[:3]))
    print(f"Python {version}; suites: {', '.join(s.name for s in chosen)}", flush=True)
    rows = []
    any_difference = False
    for suite in chosen:
        why = available(suite, args.src)
        if why:
            print(f"\n== {suite.name}: SKIPPED: {why}", flush=True)
            rows.append(f"| {suite.name} | {version} | skipped: {why} | | |")
            continue
        print(f"\n== {suite.name}", flush=True)
        results: dict[str, Outcome] = {}
        for mode in modes:
            if mode == "plugin" and suite.kind != "pytest":
                continue
            results[mode] = run_one(suite, mode, args.src, args.timeout, args.keep)
            print(f"  {mode:6}: {counts(results[mode])}", flush=True)
        plain = results.get("plain")
        cells = []
        for mode in ("plugin", "run"):
            traced = results.get(mode)
            if plain is None or traced is None:
                cells.append("")
                continue
            diffs = differences(plain, traced)
            any_difference |= bool(diffs)
            ratio = traced.seconds / plain.seconds if plain.seconds else float("nan")
            print(f"  {mode}: {len(diffs)} difference(s), wall time {ratio:.2f}x plain", flush=True)
            for d in diffs:
                print(f"    {d}", flush=True)
            c = Counter(traced.tests.values())
            cells.append(
                f"{c['passed']}/{c['failed'] + c['error']}/{c['skipped']}, "
                f"{len(diffs)} diff, {ratio:.1f}x"
            )
        if plain is not None:
            c = Counter(plain.tests.values())
            rows.append(
                f"| {suite.name} | {version} | {c['passed']}/{c['failed'] + c['error']}/"
                f"{c['skipped']} | {cells[0] or 'n/a'} | {cells[1] or 'n/a'} |"
            )
    if args.markdown:
        print("\n| suite | Python | plain pass/fail/skip | pytest --tracedsync | tracedsync run |")
        print("|---|---|---|---|---|")
        for row in rows:
            print(row)
    return 1 if any_difference else 0


if __name__ == "__main__":
    sys.exit(main())
