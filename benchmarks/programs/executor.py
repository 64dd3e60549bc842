"""Issue 14's executor program: ``ThreadPoolExecutor`` + ``as_completed`` over
N futures (400 by default), each a little arithmetic.

``as_completed`` takes the condition of every future at once (in id order)
and releases them in set order: N locks of one class held together, the
case the lock-order graph must stay bounded on.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor, as_completed


def work(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def main(count: int) -> None:
    with ThreadPoolExecutor(max_workers=8) as executor:
        futures = [executor.submit(work, 2000 + i) for i in range(count)]
        done = sum(1 for future in as_completed(futures) if future.result() >= 0)
    if done != count:
        raise SystemExit(f"{done} of {count} futures done")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 400)
