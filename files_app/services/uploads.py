"""Upload sessions: create, write a chunk, concatenate, abort, expire: one path to one finish.

A write takes the session's lease (one statement that also reads the row), streams the chunk to
the session's partial file (or, for a small whole file, reads it into memory), and advances the
offset only once the bytes are synced. The chunk that ends the upload hands its bytes, as a
`BlobSource`, to `_finish`: check the digest, place the blob, publish (finish.py). Tus
concatenation (and an OpenAI Upload's completion) is the same path with the partials' blobs as its
body or, where the store joins blobs itself (S3), with the partials read once to hash them. No
transaction stays open while a body streams. Both dialects, the seed's JSON API and tus, come here
as a `ChunkRequest`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import bindparam, delete, exists, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from .. import validation
from ..errors import (
    ChecksumMismatch,
    CommitNotDurable,
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
from ..hashing import NoDigest, ResumableSha256, chunk_hasher
from ..models import Bucket, SessionKind, SessionState, UploadSession, assert_no_transaction, db, transaction
from ..storage import BlobStore, PartialWriter
from ..storage.base import is_id
from . import quotas
from .finish import BlobSource, BytesInHand, JoinedBlobs, SyncedPartial, publish
from .housekeeping import collect_garbage
from .leases import BUCKET_NAME, Lease
from .objects import ObjectInfo, ObjectService, bucket_for_writing
from .records import Body, BytesBody, ChunkRequest, SessionInfo, SessionRecord, Target
from .write_behind import WriteBehind

READ_SIZE = 1024 * 1024  # bodies are read in fixed chunks: memory stays flat
JOIN_READ_SIZE = 8 * 1024 * 1024  # blobs joined by the store are read (to hash them) in larger pieces

# Hot-path statements, built once (building one per call cost more than running it).
_sessions = UploadSession.__table__
_LOAD = select(_sessions, BUCKET_NAME).where(_sessions.c.id == bindparam("sid"))
_INSERT_SESSION = insert(_sessions)
_DELETE_SESSION = (delete(_sessions).where(_sessions.c.id == bindparam("sid"))
                   .returning(_sessions.c.kind, _sessions.c.state, _sessions.c.store_state))
# Bytes promised to unfinished uploads: what their declared sizes still need.
_PROMISED = select(func.coalesce(func.sum(_sessions.c.size - _sessions.c.offset), 0)).where(
    _sessions.c.state == SessionState.ACTIVE, _sessions.c.size.is_not(None), _sessions.c.expires_at >= bindparam("now"))
_UPLOADING_TO = (select(_sessions.c.id).join(Bucket, Bucket.id == _sessions.c.bucket_id)
                 .where(Bucket.name == bindparam("bucket"), _sessions.c.key == bindparam("key"),
                        _sessions.c.state == SessionState.ACTIVE, _sessions.c.expires_at >= bindparam("now")).limit(1))
_OPEN_SESSIONS = select(func.count()).select_from(_sessions).where(  # a complete partial still holds bytes
    _sessions.c.owner == bindparam("owner"), _sessions.c.expires_at >= bindparam("now"),  # live ones only
    or_(_sessions.c.state == SessionState.ACTIVE, _sessions.c.kind == SessionKind.PARTIAL),
    _sessions.c.id.not_in(quotas.EXPIRED_UPLOAD_PARTS))
# The lock a session creation takes on its owner before counting their sessions (PostgreSQL: an
# advisory lock for the transaction, keyed by the owner; SQLite: its one write lock).
_LOCK_OWNER = text("SELECT pg_advisory_xact_lock(24149, hashtext(:owner))")  # 24149: this kind of lock
_TAKE_WRITE_LOCK = update(_sessions).where(_sessions.c.id == "").values(id=_sessions.c.id)
# A final upload takes its partials in the statement that checks nobody else has them: a partial is
# held while its lease_token names an unexpired session (the final that took it); a stale hold (that
# final gone or expired) is cleared first, in a statement of its own.
_claimer = _sessions.alias("claimer")
_PARTIALS = (_sessions.c.id.in_(bindparam("ids", expanding=True)), _sessions.c.kind == SessionKind.PARTIAL,
             _sessions.c.state == SessionState.COMPLETED)
_CLEAR_STALE_CLAIMS = (update(_sessions).where(*_PARTIALS, _sessions.c.lease_token.is_not(None), ~exists().where(
    _claimer.c.id == _sessions.c.lease_token, _claimer.c.expires_at >= bindparam("now")))
    .values(lease_token=None, lease_expires_at=0.0))
_CLAIM = (update(_sessions).where(*_PARTIALS, _sessions.c.lease_token.is_(None))
          .values(lease_token=bindparam("final"), lease_expires_at=0.0)
          .returning(_sessions.c.id, _sessions.c.size))
_UNCLAIM = (update(_sessions).where(*_PARTIALS, _sessions.c.lease_token == bindparam("final"))
            .values(lease_token=None, lease_expires_at=0.0))


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
        self.reserved_space = settings["FILES_RESERVED_SPACE"]
        # A session nobody else knows of (a PUT's, a copy's, a final's while it joins): its writer renews
        # it with its lease; killed, it expires within this and gives back its promise and its slot.
        self.hidden_ttl = 3 * self.lease_ttl

    # --- create / read / abort ---------------------------------------------------------
    def create(self, *, bucket: Any, key: Any, size: Any, mime_type: Any = None, sha256: Any = None,
               create_only: bool = False, kind: SessionKind = SessionKind.UPLOAD, defer_length: bool = False,
               tus_metadata: str | None = None, tus_concat: str | None = None, owner: str | None = None,
               partials: list[str] | None = None, session_id: str | None = None,
               ttl: float | None = None) -> SessionInfo:
        """A new session. `defer_length` (tus) leaves the size to a later write; a "partial" has
        no bucket or key. `partials` (a final upload's, made as `session_id`): taken for it in the
        transaction that makes it (409 if another final has one), their bytes no longer counted
        apart from its size. `ttl`: a hidden session's (see `put`), else FILES_SESSION_TTL."""
        bucket_id = None
        if kind != SessionKind.PARTIAL:
            bucket, key = validation.bucket_name(bucket), validation.object_key(key)
        # Every field's form before its limits: a malformed request is a 400 whatever its size says.
        mime_type = validation.mime_type(mime_type, key or "")
        expected = validation.sha256_hex(sha256)
        size = None if defer_length else validation.object_size(size, self.max_size)
        if size is not None:
            self.check_space(size)
        if kind != SessionKind.PARTIAL and create_only and self._object_exists(bucket, key):
            raise PreconditionFailed(f"{key!r} already exists in bucket {bucket!r}")
        now, session_id = self.clock(), session_id or uuid.uuid4().hex
        ttl = ttl or self.ttl
        for attempt in range(3):
            try:
                with transaction():
                    if owner and self.max_sessions:  # first: the lock it takes is held until the insert
                        self._hold_session_slot(owner, now)
                    bucket_id = bucket_for_writing(bucket) if kind != SessionKind.PARTIAL else None
                    counted = self._claim(partials, session_id, now) if partials else 0
                    quotas.enforce(bucket if bucket_id else None, owner, (size or 0) - counted, now,
                                   new_file=kind != SessionKind.PARTIAL)
                    db.session.execute(_INSERT_SESSION, dict(
                        id=session_id, kind=kind, bucket_id=bucket_id, key=key, mime_type=mime_type, size=size,
                        offset=0, state=SessionState.ACTIVE, expected_sha256=expected, create_only=create_only,
                        hash_state=None, store_state=None, created_at=int(now), expires_at=now + ttl,
                        lease_token=None, lease_expires_at=0.0, tus_metadata=tus_metadata, tus_concat=tus_concat,
                        owner=owner or None,
                    ))
                break
            except IntegrityError:
                # Its bucket was made by another request at once, or deleted between the lookup and
                # this insert (the database serialises that delete and this insert): look again.
                if attempt == 2:
                    raise Conflict(f"bucket {bucket!r} is being deleted and created at once; retry") from None
        if size == 0:  # nothing to send: the empty file exists as soon as its session does
            return self._write(session_id, ChunkRequest(BytesBody()), refuse_final=False).session
        return SessionInfo(session_id, kind, bucket, key, mime_type, size, 0, False, now + ttl,
                           tus_metadata, tus_concat)

    @staticmethod
    def _claim(partials: list[str], final_id: str, now: float) -> int:
        """Take the partials for the final `final_id`, in the caller's transaction: all or 409.
        The bytes they were counted for (each once, and only those still counted), which the
        final's size now counts."""
        unique = list(dict.fromkeys(partials))
        db.session.execute(_CLEAR_STALE_CLAIMS, {"ids": unique, "now": now})
        taken = db.session.execute(_CLAIM, {"ids": unique, "final": final_id}).all()
        if len(taken) != len(unique):
            raise ConcatInProgress("a partial upload it names is being joined by another final upload; "
                                   "it stays until that one ends")
        return quotas.counted_bytes(unique, now)  # (one expired, or an expired Upload's part, counted nothing)

    def get(self, session_id: str, owner: str | None = None) -> SessionInfo:
        """`owner`, when given, must be the session's creator: another's session is as good as none."""
        return self._live(self._load(session_id, owner)).info()

    def abort(self, session_id: str, owner: str | None = None) -> None:
        """Forget a session and free its bytes. A writer still streaming loses its lease."""
        self.get(session_id, owner)
        self.discard(session_id)

    def put(self, *, bucket: Any, key: Any, body: Body, length: int, mime_type: Any = None, sha256: Any = None,
            create_only: bool = False, owner: str | None = None) -> ObjectInfo:
        """A whole file in one request: a session made and written at once, through the same
        finish as every upload (a failure leaves no session behind). A small one needs no session
        at all: nothing of it could be resumed, so it is published straight from memory."""
        if 0 < length <= self.inline_max:
            return self._put_inline(bucket, key, body, length, mime_type, sha256, create_only, owner)
        info = self.create(bucket=bucket, key=key, size=length, mime_type=mime_type, sha256=sha256,
                           create_only=create_only, owner=owner, ttl=self.hidden_ttl)
        if info.completed:  # an empty file exists as soon as its session does
            return self.objects.get(info.bucket, info.key)
        return self._write(info.id, ChunkRequest(body, offset=0, length=length), refuse_final=True,
                           session_ttl=self.hidden_ttl, discard_on_error=True).object

    def _put_inline(self, bucket: Any, key: Any, body: Body, length: int, mime_type: Any, sha256: Any,
                    create_only: bool, owner: str | None) -> ObjectInfo:
        bucket, key = validation.bucket_name(bucket), validation.object_key(key)
        validation.object_size(length, self.max_size)
        mime_type, expected = validation.mime_type(mime_type, key), validation.sha256_hex(sha256)
        data = self._read_whole(body, length, "a PUT's body is read")
        if body.read(1):
            raise TooLarge(f"the body runs past its Content-Length {length}")
        digest = hashlib.sha256(data).hexdigest()
        _check_digest(digest, expected)  # before the bucket is made: a refused file changes nothing
        target = Target(bucket, None, key, mime_type, length, create_only, expected, owner or None)
        return self._finish(target, BytesInHand(self.store, data, self.inline_max), digest)

    def collect_garbage(self, grace: float = 3600.0) -> dict[str, int]:
        return collect_garbage(self.store, self.clock(), grace)

    # --- write -------------------------------------------------------------------------
    def write(self, session_id: str, chunk: ChunkRequest, *, owner: str | None = None,
              with_creation: bool = False) -> WriteResult:
        """Append the chunk at the session's offset. `owner`, when given, must be the session's
        creator (another's session is as good as none). `with_creation`: the session was made by
        this same request (tus creation-with-upload), so its client does not know its URL yet; if
        the write fails, the session goes with it."""
        return self._write(session_id, chunk, refuse_final=True, owner=owner, discard_on_error=with_creation)

    def _write(self, session_id: str, chunk: ChunkRequest, *, refuse_final: bool, owner: str | None = None,
               session_ttl: float | None = None, discard_on_error: bool = False) -> WriteResult:
        try:
            return self._write_taken(session_id, chunk, refuse_final, owner, session_ttl or self.ttl)
        except BaseException:
            if discard_on_error:
                with contextlib.suppress(Exception):  # the original error is the answer; gc takes what is left
                    self.discard(session_id)
            raise

    def _write_taken(self, session_id: str, chunk: ChunkRequest, refuse_final: bool, owner: str | None,
                     session_ttl: float) -> WriteResult:
        taken = Lease.take(session_id, self.lease_ttl, session_ttl, self.clock, owner) if is_id(session_id) else None
        if taken is None:
            return self._refused(session_id, chunk, refuse_final, owner)
        lease, record = taken
        with lease:
            _refuse_final(refuse_final, record.kind)
            if chunk.offset is not None and chunk.offset != record.offset:
                raise OffsetMismatch(record.offset, chunk.offset)
            if chunk.declared_size is not None:
                record = self._declare_size(lease, record, chunk.declared_size)
            limit = self.max_size if record.size is None else record.size
            if chunk.length is not None and record.offset + chunk.length > limit:
                raise TooLarge(f"{chunk.length} bytes at offset {record.offset} run past the size {limit}")
            if record.size is None and chunk.length:  # its bytes count as they come: refuse now what cannot fit
                self.check_space(chunk.length)
                with transaction():
                    quotas.enforce(record.bucket, record.owner, chunk.length, self.clock(), new_file=False)
            if record.is_whole_file(chunk, READ_SIZE):
                source, digest = self._whole_in_memory(record, lease, chunk)
            else:
                position, source, digest = self._to_partial(record, lease, chunk, limit)
                if source is None:  # not the end yet
                    return WriteResult(self._after(record, offset=position), None)
                if record.kind == SessionKind.PARTIAL:
                    return WriteResult(self._complete_partial(record, lease, source), None)
            obj = self._finish(Target.of(record, chunk.sha256), source, digest, lease, record.id)
            return WriteResult(self._after(record, offset=record.size, completed=True), obj)

    def _whole_in_memory(self, record: SessionRecord, lease: Lease,
                         chunk: ChunkRequest) -> tuple[BlobSource, str]:
        """A small body that is the whole file: no partial file, just the bytes in hand."""
        try:
            data = self._read_whole(chunk.body, chunk.length, "a small file's body is read")
        except _BrokeOff as broke_off:
            if broke_off.data and chunk.checksum is None:  # keep what arrived, as any chunk does
                self._to_partial(record, lease, ChunkRequest(BytesBody(broke_off.data)), record.size)
            raise
        if chunk.checksum and not _chunk_matches(chunk.checksum, chunk_hasher(chunk.checksum[0], data)):
            raise _checksum_mismatch(chunk.checksum, offset=0)
        return BytesInHand(self.store, data, self.inline_max), hashlib.sha256(data).hexdigest()

    def _to_partial(self, record: SessionRecord, lease: Lease, chunk: ChunkRequest,
                    limit: int) -> tuple[int, SyncedPartial | None, str]:
        """Stream the chunk into the session's partial file. (offset after it, the partial as a
        blob source and the file's digest if this chunk ended the upload, else None and "")."""
        writer = self.store.open_partial(record.id, record.offset, record.store_state)
        try:
            position, hasher = self._stream(record, lease, writer, chunk, limit)
        finally:
            writer.close()
        if record.size is None or position < record.size:
            lease.save(release=True, offset=position, hash_state=hasher.state(), store_state=writer.state())
            return position, None, ""
        return position, SyncedPartial(self.store, record.id, record.size, writer.state()), hasher.hexdigest()

    def _stream(self, record: SessionRecord, lease: Lease, writer: PartialWriter, chunk: ChunkRequest,
                limit: int) -> tuple[int, ResumableSha256 | NoDigest]:
        """Copy the body to the writer while hashing; make progress durable every so often.

        A chunk with a checksum is all or nothing, so it is only made durable at its end.
        """
        assert_no_transaction("a chunk's body streams")
        hasher = NoDigest() if record.kind == SessionKind.PARTIAL else ResumableSha256.from_state(record.hash_state)
        start_state = hasher.state()
        verifier = chunk_hasher(chunk.checksum[0]) if chunk.checksum else None
        pieces = WriteBehind(writer, hasher, verifier)
        position = durable = record.offset
        try:
            while data := chunk.body.read(READ_SIZE):
                if position + len(data) > limit:
                    raise TooLarge(f"the body runs past the upload's size {limit}")
                pieces.add(data)
                position += len(data)
                if verifier is None and position - durable >= self.checkpoint_bytes:
                    pieces.settle()
                    writer.sync()
                    self._advance(record, lease, durable, offset=position, hash_state=hasher.state(),
                                  store_state=writer.state())
                    durable = position
                else:
                    lease.renew_if_due()
            pieces.settle()
            if chunk.length is not None and position - record.offset < chunk.length:
                # Some servers end the stream quietly when the client goes away.
                raise IncompleteBody(f"the body ended after {position - record.offset} of {chunk.length} bytes")
        except IncompleteBody:
            # Keep what arrived: it is the client's progress. A checksummed chunk is never partial.
            try:
                pieces.settle()
            except BaseException as error:  # the last piece did not land: back to what is durable
                writer.rollback(durable if verifier is None else record.offset)
                if isinstance(error, InsufficientStorage):
                    error.offset = durable if verifier is None else record.offset
                raise
            if verifier is None and position > durable:
                writer.sync()
                try:
                    self._advance(record, lease, durable, offset=position, hash_state=hasher.state(),
                                  store_state=writer.state())
                except InsufficientStorage as error:  # its bytes would pass a quota: back to what was counted
                    writer.rollback(durable)
                    error.offset = durable
                    raise
            elif verifier is not None:
                writer.rollback(record.offset)
            raise
        except TooLarge:
            _settle_quietly(pieces)
            writer.rollback(record.offset)  # nothing of a refused body is kept
            if durable != record.offset:
                lease.save(offset=record.offset, hash_state=start_state, store_state=writer.state())
            raise
        except BaseException as error:
            _settle_quietly(pieces)
            if isinstance(error, InsufficientStorage):
                # Back to what is durable (freeing what is not), and say where to resume from.
                writer.rollback(durable if verifier is None else record.offset)
                error.offset = durable if verifier is None else record.offset
            raise
        if verifier is not None and not _chunk_matches(chunk.checksum, verifier):
            writer.rollback(record.offset)
            raise _checksum_mismatch(chunk.checksum, offset=record.offset)
        if position == record.size:
            writer.sync_for_finalize()
        elif position != durable:
            writer.sync()
            if record.size is None:  # a deferred-length upload's last bytes, counted before they are kept
                try:
                    self._advance(record, lease, durable, offset=position, hash_state=hasher.state(),
                                  store_state=writer.state())
                except InsufficientStorage as error:
                    writer.rollback(durable)
                    error.offset = durable
                    raise
        return position, hasher

    def _advance(self, record: SessionRecord, lease: Lease, durable: int, **values: Any) -> None:
        """Make `values["offset"]` the session's durable offset. A deferred-length upload's promise is
        what it holds, so its new bytes are checked against the quotas under their lock, in the
        transaction that moves its offset (QuotaExceeded: nothing moved)."""
        if record.size is not None:
            lease.save(**values)
            return
        with transaction():  # (lease.save commits this transaction: the check and the move together)
            quotas.enforce(record.bucket, record.owner, values["offset"] - durable, self.clock(), new_file=False)
            lease.save(**values)

    def _declare_size(self, lease: Lease, record: SessionRecord, size: int) -> SessionRecord:
        if record.size is not None:
            if size != record.size:
                raise InvalidInput(f"the upload's length is {record.size} and cannot change", "length_mismatch")
            return record
        size = validation.object_size(size, self.max_size)
        if size < record.offset:
            raise InvalidInput(f"length {size} is below the {record.offset} bytes already sent", "invalid_length")
        self.check_space(size - record.offset)
        with transaction():  # what it holds was counted as it came (and its file): the rest, with the size
            quotas.enforce(record.bucket, record.owner, size - record.offset, self.clock(), new_file=False)
            lease.save(size=size)
        return replace(record, size=size)

    def _refused(self, session_id: str, chunk: ChunkRequest, refuse_final: bool, owner: str | None) -> WriteResult:
        """Why the lease was not to be had: gone or another's (404), expired (410), complete, or
        another writer (423)."""
        record = self._live(self._load(session_id, owner))
        info = record.info()
        _refuse_final(refuse_final, info.kind)
        if not info.completed:
            raise SessionLocked(Lease.seconds_left(record, self.clock))
        # A retry after the completing answer was lost: nothing more to write, same answer.
        if chunk.offset is not None and chunk.offset != info.size:
            raise OffsetMismatch(info.size, chunk.offset)
        if chunk.body.read(1):
            raise TooLarge("the upload is already complete", offset=info.size)
        obj = None
        if info.kind != SessionKind.PARTIAL:
            try:
                obj = self.objects.get(info.bucket, info.key)
            except NotFound:
                pass  # deleted since; the session still reports its end
        return WriteResult(info, obj)

    # --- the finish ------------------------------------------------------------------------
    def _finish(self, target: Target, source: BlobSource, digest: str, lease: Lease | None = None,
                session_id: str | None = None) -> ObjectInfo:
        """Check the digest, place the bytes, and publish: the one way every upload ends.
        `lease` and `session_id`: the session the file comes from, if any (completed with it)."""
        try:
            _check_digest(digest, target.expected_sha256)
        except DigestMismatch:
            if session_id:
                self.discard(session_id)
            raise
        blob_id = source.place()
        try:
            obj, released = publish(target, blob_id, digest, int(self.clock()), source.inline, lease,
                                    self.objects.retention)
        except PreconditionFailed:
            source.abandon(blob_id, for_good=True)
            if session_id:
                self.discard(session_id)
            raise
        except CommitNotDurable:
            raise  # published all the same: its bytes stay
        except BaseException:
            source.abandon(blob_id, for_good=False)
            raise
        source.published()
        for replaced in released:
            self.store.release_blob(replaced)
        return obj

    def _complete_partial(self, record: SessionRecord, lease: Lease, source: SyncedPartial) -> SessionInfo:
        """A tus partial upload makes no object: its bytes become a blob of its own, for a final
        upload to read."""
        source.place()
        lease.save(release=True, offset=record.size, hash_state=None, store_state=None,
                   state=SessionState.COMPLETED)
        source.published()
        return self._after(record, offset=record.size, completed=True)

    # --- tus concatenation -------------------------------------------------------------------
    def concatenate(self, partial_ids: list[str], *, bucket: Any, key: Any, mime_type: Any = None,
                    create_only: bool = False, tus_metadata: str | None = None,
                    tus_concat: str | None = None, owner: str | None = None,
                    checksum: tuple[str, bytes] | None = None) -> WriteResult:
        """A final upload: the complete partial uploads' bytes, in order, as one object. It is
        written like any upload, with the partials' blobs as its body; `checksum` (algorithm,
        digest), if given, is the whole file's, checked before anything is published. If it fails,
        the final session goes (nobody was given its URL) and the partials stay."""
        sizes = []
        for partial_id in partial_ids:
            try:
                partial = self._load(partial_id, owner)
            except NotFound:
                raise InvalidInput(f"no partial upload {partial_id!r}", "invalid_concat") from None
            if partial.kind != SessionKind.PARTIAL:
                raise InvalidInput(f"upload {partial_id} is not a partial upload", "invalid_concat")
            if not partial.completed:
                raise InvalidInput(f"partial upload {partial_id} is not complete", "concat_unfinished")
            sizes.append(partial.size)
        info = self.create(bucket=bucket, key=key, size=sum(sizes), mime_type=mime_type, create_only=create_only,
                           kind=SessionKind.FINAL, tus_metadata=tus_metadata, tus_concat=tus_concat, owner=owner,
                           partials=partial_ids, session_id=uuid.uuid4().hex, ttl=self.hidden_ttl)
        if info.completed:  # all partials were empty
            result = WriteResult(info, self.objects.get(info.bucket, info.key))
        else:
            try:
                if self.store.can_join(sizes):
                    result = self._join(info.id, partial_ids, checksum)
                else:
                    with _Concatenation(self.store, partial_ids) as body:
                        result = self._write(info.id, ChunkRequest(body, offset=0, checksum=checksum),
                                             refuse_final=False, session_ttl=self.hidden_ttl)
            except BaseException:
                with contextlib.suppress(Exception):  # the original error is the answer; gc takes what is left
                    self.discard(info.id)
                    with transaction():  # the partials are free for another final
                        db.session.execute(_UNCLAIM, {"ids": list(dict.fromkeys(partial_ids)), "final": info.id})
                raise
        for partial_id in dict.fromkeys(partial_ids):  # their bytes now live in the object
            self.discard(partial_id)
        return result

    def _join(self, session_id: str, partial_ids: list[str], checksum: tuple[str, bytes] | None) -> WriteResult:
        """Concatenation where the store joins the blobs itself: the bytes are read once, to hash
        them (and check `checksum`), and never written again through this process."""
        taken = Lease.take(session_id, self.lease_ttl, self.hidden_ttl, self.clock)
        if taken is None:  # made a moment ago, and its URL given to nobody: only gc could have it
            raise Conflict(f"upload {session_id} is no longer available; retry")
        lease, record = taken
        with lease:
            assert_no_transaction("the partials are read to be hashed")
            hasher = ResumableSha256()
            verifier = chunk_hasher(checksum[0]) if checksum else None
            with _Concatenation(self.store, partial_ids) as body:
                while data := body.read(JOIN_READ_SIZE):
                    hasher.update(data)
                    if verifier is not None:
                        verifier.update(data)
                    lease.renew_if_due()
            if verifier is not None and not _chunk_matches(checksum, verifier):
                raise _checksum_mismatch(checksum, offset=0)
            source = JoinedBlobs(self.store, partial_ids, record.id)
            obj = self._finish(Target.of(record), source, hasher.hexdigest(), lease, record.id)
            return WriteResult(self._after(record, offset=record.size, completed=True), obj)

    # --- helpers -------------------------------------------------------------------------------
    def discard(self, session_id: str) -> None:
        """Forget a session and free its bytes: its private ones, and the blob named after it
        unless an object owns that (a completed upload's)."""
        with transaction():
            gone = db.session.execute(_DELETE_SESSION, {"sid": session_id}).first()
        if gone is None:
            return  # someone else discarded it, and its bytes
        self.store.discard_partial(session_id, gone.store_state)
        if gone.kind == SessionKind.PARTIAL or gone.state != SessionState.COMPLETED:
            self.store.delete_blob(session_id)

    def _after(self, record: SessionRecord, **changes: Any) -> SessionInfo:
        """The session as a write left it: every write renews the expiry."""
        return record.info(expires_at=self.clock() + self.ttl, **changes)

    def _live(self, record: SessionRecord) -> SessionRecord:
        if not record.completed and record.expires_at < self.clock():
            raise SessionExpired(f"upload session {record.id} has expired")
        return record

    def check_space(self, size: int) -> None:
        """Refuse at once an upload that cannot fit (507), rather than fail after filling the disk:
        free space, less FILES_RESERVED_SPACE, less what unfinished uploads were promised. A small
        file is not worth the query (a full disk still refuses it when written)."""
        if size <= self.inline_max or (free := self.store.free_bytes()) is None:
            return
        with transaction():
            promised = db.session.scalar(_PROMISED, {"now": self.clock()})
        room = free - self.reserved_space - promised
        if size > room:
            raise InsufficientStorage(
                f"{size} bytes do not fit: {max(room, 0)} bytes are free for new uploads ({free} free on disk, "
                f"{self.reserved_space} kept in reserve, {promised} promised to unfinished uploads)")

    def check_quota(self, bucket: Any, owner: str | None, size: int) -> None:
        """Refuse now (507 quota_exceeded) what would pass a quota, before any byte is read; the
        upload's creation checks again, atomically with its promise."""
        with transaction():
            quotas.enforce(validation.bucket_name(bucket) if bucket is not None else None, owner or None, size,
                           self.clock())

    def _hold_session_slot(self, owner: str, now: float) -> None:
        """Inside the transaction that inserts the owner's new session: 429 if FILES_MAX_SESSIONS of
        theirs are live. The owner's lock is taken before they are counted and held until the insert
        commits, so parallel creations are counted one after another (PostgreSQL: a transaction-scoped
        advisory lock on the owner; SQLite: the write lock, which a no-op UPDATE takes)."""
        if db.engine.dialect.name == "postgresql":
            db.session.execute(_LOCK_OWNER, {"owner": owner})
        else:
            db.session.execute(_TAKE_WRITE_LOCK)
        open_sessions = db.session.scalar(_OPEN_SESSIONS, {"owner": owner, "now": now})
        if open_sessions >= self.max_sessions:
            raise TooManySessions(f"{open_sessions} upload sessions are open for this token; finish or abort "
                                  "some first", retry_after=60)

    def name_taken(self, bucket: str, key: str) -> bool:
        """A file has this name, or an open upload will give it one."""
        if self._object_exists(bucket, key):
            return True
        with transaction():
            return db.session.scalar(_UPLOADING_TO, {"bucket": bucket, "key": key, "now": self.clock()}) is not None

    def _object_exists(self, bucket: str, key: str) -> bool:
        try:
            self.objects.get(bucket, key)
            return True
        except NotFound:
            return False

    def _load(self, session_id: str, owner: str | None = None) -> SessionRecord:
        """The session, with its bucket's name. `owner`, when given, must be its creator: one made
        while the service was open (no owner) is nobody's now."""
        with transaction():
            row = db.session.execute(_LOAD, {"sid": session_id}).first() if is_id(session_id) else None
        if row is None or (owner and row.owner != owner):
            raise NotFound(f"no upload session {session_id!r}")
        return SessionRecord.from_row(row)

    @staticmethod
    def _read_whole(body: Body, length: int, where: str) -> bytes:
        """A small body of `length` bytes, read into memory; _BrokeOff if it ends first."""
        assert_no_transaction(where)
        data = body.read(length)
        while len(data) < length and (more := body.read(length - len(data))):
            data += more
        if len(data) < length:
            raise _BrokeOff(f"the body ended after {len(data)} of {length} bytes", data)
        return data


def _refuse_final(refuse: bool, kind: SessionKind) -> None:
    if refuse and kind == SessionKind.FINAL:
        raise FinalUploadImmutable("a final (concatenated) upload cannot be written to")


def _chunk_matches(checksum: tuple[str, bytes], hashed) -> bool:
    """The chunk hashed as it came matches its Upload-Checksum (algorithm, digest)."""
    return hmac.compare_digest(hashed.digest(), checksum[1])


def _checksum_mismatch(checksum: tuple[str, bytes], offset: int) -> ChecksumMismatch:
    return ChecksumMismatch(f"the chunk's {checksum[0]} does not match Upload-Checksum", offset=offset)


def _settle_quietly(pieces: WriteBehind) -> None:
    """After an error: let the piece in flight land (or fail) before the writer is rolled back."""
    with contextlib.suppress(Exception):
        pieces.settle()


def _check_digest(digest: str, expected: str | None) -> None:
    if expected and not hmac.compare_digest(digest, expected):
        raise DigestMismatch(f"the file's sha256 is {digest}, not the {expected} announced", sha256=digest)


class ConcatInProgress(Conflict):
    """Another final upload holds a partial this one names (409): nothing is lost, the partial stays."""

    code = "concat_in_progress"


class _BrokeOff(IncompleteBody):
    """A small body ended early; `data` is what arrived."""

    def __init__(self, message: str, data: bytes):
        super().__init__(message)
        self.data = data


class _Concatenation:
    """The partial uploads' blobs, one after the other, read as a body."""

    def __init__(self, store: BlobStore, partial_ids: list[str]):
        self._store, self._pending, self._current = store, list(partial_ids), None

    def __enter__(self) -> _Concatenation:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._current is not None:
            self._current.close()

    def read(self, size: int) -> bytes:
        while True:
            if self._current is None:
                if not self._pending:
                    return b""
                self._current = self._store.open_blob(self._pending.pop(0))
            if data := self._current.read(size):
                return data
            self._current.close()
            self._current = None
