"""A correct cache: ``python cache.py [LOOKUPS]`` (default 3,000 per thread).

Eight threads look keys up in an object cache guarded by an ``RLock`` (a
miss loads the entry through a method that takes the lock again, and evicts
the oldest entry when the cache is full); each thread counts its hits and
misses in its own counter object, read by the main thread after ``join()``.
Every shared access is under the cache's lock, so the program has no data
race: ``tracedsync run --races`` must report none.  The benchmark suite
(``benchmarks/races.py``) times it plainly, under ``tracedsync run`` and
under ``tracedsync run --races``.
"""

from __future__ import annotations

import sys
import threading

THREADS = 8
KEYS = 600
CAPACITY = 400


class Entry:
    def __init__(self, key: int) -> None:
        self.key = key
        self.value = sum(key * k % 101 for k in range(8))
        self.uses = 0


class Cache:
    def __init__(self, capacity: int) -> None:
        self._lock = threading.RLock()
        self._entries: dict[int, Entry] = {}
        self.capacity = capacity
        self.loads = 0
        self.evictions = 0

    def lookup(self, key: int) -> tuple[int, bool]:
        with self._lock:
            entry = self._entries.get(key)
            hit = entry is not None
            if entry is None:
                entry = self._load(key)
            entry.uses += 1
            return entry.value, hit

    def _load(self, key: int) -> Entry:
        with self._lock:  # reentrant: lookup() already holds it
            if len(self._entries) >= self.capacity:
                oldest = next(iter(self._entries))
                del self._entries[oldest]
                self.evictions += 1
            entry = Entry(key)
            self._entries[key] = entry
            self.loads += 1
            return entry


class Counter:
    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.checksum = 0


def main(lookups: int) -> None:
    cache = Cache(CAPACITY)
    counters = [Counter() for _ in range(THREADS)]

    def look_up(counter: Counter, seed: int) -> None:
        for i in range(lookups):
            key = (i * 7_919 + seed * 104_729) % KEYS
            value, hit = cache.lookup(key)
            if hit:
                counter.hits += 1
            else:
                counter.misses += 1
            counter.checksum += value

    threads = [
        threading.Thread(target=look_up, args=(counter, seed), name=f"reader-{seed}")
        for seed, counter in enumerate(counters)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Read after join(): ordered after every write.
    hits = sum(counter.hits for counter in counters)
    misses = sum(counter.misses for counter in counters)
    assert hits + misses == THREADS * lookups, (hits, misses)
    assert misses == cache.loads
    print(f"cache: {THREADS} threads x {lookups} lookups, {hits} hits, {misses} misses")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3_000)
