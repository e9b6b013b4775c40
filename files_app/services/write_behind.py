"""Reading, writing and hashing a body at once instead of in turns.

A worker thread reading an upload spent about half its time in os.write (the page cache and its
write-back throttling), a quarter reading the socket and the rest hashing, one after the other.
Here each large piece is written and hashed by helper threads (os.write, libcrypto and hashlib
release the GIL) while the request's thread reads the next piece: one piece in flight, so memory
stays at two pieces per upload, and pieces reach the writer in order, from one thread at a time.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait

from ..hashing import ResumableSha256
from ..storage import PartialWriter

IN_THREADS_FROM = 256 * 1024  # smaller pieces: a hand-off costs more than it saves


class WriteBehind:
    def __init__(self, writer: PartialWriter, hasher: ResumableSha256, verifier=None):
        self.writer, self.hasher, self.verifier = writer, hasher, verifier
        self._pending: list[Future] = []

    def add(self, data: bytes) -> None:
        """Write and hash `data` after what came before it; errors surface here or at `settle`."""
        self.settle()
        if len(data) < IN_THREADS_FROM:
            self.writer.write(data)
            self._hash(data)
        else:
            pool = _pool()
            self._pending = [pool.submit(self.writer.write, data), pool.submit(self._hash, data)]

    def settle(self) -> None:
        """Wait for the piece in flight; raise what writing or hashing it raised."""
        pending, self._pending = self._pending, []
        wait(pending)
        for future in pending:
            future.result()

    def hash_state(self) -> bytes:
        self.settle()
        return self.hasher.state()

    def _hash(self, data: bytes) -> None:
        self.hasher.update(data)
        if self.verifier is not None:
            self.verifier.update(data)


_executor: ThreadPoolExecutor | None = None
_executor_pid = 0
_executor_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """One pool per process (gunicorn forks workers after import: threads do not survive a fork)."""
    global _executor, _executor_pid
    if _executor is None or _executor_pid != os.getpid():
        with _executor_lock:
            if _executor is None or _executor_pid != os.getpid():
                workers = 2 * (os.cpu_count() or 2)
                _executor, _executor_pid = ThreadPoolExecutor(workers, thread_name_prefix="write-behind"), os.getpid()
    return _executor
