"""Build tracedsync, with its optional C accelerator (``tracedsync._speedups``).

Everything else is in ``pyproject.toml``.  The accelerator is built for
CPython with the GIL only; when it cannot be built (no C compiler or no
Python headers, PyPy, a free-threaded interpreter) the pure-Python package is
installed instead, and the build says so in one line.  ``TRACEDSYNC_PURE=1``
at build time skips it on purpose.
"""

from __future__ import annotations

import os
import platform
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _skip_reason() -> str | None:
    if platform.python_implementation() != "CPython":
        return f"{platform.python_implementation()} is not CPython"
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return "free-threaded CPython (the accelerator needs the GIL)"
    if os.environ.get("TRACEDSYNC_PURE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "TRACEDSYNC_PURE is set"
    return None


def _say(line: str) -> None:
    print(f"tracedsync: {line}", file=sys.stderr, flush=True)


class OptionalBuildExt(build_ext):
    """``build_ext`` whose failure installs the pure-Python package instead."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:  # no compiler at all (setuptools' PlatformError, ...)
            self._fallback(error)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as error:  # a compiler that failed: missing Python.h, ...
            self._fallback(error)

    @staticmethod
    def _fallback(error: BaseException) -> None:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        _say(f"C accelerator not built ({first}); installing the pure-Python implementation")


reason = _skip_reason()
if reason is not None:
    _say(f"C accelerator skipped ({reason}); installing the pure-Python implementation")
    extensions: list[Extension] = []
else:
    extensions = [
        Extension(
            "tracedsync._speedups",
            sources=[
                "src/tracedsync/_speedups.c",
                "src/tracedsync/_eventbuffers.c",
                "src/tracedsync/_jsonlines.c",
            ],
            depends=["src/tracedsync/_eventbuffers.h"],
            optional=True,
        )
    ]

setup(ext_modules=extensions, cmdclass={"build_ext": OptionalBuildExt})
