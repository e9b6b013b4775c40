"""Reading, writing and hashing a body at once instead of in turns.

A worker thread reading an upload spent about half its time in os.write (the page cache and its
write-back throttling), a quarter reading the socket and the rest hashing, one after the other.
Here each large piece is written by a helper thread while the request's thread hashes it and reads
the next piece (os.write, libcrypto and hashlib release the GIL): one piece in flight, so memory
stays at two pieces per upload, and pieces reach the writer in order, from one thread at a time.
With more uploads than helpers, an upload that finds none free writes in its own thread, as before.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from ..hashing import NoDigest, ResumableSha256
from ..storage import PartialWriter

IN_THREADS_FROM = 256 * 1024  # smaller pieces: a hand-off costs more than it saves


class WriteBehind:
    def __init__(self, writer: PartialWriter, hasher: ResumableSha256 | NoDigest, verifier=None):
        self.writer, self.hasher, self.verifier = writer, hasher, verifier
        self._pending: Future | None = None

    def add(self, data: bytes) -> None:
        """Write `data` after what came before it (in a helper thread when one is free: with many
        uploads at once, each writes its own) and hash it here meanwhile. Errors of the write
        surface here or at `settle`."""
        self.settle()
        helpers = _helpers()
        if len(data) >= IN_THREADS_FROM and helpers.free.acquire(blocking=False):
            self._pending = helpers.pool.submit(self._write_in_helper, helpers, data)
        else:
            self.writer.write(data)
        self.hasher.update(data)
        if self.verifier is not None:
            self.verifier.update(data)

    def settle(self) -> None:
        """Wait for the write in flight; raise what it raised."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def _write_in_helper(self, helpers: _Helpers, data: bytes) -> None:
        try:
            self.writer.write(data)
        finally:
            helpers.free.release()


class _Helpers:
    def __init__(self, count: int):
        self.pool = ThreadPoolExecutor(count, thread_name_prefix="write-behind")
        self.free = threading.BoundedSemaphore(count)  # none free: the upload writes in its own thread


_current: _Helpers | None = None
_current_pid = 0
_current_lock = threading.Lock()


def _helpers() -> _Helpers:
    """One set per process (gunicorn forks workers after import: threads do not survive a fork)."""
    global _current, _current_pid
    if _current is None or _current_pid != os.getpid():
        with _current_lock:
            if _current is None or _current_pid != os.getpid():
                _current, _current_pid = _Helpers(2 * (os.cpu_count() or 2)), os.getpid()
    return _current
