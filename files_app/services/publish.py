"""Publishing an object: the one transaction that makes a file visible or swaps its bytes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import LeaseLost, PreconditionFailed
from ..models import StoredObject, db, durable_transaction
from .objects import ObjectInfo, count_in_bucket

if TYPE_CHECKING:
    from .uploads import SessionInfo

_objects = StoredObject.__table__
_FIND = select(_objects.c.id, _objects.c.blob_id, _objects.c.size).where(
    _objects.c.bucket_id == bindparam("bucket_id"), _objects.c.key == bindparam("key"))
_SWAP_BLOB = (
    update(_objects)
    .where(_objects.c.id == bindparam("object_id"), _objects.c.blob_id == bindparam("old_blob"))
    .values(blob_id=bindparam("new_blob_id"), mime_type=bindparam("new_mime_type"), size=bindparam("new_size"),
            sha256=bindparam("new_sha256"), created_at=bindparam("new_created_at"),
            inline_data=bindparam("new_inline_data"))
)
_INSERT = insert(_objects)


def publish(info: SessionInfo, bucket_id: int, claim: Callable[[], None], blob_id: str, digest: str,
            create_only: bool, now: int, inline: bytes | None = None) -> tuple[ObjectInfo, str | None]:
    """In one durable transaction: `claim` the session (it raises if it cannot), then insert the
    object or swap its blob. `inline`: the file's bytes, kept in its row (then `blob_id` names no
    blob). Returns the object and the blob it replaced, if any."""
    values = dict(blob_id=blob_id, mime_type=info.mime_type, size=info.size, sha256=digest, created_at=now,
                  inline_data=inline)
    for _ in range(5):
        durable_transaction()
        claim()
        existing = db.session.execute(_FIND, {"bucket_id": bucket_id, "key": info.key}).first()
        if existing and create_only:
            db.session.rollback()
            raise PreconditionFailed(f"{info.key!r} was created by another upload meanwhile")
        try:
            if existing:
                swapped = db.session.execute(_SWAP_BLOB, {
                    "object_id": existing.id, "old_blob": existing.blob_id,
                    **{f"new_{name}": value for name, value in values.items()}}).rowcount
                if swapped != 1:
                    db.session.rollback()
                    continue  # replaced concurrently: read it again
                count_in_bucket(bucket_id, 0, info.size - existing.size, now)
            else:
                db.session.execute(_INSERT, {"bucket_id": bucket_id, "key": info.key, **values})
                count_in_bucket(bucket_id, 1, info.size, now)
            db.session.commit()
        except IntegrityError:
            db.session.rollback()  # created concurrently: go round as a replace
            continue
        obj = ObjectInfo(info.bucket, info.key, info.mime_type, info.size, digest, now)
        return obj, existing.blob_id if existing else None
    raise LeaseLost("too many concurrent replacements of this key; retry")
