"""A correct pipeline: ``python pipeline.py [ITEMS]`` (default 5,000).

A producer puts work items on a ``queue.Queue``, four workers take them,
compute a result into the item and record it in a shared statistics object
under its lock, then hand the item to a collector over a second queue.  Every
item changes hands only through a queue and the statistics only under their
lock, so the program has no data race: ``tracedsync run --races`` must report
none.  The benchmark suite (``benchmarks/races.py``) times it plainly, under
``tracedsync run`` and under ``tracedsync run --races``.
"""

from __future__ import annotations

import queue
import sys
import threading

WORKERS = 4


class Item:
    def __init__(self, number: int) -> None:
        self.number = number
        self.result = 0
        self.worker = ""


class Statistics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.processed = 0
        self.total = 0
        self.largest = 0

    def add(self, value: int) -> None:
        with self.lock:
            self.processed += 1
            self.total += value
            self.largest = max(self.largest, value)


def main(items: int) -> None:
    tasks: queue.Queue[Item | None] = queue.Queue(maxsize=64)
    done: queue.Queue[Item | None] = queue.Queue()
    statistics = Statistics()
    collected: list[Item] = []

    def producer() -> None:
        for number in range(items):
            tasks.put(Item(number))
        for _ in range(WORKERS):
            tasks.put(None)

    def worker() -> None:
        name = threading.current_thread().name
        while True:
            item = tasks.get()
            if item is None:
                done.put(None)
                return
            value = sum(item.number * k % 97 for k in range(8))
            item.result = value
            item.worker = name
            statistics.add(value)
            done.put(item)

    def collector() -> None:
        finished = 0
        while finished < WORKERS:
            item = done.get()
            if item is None:
                finished += 1
            else:
                collected.append(item)

    threads = [threading.Thread(target=producer, name="producer")]
    threads += [threading.Thread(target=worker, name=f"worker-{i}") for i in range(WORKERS)]
    threads.append(threading.Thread(target=collector, name="collector"))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Read after join(): ordered after every write.
    assert len(collected) == items, (len(collected), items)
    assert statistics.processed == items
    assert statistics.total == sum(item.result for item in collected)
    print(f"pipeline: {items} items, total {statistics.total}, largest {statistics.largest}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5_000)
