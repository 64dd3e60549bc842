"""One ``TRACEDSYNC_LOG_FILE`` written by a parent and its ``multiprocessing``
children: no child destroys, duplicates or loses events (issue 17)."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from helpers import PATIENCE

#: The parent emits events before and after running one child, which emits
#: its own; ``with lock`` is two events.  10,000 parent events before the
#: child leave 1,808 of them unwritten (batches of 2,048) when it starts.
PROGRAM = """
import multiprocessing, os, sys
import tracedsync

def work(pairs):
    lock = tracedsync.Lock(name=f"lock-{os.getpid()}")
    for _ in range(pairs):
        with lock:
            pass

if __name__ == "__main__":
    method, before, child_pairs, after = sys.argv[1], *map(int, sys.argv[2:])
    work(before)
    child = multiprocessing.get_context(method).Process(target=work, args=(child_pairs,))
    child.start()
    child.join()
    work(after)
    print(os.getpid(), child.pid, child.exitcode)
"""


def _run(tmp_path: Path, method: str, before: int, child_pairs: int, after: int) -> Any:
    script = tmp_path / "parent.py"
    script.write_text(PROGRAM)
    trace = tmp_path / "trace.jsonl"
    trace.write_text("stale line from an earlier run\n")
    env = {**os.environ, "TRACEDSYNC_LOG_FILE": str(trace)}
    env.pop("TRACEDSYNC_LOG_FILE_OWNER", None)
    result = subprocess.run(
        [sys.executable, str(script), method, str(before), str(child_pairs), str(after)],
        capture_output=True,
        text=True,
        timeout=PATIENCE * 3,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    parent_pid, child_pid, exitcode = map(int, result.stdout.split())
    assert exitcode == 0, result.stderr
    by_pid: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for line in trace.read_text().splitlines():
        event = json.loads(line)  # every line whole: no other process's bytes inside
        by_pid[event["pid"]].append(event)
    return parent_pid, child_pid, by_pid


def _assert_complete(events: list[dict[str, Any]], pairs: int) -> None:
    """Every event of the process once: ``pairs`` acquires and releases, and
    its sequence numbers without a gap or a repeat."""
    names = Counter(event["event"] for event in events)
    assert names == {"lock.acquire": pairs, "lock.release": pairs}
    seqs = sorted(event["seq"] for event in events)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "method",
    [
        "spawn",
        pytest.param(
            "forkserver",
            marks=pytest.mark.skipif(
                "forkserver" not in multiprocessing.get_all_start_methods(),
                reason="no forkserver on this platform",
            ),
        ),
    ],
)
def test_a_spawned_child_appends_to_the_parents_trace(tmp_path: Path, method: str) -> None:
    parent_pid, child_pid, by_pid = _run(tmp_path, method, 5_000, 1_500, 100)
    # The stale line is gone (the parent truncated the file once, at the
    # start), and the parent's 10,200 events all survived the child.
    _assert_complete(by_pid.pop(parent_pid), 5_100)
    _assert_complete(by_pid.pop(child_pid), 1_500)
    assert not by_pid  # the forkserver process itself traced nothing


@pytest.mark.timeout(120)
@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="no fork on this platform"
)
def test_a_forked_child_writes_its_last_batch_and_not_the_parents(tmp_path: Path) -> None:
    # 1,000 parent events are buffered when the child is forked; the child's
    # own 600 are less than a batch, and multiprocessing ends it with os._exit.
    parent_pid, child_pid, by_pid = _run(tmp_path, "fork", 500, 300, 100)
    _assert_complete(by_pid.pop(parent_pid), 600)
    _assert_complete(by_pid.pop(child_pid), 300)
    assert not by_pid
