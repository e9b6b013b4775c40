"""Upload sessions: create, write a chunk at an offset, complete, abort, expire.

The session row is the truth. Its `offset` only advances after the bytes are synced, and one
writer at a time holds a lease on it (compare-and-set, so it works across processes, hosts and
databases). No database transaction stays open while a body streams: each step is short.
"""

from __future__ import annotations

import hmac
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from .. import validation
from ..errors import (
    ChecksumMismatch,
    DigestMismatch,
    IncompleteBody,
    LeaseLost,
    NotFound,
    OffsetMismatch,
    PreconditionFailed,
    SessionExpired,
    SessionLocked,
    TooLarge,
)
from ..hashing import ResumableSha256, chunk_hasher
from ..models import Bucket, StoredObject, UploadSession, db
from ..storage import BlobStore, PartialWriter
from .objects import ObjectInfo, ObjectService

READ_SIZE = 1024 * 1024  # bodies are read in fixed chunks: memory stays flat


class Body(Protocol):
    def read(self, size: int) -> bytes:
        """Up to `size` bytes, b"" at the end; raises IncompleteBody if the body breaks off."""


@dataclass(frozen=True)
class SessionInfo:
    id: str
    bucket: str
    key: str
    mime_type: str
    size: int
    offset: int
    completed: bool
    expires_at: float


@dataclass(frozen=True)
class WriteResult:
    session: SessionInfo
    object: ObjectInfo | None  # set when this write completed the upload


class UploadService:
    def __init__(self, store: BlobStore, objects: ObjectService, settings: dict[str, Any],
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.objects = objects
        self.clock = clock
        self.ttl = settings["FILES_SESSION_TTL"]
        self.lease_ttl = settings["FILES_LEASE_TTL"]
        self.checkpoint_bytes = settings["FILES_CHECKPOINT_BYTES"]
        self.max_size = settings["FILES_MAX_OBJECT_SIZE"]

    # --- create / read / abort ---------------------------------------------------------
    def create(self, *, bucket: Any, key: Any, size: Any, mime_type: Any = None,
               sha256: Any = None, create_only: bool = False) -> SessionInfo:
        bucket = validation.bucket_name(bucket)
        key = validation.object_key(key)
        size = validation.object_size(size, self.max_size)
        mime_type = validation.mime_type(mime_type, key)
        expected = validation.sha256_hex(sha256)
        if create_only and self._object_exists(bucket, key):
            raise PreconditionFailed(f"{key!r} already exists in bucket {bucket!r}")
        bucket_id = self.objects.ensure_bucket(bucket)
        now = self.clock()
        row = UploadSession(
            id=uuid.uuid4().hex, bucket_id=bucket_id, key=key, mime_type=mime_type, size=size,
            offset=0, state="active", expected_sha256=expected, create_only=create_only,
            hash_state=None, created_at=int(now), expires_at=now + self.ttl,
            lease_token=None, lease_expires_at=0.0,
        )
        db.session.add(row)
        db.session.commit()
        if size == 0:  # nothing to send: the empty file exists as soon as its session does
            self.write(row.id, _EmptyBody())
        return self.get(row.id)

    def get(self, session_id: str) -> SessionInfo:
        row = self._load(session_id)
        info = self._info(row)
        db.session.commit()
        if not info.completed and info.expires_at < self.clock():
            raise SessionExpired(f"upload session {session_id} has expired")
        return info

    def abort(self, session_id: str) -> None:
        """Forget a session and free its bytes. A writer still streaming loses its lease."""
        self._load(session_id)
        db.session.execute(delete(UploadSession).where(UploadSession.id == session_id))
        db.session.commit()
        self.store.discard_partial(session_id)

    # --- write -------------------------------------------------------------------------
    def write(self, session_id: str, body: Body, *, length: int | None = None,
              offset: int | None = None, checksum: tuple[str, bytes] | None = None) -> WriteResult:
        """Append `body` at the session's offset. `length` is the declared body length (None
        when chunked), `offset` the client's idea of where this chunk starts, `checksum` an
        (algorithm, digest) the chunk must match or be discarded."""
        try:
            token = self._acquire_lease(session_id)
        except _AlreadyComplete as done:
            return self._rewrite_complete(done.info, body, offset)
        try:
            row = self._load(session_id)
            info = self._info(row)
            hash_state, expected, create_only = row.hash_state, row.expected_sha256, row.create_only
            db.session.commit()
            if offset is not None and offset != info.offset:
                raise OffsetMismatch(info.offset, offset)
            if length is not None and info.offset + length > info.size:
                raise TooLarge(f"{length} bytes at offset {info.offset} run past the size {info.size}")
            writer = self.store.open_partial(session_id, info.offset)
            try:
                position, hasher = self._stream(info, token, writer, body, length, hash_state, checksum)
                if position < info.size:
                    self._checkpoint(session_id, token, position, hasher.state(), release=True)
                    token = None
                    return WriteResult(self._info_at(info, position), None)
            finally:
                writer.close()
            obj = self._complete(info, token, hasher.hexdigest(), expected, create_only)
            token = None
            return WriteResult(self._info_at(info, info.size, completed=True), obj)
        finally:
            if token is not None:
                self._release_lease(session_id, token)

    def _stream(self, info: SessionInfo, token: str, writer: PartialWriter, body: Body, length: int | None,
                hash_state: bytes | None, checksum: tuple[str, bytes] | None) -> tuple[int, ResumableSha256]:
        """Copy the body to the writer while hashing; make progress durable every so often.

        A chunk with a checksum is all or nothing, so it is only made durable at its end.
        """
        hasher = ResumableSha256.from_state(hash_state)
        start_state = hasher.state()
        verifier = chunk_hasher(checksum[0]) if checksum else None
        position = durable = info.offset
        renewed = self.clock()
        try:
            while data := body.read(READ_SIZE):
                if position + len(data) > info.size:
                    raise TooLarge(f"the body runs past the session's size {info.size}")
                writer.write(data)
                hasher.update(data)
                if verifier:
                    verifier.update(data)
                position += len(data)
                if verifier is None and position - durable >= self.checkpoint_bytes:
                    writer.sync()
                    self._checkpoint(info.id, token, position, hasher.state())
                    durable, renewed = position, self.clock()
                elif self.clock() - renewed > self.lease_ttl / 3:
                    self._renew_lease(info.id, token)
                    renewed = self.clock()
            if length is not None and position - info.offset < length:
                # Some servers end the stream quietly when the client goes away.
                raise IncompleteBody(f"the body ended after {position - info.offset} of {length} bytes")
        except IncompleteBody:
            # Keep what arrived: it is the client's progress. A checksummed chunk is never partial.
            if verifier is None and position > durable:
                writer.sync()
                self._checkpoint(info.id, token, position, hasher.state())
            elif verifier is not None:
                writer.rollback(info.offset)
            raise
        except TooLarge:
            writer.rollback(info.offset)  # nothing of a refused body is kept
            if durable != info.offset:
                self._checkpoint(info.id, token, info.offset, start_state)
            raise
        if verifier is not None and not hmac.compare_digest(verifier.digest(), checksum[1]):
            writer.rollback(info.offset)
            raise ChecksumMismatch(f"the chunk's {checksum[0]} does not match Upload-Checksum",
                                   headers={"Upload-Offset": str(info.offset)}, offset=info.offset)
        if position != durable:
            writer.sync()
        return position, hasher

    def _complete(self, info: SessionInfo, token: str, digest: str, expected: str | None,
                  create_only: bool) -> ObjectInfo:
        if expected and not hmac.compare_digest(digest, expected):
            self._discard(info.id)
            raise DigestMismatch(f"the file's sha256 is {digest}, not the {expected} announced",
                                 sha256=digest)
        blob_id = uuid.uuid4().hex
        self.store.finalize(info.id, blob_id, info.size)
        try:
            obj, replaced = self._publish(info, token, blob_id, digest, create_only)
        except PreconditionFailed:
            self.store.delete_blob(blob_id)
            self._discard(info.id)
            raise
        except BaseException:
            self.store.delete_blob(blob_id)
            raise
        if replaced:
            self.store.delete_blob(replaced)  # readers that opened it keep their copy
        return obj

    def _publish(self, info: SessionInfo, token: str, blob_id: str, digest: str,
                 create_only: bool) -> tuple[ObjectInfo, str | None]:
        """Make the object visible, or replace the key's bytes, in one transaction."""
        now = self.clock()
        for _ in range(5):
            done = db.session.execute(
                update(UploadSession)
                .where(UploadSession.id == info.id, UploadSession.lease_token == token)
                .values(state="completed", offset=info.size, hash_state=None, lease_token=None,
                        lease_expires_at=0.0, expires_at=now + self.ttl)
            )
            if done.rowcount != 1:
                db.session.rollback()
                raise LeaseLost("the upload session was taken over or aborted while completing")
            bucket_id = db.session.scalar(select(UploadSession.bucket_id).where(UploadSession.id == info.id))
            existing = db.session.execute(
                select(StoredObject.id, StoredObject.blob_id)
                .where(StoredObject.bucket_id == bucket_id, StoredObject.key == info.key)
            ).first()
            values = dict(blob_id=blob_id, mime_type=info.mime_type, size=info.size, sha256=digest,
                          created_at=int(now))
            if existing and create_only:
                db.session.rollback()
                raise PreconditionFailed(f"{info.key!r} was created by another upload meanwhile")
            try:
                if existing:
                    changed = db.session.execute(
                        update(StoredObject)
                        .where(StoredObject.id == existing.id, StoredObject.blob_id == existing.blob_id)
                        .values(**values)
                    ).rowcount
                    if changed != 1:
                        db.session.rollback()
                        continue  # replaced concurrently: read it again
                else:
                    db.session.add(StoredObject(bucket_id=bucket_id, key=info.key, **values))
                db.session.commit()
            except IntegrityError:
                db.session.rollback()  # created concurrently: go round as a replace
                continue
            obj = ObjectInfo(info.bucket, info.key, info.mime_type, info.size, digest, int(now))
            return obj, existing.blob_id if existing else None
        raise LeaseLost("too many concurrent replacements of this key; retry")

    # --- lease and checkpoints ------------------------------------------------------------
    def _rewrite_complete(self, info: SessionInfo, body: Body, offset: int | None) -> WriteResult:
        """A retry after the completing answer was lost: nothing more to write, same answer."""
        if offset is not None and offset != info.size:
            raise OffsetMismatch(info.size, offset)
        if body.read(1):
            raise TooLarge("the upload is already complete", offset=info.size)
        try:
            obj = self.objects.get(info.bucket, info.key)
        except NotFound:
            obj = None  # deleted since; the session still reports its end
        return WriteResult(info, obj)

    def _acquire_lease(self, session_id: str) -> str:
        token = uuid.uuid4().hex
        now = self.clock()
        taken = db.session.execute(
            update(UploadSession)
            .where(
                UploadSession.id == session_id,
                UploadSession.state == "active",
                UploadSession.expires_at >= now,
                or_(UploadSession.lease_token.is_(None), UploadSession.lease_expires_at < now),
            )
            .values(lease_token=token, lease_expires_at=now + self.lease_ttl)
        ).rowcount
        db.session.commit()
        if taken == 1:
            return token
        # Say precisely why not.
        info = self.get(session_id)  # 404 / 410
        if info.completed:
            raise _AlreadyComplete(info)
        row = db.session.get(UploadSession, session_id)
        wait = math.ceil(row.lease_expires_at - now) if row else 1
        db.session.commit()
        raise SessionLocked(max(wait, 1))

    def _renew_lease(self, session_id: str, token: str) -> None:
        now = self.clock()
        renewed = db.session.execute(
            update(UploadSession)
            .where(UploadSession.id == session_id, UploadSession.lease_token == token)
            .values(lease_expires_at=now + self.lease_ttl, expires_at=now + self.ttl)
        ).rowcount
        db.session.commit()
        if renewed != 1:
            raise LeaseLost("the upload session was taken over or aborted while writing")

    def _checkpoint(self, session_id: str, token: str, offset: int, hash_state: bytes,
                    release: bool = False) -> None:
        now = self.clock()
        values: dict[str, Any] = dict(offset=offset, hash_state=hash_state, expires_at=now + self.ttl,
                                      lease_expires_at=now + self.lease_ttl)
        if release:
            values.update(lease_token=None, lease_expires_at=0.0)
        done = db.session.execute(
            update(UploadSession)
            .where(UploadSession.id == session_id, UploadSession.lease_token == token)
            .values(**values)
        ).rowcount
        db.session.commit()
        if done != 1:
            raise LeaseLost("the upload session was taken over or aborted while writing")

    def _release_lease(self, session_id: str, token: str) -> None:
        db.session.rollback()
        db.session.execute(
            update(UploadSession)
            .where(UploadSession.id == session_id, UploadSession.lease_token == token)
            .values(lease_token=None, lease_expires_at=0.0)
        )
        db.session.commit()

    # --- housekeeping ------------------------------------------------------------------------
    def _discard(self, session_id: str) -> None:
        db.session.execute(delete(UploadSession).where(UploadSession.id == session_id))
        db.session.commit()
        self.store.discard_partial(session_id)

    def collect_garbage(self, grace: float = 3600.0) -> dict[str, int]:
        """Delete expired sessions and their bytes, then bytes that no row refers to.

        `grace` spares files younger than that many seconds: a blob is renamed into place
        a moment before its row commits, and must not be swept in between.
        """
        now = self.clock()
        expired = db.session.scalars(
            select(UploadSession.id).where(
                UploadSession.expires_at < now,
                or_(UploadSession.lease_token.is_(None), UploadSession.lease_expires_at < now),
            )
        ).all()
        for batch in _batches(expired):
            db.session.execute(delete(UploadSession).where(UploadSession.id.in_(batch)))
        db.session.commit()
        for session_id in expired:
            self.store.discard_partial(session_id)
        orphan_partials = self._orphans(self.store.partial_ids(now - grace), UploadSession.id)
        for session_id in orphan_partials:
            self.store.discard_partial(session_id)
        orphan_blobs = self._orphans(self.store.blob_ids(now - grace), StoredObject.blob_id)
        for blob_id in orphan_blobs:
            self.store.delete_blob(blob_id)
        return {"expired_sessions": len(expired), "orphan_partials": len(orphan_partials),
                "orphan_blobs": len(orphan_blobs)}

    def _orphans(self, ids, column) -> list[str]:
        orphans = []
        for batch in _batches(list(ids)):
            known = set(db.session.scalars(select(column).where(column.in_(batch))).all())
            orphans.extend(i for i in batch if i not in known)
        db.session.commit()
        return orphans

    # --- helpers -------------------------------------------------------------------------------
    def _object_exists(self, bucket: str, key: str) -> bool:
        try:
            self.objects.get(bucket, key)
            return True
        except NotFound:
            return False

    def _load(self, session_id: str) -> UploadSession:
        row = db.session.get(UploadSession, session_id) if _is_session_id(session_id) else None
        if row is None:
            db.session.rollback()
            raise NotFound(f"no upload session {session_id!r}")
        return row

    def _info(self, row: UploadSession) -> SessionInfo:
        bucket = db.session.scalar(select(Bucket.name).where(Bucket.id == row.bucket_id))
        return SessionInfo(row.id, bucket, row.key, row.mime_type, row.size, row.offset,
                           row.state == "completed", row.expires_at)

    def _info_at(self, info: SessionInfo, offset: int, completed: bool = False) -> SessionInfo:
        return SessionInfo(info.id, info.bucket, info.key, info.mime_type, info.size, offset,
                           completed, self.clock() + self.ttl)


class _AlreadyComplete(Exception):
    def __init__(self, info: SessionInfo):
        self.info = info


class _EmptyBody:
    def read(self, size: int) -> bytes:
        return b""


def _is_session_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def _batches(items: list, size: int = 500):
    for start in range(0, len(items), size):
        yield items[start:start + size]


