"""The start-up hook of the Python processes a ``tracedsync run`` starts.

``tracedsync run`` puts this file's directory first on ``PYTHONPATH`` and its
settings in ``TRACEDSYNC_RUN`` (:mod:`tracedsync._cli.children`), so every
Python process the traced program starts (``multiprocessing`` children,
``subprocess`` Pythons, their children) imports this module at start-up, as
:mod:`site` imports any ``sitecustomize``.  It first runs the
``sitecustomize`` this one hides, if any (the next one on ``sys.path``, as
:mod:`site` would have), then traces the process like the parent
(``tracedsync._cli.run.start_child``).  Without ``TRACEDSYNC_RUN``, under
``TRACEDSYNC=off`` or where tracedsync cannot be imported (a Python of
another environment), it only does the first.  It never stops the process:
a failure to start tracing is one line on stderr.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _run_hidden_sitecustomize() -> None:
    """Import the ``sitecustomize`` that comes after this directory on
    ``sys.path`` under the name ``sitecustomize``, reporting its failure as
    :mod:`site` does."""
    import importlib.machinery  # only in processes started by tracedsync run

    path = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    import importlib.util  # only when there is one to run

    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # what site.execsitecustomize does with it
        if sys.flags.verbose:
            sys.excepthook(*sys.exc_info())
        else:
            sys.stderr.write(
                "Error in sitecustomize; set PYTHONVERBOSE for traceback:\n"
                f"{error.__class__.__name__}: {error}\n"
            )


def _start() -> None:
    # This directory is the run's, not the program's: off sys.path (the
    # environment keeps it for the process's own children).
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _HERE]
    _run_hidden_sitecustomize()
    if not os.environ.get("TRACEDSYNC_RUN"):
        return
    if os.environ.get("TRACEDSYNC", "").strip().lower() in {"0", "false", "no", "off"}:
        return
    try:
        from tracedsync._cli.run import start_child  # only in processes started by run
    except ImportError:  # a Python without tracedsync: run untraced
        return
    try:
        start_child()
    except Exception as error:  # never stop the program
        sys.stderr.write(f"tracedsync run: this child process is not traced: {error!r}\n")


_start()
