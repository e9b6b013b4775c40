"""Group commit: durable SQLite commits share fdatasyncs of the WAL, and none returns before one
that started after it."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from files_app import group_commit
from files_app.errors import CommitNotDurable
from files_app.group_commit import WalSync, wal_sync_for
from files_app.models import db, transaction


def wait_until(predicate, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_commits_that_arrive_during_a_sync_share_the_next_one(tmp_path):
    wal = tmp_path / "db-wal"
    wal.write_bytes(b"frames")
    sync = WalSync(wal)
    first_sync_started, release_first = threading.Event(), threading.Event()
    real_sync = sync._sync

    def sync_and_hold_the_first():
        if not first_sync_started.is_set():
            first_sync_started.set()
            assert release_first.wait(10)
        real_sync()

    sync._sync = sync_and_hold_the_first
    with ThreadPoolExecutor(8) as pool:  # each caller's result is read: an error in its thread fails the test
        first = pool.submit(sync.wait_durable)
        assert first_sync_started.wait(10)
        later = [pool.submit(sync.wait_durable) for _ in range(7)]
        wait_until(lambda: sync._asked == 8)  # all seven asked while the first sync ran
        assert not any(caller.done() for caller in later)  # none returned on a sync that began before it asked
        release_first.set()
        for caller in [first, *later]:
            caller.result(timeout=10)
    assert sync.syncs == 2  # one for the first, one shared by the seven


def test_a_failed_sync_is_the_callers_error_and_the_next_caller_syncs_again(tmp_path, monkeypatch):
    wal = tmp_path / "db-wal"
    wal.write_bytes(b"frames")
    sync = WalSync(wal)
    monkeypatch.setattr(group_commit.os, "fdatasync", lambda fd: (_ for _ in ()).throw(OSError(5, "EIO")))
    with pytest.raises(OSError):
        sync.wait_durable()
    monkeypatch.undo()
    sync.wait_durable()
    assert sync.syncs == 1


def test_a_wal_made_anew_is_opened_anew(tmp_path):
    wal = tmp_path / "db-wal"
    wal.write_bytes(b"old")
    sync = WalSync(wal)
    sync.wait_durable()
    wal.unlink()  # SQLite removed it at its last close, then made a new one
    sync.wait_durable()  # no WAL: nothing to sync, no error
    assert sync.syncs == 1
    wal.write_bytes(b"new")
    sync.wait_durable()
    assert sync.syncs == 2 and os.fstat(sync._fd).st_ino == wal.stat().st_ino


@pytest.mark.parametrize("deployment", ["local"], indirect=True)
def test_a_durable_block_ends_after_a_sync_and_others_do_not_sync(app, monkeypatch):
    synced = []
    real = group_commit.os.fdatasync
    monkeypatch.setattr(group_commit.os, "fdatasync", lambda fd: (synced.append(fd), real(fd)))
    with app.app_context():
        with transaction():
            db.session.execute(text("CREATE TABLE IF NOT EXISTS probe (n INTEGER)"))
        with transaction():
            db.session.execute(text("INSERT INTO probe VALUES (1)"))
        assert synced == []
        with transaction(durable=True):
            db.session.execute(text("INSERT INTO probe VALUES (2)"))
        assert len(synced) == 1
        assert wal_sync_for(db.engine).wal_path.name.endswith("files.db-wal")


@pytest.mark.parametrize("deployment", ["local"], indirect=True)
def test_a_commit_the_disk_refuses_to_sync_is_reported_and_stays_committed(app, monkeypatch):
    monkeypatch.setattr(group_commit.os, "fdatasync", lambda fd: (_ for _ in ()).throw(OSError(5, "EIO")))
    with app.app_context():
        with pytest.raises(CommitNotDurable):
            with transaction(durable=True):
                db.session.execute(text("CREATE TABLE probe (n INTEGER)"))
                db.session.execute(text("INSERT INTO probe VALUES (7)"))
        assert db.session.scalar(text("SELECT n FROM probe")) == 7
        db.session.rollback()
