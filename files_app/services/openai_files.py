"""The OpenAI-compatible Files and Uploads API's domain, on the same sessions, blobs and objects.

An OpenAI file is the object "<file id>/<name>" in one bucket (FILES_OPENAI_BUCKET), plus a row
(id, filename, purpose, expiry). The row is written first and the object published after it, so
a file is visible while both exist and it has not expired; a crash between the two leaves a row
gc removes. A file id starts with its creation time (microseconds) in hex: ids sort by time, so a list is a keyset
walk over the primary key, and `after=<id>` needs no lookup (nor the file to still exist).

A file sent in one request streams into a session of unknown length, completed once the
multipart body ends. An Upload's parts are tus-like partial sessions, joined by concatenation.
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

from sqlalchemy import and_, bindparam, delete, exists, insert, or_, select, update

from .. import validation
from ..errors import ChecksumMismatch, Conflict, InvalidInput, NotFound, TooLarge
from ..models import (
    Bucket,
    OpenAIFile,
    OpenAIUpload,
    OpenAIUploadPart,
    SessionKind,
    StoredObject,
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
_uploads, _parts = OpenAIUpload.__table__, OpenAIUploadPart.__table__
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
        """A part's bytes (at most 64 MiB) streamed into a partial session of its own."""
        self._pending(self._upload(upload_id, owner))
        session = self.uploads.create(bucket=None, key=None, size=None, kind=SessionKind.PARTIAL, defer_length=True,
                                      owner=owner)
        try:
            written = self.uploads.write(session.id, ChunkRequest(_AtMost(body, PART_MAX), offset=0), owner=owner)
            size = written.session.offset
            self.uploads.write(session.id, ChunkRequest(BytesBody(), offset=size, declared_size=size), owner=owner)
            part = PartInfo(f"part_{uuid.uuid4().hex}", upload_id, int(self.clock()))
            with transaction():
                # Still pending (a cancel or complete may have come meanwhile); on PostgreSQL this
                # also locks the upload's row until the part is in.
                still_pending = db.session.execute(
                    update(_uploads).where(_uploads.c.id == upload_id, _uploads.c.status == "pending")
                    .values(status="pending")).rowcount
                if still_pending:
                    db.session.execute(insert(_parts), dict(id=part.id, upload_id=upload_id, session_id=session.id,
                                                            bytes=size, created_at=part.created_at))
            if not still_pending:
                self._pending(self._upload(upload_id, owner))
                raise Conflict(f"upload {upload_id} changed while the part was sent")
        except BaseException:
            with contextlib.suppress(Exception):
                self.uploads.discard(session.id)
            raise
        return part

    def complete_upload(self, upload_id: str, *, part_ids: Any, md5: Any, owner: str | None,
                        person: str | None = None) -> UploadInfo:
        """Join the parts, in the order given, into one file. The upload is claimed first, so a
        cancel or a second complete cannot free the parts while they are read."""
        upload = self._upload(upload_id, owner)
        if upload.status == "completed" and self._completed_with(upload_id, part_ids):
            return self._info(upload)  # a retry whose first answer was lost: the same answer
        self._pending(upload)
        sessions = self._parts_in_order(upload, part_ids)
        if md5 is not None and (not isinstance(md5, str) or not re.fullmatch(r"[0-9a-fA-F]{32}", md5)):
            raise InvalidInput("md5 must be 32 hexadecimal digits", "invalid_md5", param="md5")
        if not self._claim(upload_id, "pending", "completing"):
            raise Conflict(f"upload {upload_id} is being completed or cancelled")
        file_id = None
        try:
            if md5 is not None and not sessions and md5.lower() != hashlib.md5(b"", usedforsecurity=False).hexdigest():
                raise _md5_mismatch()
            file_id = self._new_file_id()
            key = _key(file_id, upload.filename)
            self._insert_row(file_id, upload.filename, upload.purpose, upload.file_expires_after, person)
            try:  # the md5 is checked as the parts are joined, before the file is published
                self.uploads.concatenate(sessions, bucket=self.bucket, key=key, mime_type=upload.mime_type,
                                         owner=owner, checksum=("md5", bytes.fromhex(md5)) if md5 else None)
            except ChecksumMismatch:
                raise _md5_mismatch() from None
            with transaction():
                db.session.execute(update(_uploads).where(_uploads.c.id == upload_id)
                                   .values(status="completed", file_id=file_id))
                unused = db.session.scalars(select(_parts.c.session_id).where(
                    _parts.c.upload_id == upload_id, _parts.c.session_id.not_in(sessions))).all()
                # The parts used stay listed (their bytes are the file's now), to know a retry.
                db.session.execute(delete(_parts).where(_parts.c.upload_id == upload_id,
                                                        _parts.c.session_id.not_in(sessions)))
        except BaseException:
            if file_id is not None:
                self._forget_rows([file_id])
            self._claim(upload_id, "completing", "pending")
            raise
        self._discard_sessions(unused)
        return self._info(self._upload(upload_id, owner))

    def cancel_upload(self, upload_id: str, owner: str | None) -> UploadInfo:
        upload = self._upload(upload_id, owner)
        if upload.status == "cancelled":
            return self._info(upload)
        self._pending(upload)
        if not self._claim(upload_id, "pending", "cancelled"):
            raise Conflict(f"upload {upload_id} is being completed")
        with transaction():
            sessions = db.session.scalars(select(_parts.c.session_id).where(_parts.c.upload_id == upload_id)).all()
            db.session.execute(delete(_parts).where(_parts.c.upload_id == upload_id))
        self._discard_sessions(sessions)
        return self._info(self._upload(upload_id, owner))

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
                self.objects.delete(row.bucket, row.key)
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
        if upload.file_id:
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

    def _claim(self, upload_id: str, status: str, new_status: str) -> bool:
        with transaction():
            return db.session.execute(update(_uploads).where(_uploads.c.id == upload_id, _uploads.c.status == status)
                                      .values(status=new_status)).rowcount == 1

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
