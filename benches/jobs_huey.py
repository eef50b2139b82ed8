"""The peer of `cargo bench -p wharf --bench jobs`: huey (PyPI) with its
SQLite storage and 2 worker threads runs N no-op tasks, enqueued one by one
first, exactly as the wharf side does. Prints one JSON line:
{"enqueue_s": ..., "run_s": ..., "jobs": N, "huey": version, "fsync": ...}.

Usage: python3 benches/jobs_huey.py [N] [default|normal|off]   (needs `pip install huey`)

`default` leaves SqliteHuey as it comes (SQLite's synchronous=FULL in WAL
mode: an fsync per commit); `off` is SqliteHuey(fsync=False), which sets
synchronous=OFF, less durable than wharf's synchronous=NORMAL and the
fastest huey can be made; `normal` sets synchronous=NORMAL on each of its
connections, wharf's own durability.
"""

import json
import os
import sys
import tempfile
import threading
import time

import huey
from huey import SqliteHuey
from huey.consumer import Consumer

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
FSYNC = sys.argv[2] if len(sys.argv) > 2 else "off"

directory = tempfile.mkdtemp(prefix="huey-bench-")
class NormalSqliteHuey(SqliteHuey):
    """SqliteHuey with synchronous=NORMAL, as wharf's index runs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        create = self.storage._create_connection

        def normal():
            conn = create()
            conn.execute("pragma synchronous=1")
            return conn

        self.storage._create_connection = normal


path = os.path.join(directory, "huey.db")
if FSYNC == "off":
    queue = SqliteHuey("bench", filename=path, fsync=False)
elif FSYNC == "normal":
    queue = NormalSqliteHuey("bench", filename=path)
else:
    queue = SqliteHuey("bench", filename=path)
done = 0
lock = threading.Lock()


@queue.task()
def noop():
    global done
    with lock:
        done += 1


started = time.perf_counter()
for _ in range(N):
    noop()
enqueued = time.perf_counter()

# The consumer polls an empty queue with backoff; it starts on a full one,
# so its workers dequeue back to back. Signal handlers need the main thread,
# which is where start() runs.
consumer = Consumer(queue, workers=2, worker_type="thread", periodic=False,
                    initial_delay=0.001, backoff=1.0, max_delay=0.001,
                    check_worker_health=False)
run_started = time.perf_counter()
consumer.start()
while True:
    with lock:
        if done >= N:
            break
    time.sleep(0.001)
finished = time.perf_counter()
consumer.stop(graceful=True)
for worker, process in consumer.worker_threads:
    process.join(timeout=5)

print(json.dumps({
    "enqueue_s": enqueued - started,
    "run_s": finished - run_started,
    "jobs": N,
    "huey": huey.__version__,
    "fsync": FSYNC,
}))
