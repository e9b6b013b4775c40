"""What is kept of files deleted (the bucket's trash) and replaced (versions of a key): rows of
`kept_files`, each with the blob its file had (a blob id names one upload's bytes, so a file moves
between `objects` and `kept_files` as a row and its bytes never move).

Every move between the two tables is one durable transaction that deletes the row on one side
(RETURNING what it deleted) and inserts it on the other, so a file is in one place or the other,
never both or neither, whatever is killed when. Counters move by what those statements returned
(objects.Tally): a bucket's and an owner's kept files and bytes, which quotas count beside their
files. A blob is released only after the commit that dropped its last row.
"""

from __future__ import annotations

import posixpath
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, delete, insert, select

from ..errors import Conflict, FileDamaged, InvalidInput, NotFound, PreconditionFailed
from ..models import KeptFile, KeptKind, StoredObject, db, transaction
from .acting import current_actor

if TYPE_CHECKING:
    from .objects import Tally

_kept, _objects = KeptFile.__table__, StoredObject.__table__
# What a file row takes with it into kept_files and back.
FILE_COLUMNS = ("key", "blob_id", "mime_type", "size", "sha256", "created_at", "inline_data", "owner", "damaged_at")
OBJECT_RETURNING = tuple(_objects.c[name] for name in FILE_COLUMNS)
KEPT_RETURNING = (_kept.c.id, _kept.c.kind, _kept.c.bucket_id, *(_kept.c[name] for name in FILE_COLUMNS))
_INSERT_KEPT = insert(_kept).returning(_kept.c.id)
_INSERT_OBJECT = insert(_objects)
_AT_KEY = select(_objects.c.id, *OBJECT_RETURNING).where(_objects.c.bucket_id == bindparam("bucket_id"),
                                                         _objects.c.key == bindparam("key"))
KEEP_BOTH_TRIES = 100
ON_CONFLICT = ("fail", "keep_both", "replace")


@dataclass(frozen=True)
class Retention:
    """How long deleted files stay in the trash (days; 0: a delete is forever) and how many replaced
    versions of each key are kept (0: none)."""

    trash_days: int = 30
    versions: int = 10

    @property
    def trash(self) -> bool:
        return self.trash_days > 0


def new_deletion() -> str:
    """One delete's id, shared by every file it takes (a page's selection, a folder): its Undo."""
    return "del_" + uuid.uuid4().hex[:24]


def keep(bucket_id: int, rows: Sequence, kind: KeptKind, tally: Tally, *, deletion: str | None = None) -> list[int]:
    """Rows just deleted from `objects` (RETURNING FILE_COLUMNS) become kept files, inside the
    caller's transaction; their ids."""
    if not rows:
        return []
    actor, now = current_actor(), time.time()
    ids = db.session.execute(_INSERT_KEPT, [
        dict(kind=kind, bucket_id=bucket_id, kept_at=now, kept_by=actor.owner, kept_by_name=actor.name,
             deletion=deletion, **{name: getattr(row, name) for name in FILE_COLUMNS}) for row in rows]).scalars().all()
    for row in rows:
        tally.kept(bucket_id, row.owner, 1, row.size)
    return list(ids)


def keep_replaced(bucket_id: int, row, retention: Retention, tally: Tally) -> list[str]:
    """A file row just replaced or deleted by a replacement (RETURNING FILE_COLUMNS) becomes the newest
    version of its key, and versions past `retention.versions` go. Inside the caller's transaction;
    the blobs to release once it commits (the replaced one's, when no versions are kept)."""
    if retention.versions <= 0:
        return [row.blob_id]
    keep(bucket_id, [row], KeptKind.VERSION, tally)
    return prune_versions(bucket_id, row.key, retention.versions, tally)


def prune_versions(bucket_id: int, key: str, keep_newest: int, tally: Tally) -> list[str]:
    """Drop the versions of a key past the newest `keep_newest`; their blobs, to release after commit."""
    older = (select(_kept.c.id).where(_kept.c.bucket_id == bucket_id, _kept.c.key == key,
                                      _kept.c.kind == KeptKind.VERSION)
             .order_by(_kept.c.id.desc()).offset(keep_newest))
    gone = db.session.execute(delete(_kept).where(_kept.c.id.in_(older.scalar_subquery()))
                              .returning(_kept.c.blob_id, _kept.c.size, _kept.c.owner)).all()
    for row in gone:
        tally.kept(bucket_id, row.owner, -1, -row.size)
    return [row.blob_id for row in gone]


def forget(condition, tally_bucket: int | None = None, *, limit: int | None = None, params: dict | None = None,
           tally: Tally) -> list:
    """Delete kept files for good (those matching `condition`, at most `limit`), inside the caller's
    transaction; the rows, whose blobs the caller releases after commit."""
    chosen = select(_kept.c.id).where(condition).order_by(_kept.c.id)
    if limit is not None:
        chosen = chosen.limit(limit)
    gone = db.session.execute(delete(_kept).where(condition, _kept.c.id.in_(chosen.scalar_subquery()))
                              .returning(_kept.c.id, _kept.c.bucket_id, _kept.c.key, _kept.c.blob_id,
                                         _kept.c.size, _kept.c.owner), params or {}).all()
    for row in gone:
        tally.kept(row.bucket_id, row.owner, -1, -row.size)
    return gone


@dataclass(frozen=True)
class Placed:
    """A kept file put back: where it went, and the blobs freed on the way (to release after commit)."""

    key: str
    replaced: bool
    released: list[str]


def place_back(kept_id: int, bucket_id: int, on_conflict: str, retention: Retention, tally: Tally,
               to_key: str | None = None) -> Placed | None:
    """Move a kept file back among the files (at `to_key`, else its own key), inside the caller's
    transaction. A file already there: `fail` raises PreconditionFailed before anything changed,
    `keep_both` takes the first free "name (n).ext", `replace` makes the current file a version.
    None if the kept file is gone (restored or purged by another request meanwhile). An
    IntegrityError means another request took the name meanwhile: the caller runs its transaction
    again."""
    key = to_key or db.session.scalar(select(_kept.c.key).where(_kept.c.id == kept_id))
    if key is None:
        return None
    current = db.session.execute(_AT_KEY, {"bucket_id": bucket_id, "key": key}).first()
    if current is not None and on_conflict == "fail":
        raise PreconditionFailed(f"{key!r} exists: restore it with on_conflict keep_both or replace")
    row = db.session.execute(delete(_kept).where(_kept.c.id == kept_id, _kept.c.bucket_id == bucket_id)
                             .returning(*KEPT_RETURNING)).first()
    if row is None:
        return None
    tally.kept(bucket_id, row.owner, -1, -row.size)
    released, replaced = [], False
    if current is not None and on_conflict == "keep_both":
        key = _free_key(bucket_id, key)
    elif current is not None:
        gone = db.session.execute(delete(_objects).where(_objects.c.id == current.id,
                                                         _objects.c.blob_id == current.blob_id)
                                  .returning(*OBJECT_RETURNING)).all()
        if not gone:
            raise Conflict(f"{key!r} changed while it was being replaced; retry")
        tally.gone(bucket_id, gone)
        released, replaced = keep_replaced(bucket_id, gone[0], retention, tally), True
    db.session.execute(_INSERT_OBJECT, {"bucket_id": bucket_id, **{name: getattr(row, name) for name in FILE_COLUMNS},
                                        "key": key})
    tally.bucket(bucket_id, 1, row.size)
    tally.owner(row.owner, 1, row.size)
    return Placed(key, replaced, released)


def place_back_many(kept_ids: list[int], bucket_id: int, on_conflict: str, retention: Retention, tally: Tally):
    """place_back for each of `kept_ids`, oldest first, inside the caller's transaction, with set
    statements for the files whose key is free (one DELETE ... RETURNING and one INSERT for all of
    them) and place_back's for the rest. (restored [(id, key, to_key)], skipped [(id, key, reason)],
    blobs to release after commit)."""
    entries = db.session.execute(select(_kept.c.id, _kept.c.key).where(_kept.c.id.in_(kept_ids),
                                                                       _kept.c.bucket_id == bucket_id)
                                 .order_by(_kept.c.id)).all()
    taken = set(db.session.scalars(select(_objects.c.key).where(
        _objects.c.bucket_id == bucket_id, _objects.c.key.in_({entry.key for entry in entries}))))
    free, contested = [], []
    for entry in entries:  # a key free now takes its oldest entry; the later ones meet it as a file there
        (contested if entry.key in taken else free).append(entry)
        taken.add(entry.key)
    restored, skipped, released = [], [], []
    if free:
        rows = db.session.execute(delete(_kept).where(_kept.c.id.in_([entry.id for entry in free]))
                                  .returning(*KEPT_RETURNING)).all()
        if rows:
            db.session.execute(_INSERT_OBJECT, [{"bucket_id": bucket_id,
                                                 **{name: getattr(row, name) for name in FILE_COLUMNS}}
                                                for row in rows])
        for row in sorted(rows, key=lambda row: row.id):
            tally.kept(bucket_id, row.owner, -1, -row.size)
            tally.bucket(bucket_id, 1, row.size)
            tally.owner(row.owner, 1, row.size)
            restored.append((row.id, row.key, row.key))
    for entry in contested:
        try:
            placed = place_back(entry.id, bucket_id, on_conflict, retention, tally)
        except PreconditionFailed:
            skipped.append((entry.id, entry.key, "exists"))
            continue
        if placed is not None:
            restored.append((entry.id, entry.key, placed.key))
            released += placed.released
    return restored, skipped, released


def _free_key(bucket_id: int, key: str) -> str:
    """The first "name (n).ext" not taken in the bucket."""
    stem, dot, extension = key.rpartition(".") if "." in posixpath.basename(key) else (key, "", "")
    for number in range(1, KEEP_BOTH_TRIES):
        candidate = f"{stem} ({number}){dot}{extension}"
        if db.session.execute(_AT_KEY, {"bucket_id": bucket_id, "key": candidate}).first() is None:
            return candidate
    raise Conflict(f"{KEEP_BOTH_TRIES} files named like {key!r} exist already; restore with replace or rename some")


def last_good_version(bucket_id: int, key: str) -> int | None:
    """The newest version of a key that no scrub found damaged, inside the caller's transaction."""
    return db.session.scalar(select(_kept.c.id).where(
        _kept.c.bucket_id == bucket_id, _kept.c.key == key, _kept.c.kind == KeptKind.VERSION,
        _kept.c.damaged_at.is_(None)).order_by(_kept.c.id.desc()).limit(1))


def refuse_damaged(row, bucket_id: int, what: str = "this file") -> None:
    """Damaged bytes are never served: 409 file_damaged, naming the last good version if any."""
    if row.damaged_at is None:
        return
    with transaction():
        good = last_good_version(bucket_id, row.key)
    offer = f"; version {good} is the newest intact one" if good else "; no intact version is kept"
    raise FileDamaged(f"the stored bytes of {what} ({row.key!r}) failed their check (sha256 or size) at "
                      f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(row.damaged_at))}{offer}",
                      good_version=good)


def is_deadlock(error: Exception) -> bool:
    """PostgreSQL ended the transaction to break a deadlock (SQLSTATE 40P01): it may simply run again."""
    return getattr(getattr(error, "orig", None), "sqlstate", None) == "40P01"


def on_conflict_arg(value) -> str:
    if value is None:
        return "fail"
    if value not in ON_CONFLICT:
        raise InvalidInput(f"on_conflict is one of {', '.join(ON_CONFLICT)}", "invalid_on_conflict")
    return value


def kept_row(kept_id: int, bucket_id: int, kind: KeptKind, key: str | None = None):
    """A kept file's row (with its bytes, if inline), inside the caller's transaction; 404 if none."""
    if not 0 < kept_id < 2**31:  # kept_files.id is 32 bits on PostgreSQL: no such id
        raise NotFound(f"no {'version' if kind == KeptKind.VERSION else 'trash entry'} {kept_id} here")
    query = select(_kept).where(_kept.c.id == kept_id, _kept.c.bucket_id == bucket_id, _kept.c.kind == kind)
    if key is not None:
        query = query.where(_kept.c.key == key)
    row = db.session.execute(query).first()
    if row is None:
        raise NotFound(f"no {'version' if kind == KeptKind.VERSION else 'trash entry'} {kept_id} here")
    return row

