"""The OpenAI-compatible Files and Uploads API's domain, on the same sessions, blobs and objects.

An OpenAI file is the object "<file id>/<name>" in one bucket (FILES_OPENAI_BUCKET), plus a row
(id, filename, purpose, expiry). The row is written first and the object published after it, so
a file is visible while both exist and it has not expired; a crash between the two leaves a row
gc removes. A file id starts with its creation time (microseconds) in hex: ids sort by time, so a list is a keyset
walk over the primary key, and `after=<id>` needs no lookup (nor the file to still exist).

A file sent in one request streams into a session of unknown length, completed once the
multipart body ends. An Upload's parts are tus-like partial sessions, joined by concatenation.

A part's bytes count against the caller's quota and the free space as they arrive and until the
Upload completes, is cancelled or expires (the upload path counts a deferred-length partial as it
grows, and a complete partial until a final takes it). Parts never add up past `bytes`: a part's
row is written before its bytes stream and reserves each piece of the body before the piece is
stored, in a transaction that first takes the Upload's row (a no-op UPDATE: SQLite's write lock,
PostgreSQL's row lock), so that parallel parts are checked one after another; a refused or failed
part gives its reservation back.

A completion claims the Upload (status `completing`) with the id of the file it makes, which starts
with the claim's time. A claim older than FILES_LEASE_TTL whose joining session holds no live lease
(its process was killed) is taken over by a retry or a cancel: a file it already published is the
Upload's, else what it left (its session, its file row) is dropped and the parts joined again.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, delete, exists, func, insert, or_, select, update

from .. import validation
from ..errors import ChecksumMismatch, Conflict, InvalidInput, NotFound, TooLarge
from ..models import (
    Bucket,
    OpenAIFile,
    OpenAIUpload,
    OpenAIUploadPart,
    SessionKind,
    SessionState,
    StoredObject,
    UploadSession,
    db,
    transaction,
)
from .objects import ObjectService
from .records import Body, BytesBody, ChunkRequest
from .uploads import UploadService

UPLOAD_TTL = 3600  # an Upload takes parts for an hour, as OpenAI's do
PART_MAX = 64 * 1024 * 1024
FILE_ID_RE = re.compile(r"file-[0-9a-f]{32}")
UPLOAD_ID_RE = re.compile(r"upload_[0-9a-f]{32}")
PART_ID_RE = re.compile(r"part_[0-9a-f]{32}")

_files, _buckets, _objects = OpenAIFile.__table__, Bucket.__table__, StoredObject.__table__
_uploads, _parts, _sessions = OpenAIUpload.__table__, OpenAIUploadPart.__table__, UploadSession.__table__
# A visible file: its row, its object, not expired.
_VISIBLE = (
    select(_files.c.id, _files.c.bucket, _files.c.key, _files.c.filename, _files.c.purpose, _files.c.created_at,
           _files.c.expires_at, _objects.c.size, _objects.c.mime_type)
    .select_from(_files.join(_buckets, _buckets.c.name == _files.c.bucket)
                 .join(_objects, and_(_objects.c.bucket_id == _buckets.c.id, _objects.c.key == _files.c.key)))
    .where(or_(_files.c.expires_at.is_(None), _files.c.expires_at > bindparam("now")))
)
_OBJECT_OF_ROW = exists().where(_buckets.c.name == _files.c.bucket, _objects.c.bucket_id == _buckets.c.id,
                                _objects.c.key == _files.c.key)


@dataclass(frozen=True)
class OpenAIFileInfo:
    id: str
    bytes: int
    created_at: int
    expires_at: int | None
    filename: str
    purpose: str
    bucket: str
    key: str
    mime_type: str

    @classmethod
    def from_row(cls, row) -> OpenAIFileInfo:
        return cls(row.id, row.size, row.created_at, row.expires_at, row.filename, row.purpose, row.bucket, row.key,
                   row.mime_type)


@dataclass(frozen=True)
class FilePage:
    files: list[OpenAIFileInfo]
    has_more: bool


@dataclass(frozen=True)
class UploadInfo:
    id: str
    bytes: int
    created_at: int
    expires_at: int
    filename: str
    purpose: str
    status: str  # pending | completed | cancelled | expired
    file: OpenAIFileInfo | None = None


@dataclass(frozen=True)
class PartInfo:
    id: str
    upload_id: str
    created_at: int


@dataclass(frozen=True)
class StagedFile:
    """A file's bytes, streamed and durable, not yet a file: commit_file or discard makes it one or none."""

    file_id: str
    session_id: str
    key: str
    filename: str
    size: int
    owner: str | None


class OpenAIService:
    def __init__(self, uploads: UploadService, objects: ObjectService, settings: dict[str, Any],
                 clock: Callable[[], float] = time.time):
        self.uploads, self.objects, self.clock = uploads, objects, clock
        self.bucket = settings["FILES_OPENAI_BUCKET"]
        self.claim_ttl = settings["FILES_LEASE_TTL"]

    # --- files ----------------------------------------------------------------------------
    def stage_file(self, *, filename: Any, mime_type: Any, body: Body, owner: str | None,
                   at_most: int | None = None) -> StagedFile:
        """Stream a file's bytes into a session of unknown length (a multipart part ends where it
        ends). Nothing is visible yet; a failure leaves nothing behind. `at_most`: the request's
        length, which the file cannot pass: checked against the quotas before a byte is read."""
        filename = validation.openai_filename(filename)
        if at_most is not None:
            self.uploads.check_quota(self.bucket, owner, at_most)
        file_id = self._new_file_id()
        key = _key(file_id, filename)
        mime_type = _known_type(mime_type, key)
        session = self.uploads.create(bucket=self.bucket, key=key, size=None, mime_type=mime_type, defer_length=True,
                                      owner=owner)
        written = self.uploads.write(session.id, ChunkRequest(body, offset=0), owner=owner, with_creation=True)
        return StagedFile(file_id, session.id, key, filename, written.session.offset, owner)

    def commit_file(self, staged: StagedFile, *, purpose: Any, expires_after: int | None,
                    person: str | None = None) -> OpenAIFileInfo:
        """The staged bytes become the file: its row, then its object (one durable publish).
        `person`: whose file it is ("user:<id>", or a token's owner for an operator's token)."""
        try:
            purpose = validation.openai_purpose(purpose)
            created_at, expires_at = self._insert_row(staged.file_id, staged.filename, purpose, expires_after,
                                                      person)
        except BaseException:
            self.discard(staged)
            raise
        try:
            end = ChunkRequest(BytesBody(), offset=staged.size, declared_size=staged.size)
            obj = self.uploads.write(staged.session_id, end, owner=staged.owner, with_creation=True).object
        except BaseException:
            self._forget_rows([staged.file_id])
            raise
        return OpenAIFileInfo(staged.file_id, obj.size, created_at, expires_at, staged.filename, purpose, self.bucket,
                              staged.key, obj.mime_type)

    def discard(self, staged: StagedFile) -> None:
        with contextlib.suppress(NotFound):
            self.uploads.discard(staged.session_id)

    def list_files(self, *, after: Any = None, limit: int = 10000, order: str = "desc",
                   purpose: Any = None, visible_to: str | None = None) -> FilePage:
        """`visible_to`: only that person's files (a member's view); None: everyone's."""
        if after is not None and not FILE_ID_RE.fullmatch(str(after)):
            raise InvalidInput("after must be a file id (file-...)", "invalid_after", param="after")
        if order not in ("asc", "desc"):
            raise InvalidInput("order must be 'asc' or 'desc'", "invalid_order", param="order")
        query = _VISIBLE if visible_to is None else _VISIBLE.where(_files.c.owner == visible_to)
        if purpose is not None:
            query = query.where(_files.c.purpose == validation.openai_purpose(purpose))
        if after is not None:
            query = query.where(_files.c.id > after if order == "asc" else _files.c.id < after)
        query = query.order_by(_files.c.id.asc() if order == "asc" else _files.c.id.desc()).limit(limit + 1)
        with transaction():
            rows = db.session.execute(query, {"now": int(self.clock())}).all()
        return FilePage([OpenAIFileInfo.from_row(row) for row in rows[:limit]], len(rows) > limit)

    def get_file(self, file_id: str, visible_to: str | None = None) -> OpenAIFileInfo:
        """Another person's file is as good as none (404) for a member (`visible_to`)."""
        row = None
        if FILE_ID_RE.fullmatch(file_id):
            query = _VISIBLE.where(_files.c.id == file_id)
            if visible_to is not None:
                query = query.where(_files.c.owner == visible_to)
            with transaction():
                row = db.session.execute(query, {"now": int(self.clock())}).first()
        if row is None:
            raise NotFound(f"no file {file_id!r}")
        return OpenAIFileInfo.from_row(row)

    def delete_file(self, file_id: str, visible_to: str | None = None) -> OpenAIFileInfo:
        """The object goes first (durably), then the row: a crash between leaves a row gc removes."""
        info = self.get_file(file_id, visible_to)
        try:
            self.objects.delete(info.bucket, info.key)
        except NotFound:
            raise NotFound(f"no file {file_id!r}") from None  # deleted at the same moment
        finally:
            self._forget_rows([file_id])
        return info

    # --- uploads --------------------------------------------------------------------------
    def create_upload(self, *, filename: Any, purpose: Any, size: Any, mime_type: Any, expires_after: int | None,
                      owner: str | None) -> UploadInfo:
        filename, purpose = validation.openai_filename(filename), validation.openai_purpose(purpose)
        try:
            size = validation.object_size(size, self.uploads.max_size)
        except InvalidInput:
            raise InvalidInput("bytes must be a non-negative integer", "invalid_bytes", param="bytes") from None
        if not isinstance(mime_type, str) or not validation.MIME_RE.fullmatch(mime_type) or len(mime_type) > 255:
            raise InvalidInput("mime_type must look like 'type/subtype'", "invalid_mime_type", param="mime_type")
        self.uploads.check_space(size)
        self.uploads.check_quota(self.bucket, owner, size)
        now = int(self.clock())
        upload_id = f"upload_{uuid.uuid4().hex}"
        with transaction():
            db.session.execute(insert(_uploads), dict(
                id=upload_id, filename=filename, purpose=purpose, bytes=size, mime_type=mime_type, created_at=now,
                expires_at=now + UPLOAD_TTL, status="pending", file_expires_after=expires_after, file_id=None,
                owner=owner or None))
        return UploadInfo(upload_id, size, now, now + UPLOAD_TTL, filename, purpose, "pending")

    def add_part(self, upload_id: str, body: Body, owner: str | None) -> PartInfo:
        """A part's bytes (at most 64 MiB, and never past the Upload's `bytes` with the other
        parts) streamed into a partial session of its own."""
        self._pending(self._upload(upload_id, owner))
        session = self.uploads.create(bucket=None, key=None, size=None, kind=SessionKind.PARTIAL, defer_length=True,
                                      owner=owner)
        part = PartInfo(f"part_{uuid.uuid4().hex}", upload_id, int(self.clock()))
        try:
            with transaction():  # its row first, reserving nothing yet
                self._take_pending(upload_id)
                db.session.execute(insert(_parts), dict(id=part.id, upload_id=upload_id, session_id=session.id,
                                                        bytes=0, created_at=part.created_at))
            reserving = _Reserving(_AtMost(body, PART_MAX), lambda size: self._reserve(upload_id, part.id, size))
            written = self.uploads.write(session.id, ChunkRequest(reserving, offset=0), owner=owner)
            size = written.session.offset
            self.uploads.write(session.id, ChunkRequest(BytesBody(), offset=size, declared_size=size), owner=owner)
            with transaction():
                # Still pending (a cancel or complete may have come meanwhile, and a complete drops
                # the rows of parts it did not name); on PostgreSQL the Upload's row stays locked
                # until the part is in.
                self._take_pending(upload_id)
                if db.session.execute(update(_parts).where(_parts.c.id == part.id)
                                      .values(bytes=size)).rowcount != 1:
                    raise Conflict(f"upload {upload_id} was completed while the part was sent")
        except BaseException:
            with contextlib.suppress(Exception):
                with transaction():  # its reservation given back
                    db.session.execute(delete(_parts).where(_parts.c.id == part.id))
            with contextlib.suppress(Exception):
                self.uploads.discard(session.id)
            raise
        return part

    def _take_pending(self, upload_id: str) -> None:
        """Inside the caller's transaction: take the Upload's row, if it is still pending."""
        if db.session.execute(update(_uploads).where(
                _uploads.c.id == upload_id, _uploads.c.status == "pending", _uploads.c.expires_at > self.clock())
                .values(status="pending")).rowcount != 1:
            raise Conflict(f"upload {upload_id} was completed, cancelled or expired while the part was sent")

    def _reserve(self, upload_id: str, part_id: str, size: int) -> None:
        """`size` more bytes for the part, if the parts stay within the Upload's `bytes`: checked
        and reserved under the Upload's row."""
        with transaction():
            self._take_pending(upload_id)
            limit = db.session.scalar(select(_uploads.c.bytes).where(_uploads.c.id == upload_id))
            held = db.session.scalar(select(func.coalesce(func.sum(_parts.c.bytes), 0))
                                     .where(_parts.c.upload_id == upload_id))
            if held + size > limit:
                raise TooLarge(f"the parts would hold more than the {limit} bytes the upload was created for "
                               f"({held} are taken)", param="data")
            if db.session.execute(update(_parts).where(_parts.c.id == part_id)
                                  .values(bytes=_parts.c.bytes + size)).rowcount != 1:
                raise Conflict(f"upload {upload_id} was completed while the part was sent")

    def complete_upload(self, upload_id: str, *, part_ids: Any, md5: Any, owner: str | None,
                        person: str | None = None) -> UploadInfo:
        """Join the parts, in the order given, into one file. The upload is claimed first, so a
        cancel or a second complete cannot free the parts while they are read; a claim whose
        process died is taken over (see the module's notes)."""
        upload = self._upload(upload_id, owner)
        if upload.status == "completed" and self._completed_with(upload_id, part_ids):
            return self._info(upload)  # a retry whose first answer was lost: the same answer
        self._pending(upload)
        sessions = self._parts_in_order(upload, part_ids)
        if md5 is not None and (not isinstance(md5, str) or not re.fullmatch(r"[0-9a-fA-F]{32}", md5)):
            raise InvalidInput("md5 must be 32 hexadecimal digits", "invalid_md5", param="md5")
        file_id = self._new_file_id()
        stale = self._claim(upload, "completing", file_id)
        if stale is not None and self._published(stale, upload.filename):
            unused = self._completed(upload_id, file_id, stale, sessions)  # the killed completion's file
            self._discard_sessions(unused)
            return self._info(self._upload(upload_id, owner))
        try:
            if stale is not None:
                self._drop_leftovers(stale, upload.filename)
            if md5 is not None and not sessions and md5.lower() != hashlib.md5(b"", usedforsecurity=False).hexdigest():
                raise _md5_mismatch()
            key = _key(file_id, upload.filename)
            self._insert_row(file_id, upload.filename, upload.purpose, upload.file_expires_after, person)
            try:  # the md5 is checked as the parts are joined, before the file is published
                self._join(sessions, key=key, mime_type=upload.mime_type, owner=owner,
                           checksum=("md5", bytes.fromhex(md5)) if md5 else None)
            except ChecksumMismatch:
                raise _md5_mismatch() from None
            unused = self._completed(upload_id, file_id, file_id, sessions)
        except BaseException:
            if self._published(file_id, upload.filename):
                # Taken over after its file was published (the claim outlived FILES_LEASE_TTL): the
                # taker makes that file the Upload's, so its row stays, and so does the answer.
                upload = self._upload(upload_id, owner)
                if upload.status == "completed" and upload.file_id == file_id:
                    return self._info(upload)
                raise
            self._forget_rows([file_id])
            self._release_claim(upload_id, file_id)
            raise
        self._discard_sessions(unused)
        return self._info(self._upload(upload_id, owner))

    def _join(self, sessions: list[str], *, key: str, mime_type: str, owner: str | None,
              checksum: tuple[str, bytes] | None) -> None:
        """The parts' bytes as the file's object; create_only: a completion taken over never
        replaces the file of the one it took over from."""
        self.uploads.concatenate(sessions, bucket=self.bucket, key=key, mime_type=mime_type, owner=owner,
                                 create_only=True, checksum=checksum)

    def _completed(self, upload_id: str, claim: str, file_id: str, sessions: list[str]) -> list[str]:
        """The claim `claim` ends: the Upload is completed with `file_id`. The sessions of the
        parts not used (and its promise) are returned, to be freed."""
        with transaction(durable=True):
            if db.session.execute(update(_uploads).where(_uploads.c.id == upload_id,
                                                         _uploads.c.status == "completing",
                                                         _uploads.c.file_id == claim)
                                  .values(status="completed", file_id=file_id)).rowcount != 1:
                raise Conflict(f"upload {upload_id} was taken over by another completion or a cancel")
            # The parts used stay listed (their bytes are the file's now), to know a retry.
            return list(db.session.scalars(delete(_parts).where(
                _parts.c.upload_id == upload_id, _parts.c.session_id.not_in(sessions))
                .returning(_parts.c.session_id)).all())

    def cancel_upload(self, upload_id: str, owner: str | None) -> UploadInfo:
        upload = self._upload(upload_id, owner)
        if upload.status == "cancelled":
            return self._info(upload)
        self._pending(upload)
        stale = self._claim(upload, "cancelled", None)
        if stale is not None:
            if self._published(stale, upload.filename):  # the killed completion had made its file
                with transaction():
                    db.session.execute(update(_uploads).where(_uploads.c.id == upload_id)
                                       .values(status="completed", file_id=stale))
                raise Conflict(f"upload {upload_id} was completed")
            self._drop_leftovers(stale, upload.filename)
        with transaction():
            sessions = db.session.scalars(delete(_parts).where(_parts.c.upload_id == upload_id)
                                          .returning(_parts.c.session_id)).all()
        self._discard_sessions(list(sessions))
        return self._info(self._upload(upload_id, owner))

    def _claim(self, upload, status: str, file_id: str | None) -> str | None:
        """Move a pending Upload to `status` (with the file id a completion will make), or take
        over a stale completion's claim: returns that claim's file id (None for a pending one).
        409 while a completion may still be under way."""
        if self._claim_pending(upload.id, status, file_id):
            return None
        with transaction():
            row = db.session.execute(select(_uploads.c.status, _uploads.c.file_id)
                                     .where(_uploads.c.id == upload.id)).first()
        if row is None or row.status != "completing" or row.file_id is None \
                or _claimed_at(row.file_id) + self.claim_ttl > self.clock():
            raise Conflict(f"upload {upload.id} is being completed or cancelled")
        key = _key(row.file_id, upload.filename)
        working = exists().where(  # the killed completion's joining session, still leased: it lives
            _buckets.c.name == self.bucket, _sessions.c.bucket_id == _buckets.c.id, _sessions.c.key == key,
            _sessions.c.state == SessionState.ACTIVE, _sessions.c.lease_expires_at >= self.clock())
        with transaction():
            taken = db.session.execute(update(_uploads).where(
                _uploads.c.id == upload.id, _uploads.c.status == "completing", _uploads.c.file_id == row.file_id,
                ~working).values(status=status, file_id=file_id)).rowcount
        if taken != 1:
            raise Conflict(f"upload {upload.id} is being completed or cancelled")
        return row.file_id

    def _claim_pending(self, upload_id: str, status: str = "completing", file_id: str | None = None) -> bool:
        with transaction():
            return db.session.execute(update(_uploads).where(_uploads.c.id == upload_id,
                                                             _uploads.c.status == "pending")
                                      .values(status=status, file_id=file_id or self._new_file_id()
                                              if status == "completing" else None)).rowcount == 1

    def _release_claim(self, upload_id: str, file_id: str) -> None:
        with transaction():
            db.session.execute(update(_uploads).where(_uploads.c.id == upload_id, _uploads.c.status == "completing",
                                                      _uploads.c.file_id == file_id)
                               .values(status="pending", file_id=None))

    def _published(self, file_id: str, filename: str) -> bool:
        try:
            self.objects.get(self.bucket, _key(file_id, filename))
            return True
        except NotFound:
            return False

    def _drop_leftovers(self, file_id: str, filename: str) -> None:
        """What a killed completion left: its joining session (and its promise), the parts it had
        taken (given back), and its file row."""
        key = _key(file_id, filename)
        with transaction():
            left = list(db.session.scalars(select(_sessions.c.id).join(_buckets, _buckets.c.id == _sessions.c.bucket_id)
                                           .where(_buckets.c.name == self.bucket, _sessions.c.key == key,
                                                  _sessions.c.state == SessionState.ACTIVE)).all())
            if left:
                db.session.execute(update(_sessions).where(_sessions.c.kind == SessionKind.PARTIAL,
                                                           _sessions.c.lease_token.in_(left))
                                   .values(lease_token=None, lease_expires_at=0.0))
        self._discard_sessions(left)
        self._forget_rows([file_id])

    # --- gc -------------------------------------------------------------------------------
    def collect_garbage(self, grace: float = 3600.0) -> dict[str, int]:
        """Expired files (object and row), rows a crash left without an object, and expired
        uploads with their parts' bytes."""
        now = int(self.clock())
        with transaction():
            expired = db.session.execute(select(_files.c.id, _files.c.bucket, _files.c.key)
                                         .where(_files.c.expires_at <= now)).all()
            stray = db.session.scalars(select(_files.c.id).where(_files.c.created_at < now - grace,
                                                                 ~_OBJECT_OF_ROW)).all()
            uploads = db.session.scalars(select(_uploads.c.id).where(_uploads.c.expires_at < now)).all()
            sessions = db.session.scalars(select(_parts.c.session_id).where(_parts.c.upload_id.in_(uploads))).all()
        for row in expired:
            with contextlib.suppress(NotFound, Conflict):
                self.objects.delete(row.bucket, row.key, to_trash=False)  # expired: no one deleted it
        self._forget_rows([row.id for row in expired] + list(stray))
        with transaction():
            db.session.execute(delete(_parts).where(_parts.c.upload_id.in_(uploads)))
            db.session.execute(delete(_uploads).where(_uploads.c.id.in_(uploads)))
        self._discard_sessions(sessions)
        return {"expired_openai_files": len(expired), "stray_openai_files": len(stray),
                "expired_openai_uploads": len(uploads)}

    # --- helpers ----------------------------------------------------------------------------
    def _new_file_id(self) -> str:
        """file-<creation time in microseconds, 14 hex><18 random hex>: ids sort in the order files
        were made (to the microsecond), and cannot be guessed all the same."""
        return f"file-{int(self.clock() * 1_000_000):014x}{uuid.uuid4().hex[:18]}"

    def _insert_row(self, file_id: str, filename: str, purpose: str,
                    expires_after: int | None, person: str | None) -> tuple[int, int | None]:
        """The file's row, written before its object is published; (created_at, expires_at)."""
        created_at = _created_at(file_id)
        expires_at = created_at + expires_after if expires_after else None
        with transaction():
            db.session.execute(insert(_files), dict(id=file_id, bucket=self.bucket, key=_key(file_id, filename),
                                                    filename=filename, purpose=purpose, created_at=created_at,
                                                    expires_at=expires_at, owner=person))
        return created_at, expires_at

    def _upload(self, upload_id: str, owner: str | None):
        row = None
        if UPLOAD_ID_RE.fullmatch(upload_id):
            with transaction():
                row = db.session.execute(select(_uploads).where(_uploads.c.id == upload_id)).first()
        if row is None or (owner and row.owner != owner):
            raise NotFound(f"no upload {upload_id!r}")
        return row

    def _status(self, upload) -> str:
        if upload.status in ("pending", "completing") and upload.expires_at <= self.clock():
            return "expired"
        return "pending" if upload.status == "completing" else upload.status

    def _pending(self, upload) -> None:
        status = self._status(upload)
        if status != "pending":
            raise InvalidInput(f"upload {upload.id} is {status}", f"upload_{status}", param="upload_id")

    def _info(self, upload) -> UploadInfo:
        file = None
        if upload.file_id and upload.status == "completed":
            with contextlib.suppress(NotFound):
                file = self.get_file(upload.file_id)
        return UploadInfo(upload.id, upload.bytes, upload.created_at, upload.expires_at, upload.filename,
                          upload.purpose, self._status(upload), file)

    def _parts_in_order(self, upload, part_ids: Any) -> list[str]:
        """The parts' session ids in the order given; each must be a part of this upload, once."""
        if not isinstance(part_ids, list) or not all(isinstance(p, str) and PART_ID_RE.fullmatch(p) for p in part_ids):
            raise InvalidInput("part_ids must be a list of part ids (part_...)", "invalid_part_ids", param="part_ids")
        if len(set(part_ids)) != len(part_ids):
            raise InvalidInput("part_ids names a part twice", "invalid_part_ids", param="part_ids")
        with transaction():
            rows = {row.id: row for row in db.session.execute(
                select(_parts).where(_parts.c.upload_id == upload.id, _parts.c.id.in_(part_ids))).all()}
        if unknown := [p for p in part_ids if p not in rows]:
            raise InvalidInput(f"not parts of this upload: {', '.join(unknown[:5])}", "invalid_part_ids",
                               param="part_ids")
        total = sum(rows[p].bytes for p in part_ids)
        if total != upload.bytes:
            raise InvalidInput(f"the parts hold {total} bytes, not the {upload.bytes} the upload was created for",
                               "bytes_mismatch", param="part_ids")
        return [rows[p].session_id for p in part_ids]

    @staticmethod
    def _completed_with(upload_id: str, part_ids: Any) -> bool:
        with transaction():
            used = set(db.session.scalars(select(_parts.c.id).where(_parts.c.upload_id == upload_id)).all())
        return (isinstance(part_ids, list) and all(isinstance(p, str) for p in part_ids)
                and set(part_ids) == used and len(part_ids) == len(used))

    def _discard_sessions(self, sessions: list[str]) -> None:
        for session_id in sessions:
            with contextlib.suppress(Exception):  # what is left, gc frees
                self.uploads.discard(session_id)

    @staticmethod
    def _forget_rows(file_ids: list[str]) -> None:
        if file_ids:
            with transaction():
                db.session.execute(delete(_files).where(_files.c.id.in_(file_ids)))


def _md5_mismatch() -> InvalidInput:
    return InvalidInput("the parts' md5 is not the md5 given", "md5_mismatch", param="md5")


def _key(file_id: str, filename: str) -> str:
    """Where a file's bytes live in the bucket: its id, then the base of its name."""
    return f"{file_id}/{validation.key_name(filename)}"


def _created_at(file_id: str) -> int:
    return int(file_id[5:19], 16) // 1_000_000


def _claimed_at(file_id: str) -> float:
    """When a completion claimed its Upload: the time its file's id was made."""
    return int(file_id[5:19], 16) / 1_000_000


def _known_type(mime_type: Any, key: str) -> str | None:
    """A part's declared type when it is one we can store; else guessed from the name."""
    if isinstance(mime_type, str) and validation.MIME_RE.fullmatch(mime_type) and len(mime_type) <= 255 \
            and mime_type != "application/octet-stream":
        return mime_type
    return validation.mime_type(None, key)


class _AtMost:
    """A body that may hold at most `limit` bytes (413 past it)."""

    def __init__(self, body: Body, limit: int):
        self._body, self._left = body, limit

    def read(self, size: int) -> bytes:
        data = self._body.read(size)
        self._left -= len(data)
        if self._left < 0:
            raise TooLarge(f"a part may hold at most {PART_MAX} bytes")
        return data


class _Reserving:
    """A body whose every piece is reserved (`reserve(n)`) before it is handed on: pieces of up to
    the size asked for, so that a part of many small reads costs few reservations."""

    def __init__(self, body: Body, reserve: Callable[[int], None]):
        self._body, self._reserve = body, reserve

    def read(self, size: int) -> bytes:
        pieces, held = [], 0
        while held < size and (data := self._body.read(size - held)):
            pieces.append(data)
            held += len(data)
        if held:
            self._reserve(held)
        return b"".join(pieces)
