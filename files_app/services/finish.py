"""The end of every upload: its bytes placed as a blob (or kept inline), then the one durable
transaction that completes the session and makes the file visible.

Where the bytes come from is a `BlobSource`: a session's synced partial file (chunked uploads, and
concatenation where the store must copy), blobs the store joins itself (concatenation on S3), or
bytes in hand (a small whole file). `publish` is the same for all.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import LeaseLost, NotFound, PreconditionFailed
from ..models import Bucket, StoredObject, db, transaction
from ..storage import BlobStore
from . import audit, kept, quotas
from .acting import current_actor
from .kept import Retention
from .leases import Lease
from .objects import ObjectInfo, Tally, bucket_for_writing
from .records import Target


class BlobSource(Protocol):
    inline: bytes | None  # the file's bytes, to keep in its row instead of a blob

    def place(self) -> str:
        """Make the bytes a durable blob (unless inline); its id."""

    def abandon(self, blob_id: str, for_good: bool) -> None:
        """Publishing failed: free what `place` made, unless a retry can still use it (`for_good`:
        none will)."""

    def published(self) -> None:
        """The file is visible: free what the upload held on the way."""


class SyncedPartial:
    """A session's partial file, synced to its end: it becomes the blob named after the session."""

    inline = None

    def __init__(self, store: BlobStore, session_id: str, size: int, store_state: str | None):
        self.store, self.session_id, self.size, self.store_state = store, session_id, size, store_state

    def place(self) -> str:
        self.store.finalize(self.session_id, self.size, self.store_state)
        return self.session_id

    def abandon(self, blob_id: str, for_good: bool) -> None:
        # Kept for a retry to find (gc spares it while the session lives), unless none will come.
        if for_good:
            self.store.delete_blob(blob_id)

    def published(self) -> None:
        self.store.discard_partial(self.session_id, self.store_state)


class JoinedBlobs:
    """Blobs joined by the store itself into the blob named after the session (S3: part copies)."""

    inline = None

    def __init__(self, store: BlobStore, blob_ids: list[str], session_id: str):
        self.store, self.blob_ids, self.session_id = store, blob_ids, session_id

    def place(self) -> str:
        return self.store.join_blobs(self.blob_ids, self.session_id)

    def abandon(self, blob_id: str, for_good: bool) -> None:
        if for_good:
            self.store.delete_blob(blob_id)

    def published(self) -> None:
        pass


class BytesInHand:
    """A small whole file read into memory: inline in its row up to `inline_max`, else a blob
    written in one go under a fresh id (never the session's: a racing request may be writing that)."""

    def __init__(self, store: BlobStore, data: bytes, inline_max: int):
        self.store, self.data = store, data
        self.inline = data if len(data) <= inline_max else None

    def place(self) -> str:
        blob_id = uuid.uuid4().hex
        if self.inline is None:
            self.store.put_blob(blob_id, self.data)
        return blob_id

    def abandon(self, blob_id: str, for_good: bool) -> None:
        if self.inline is None:
            self.store.delete_blob(blob_id)  # nobody else knows its id

    def published(self) -> None:
        pass


_objects, _buckets = StoredObject.__table__, Bucket.__table__
# The file under the key, with what it takes into its version if it is replaced.
_FIND = select(_objects.c.id, *kept.OBJECT_RETURNING).where(
    _objects.c.bucket_id == bindparam("bucket_id"), _objects.c.key == bindparam("key"))
# The bucket by name and the file it may already hold under the key, in one query.
_FIND_BY_NAME = (
    select(_buckets.c.id.label("bucket_id"), _objects.c.id, *kept.OBJECT_RETURNING)
    .select_from(_buckets.outerjoin(_objects, and_(_objects.c.bucket_id == _buckets.c.id,
                                                   _objects.c.key == bindparam("key"))))
    .where(_buckets.c.name == bindparam("bucket"))
)
# The file read in this transaction, still at this key with the same bytes: one moved away or
# replaced meanwhile is not overwritten (the loop reads again).
_SWAP_BLOB = (
    update(_objects)
    .where(_objects.c.id == bindparam("object_id"), _objects.c.blob_id == bindparam("old_blob"),
           _objects.c.bucket_id == bindparam("at_bucket_id"), _objects.c.key == bindparam("at_key"))
    .values(blob_id=bindparam("new_blob_id"), mime_type=bindparam("new_mime_type"), size=bindparam("new_size"),
            sha256=bindparam("new_sha256"), created_at=bindparam("new_created_at"),
            inline_data=bindparam("new_inline_data"), owner=bindparam("new_owner"),
            damaged_at=bindparam("new_damaged_at"))
)
_INSERT = insert(_objects)


def publish(target: Target, blob_id: str, digest: str, now: int, inline: bytes | None,
            lease: Lease | None, retention: Retention) -> tuple[ObjectInfo, list[str]]:
    """In one durable transaction: complete the session (if the file comes from one: `lease`), then
    insert the object or swap its blob (the file replaced becomes a version of the key). `inline`:
    the file's bytes, kept in its row (then `blob_id` names no blob). Returns the object and the
    blobs to release (a replaced file's, with versions off; versions past the limit)."""
    values = dict(blob_id=blob_id, mime_type=target.mime_type, size=target.size, sha256=digest, created_at=now,
                  inline_data=inline, owner=target.owner, damaged_at=None)
    for _ in range(5):
        try:
            with transaction(durable=True):
                if lease:
                    lease.complete(target.size)
                else:  # a file sent whole: no session recorded its promise, so check it here
                    quotas.enforce(target.bucket, target.owner, target.size, now)
                bucket_id, existing = _locate(target)
                tally = Tally()
                if existing and target.create_only:
                    raise PreconditionFailed(f"{target.key!r} was created by another upload meanwhile")
                if existing:
                    swapped = db.session.execute(_SWAP_BLOB, {
                        "object_id": existing.id, "old_blob": existing.blob_id, "at_bucket_id": bucket_id,
                        "at_key": target.key,
                        **{f"new_{name}": value for name, value in values.items()}}).rowcount
                    if swapped != 1:
                        raise _Replaced()
                    # The statement matched the blob read: a row's columns change only with its blob
                    # (blob ids are unique), so what it replaced is what was read.
                    tally.gone(bucket_id, [existing])
                    released = kept.keep_replaced(bucket_id, existing, retention, tally)
                else:
                    released = []
                    db.session.execute(_INSERT, {"bucket_id": bucket_id, "key": target.key, **values})
                tally.bucket(bucket_id, 1, target.size)
                tally.owner(target.owner, 1, target.size)
                tally.apply(now)  # the counter rows last, in one order (objects.Tally)
                audit.record("upload", bucket=target.bucket, key=target.key, size=target.size,
                             detail={"replaced": True} if existing else None)
        except (_Replaced, IntegrityError):
            continue  # replaced, created or its bucket made concurrently: read it again
        if lease:
            lease.completed()
        obj = ObjectInfo(target.bucket, target.key, target.mime_type, target.size, digest, now, target.owner)
        return obj, released
    raise LeaseLost("too many concurrent replacements of this key; retry")


def _locate(target: Target):
    """(the bucket's id, the file under the key or None). A target without a bucket id (a file
    sent whole, with no session to hold its bucket) finds its bucket by name, and makes it if
    there is none, in the publishing transaction itself. A member's right to write there is checked
    again here, in this transaction: a grant taken away since the upload began stops it."""
    if not current_actor().every_bucket:
        bucket_id = bucket_for_writing(target.bucket)
        if target.bucket_id is not None and bucket_id != target.bucket_id:
            raise NotFound(f"bucket {target.bucket!r} is not the one this upload began in")
        return bucket_id, db.session.execute(_FIND, {"bucket_id": bucket_id, "key": target.key}).first()
    if target.bucket_id is not None:
        return target.bucket_id, db.session.execute(_FIND, {"bucket_id": target.bucket_id, "key": target.key}).first()
    found = db.session.execute(_FIND_BY_NAME, {"bucket": target.bucket, "key": target.key}).first()
    if found is None:
        return bucket_for_writing(target.bucket), None
    return found.bucket_id, found if found.id is not None else None


class _Replaced(Exception):
    pass
