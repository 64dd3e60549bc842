"""unittest driver used by ``benchmarks/real_suites.py``.

``python _realsuites_unittest.py OUTCOMES [--exclude ID ...] MODULE [MODULE ...]``
runs the named test modules (``test.test_threading``...) in this process, as
``python -m unittest -v`` does, and appends ``test_id<TAB>call<TAB>outcome``
to OUTCOMES as each test ends (flushed, so a run stopped half-way still tells
which tests ran).  A test whose id ends with an ``--exclude`` value is left
out (not run, not counted).  The exit status is unittest's: 0 when every test passed.
"""

from __future__ import annotations

import sys
import unittest
from typing import IO, Any


class _Result(unittest.TextTestResult):
    out: IO[str]

    def _write(self, test: Any, outcome: str) -> None:
        self.out.write(f"{test.id()}\tcall\t{outcome}\n")
        self.out.flush()

    def addSuccess(self, test: Any) -> None:  # noqa: N802
        super().addSuccess(test)
        self._write(test, "passed")

    def addFailure(self, test: Any, err: Any) -> None:  # noqa: N802
        super().addFailure(test, err)
        self._write(test, "failed")

    def addError(self, test: Any, err: Any) -> None:  # noqa: N802
        super().addError(test, err)
        # setUpClass / setUpModule errors arrive with a _ErrorHolder "test"
        self._write(test, "error")

    def addSkip(self, test: Any, reason: str) -> None:  # noqa: N802
        super().addSkip(test, reason)
        self._write(test, "skipped")

    def addExpectedFailure(self, test: Any, err: Any) -> None:  # noqa: N802
        super().addExpectedFailure(test, err)
        self._write(test, "xfailed")

    def addUnexpectedSuccess(self, test: Any) -> None:  # noqa: N802
        super().addUnexpectedSuccess(test)
        self._write(test, "xpassed")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:  # noqa: N802
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._write(subtest, "failed" if failed else "error")


def _without(suite: unittest.TestSuite, excluded: list[str]) -> unittest.TestSuite:
    kept = unittest.TestSuite()
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            kept.addTest(_without(test, excluded))
        elif not any(test.id().endswith(name) for name in excluded):
            kept.addTest(test)
    return kept


def main() -> int:
    out_path, *rest = sys.argv[1:]
    excluded: list[str] = []
    modules: list[str] = []
    while rest:
        argument = rest.pop(0)
        if argument == "--exclude":
            excluded.append(rest.pop(0))
        else:
            modules.append(argument)
    with open(out_path, "a", encoding="utf-8") as out:
        _Result.out = out
        suite = _without(unittest.defaultTestLoader.loadTestsFromNames(modules), excluded)
        runner = unittest.TextTestRunner(verbosity=2, resultclass=_Result)
        result = runner.run(suite)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
