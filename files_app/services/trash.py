"""A bucket's trash and a key's versions, on the rows of `kept_files` (kept.py): list them, put them
back, and forget them for good (by hand, and by gc after FILES_TRASH_DAYS).

A restore of many files goes a batch at a time, each batch one durable transaction: killed midway,
every file is in the trash or back, and the same request again restores the rest.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from .. import validation
from ..errors import BlobMissing, Conflict, InvalidInput, NotFound
from ..models import KeptFile, KeptKind, db, transaction
from ..storage.base import MemoryBlobReader
from . import audit, kept
from .objects import ObjectInfo, ObjectService, Tally, key_successor_bound

_kept = KeptFile.__table__
BATCH = 200  # files per transaction of a restore or purge
MAX_IDS = 1000  # ids in one request
MAX_ID = 2**31 - 1  # kept_files.id is an INTEGER (32 bits on PostgreSQL)
_DELETION = re.compile(r"del_[0-9a-f]{24}")  # as kept.new_deletion makes them
_ENTRY_COLUMNS = (_kept.c.id, _kept.c.key, _kept.c.mime_type, _kept.c.size, _kept.c.sha256, _kept.c.created_at,
                  _kept.c.kept_at, _kept.c.kept_by, _kept.c.kept_by_name, _kept.c.deletion, _kept.c.owner)


@dataclass(frozen=True)
class KeptEntry:
    """A file in the trash (deleted at `kept_at` by `kept_by_name`) or a version (replaced then)."""

    id: int
    key: str
    mime_type: str
    size: int
    sha256: str
    created_at: int
    kept_at: float
    kept_by: str | None
    kept_by_name: str | None
    deletion: str | None
    owner: str | None  # who uploaded it

    @classmethod
    def from_row(cls, row) -> KeptEntry:
        return cls(*(getattr(row, column.name) for column in _ENTRY_COLUMNS))


@dataclass(frozen=True)
class TrashPage:
    entries: list[KeptEntry]
    next_cursor: str | None


@dataclass
class Restored:
    """What a restore did: each file put back (its id, its key in the trash, where it went) and
    each left in the trash (its id, key, and why)."""

    restored: list[tuple[int, str, str]] = field(default_factory=list)
    skipped: list[tuple[int, str | None, str]] = field(default_factory=list)  # reason: exists, not_in_trash


class TrashService:
    def __init__(self, objects: ObjectService, clock: Callable[[], float] = time.time):
        self.objects, self.store, self.clock = objects, objects.store, clock

    @property
    def retention(self) -> kept.Retention:
        return self.objects.retention

    # --- the trash -------------------------------------------------------------------------------
    def list(self, bucket: str, *, prefix: str = "", limit: int = 100, cursor: str | None = None) -> TrashPage:
        """Newest first; `cursor` continues from the last page."""
        bucket_id, before = self.objects.bucket_id(bucket), _id_cursor(cursor)
        query = (select(*_ENTRY_COLUMNS).where(_kept.c.bucket_id == bucket_id, _kept.c.kind == KeptKind.TRASH)
                 .order_by(_kept.c.id.desc()).limit(limit + 1))
        if before is not None:
            query = query.where(_kept.c.id < before)
        if prefix:
            query = query.where(_kept.c.key >= prefix, _kept.c.key < key_successor_bound(prefix))
        with transaction():
            rows = db.session.execute(query).all()
        entries = [KeptEntry.from_row(row) for row in rows[:limit]]
        return TrashPage(entries, str(entries[-1].id) if len(rows) > limit else None)

    def restore(self, bucket: str, *, ids: list[int] | None = None, prefix: str | None = None,
                deletion: str | None = None, on_conflict: str = "fail") -> Restored:
        """Put files back at their keys: those named by `ids`, or every one under `prefix`, or those
        of one delete (`deletion`), oldest first (so with `replace` the newest of a key ends current)."""
        bucket_id = self.objects.bucket_id(bucket)
        chosen = self._chosen(bucket_id, ids, prefix, deletion)
        result, after = Restored(), 0
        while True:
            with transaction():
                batch = db.session.scalars(select(_kept.c.id).where(chosen, _kept.c.id > after)
                                           .order_by(_kept.c.id).limit(BATCH)).all()
            if not batch:
                if ids is not None:  # ids not (or no longer) in this trash: said, not silently dropped
                    done = {kept_id for kept_id, _, _ in result.restored + result.skipped}
                    result.skipped += [(kept_id, None, "not_in_trash") for kept_id in dict.fromkeys(ids)
                                       if kept_id not in done]
                return result
            self._restore_batch(bucket, bucket_id, batch, on_conflict, result)
            after = batch[-1]

    def _restore_batch(self, bucket: str, bucket_id: int, batch: list[int], on_conflict: str,
                       result: Restored) -> None:
        """One transaction for the batch; where writers keep taking its names meanwhile (each time
        the batch runs again), a transaction per file, so that the rest is not held up by a few."""
        for _attempt in range(10 if len(batch) == 1 else 2):
            try:
                with transaction(durable=True):
                    tally = Tally()
                    restored, skipped, released = kept.place_back_many(batch, bucket_id, on_conflict, self.retention,
                                                                       tally)
                    tally.apply(int(self.clock()))
                    if restored:
                        audit.record("trash.restore", bucket=bucket, size=None, detail={
                            "files": len(restored), "keys": [to for _, _, to in restored][:1000],
                            "on_conflict": on_conflict})
            except (IntegrityError, Conflict):
                continue  # a name taken or a file changed meanwhile: the batch again, as it is now
            except OperationalError as error:
                if not kept.is_deadlock(error):
                    raise
                continue  # PostgreSQL ended it for another restore taking the same names: again
            break
        else:
            if len(batch) > 1:
                for kept_id in batch:
                    self._restore_batch(bucket, bucket_id, [kept_id], on_conflict, result)
                return
            raise Conflict("the files are being changed too often to restore; retry")
        result.restored += restored
        result.skipped += skipped
        self._release(released)

    def purge(self, bucket: str, ids: list[int] | None = None) -> int:
        """Delete for good: the entries `ids`, or the whole trash as it is now (a file deleted while
        it empties is not taken). How many went."""
        bucket_id = self.objects.bucket_id(bucket)
        chosen = self._chosen(bucket_id, ids, None, None)
        with transaction():
            newest = db.session.scalar(select(func.max(_kept.c.id)).where(chosen))
        if newest is None:
            return 0
        return self._forget(and_(chosen, _kept.c.id <= newest), {}, bucket)

    def collect_garbage(self, now: float) -> int:
        """For gc: forget what has been in the trash longer than FILES_TRASH_DAYS (all of it, once
        the trash is turned off)."""
        cutoff = now - self.retention.trash_days * 86400
        return self._forget(and_(_kept.c.kind == KeptKind.TRASH, _kept.c.kept_at < bindparam("cutoff")),
                            {"cutoff": cutoff}, None)

    def _forget(self, condition, params: dict, bucket: str | None) -> int:
        forgotten = 0
        while True:
            with transaction(durable=True):  # the blobs go next: the rows must not come back
                tally = Tally()
                gone = kept.forget(condition, limit=BATCH, params=params, tally=tally)
                tally.apply(int(self.clock()))
                if gone and bucket is not None:
                    audit.record("trash.purge", bucket=bucket, size=sum(row.size for row in gone),
                                 detail={"files": len(gone), "keys": sorted(row.key for row in gone)})
            self._release(row.blob_id for row in gone)
            forgotten += len(gone)
            if not gone:  # (a short batch is no end: rows a restore took meanwhile were skipped)
                return forgotten

    @staticmethod
    def _chosen(bucket_id: int, ids: list[int] | None, prefix: str | None, deletion: str | None):
        """The trash entries a request names: exactly one of ids, prefix, deletion (none: all)."""
        given = [name for name, value in (("ids", ids), ("prefix", prefix), ("deletion", deletion))
                 if value is not None]
        if len(given) > 1:
            raise InvalidInput(f"give one of ids, prefix, deletion, not {' and '.join(given)}", "invalid_selection")
        condition = and_(_kept.c.bucket_id == bucket_id, _kept.c.kind == KeptKind.TRASH)
        if ids is not None:
            return and_(condition, _kept.c.id.in_(_ids(ids)))
        if prefix is not None:
            prefix = validation.list_prefix(prefix)
            return and_(condition, _kept.c.key >= prefix, _kept.c.key < key_successor_bound(prefix)) \
                if prefix else condition
        if deletion is not None:
            if not isinstance(deletion, str) or not _DELETION.fullmatch(deletion):
                raise InvalidInput("deletion is the id a delete answered (del_...)", "invalid_deletion")
            return and_(condition, _kept.c.deletion == deletion)
        return condition

    def _release(self, blob_ids) -> None:
        for blob_id in blob_ids:
            self.store.release_blob(blob_id)

    # --- versions --------------------------------------------------------------------------------
    def versions(self, bucket: str, key: str) -> list[KeptEntry]:
        """The kept versions of a key, newest first (the current file is not among them)."""
        bucket_id, key = self.objects.bucket_id(bucket), validation.object_key(key, new=False)
        with transaction():
            rows = db.session.execute(select(*_ENTRY_COLUMNS).where(
                _kept.c.bucket_id == bucket_id, _kept.c.key == key, _kept.c.kind == KeptKind.VERSION)
                .order_by(_kept.c.id.desc())).all()
        return [KeptEntry.from_row(row) for row in rows]

    def open_version(self, bucket: str, key: str, version_id: int) -> tuple[ObjectInfo, BinaryIO]:
        """A version's metadata and bytes (kept while they stream, as an open file is)."""
        bucket_id, key = self.objects.bucket_id(bucket), validation.object_key(key, new=False)
        with transaction():
            row = kept.kept_row(version_id, bucket_id, KeptKind.VERSION, key)
        kept.refuse_damaged(row, bucket_id, f"version {version_id}")
        info = ObjectInfo(bucket, key, row.mime_type, row.size, row.sha256, row.created_at, row.owner)
        if row.inline_data is not None:
            return info, MemoryBlobReader(row.inline_data)
        try:
            return info, self.store.open_blob(row.blob_id)
        except BlobMissing:
            raise Conflict("this version was deleted while it was being opened") from None

    def restore_version(self, bucket: str, key: str, version_id: int) -> ObjectInfo:
        """The version becomes the current file; the current one becomes a version."""
        bucket_id, key = self.objects.bucket_id(bucket), validation.object_key(key, new=False)
        for _ in range(5):
            try:
                with transaction(durable=True):
                    kept.kept_row(version_id, bucket_id, KeptKind.VERSION, key)
                    tally = Tally()
                    placed = kept.place_back(version_id, bucket_id, "replace", self.retention, tally, to_key=key)
                    if placed is None:
                        raise NotFound(f"no version {version_id} of {key!r}: restored or deleted meanwhile")
                    tally.apply(int(self.clock()))
                    audit.record("version.restore", bucket=bucket, key=key, detail={"version": version_id})
            except (IntegrityError, Conflict):
                continue
            self._release(placed.released)
            return self.objects.get(bucket, key)
        raise Conflict(f"{key!r} is being changed too often to restore a version; retry")

    def delete_version(self, bucket: str, key: str, version_id: int) -> None:
        """Forget one version for good."""
        bucket_id, key = self.objects.bucket_id(bucket), validation.object_key(key, new=False)
        with transaction(durable=True):
            kept.kept_row(version_id, bucket_id, KeptKind.VERSION, key)
            tally = Tally()
            gone = kept.forget(_kept.c.id == version_id, tally=tally)
            tally.apply(int(self.clock()))
            audit.record("version.delete", bucket=bucket, key=key, detail={"version": version_id})
        self._release(row.blob_id for row in gone)


def _ids(ids) -> list[int]:
    if (not isinstance(ids, list) or not ids or len(ids) > MAX_IDS
            or not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i <= MAX_ID for i in ids)):
        raise InvalidInput(f"ids must be a list of 1 to {MAX_IDS} trash entry ids", "invalid_ids")
    return ids


def _id_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) < 11 and int(cursor) <= MAX_ID):
        raise InvalidInput("cursor is not one this server gave out", "invalid_cursor")
    return int(cursor)
