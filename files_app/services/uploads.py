"""Upload sessions: create, write a chunk at an offset, complete, concatenate, abort, expire.

The session row is the truth. Its `offset` only advances after the bytes are synced, and one
writer at a time holds its lease (leases.py). No transaction stays open while a body streams.
Both dialects, the seed's JSON API and tus, drive sessions through this one service.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import EllipsisType
from typing import Any, Protocol

from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from .. import validation
from ..errors import (
    ChecksumMismatch,
    Conflict,
    DigestMismatch,
    FinalUploadImmutable,
    IncompleteBody,
    InsufficientStorage,
    InvalidInput,
    NotFound,
    OffsetMismatch,
    PreconditionFailed,
    SessionExpired,
    SessionLocked,
    TooLarge,
    TooManySessions,
)
from ..hashing import ResumableSha256, chunk_hasher
from ..models import Bucket, SessionKind, SessionState, UploadSession, assert_no_transaction, db
from ..storage import BlobStore, PartialWriter
from ..storage.base import is_id
from .housekeeping import collect_garbage
from .leases import LEASE_FREE, Lease
from .objects import ObjectInfo, ObjectService
from .publish import publish

READ_SIZE = 1024 * 1024  # bodies are read in fixed chunks: memory stays flat

# Hot-path statements, built once (building one per call cost more than running it).
_sessions, _buckets = UploadSession.__table__, Bucket.__table__
_LOAD = (
    select(_sessions, _buckets.c.name.label("bucket"))
    .select_from(_sessions.outerjoin(_buckets, _buckets.c.id == _sessions.c.bucket_id))
    .where(_sessions.c.id == bindparam("sid"))
)
_INSERT_SESSION = insert(_sessions)
_DELETE_SESSION = (delete(_sessions).where(_sessions.c.id == bindparam("sid"))
                   .returning(_sessions.c.kind, _sessions.c.state, _sessions.c.store_state))
_OPEN_SESSIONS = select(func.count()).select_from(_sessions).where(  # a complete partial still holds bytes
    _sessions.c.owner == bindparam("owner"),
    or_(_sessions.c.state == SessionState.ACTIVE, _sessions.c.kind == SessionKind.PARTIAL))
_CLAIM_UNTOUCHED = (  # complete a session no byte was written to yet, if nobody holds it
    update(_sessions)
    .where(_sessions.c.id == bindparam("sid"), _sessions.c.state == SessionState.ACTIVE, _sessions.c.offset == 0,
           LEASE_FREE)
    .values(state=SessionState.COMPLETED, offset=bindparam("new_size"), hash_state=None, lease_token=None,
            lease_expires_at=0.0, expires_at=bindparam("until"))
)


class Body(Protocol):
    def read(self, size: int) -> bytes:
        """Up to `size` bytes, b"" at the end; raises IncompleteBody if the body breaks off."""


@dataclass(frozen=True)
class SessionInfo:
    id: str
    kind: str  # upload | partial | final
    bucket: str | None
    key: str | None
    mime_type: str
    size: int | None  # None while a tus client defers the length
    offset: int
    completed: bool
    expires_at: float
    tus_metadata: str | None = None
    tus_concat: str | None = None


@dataclass(frozen=True)
class WriteResult:
    session: SessionInfo
    object: ObjectInfo | None  # set when this write completed an upload into an object


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
        self.max_sessions = settings["FILES_MAX_SESSIONS"]
        self.inline_max = settings["FILES_INLINE_MAX"]

    # --- create / read / abort ---------------------------------------------------------
    def create(self, *, bucket: Any, key: Any, size: Any, mime_type: Any = None, sha256: Any = None,
               create_only: bool = False, kind: str = SessionKind.UPLOAD, defer_length: bool = False,
               tus_metadata: str | None = None, tus_concat: str | None = None, owner: str | None = None) -> SessionInfo:
        """A new session. `defer_length` (tus) leaves the size to a later write; a "partial" has
        no bucket or key."""
        bucket_id = None
        if kind != SessionKind.PARTIAL:
            bucket, key = validation.bucket_name(bucket), validation.object_key(key)
        size = None if defer_length else validation.object_size(size, self.max_size)
        mime_type = validation.mime_type(mime_type, key or "")
        expected = validation.sha256_hex(sha256)
        if owner and self.max_sessions:
            self._check_session_cap(owner)
        if kind != SessionKind.PARTIAL and create_only and self._object_exists(bucket, key):
            raise PreconditionFailed(f"{key!r} already exists in bucket {bucket!r}")
        now, session_id = self.clock(), uuid.uuid4().hex
        for attempt in range(3):
            bucket_id = self.objects.ensure_bucket(bucket) if kind != SessionKind.PARTIAL else None
            try:
                db.session.execute(_INSERT_SESSION, dict(
                    id=session_id, kind=kind, bucket_id=bucket_id, key=key, mime_type=mime_type, size=size,
                    offset=0, state=SessionState.ACTIVE, expected_sha256=expected, create_only=create_only,
                    hash_state=None, store_state=None, created_at=int(now), expires_at=now + self.ttl, lease_token=None,
                    lease_expires_at=0.0, tus_metadata=tus_metadata, tus_concat=tus_concat, owner=owner or None,
                ))
                db.session.commit()
                break
            except IntegrityError:
                # The bucket was deleted between ensure_bucket and this insert (its delete and this
                # insert are serialised by the database): make it again.
                db.session.rollback()
                if attempt == 2:
                    raise Conflict(f"bucket {bucket!r} is being deleted and created at once; retry") from None
        if size == 0:  # nothing to send: the empty file exists as soon as its session does
            return self._write(session_id, _EmptyBody(), refuse_final=False).session
        return SessionInfo(session_id, kind, bucket, key, mime_type, size, 0, False, now + self.ttl,
                           tus_metadata, tus_concat)

    def get(self, session_id: str, owner: str | None = None) -> SessionInfo:
        """`owner`, when given, must be the session's creator: another's session is as good as none."""
        row = self._load(session_id)
        if owner and row.owner != owner:  # one made while the service was open (no owner) is nobody's now
            db.session.rollback()
            raise NotFound(f"no upload session {session_id!r}")
        info = self._info(row)
        db.session.commit()
        if not info.completed and info.expires_at < self.clock():
            raise SessionExpired(f"upload session {session_id} has expired")
        return info

    def abort(self, session_id: str, owner: str | None = None) -> None:
        """Forget a session and free its bytes. A writer still streaming loses its lease."""
        self.get(session_id, owner)
        self._discard(session_id)

    def put(self, *, bucket: Any, key: Any, body: Body, length: int, mime_type: Any = None, sha256: Any = None,
            create_only: bool = False, owner: str | None = None) -> ObjectInfo:
        """A whole file in one request: a session made and written at once, through the same
        finish as every upload (a failure leaves no session behind). A small one needs no session
        at all: nothing of it could be resumed, so it is published straight from memory."""
        if 0 < length <= self.inline_max:
            return self._put_inline(bucket, key, body, length, mime_type, sha256, create_only)
        info = self.create(bucket=bucket, key=key, size=length, mime_type=mime_type, sha256=sha256,
                           create_only=create_only, owner=owner)
        if info.completed:  # an empty file exists as soon as its session does
            return self.objects.get(info.bucket, info.key)
        return self.write(info.id, body, length=length, offset=0, with_creation=True).object

    def _put_inline(self, bucket: Any, key: Any, body: Body, length: int, mime_type: Any, sha256: Any,
                    create_only: bool) -> ObjectInfo:
        bucket, key = validation.bucket_name(bucket), validation.object_key(key)
        validation.object_size(length, self.max_size)
        mime_type, expected = validation.mime_type(mime_type, key), validation.sha256_hex(sha256)
        assert_no_transaction("a PUT's body is read")
        data = _read_up_to(body, length)
        if len(data) < length:
            raise IncompleteBody(f"the body ended after {len(data)} of {length} bytes")
        if body.read(1):
            raise TooLarge(f"the body runs past its Content-Length {length}")
        digest = hashlib.sha256(data).hexdigest()
        _check_digest(digest, expected)
        bucket_id = self.objects.ensure_bucket(bucket)
        db.session.commit()  # publish's durable transaction must be the first of its connection's
        info = SessionInfo("", SessionKind.UPLOAD, bucket, key, mime_type, length, length, True, 0.0)
        obj, replaced = publish(info, bucket_id, lambda: None, uuid.uuid4().hex, digest, create_only,
                                int(self.clock()), inline=data)
        if replaced:
            self.store.release_blob(replaced)
        return obj

    def collect_garbage(self, grace: float = 3600.0) -> dict[str, int]:
        return collect_garbage(self.store, self.clock(), grace)

    # --- write -------------------------------------------------------------------------
    def write(self, session_id: str, body: Body, *, length: int | None = None, offset: int | None = None,
              checksum: tuple[str, bytes] | None = None, declared_size: int | None = None,
              owner: str | None = None, with_creation: bool = False) -> WriteResult:
        """Append `body` at the session's offset.

        `length` is the declared body length (None when chunked), `offset` where the client
        thinks this chunk starts, `checksum` an (algorithm, digest) the chunk must match or be
        discarded, and `declared_size` the upload's length when it was deferred until now.
        `with_creation`: the session was made by this same request (tus creation-with-upload), so
        its client does not know its URL yet; if the write fails, the session goes with it.
        """
        try:
            return self._write(session_id, body, length=length, offset=offset, checksum=checksum,
                               declared_size=declared_size, refuse_final=True, owner=owner)
        except BaseException:
            if with_creation:
                db.session.rollback()
                with contextlib.suppress(Exception):  # the original error is the answer; gc takes what is left
                    self._discard(session_id)
            raise

    def _write(self, session_id: str, body: Body, *, length: int | None = None, offset: int | None = None,
               checksum: tuple[str, bytes] | None = None, declared_size: int | None = None,
               refuse_final: bool, owner: str | None = None) -> WriteResult:
        """`owner`, when given, must be the session's creator (another's session is as good as none)."""
        if length is not None and 0 < length <= READ_SIZE and offset in (None, 0) and declared_size is None:
            result, body = self._write_small_whole(session_id, body, length, checksum, owner)
            if result is not None:
                return result
        taken = Lease.take(session_id, self.lease_ttl, self.ttl, self.clock, owner) \
            if is_id(session_id) else None
        if taken is None:
            return self._refused(session_id, body, offset, refuse_final, owner)
        lease, row = taken
        try:
            info = self._info(row, bucket=None)  # the bucket's name is looked up only if this chunk completes
            hash_state, expected, create_only, bucket_id = (row.hash_state, row.expected_sha256, row.create_only,
                                                            row.bucket_id)
            if refuse_final and info.kind == SessionKind.FINAL:
                raise FinalUploadImmutable("a final (concatenated) upload cannot be written to")
            if offset is not None and offset != info.offset:
                raise OffsetMismatch(info.offset, offset)
            if declared_size is not None:
                info = self._declare_size(lease, info, declared_size)
            limit = self.max_size if info.size is None else info.size
            if length is not None and info.offset + length > limit:
                raise TooLarge(f"{length} bytes at offset {info.offset} run past the size {limit}")
            writer = self.store.open_partial(session_id, info.offset, row.store_state)
            try:
                position, hasher = self._stream(info, lease, writer, body, length, limit, hash_state, checksum)
            finally:
                writer.close()
            store_state = writer.state()
            if info.size is None or position < info.size:
                lease.commit_update(release=True, offset=position, hash_state=hasher.state(), store_state=store_state)
                return WriteResult(self._after(info, offset=position), None)
            if info.kind == SessionKind.PARTIAL:  # its bytes become a blob of its own, for a final upload to read
                self.store.finalize(session_id, info.size, store_state)
                lease.commit_update(release=True, offset=position, hash_state=None, store_state=None,
                                    state=SessionState.COMPLETED)
                self.store.discard_partial(session_id, store_state)
                return WriteResult(self._after(info, offset=position, completed=True), None)
            info = replace(info, bucket=self.objects.bucket_name(bucket_id))
            obj = self._complete(info, bucket_id, lease.claim_completion(info.size), hasher.hexdigest(), expected,
                                 create_only, lambda: self.store.finalize(session_id, info.size, store_state))
            lease.held = False  # released by the claim, committed with the object
            self.store.discard_partial(session_id, store_state)  # the object's row is committed
            return WriteResult(self._after(info, offset=position, completed=True), obj)
        finally:
            lease.release()

    def _stream(self, info: SessionInfo, lease: Lease, writer: PartialWriter, body: Body, length: int | None,
                limit: int, hash_state: bytes | None,
                checksum: tuple[str, bytes] | None) -> tuple[int, ResumableSha256]:
        """Copy the body to the writer while hashing; make progress durable every so often.

        A chunk with a checksum is all or nothing, so it is only made durable at its end.
        """
        assert_no_transaction("a chunk's body streams")
        hasher = ResumableSha256.from_state(hash_state)
        start_state = hasher.state()
        verifier = chunk_hasher(checksum[0]) if checksum else None
        position = durable = info.offset
        try:
            while data := body.read(READ_SIZE):
                if position + len(data) > limit:
                    raise TooLarge(f"the body runs past the upload's size {limit}")
                writer.write(data)
                hasher.update(data)
                if verifier:
                    verifier.update(data)
                position += len(data)
                if verifier is None and position - durable >= self.checkpoint_bytes:
                    writer.sync()
                    lease.commit_update(offset=position, hash_state=hasher.state(), store_state=writer.state())
                    durable = position
                else:
                    lease.renew_if_due()
            if length is not None and position - info.offset < length:
                # Some servers end the stream quietly when the client goes away.
                raise IncompleteBody(f"the body ended after {position - info.offset} of {length} bytes")
        except IncompleteBody:
            # Keep what arrived: it is the client's progress. A checksummed chunk is never partial.
            if verifier is None and position > durable:
                writer.sync()
                lease.commit_update(offset=position, hash_state=hasher.state(), store_state=writer.state())
            elif verifier is not None:
                writer.rollback(info.offset)
            raise
        except TooLarge:
            writer.rollback(info.offset)  # nothing of a refused body is kept
            if durable != info.offset:
                lease.commit_update(offset=info.offset, hash_state=start_state, store_state=writer.state())
            raise
        except InsufficientStorage as full:
            # Back to what is durable (freeing what is not), and say where to resume from.
            writer.rollback(durable if verifier is None else info.offset)
            full.offset = durable if verifier is None else info.offset
            raise
        if verifier is not None and not hmac.compare_digest(verifier.digest(), checksum[1]):
            writer.rollback(info.offset)
            raise ChecksumMismatch(f"the chunk's {checksum[0]} does not match Upload-Checksum",
                                   offset=info.offset)
        if position == info.size:
            writer.sync_for_finalize()
        elif position != durable:
            writer.sync()
        return position, hasher

    def _write_small_whole(self, session_id: str, body: Body, length: int, checksum: tuple[str, bytes] | None,
                           owner: str | None) -> tuple[WriteResult | None, Body]:
        """A small body (one read) that is the whole file: no partial file and no lease, just the
        blob written in place and one durable transaction that claims the untouched session and
        publishes the object. Returns (None, body) to take the general path instead."""
        row = self._load(session_id)
        db.session.commit()
        if owner and row.owner != owner:
            raise NotFound(f"no upload session {session_id!r}")
        now = self.clock()
        if (row.kind != SessionKind.UPLOAD or row.state != SessionState.ACTIVE or row.offset != 0 or row.size != length
                or row.expires_at < now or not Lease.is_free(row, now)):
            return None, body
        assert_no_transaction("a small file's body is read")
        data = _read_up_to(body, length)
        if len(data) < length:  # broke off: keep what arrived, the general way
            if data and checksum is None:
                self._write(session_id, _BytesBody(data), length=None, refuse_final=True, owner=owner)
            raise IncompleteBody(f"the body ended after {len(data)} of {length} bytes")
        if checksum and not hmac.compare_digest(chunk_hasher(checksum[0], data).digest(), checksum[1]):
            raise ChecksumMismatch(f"the chunk's {checksum[0]} does not match Upload-Checksum",
                                   offset=0)
        info = self._info(row)

        def claim() -> None:
            claimed = db.session.execute(_CLAIM_UNTOUCHED, {
                "sid": session_id, "now": now, "new_size": length, "until": now + self.ttl}).rowcount
            if claimed != 1:
                db.session.rollback()
                raise _ClaimLost()

        inline = data if length <= self.inline_max else None

        def place() -> str:
            blob_id = uuid.uuid4().hex  # never the session's id: a racing request may be writing that
            if inline is None:  # an inline file's bytes go into its row, in the publishing commit
                self.store.put_blob(blob_id, data)
            return blob_id

        try:
            obj = self._complete(info, row.bucket_id, claim, hashlib.sha256(data).hexdigest(), row.expected_sha256,
                                 row.create_only, place, inline)
        except _ClaimLost:  # another request got there first: the general path says what happened
            return None, _BytesBody(data)
        return WriteResult(self._after(info, offset=length, completed=True), obj), body

    def _declare_size(self, lease: Lease, info: SessionInfo, size: int) -> SessionInfo:
        if info.size is not None:
            if size != info.size:
                raise InvalidInput(f"the upload's length is {info.size} and cannot change", "length_mismatch")
            return info
        size = validation.object_size(size, self.max_size)
        if size < info.offset:
            raise InvalidInput(f"length {size} is below the {info.offset} bytes already sent", "invalid_length")
        lease.commit_update(size=size)
        return replace(info, size=size)

    def _refused(self, session_id: str, body: Body, offset: int | None, refuse_final: bool,
                 owner: str | None) -> WriteResult:
        """Why the lease was not to be had: gone or another's (404), expired (410), complete, or
        another writer (423)."""
        info = self.get(session_id, owner)
        if refuse_final and info.kind == SessionKind.FINAL:
            raise FinalUploadImmutable("a final (concatenated) upload cannot be written to")
        if not info.completed:
            row = self._load(session_id)
            wait = Lease.seconds_left(row, self.clock)
            db.session.commit()
            raise SessionLocked(wait)
        # A retry after the completing answer was lost: nothing more to write, same answer.
        if offset is not None and offset != info.size:
            raise OffsetMismatch(info.size, offset)
        if body.read(1):
            raise TooLarge("the upload is already complete", offset=info.size)
        obj = None
        if info.kind != SessionKind.PARTIAL:
            try:
                obj = self.objects.get(info.bucket, info.key)
            except NotFound:
                pass  # deleted since; the session still reports its end
        return WriteResult(info, obj)

    # --- completion ------------------------------------------------------------------------
    def _complete(self, info: SessionInfo, bucket_id: int, claim: Callable[[], None], digest: str,
                  expected: str | None, create_only: bool, place: Callable[[], str],
                  inline: bytes | None = None) -> ObjectInfo:
        """Check the digest, `place` the bytes as a blob (it returns the blob's id), then publish
        the object (with `inline` bytes in its row, if given); `claim` marks the session completed
        inside that same transaction, or raises."""
        try:
            _check_digest(digest, expected)
        except DigestMismatch:
            self._discard(info.id)
            raise
        blob_id = place()
        try:
            obj, replaced = publish(info, bucket_id, claim, blob_id, digest, create_only, int(self.clock()), inline)
        except PreconditionFailed:
            self.store.delete_blob(blob_id)
            self._discard(info.id)
            raise
        except BaseException:
            # A blob named after the session stays for a retry to find (gc spares it while the
            # session lives); a fresh one is nobody's.
            if blob_id != info.id:
                self.store.delete_blob(blob_id)
            raise
        if replaced:
            self.store.release_blob(replaced)
        return obj

    # --- tus concatenation -------------------------------------------------------------------
    def concatenate(self, partial_ids: list[str], *, bucket: Any, key: Any, mime_type: Any = None,
                    create_only: bool = False, tus_metadata: str | None = None,
                    tus_concat: str | None = None, owner: str | None = None) -> WriteResult:
        """A final upload: the complete partial uploads' bytes, in order, as one object."""
        sizes = []
        for partial_id in partial_ids:
            try:
                row = self._load(partial_id)
                if owner and row.owner != owner:
                    raise NotFound(partial_id)
            except NotFound:
                raise InvalidInput(f"no partial upload {partial_id!r}", "invalid_concat") from None
            if row.kind != SessionKind.PARTIAL:
                raise InvalidInput(f"upload {partial_id} is not a partial upload", "invalid_concat")
            if row.state != SessionState.COMPLETED:
                raise InvalidInput(f"partial upload {partial_id} is not complete", "concat_unfinished")
            sizes.append(row.size)
        db.session.commit()
        info = self.create(bucket=bucket, key=key, size=sum(sizes), mime_type=mime_type, create_only=create_only,
                           kind=SessionKind.FINAL, tus_metadata=tus_metadata, tus_concat=tus_concat, owner=owner)
        if info.completed:  # all partials were empty
            return WriteResult(info, self.objects.get(info.bucket, info.key))
        bucket_id = self.objects.bucket_id(info.bucket)
        lease = Lease.try_acquire(info.id, self.lease_ttl, self.ttl, self.clock)
        try:
            hasher = ResumableSha256()
            writer = self.store.open_partial(info.id, 0, None)
            try:
                for partial_id in partial_ids:
                    with self.store.open_blob(partial_id) as source:
                        while data := source.read(READ_SIZE):
                            writer.write(data)
                            hasher.update(data)
                            lease.renew_if_due()
                writer.sync_for_finalize()
            finally:
                writer.close()
            store_state = writer.state()
            obj = self._complete(info, bucket_id, lease.claim_completion(info.size), hasher.hexdigest(), None,
                                 create_only, lambda: self.store.finalize(info.id, info.size, store_state))
            lease.held = False
            self.store.discard_partial(info.id, store_state)
        finally:
            lease.release()
        for partial_id in dict.fromkeys(partial_ids):  # their bytes now live in the object
            self._discard(partial_id)
        return WriteResult(self._after(info, offset=info.size, completed=True), obj)

    # --- helpers -------------------------------------------------------------------------------
    def _discard(self, session_id: str) -> None:
        """Forget a session and free its bytes: its private ones, and the blob named after it
        unless an object owns that (a completed upload's)."""
        gone = db.session.execute(_DELETE_SESSION, {"sid": session_id}).first()
        db.session.commit()
        if gone is None:
            return  # someone else discarded it, and its bytes
        self.store.discard_partial(session_id, gone.store_state)
        if gone.kind == SessionKind.PARTIAL or gone.state != SessionState.COMPLETED:
            self.store.delete_blob(session_id)

    def _after(self, info: SessionInfo, **changes: Any) -> SessionInfo:
        """The session as a write left it: every write renews the expiry."""
        return replace(info, expires_at=self.clock() + self.ttl, **changes)

    def _check_session_cap(self, owner: str) -> None:
        open_sessions = db.session.scalar(_OPEN_SESSIONS, {"owner": owner})
        db.session.rollback()
        if open_sessions >= self.max_sessions:
            raise TooManySessions(f"{open_sessions} upload sessions are open for this token; finish or abort "
                                  "some first", retry_after=60)

    def _object_exists(self, bucket: str, key: str) -> bool:
        try:
            self.objects.get(bucket, key)
            return True
        except NotFound:
            return False

    def _load(self, session_id: str):
        """The session's columns and its bucket's name (`bucket`), in one query."""
        found = db.session.execute(_LOAD, {"sid": session_id}).first() if is_id(session_id) else None
        if found is None:
            db.session.rollback()
            raise NotFound(f"no upload session {session_id!r}")
        return found

    @staticmethod
    def _info(row, bucket: str | None | EllipsisType = ...) -> SessionInfo:
        """The session a row describes; `_load`'s rows carry their bucket's name (`...`), others pass it."""
        return SessionInfo(row.id, row.kind, row.bucket if bucket is ... else bucket, row.key, row.mime_type,
                           row.size, row.offset, row.state == SessionState.COMPLETED, row.expires_at,
                           row.tus_metadata, row.tus_concat)


class _ClaimLost(Exception):
    pass


class _EmptyBody:
    def read(self, size: int) -> bytes:
        return b""


class _BytesBody:
    def __init__(self, data: bytes):
        self._stream = io.BytesIO(data)

    def read(self, size: int) -> bytes:
        return self._stream.read(size)


def _read_up_to(body: Body, length: int) -> bytes:
    """`length` bytes of a small body, or fewer if it ends first."""
    data = body.read(length)
    while len(data) < length and (more := body.read(length - len(data))):
        data += more
    return data


def _check_digest(digest: str, expected: str | None) -> None:
    if expected and not hmac.compare_digest(digest, expected):
        raise DigestMismatch(f"the file's sha256 is {digest}, not the {expected} announced", sha256=digest)
