"""Rename, move and copy files and whole folders, and delete folders. A move changes rows, never
bytes; a copy writes the bytes again, through the upload path.

A file's move is one durable transaction (its row takes the new bucket and key; a file it replaces
is deleted in the same transaction), so readers see it at the old name or the new one, never both
or neither. A folder is moved or deleted file by file, in batches, in key order: interrupted, the
same request again carries on with what is left. A copy is an upload whose body is the source's
bytes: durable before it shows, checked against the source's sha256, and refused up front where the
space is short, like any upload. A folder delete takes only files placed (uploaded, copied, replaced
or moved) in the folder by the time the caller counted them (`until`, the placement counter's value
then: migration 0014), so it never deletes more than the person who confirmed it saw.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy.exc import IntegrityError

from .. import validation
from ..errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from ..models import KeptKind, StoredObject, db, transaction
from ..storage import BlobStore
from . import audit, kept, quotas
from .objects import (
    ObjectInfo,
    ObjectService,
    Tally,
    bucket_for_writing,
    key_successor_bound,
)
from .uploads import UploadService

BATCH = 500
_objects = StoredObject.__table__
_UNDER = (_objects.c.bucket_id == bindparam("bucket_id"), _objects.c.key >= bindparam("prefix"),
          _objects.c.key < bindparam("upper"))
_KEYS_UNDER = select(_objects.c.key).where(*_UNDER).order_by(_objects.c.key).limit(BATCH)
_COUNT_UNDER = select(func.count(), func.coalesce(func.sum(_objects.c.size), 0)).where(*_UNDER)
_COUNTED = _objects.c.placed <= bindparam("until")
_RETURNED = (_objects.c.id, *kept.OBJECT_RETURNING)
_AT = select(_objects.c.id, _objects.c.blob_id, _objects.c.size, _objects.c.owner).where(
    _objects.c.bucket_id == bindparam("bucket_id"), _objects.c.key == bindparam("key"))


@dataclass(frozen=True)
class FolderCount:
    """What a folder holds, and the placement counter's value when it was counted: the `until`
    that a delete of exactly these files passes."""

    files: int
    bytes: int
    until: int


@dataclass(frozen=True)
class FolderMove:
    moved: int  # or copied
    skipped: list[str]  # keys left alone: their new name was taken


class FolderService:
    def __init__(self, store: BlobStore, objects: ObjectService, uploads: UploadService):
        self.store, self.objects, self.uploads = store, objects, uploads

    def move(self, bucket: str, key: str, to_bucket: str, to_key: str, *, replace: bool = False) -> ObjectInfo:
        """One file to a new name (and bucket, made if missing). 412 if the name is taken, unless `replace`."""
        to_bucket, to_key = validation.bucket_name(to_bucket), validation.object_key(to_key)
        source = self.objects.row(bucket, key)
        if (bucket, key) == (to_bucket, to_key):
            return ObjectInfo.from_row(bucket, source)
        now = int(time.time())
        for _ in range(3):
            try:
                with transaction(durable=True):
                    target_bucket = bucket_for_writing(to_bucket)
                    if target_bucket != source.bucket_id:  # into another bucket: its quota applies
                        quotas.enforce(to_bucket, None, source.size, now)
                    taken = db.session.execute(_AT, {"bucket_id": target_bucket, "key": to_key}).first()
                    if taken is not None and not replace:
                        raise PreconditionFailed(f"{to_key!r} already exists in bucket {to_bucket!r}")
                    replaced = []
                    if taken is not None:
                        # Both rows locked first, in one order (PostgreSQL; SQLite has one writer):
                        # two moves across each other's names (A to B while B to A) would each
                        # take one row and wait for the other, and one would end as a deadlock.
                        db.session.execute(select(_objects.c.id).where(_objects.c.id.in_([source.id, taken.id]))
                                           .order_by(_objects.c.id).with_for_update())
                        # Still that file at that key (not moved away or replaced meanwhile): the counters
                        # move by the row the DELETE returns.
                        replaced = db.session.execute(delete(_objects).where(
                            _objects.c.id == taken.id, _objects.c.blob_id == taken.blob_id,
                            _objects.c.bucket_id == target_bucket, _objects.c.key == to_key)
                            .returning(*kept.OBJECT_RETURNING)).all()
                        if not replaced:
                            raise Conflict(f"{to_key!r} changed while it was being replaced; look again and retry")
                    moved = db.session.execute(
                        update(_objects).where(_objects.c.id == source.id, _objects.c.blob_id == source.blob_id,
                                               _objects.c.bucket_id == source.bucket_id, _objects.c.key == key)
                        .values(bucket_id=target_bucket, key=to_key).returning(_objects.c.size)).all()
                    if not moved:
                        raise Conflict(f"{key!r} changed while it was being moved; look again and retry")
                    # The file rows first, the counter rows last (Tally: one order for every writer).
                    tally = Tally()
                    tally.gone(target_bucket, replaced)
                    # The file it replaced becomes a version of that key (or goes, with versions off).
                    released = kept.keep_replaced(target_bucket, replaced[0], self.objects.retention, tally) \
                        if replaced else []
                    tally.bucket(source.bucket_id, -1, -moved[0].size)
                    tally.bucket(target_bucket, 1, moved[0].size)
                    tally.apply(now)
                    audit.record("move", bucket=bucket, key=key, size=source.size,
                                 detail={"to_bucket": to_bucket, "to_key": to_key, "replaced": taken is not None})
                break
            except IntegrityError:  # the name was taken (or its bucket made) at the same moment
                continue
        else:
            raise Conflict(f"{to_key!r} is being written at the same time; retry")
        for blob_id in released:
            self.store.release_blob(blob_id)
        return ObjectInfo(to_bucket, to_key, source.mime_type, source.size, source.sha256, source.created_at,
                          source.owner)

    def copy(self, bucket: str, key: str, to_bucket: str, to_key: str, *, replace: bool = False,
             owner: str | None = None) -> ObjectInfo:
        """One file's bytes under a new name (and bucket, made if missing), uploaded by `owner`.
        412 if the name is taken, unless `replace`."""
        to_bucket, to_key = validation.bucket_name(to_bucket), validation.object_key(to_key)
        if (bucket, key) == (to_bucket, to_key):
            if not replace:
                raise PreconditionFailed(f"{to_key!r} already exists in bucket {to_bucket!r}")
            return self.objects.get(bucket, key)
        source, stream = self.objects.open(bucket, key)
        with stream:  # an open blob keeps its bytes, whatever happens to the source meanwhile
            copied = self.uploads.put(bucket=to_bucket, key=to_key, body=stream, length=source.size,
                                      mime_type=source.mime_type, sha256=source.sha256, create_only=not replace,
                                      owner=owner)
        # The copy's own "upload" entry is written with it; this one says where its bytes came from.
        with transaction():
            audit.record("copy", bucket=bucket, key=key, size=source.size,
                         detail={"to_bucket": to_bucket, "to_key": to_key})
        return copied

    def move_folder(self, bucket: str, prefix: str, to_bucket: str, to_prefix: str, *,
                    replace: bool = False) -> FolderMove:
        """Every file under `prefix` to the same name under `to_prefix`, a file at a time."""
        return self._each_file(bucket, prefix, to_bucket, to_prefix, lambda key, to_key: self.move(
            bucket, key, to_bucket, to_key, replace=replace))

    def copy_folder(self, bucket: str, prefix: str, to_bucket: str, to_prefix: str, *, replace: bool = False,
                    owner: str | None = None) -> FolderMove:
        """A copy of every file under `prefix` under `to_prefix`, a file at a time."""
        return self._each_file(bucket, prefix, to_bucket, to_prefix, lambda key, to_key: self.copy(
            bucket, key, to_bucket, to_key, replace=replace, owner=owner))

    def _each_file(self, bucket: str, prefix: str, to_bucket: str, to_prefix: str, action) -> FolderMove:
        """`action(key, to_key)` for each file under `prefix`, in key order, batch by batch (files
        added behind the walk are not taken; a name taken at the target is skipped)."""
        prefix, to_prefix = _folder(prefix, "prefix", new=False), _folder(to_prefix, "to_prefix")
        to_bucket = validation.bucket_name(to_bucket)
        if bucket == to_bucket and to_prefix.startswith(prefix):
            raise InvalidInput("a folder cannot go into itself", "invalid_to_prefix")
        bucket_id = self.objects.bucket_id(bucket)
        done, skipped, start = 0, [], prefix
        while True:
            with transaction():
                keys = db.session.scalars(_KEYS_UNDER, {"bucket_id": bucket_id, "prefix": start,
                                                         "upper": key_successor_bound(prefix)}).all()
            for key in keys:
                try:
                    action(key, to_prefix + key[len(prefix):])
                    done += 1
                except PreconditionFailed:
                    skipped.append(key)
                except NotFound:
                    pass  # deleted meanwhile
            if len(keys) < BATCH:
                return FolderMove(done, skipped)
            start = keys[-1] + "\x01"

    def count(self, bucket: str, prefix: str) -> FolderCount:
        """What a confirmation shows: the files under the folder now, and the placement counter's
        value that goes with them (every file counted was placed at or before it, every file placed
        later is past it)."""
        prefix = _folder(prefix, "prefix", new=False)
        params = {"bucket_id": self.objects.bucket_id(bucket), "prefix": prefix, "upper": key_successor_bound(prefix)}
        with transaction():
            until = _placement_counter()
            files, size = db.session.execute(_COUNT_UNDER, params).one()
        return FolderCount(int(files), int(size), until)  # PostgreSQL sums to a Decimal

    def delete_folder(self, bucket: str, prefix: str, *, until: int | None = None,
                      deletion: str | None = None) -> int:
        """Delete the files under `prefix` that a count saw: placed at or before `until`; without
        it, every file there now. Into the trash (if kept), all under `deletion` (its Undo).
        A batch per durable transaction; files placed later stay. Returns how many went."""
        prefix = _folder(prefix, "prefix", new=False)
        trashing, deletion = self.objects.retention.trash, deletion or kept.new_deletion()
        bucket_id, deleted = self.objects.bucket_id(bucket), 0
        params = {"bucket_id": bucket_id, "prefix": prefix, "upper": key_successor_bound(prefix),
                  "until": until}
        counted = [_COUNTED] if until is not None else []
        while True:
            with transaction(durable=True):
                # The next batch chosen and deleted in one statement, its conditions repeated outside
                # the subquery: PostgreSQL judges a row that changed meanwhile (a file moved out of
                # the folder, replaced or placed after the count) on its newest version by those,
                # and keeps it. The counters move by what was deleted (RETURNING).
                batch = select(_objects.c.id).where(*_UNDER, *counted).order_by(_objects.c.key).limit(BATCH)
                gone = db.session.execute(delete(_objects).where(*_UNDER, *counted,
                                                                 _objects.c.id.in_(batch.scalar_subquery()))
                                          .returning(*_RETURNED), params).all()
                if gone:
                    tally = Tally()
                    tally.gone(bucket_id, gone)
                    if trashing:
                        kept.keep(bucket_id, gone, KeptKind.TRASH, tally, deletion=deletion)
                    tally.apply(int(time.time()))
                    # Which files: an audit shows what a folder delete took, not only how many.
                    audit.record("folder.delete", bucket=bucket, key=prefix, size=sum(row.size for row in gone),
                                 detail={"files": len(gone), "keys": sorted(row.key for row in gone),
                                         **({"trash": deletion} if trashing else {})})
            for row in gone if not trashing else ():  # after the commit: a crash here leaves orphans for gc
                self.store.release_blob(row.blob_id)
            deleted += len(gone)
            if len(gone) < BATCH:
                return deleted


def _placement_counter() -> int:
    """The placement counter now. On PostgreSQL a sequence runs ahead of commits, so a lock that
    waits for every transaction writing files (and holds new ones off until this transaction
    ends) comes first: each number at or below the value read is then a committed, visible row."""
    if db.session.get_bind().dialect.name == "sqlite":
        return int(db.session.scalar(text("SELECT value FROM placement_clock")))
    db.session.execute(text("LOCK TABLE objects IN SHARE MODE"))
    last, called = db.session.execute(text("SELECT last_value, is_called FROM object_placements")).one()
    return int(last) if called else 0


def _folder(prefix: str, name: str, *, new: bool = True) -> str:
    """A folder is a non-empty prefix ending in '/'. `new=False` for a folder that exists already:
    its files may carry names an older rule allowed (see validation.object_key), and stay reachable."""
    prefix = validation.list_prefix(prefix)
    if not prefix.endswith("/"):
        raise InvalidInput(f"{name} must be a folder: a prefix ending in '/'", f"invalid_{name}")
    validation.object_key(prefix + "x", new=new)  # the folder's names are a key's
    return prefix
