"""Group commit for SQLite: the commits that acknowledge a file share one fdatasync of the WAL.

SQLite runs in WAL mode with synchronous=NORMAL: a commit reaches the OS at once (a killed process
loses nothing) but the disk only at the next checkpoint. A commit that acknowledges a stored or
deleted file must survive power loss too. SQLite's FULL would fsync inside the write lock, once
per commit; instead the committing thread, once its commit is done and the lock free, waits for a
sync of the WAL that started after its commit. While one sync runs, the commits that arrive
meanwhile queue for the next, which covers them all: under load, one fdatasync serves many files.
(SQLite syncs the WAL's header itself when it restarts the log, and syncs the WAL before every
checkpoint, so the frames our sync covers are the ones recovery reads.)

PostgreSQL needs none of this: its commits wait for their WAL flush, which it already shares.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from sqlalchemy.engine import Engine


class WalSync:
    def __init__(self, wal_path: Path):
        self.wal_path = wal_path
        self.syncs = 0  # fdatasyncs done, for tests and benchmarks
        self._cond = threading.Condition()
        self._asked = 0  # commits that asked for a sync
        self._covered = 0  # commits a finished sync covers
        self._syncing = False
        self._fd: int | None = None
        self._fd_pid = 0

    def wait_durable(self) -> None:
        """Return once the caller's (finished) commit is on disk. Raises OSError if syncing fails."""
        with self._cond:
            self._asked += 1
            mine = self._asked
            while self._covered < mine:
                if self._syncing:
                    self._cond.wait()
                    continue
                self._syncing, covers, synced = True, self._asked, False
                self._cond.release()
                try:
                    self._sync()
                    synced = True
                finally:
                    self._cond.acquire()
                    self._syncing = False
                    if synced:
                        self._covered = max(self._covered, covers)
                    self._cond.notify_all()  # (after a failure, a waiter tries again)

    def _sync(self) -> None:
        fd = self._wal_fd()
        if fd is not None:
            os.fdatasync(fd)
            self.syncs += 1

    def _wal_fd(self) -> int | None:
        """The WAL, opened once per process and again when SQLite made a new one. None when there
        is no WAL: SQLite checkpointed it (syncing the database) and removed it."""
        if self._fd is not None and (self._fd_pid != os.getpid() or os.fstat(self._fd).st_nlink == 0):
            if self._fd_pid == os.getpid():
                os.close(self._fd)
            self._fd = None  # (a forked child never closes its parent's descriptor number)
        if self._fd is None:
            try:
                self._fd = os.open(self.wal_path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return None
            self._fd_pid = os.getpid()
        return self._fd


_syncs: dict[str, WalSync] = {}
_syncs_lock = threading.Lock()


def wal_sync_for(engine: Engine) -> WalSync | None:
    """The group committer of an SQLite database file; None for other databases (and in-memory ones)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    if (found := _syncs.get(database)) is not None:  # every durable commit asks: no lock once made
        return found
    with _syncs_lock:
        return _syncs.setdefault(database, WalSync(Path(database + "-wal")))
