import tracedsync


class Counter:
    def __init__(self):
        self.lock = tracedsync.Lock(name="counter")
        self.value = 0

    def increment(self):
        with self.lock:
            current = self.value
        tracedsync.yield_point()  # the bug: the write is outside the lock
        with self.lock:
            self.value = current + 1


def two_increments():
    counter = Counter()
    threads = [tracedsync.Thread(target=counter.increment, name=f"worker-{n}") for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter.value == 2, f"lost an update: value is {counter.value}"


try:
    tracedsync.explore(two_increments, strategy="pct", runs=500, minimize=True)
except tracedsync.InterleavingError as failure:
    print(failure)
    token, steps = failure.token, failure.steps

try:
    tracedsync.replay(two_increments, token)
except tracedsync.InterleavingError as again:
    print("replayed:", again.kind, again.steps == steps)
