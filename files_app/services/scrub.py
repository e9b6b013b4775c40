"""A scrub that finds rot: every stored file (current, in the trash, kept versions) re-read and
checked against the size and sha256 it was uploaded with, and blobs that no row refers to.

A file found damaged (its bytes differ, or its blob is gone) is marked (`damaged_at`): downloads
refuse it with 409 file_damaged, naming the newest intact version, rather than serve rot; one found
whole again (a blob put back from a backup) is unmarked. A mark is set only on the row that still has
the blob read, so a file replaced while it was being read is never marked for the old bytes.
Reading is paced to `rate` bytes a second, so that a scrub of a large store does not starve uploads.
"""

from __future__ import annotations

import fcntl
import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select, text, update

from ..errors import BlobMissing, StorageError
from ..models import Bucket, KeptFile, StoredObject, db, transaction
from ..storage import BlobStore
from .housekeeping import orphan_blob_ids

READ_SIZE = 1024 * 1024
BATCH = 500
_SCRUB_LOCK = 0x66696C6573  # "files": the advisory lock one background scrub holds


@dataclass(frozen=True)
class Finding:
    """One problem: `kind` corrupt, missing or orphan; where (a file, a trash entry, a version, a blob)."""

    kind: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.where}: {self.detail}"


@dataclass
class ScrubReport:
    files: int = 0
    bytes: int = 0
    findings: list[Finding] = field(default_factory=list)
    repaired: int = 0  # files marked damaged before, found whole now
    quarantined: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings


class Pacer:
    """At most `rate` bytes a second on average (None: as fast as the disk goes)."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.rate, self.clock, self.sleep = rate, clock, sleep
        self.start, self.done = clock(), 0

    def took(self, size: int) -> None:
        self.done += size
        if self.rate:
            ahead = self.done / self.rate - (self.clock() - self.start)
            if ahead > 0:
                self.sleep(ahead)


def scrub(store: BlobStore, *, bucket: str | None = None, rate: float | None = None, quarantine: bool = False,
          orphans: bool = True, grace: float = 3600.0, now: float | None = None) -> ScrubReport:
    """Check every file (of `bucket`, if given); report orphan blobs (with the whole store only)."""
    started, report, pacer = time.monotonic(), ScrubReport(), Pacer(rate)
    for table, label in ((StoredObject.__table__, "file"), (KeptFile.__table__, "kept")):
        for row in _rows(table, bucket):
            problem = _check(store, row, pacer)
            report.files += 1
            report.bytes += row.size
            where = f"{row.bucket}/{row.key}" + ("" if label == "file" else f" ({row.kind} entry {row.id})")
            if problem is not None:
                report.findings.append(Finding(problem[0], where, problem[1]))
            if _mark(table, row, damaged=problem is not None, now=now or time.time()) and problem is None:
                report.repaired += 1
    if orphans and bucket is None:
        for blob_id in orphan_blob_ids(store, (now or time.time()) - grace):
            report.findings.append(Finding("orphan", f"blob {blob_id}", "no file, trash entry, version or upload "
                                                                        "refers to it"))
            if quarantine:
                store.quarantine_blob(blob_id)
                report.quarantined += 1
    report.seconds = time.monotonic() - started
    return report


def _rows(table, bucket: str | None) -> Iterator:
    """Every row of a file table (of one bucket), in batches by id, each batch its own snapshot."""
    buckets = Bucket.__table__
    columns = [table.c.id, table.c.key, table.c.blob_id, table.c.size, table.c.sha256, table.c.inline_data,
               table.c.damaged_at, buckets.c.name.label("bucket")]
    if "kind" in table.c:
        columns.append(table.c.kind)
    query = select(*columns).join(buckets, buckets.c.id == table.c.bucket_id).order_by(table.c.id).limit(BATCH)
    if bucket is not None:
        query = query.where(buckets.c.name == bucket)
    after = 0
    while True:
        with transaction():
            rows = db.session.execute(query.where(table.c.id > after)).all()
        yield from rows
        if len(rows) < BATCH:
            return
        after = rows[-1].id


def _check(store: BlobStore, row, pacer: Pacer) -> tuple[str, str] | None:
    """(kind, what is wrong) or None when the bytes are those uploaded."""
    digest, size = hashlib.sha256(), 0
    if row.inline_data is not None:
        digest.update(row.inline_data)
        size = len(row.inline_data)
        pacer.took(size)
    else:
        try:
            with store.open_blob(row.blob_id) as stream:
                for chunk in _chunks(stream):
                    digest.update(chunk)
                    size += len(chunk)
                    pacer.took(len(chunk))
        except BlobMissing:
            return "missing", f"its blob {row.blob_id} is gone"
        except StorageError as error:
            return "missing", f"its blob {row.blob_id} could not be read: {error}"
    if size != row.size:
        return "corrupt", f"{size} bytes stored, {row.size} uploaded"
    if digest.hexdigest() != row.sha256:
        return "corrupt", f"sha256 {digest.hexdigest()} stored, {row.sha256} uploaded"
    return None


@contextmanager
def exclusive(data_dir: str) -> Iterator[bool]:
    """Whether this process may scrub now: one at a time per service (PostgreSQL: a session advisory
    lock, held on a connection of its own; SQLite: a lock on a file in the data dir, which every
    process of a one-machine service shares). False: another is scrubbing."""
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as connection:
            if not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": _SCRUB_LOCK}).scalar():
                yield False
                return
            try:
                yield True
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _SCRUB_LOCK})
                connection.commit()
        return
    with open(Path(data_dir) / "scrub.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _chunks(stream) -> Iterator[memoryview | bytes]:
    """The stream's bytes, read into one reused buffer where the reader can (a file), else read."""
    if not hasattr(stream, "readinto"):
        while chunk := stream.read(READ_SIZE):
            yield chunk
        return
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    while read := stream.readinto(buffer):
        yield view[:read]


def _mark(table, row, *, damaged: bool, now: float) -> bool:
    """Set or clear the row's mark, only if it still has the blob that was read; whether it changed."""
    if damaged == (row.damaged_at is not None):
        return False
    with transaction():
        changed = db.session.execute(update(table).where(table.c.id == row.id, table.c.blob_id == row.blob_id)
                                     .values(damaged_at=int(now) if damaged else None)).rowcount
    return bool(changed)
