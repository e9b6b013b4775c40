"""Quotas: at most so many bytes and files per bucket, and bytes per owner (a user or a token).

Checked when an upload is created, from its declared size (a deferred-length tus upload: as its
bytes arrive, in the transaction that moves its offset), counting what the files hold (kept in
step with them: buckets' counts, `owner_usage`) and what open uploads were promised (declared
sizes, bytes held by deferred ones, completed partials; a file request's count for its creator). The check runs
in the transaction that records the new upload's promise, after taking the quota rows for writing
(a no-op UPDATE: SQLite's write lock, PostgreSQL's row locks), so concurrent creations are checked
one after another and cannot overshoot together. An upload that replaces a file is counted as
though it added one (the file it replaces becomes a version, which counts). Files in the trash
and kept versions count as files do, until they are purged.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, delete, exists, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from .. import validation
from ..errors import InvalidInput, NotFound, QuotaExceeded, ShareGone
from ..models import (
    ApiToken,
    Bucket,
    OpenAIUpload,
    OpenAIUploadPart,
    OwnerUsage,
    Quota,
    SessionKind,
    SessionState,
    Share,
    UploadSession,
    User,
    db,
    transaction,
)
from . import audit

_quotas, _sessions, _buckets = Quota.__table__, UploadSession.__table__, Bucket.__table__
_TAKE = (update(_quotas).where(_quotas.c.subject.in_(bindparam("subjects", expanding=True)))
         .values(subject=_quotas.c.subject).returning(_quotas.c.subject, _quotas.c.max_bytes, _quotas.c.max_files))
_later = _sessions.alias("later")
_parts, _openai_uploads = OpenAIUploadPart.__table__, OpenAIUpload.__table__
# The sessions of an OpenAI Upload's parts live as long as their Upload: once it has expired they
# count for nothing (its parts can be neither joined nor added to), as an expired session does not;
# gc takes them later.
EXPIRED_UPLOAD_PARTS = (select(_parts.c.session_id)
                        .join(_openai_uploads, _openai_uploads.c.id == _parts.c.upload_id)
                        .where(_openai_uploads.c.expires_at <= bindparam("now")))
# Live: unfinished and unexpired. A complete tus partial holds its bytes until a final joins it or
# it expires, except while a final holds it (its lease_token names that final's unexpired session,
# whose size counts instead).
_OPEN = (_sessions.c.state == SessionState.ACTIVE, _sessions.c.expires_at >= bindparam("now"))
_HELD_PARTIAL = and_(_sessions.c.kind == SessionKind.PARTIAL, _sessions.c.state == SessionState.COMPLETED,
                     _sessions.c.expires_at >= bindparam("now"),
                     ~exists().where(_later.c.id == _sessions.c.lease_token, _later.c.expires_at >= bindparam("now")))
_COUNTED = and_(or_(and_(*_OPEN), _HELD_PARTIAL), _sessions.c.id.not_in(EXPIRED_UPLOAD_PARTS))
# A deferred-length upload (no size yet) promises what it holds: its bytes count as they arrive.
_PROMISE = func.coalesce(func.sum(func.coalesce(_sessions.c.size, _sessions.c.offset)), 0)
# An owner's uploads, and those of the file requests (shares) they made: their creator's quota counts them.
_shares = Share.__table__
_OWNERS = or_(_sessions.c.owner == bindparam("owner"), _sessions.c.owner.in_(
    select(literal("share:") + _shares.c.id).where(_shares.c.created_by == bindparam("owner"))))
# What open uploads were promised: their declared sizes, and one file each (a partial makes none).
_PROMISED_TO_BUCKET = (select(func.count(), _PROMISE)
                       .select_from(_sessions.join(_buckets, _buckets.c.id == _sessions.c.bucket_id))
                       .where(_buckets.c.name == bindparam("name"), *_OPEN))
_PROMISED_TO_OWNER = (select(func.count().filter(and_(*_OPEN, _sessions.c.kind != SessionKind.PARTIAL)), _PROMISE)
                      .where(_OWNERS, _COUNTED))
_BUCKET_HOLDS = select(_buckets.c.object_count, _buckets.c.total_bytes, _buckets.c.kept_files,
                       _buckets.c.kept_bytes).where(_buckets.c.name == bindparam("name"))
_OWNER_HOLDS = select(*(func.coalesce(func.sum(column), 0) for column in (
    OwnerUsage.files, OwnerUsage.bytes, OwnerUsage.kept_files, OwnerUsage.kept_bytes))).where(
    or_(OwnerUsage.owner == bindparam("owner"), OwnerUsage.owner.in_(
        select(literal("share:") + _shares.c.id).where(_shares.c.created_by == bindparam("owner")))))
_COUNTED_OF = select(_PROMISE).where(_sessions.c.id.in_(bindparam("ids", expanding=True)), _COUNTED)
# A file request's row, taken (a no-op UPDATE: SQLite's write lock, PostgreSQL's row lock) by the
# creation of an upload through it, so that gc cannot forget it meanwhile (services/shares.forget_dead).
_TAKE_SHARE = (update(_shares).where(_shares.c.id == bindparam("share_id")).values(id=_shares.c.id)
               .returning(_shares.c.created_by))
_LIMITS = select(_quotas.c.max_bytes, _quotas.c.max_files).where(_quotas.c.subject == bindparam("subject"))


@dataclass(frozen=True)
class Usage:
    files: int  # held by stored files
    bytes: int
    promised_files: int  # to uploads still open
    promised_bytes: int
    kept_files: int = 0  # in trash and versions (they count: emptying the trash frees them)
    kept_bytes: int = 0


@dataclass(frozen=True)
class QuotaInfo:
    subject: str  # "bucket:<name>", "user:<id>", "token:<id>"
    name: str  # the bucket's, the user's, or the token's id
    max_bytes: int | None
    max_files: int | None
    usage: Usage


def usage_of(subject: str, now: float) -> Usage:
    """Inside the caller's transaction."""
    kind, _, name = subject.partition(":")
    if kind == "bucket":
        held = db.session.execute(_BUCKET_HOLDS, {"name": name}).first()
        promised = db.session.execute(_PROMISED_TO_BUCKET, {"name": name, "now": now}).one()
    else:
        held = db.session.execute(_OWNER_HOLDS, {"owner": subject}).first()
        promised = db.session.execute(_PROMISED_TO_OWNER, {"owner": subject, "now": now}).one()
    files, size, kept_files, kept_bytes = held if held else (0, 0, 0, 0)
    return Usage(int(files), int(size), int(promised[0]), int(promised[1]), int(kept_files), int(kept_bytes))


def counted_bytes(session_ids: list[str], now: float) -> int:
    """What these sessions count for now (a final's partials, in the transaction that takes them:
    its size then counts in their place), inside the caller's transaction."""
    return int(db.session.scalar(_COUNTED_OF, {"ids": session_ids, "now": now}))


def enforce(bucket: str | None, owner: str | None, size: int, now: float, *, new_file: bool = True) -> None:
    """Refuse (507 quota_exceeded) an upload of `size` bytes into `bucket` by `owner` that would
    pass a quota (a file request's, "share:<id>", its creator's too). Inside the caller's
    transaction, which must then record the upload's promise (the quota rows stay taken until it ends)."""
    subjects = ([f"bucket:{bucket}"] if bucket else []) + ([owner] if owner else [])
    if owner and owner.startswith("share:"):  # a file request's upload: its creator's quota counts it
        share = db.session.execute(_TAKE_SHARE, {"share_id": owner.removeprefix("share:")}).first()
        if share is None:  # dead, and forgotten by gc since the upload was let in
            raise ShareGone("this link was withdrawn", state="revoked")
        subjects += [share.created_by] if share.created_by else []
    if not subjects:
        return
    for subject, max_bytes, max_files in db.session.execute(_TAKE, {"subjects": subjects}).all():
        usage = usage_of(subject, now)
        used_bytes = usage.bytes + usage.kept_bytes + usage.promised_bytes
        used_files = usage.files + usage.kept_files + usage.promised_files
        over_bytes = max_bytes is not None and used_bytes + size > max_bytes
        over_files = max_files is not None and new_file and used_files + 1 > max_files
        if over_bytes or over_files:
            kind = subject.partition(":")[0]
            what = (f"{size} more bytes would pass its limit of {max_bytes}" if over_bytes
                    else f"one more file would pass its limit of {max_files}")
            kept = (f"; {usage.kept_bytes} bytes in {usage.kept_files} of them are in the trash and earlier "
                    f"versions (emptying the trash frees them)" if usage.kept_files else "")
            raise QuotaExceeded(
                f"over the {kind}'s quota: it holds {used_bytes} bytes in {used_files} files "
                f"(open uploads included{kept}); {what}", quota=kind, limit_bytes=max_bytes, limit_files=max_files,
                used_bytes=used_bytes, used_files=used_files, kept_bytes=usage.kept_bytes,
                kept_files=usage.kept_files, requested_bytes=size)


@functools.cache
def _upsert(dialect: str):
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert_(_quotas).values(subject=bindparam("subject"), max_bytes=bindparam("max_bytes"),
                                        max_files=bindparam("max_files"))
    return statement.on_conflict_do_update(index_elements=[_quotas.c.subject], set_={
        "max_bytes": statement.excluded.max_bytes, "max_files": statement.excluded.max_files})


class QuotaService:
    def __init__(self, clock):
        self.clock = clock

    def subject(self, kind: str, name: Any) -> str:
        """The quota's subject for a bucket's name, a user's name or a token's id (404 if there is
        no such user or token: a typo must not set a quota on nobody)."""
        if kind == "bucket":
            return f"bucket:{validation.bucket_name(name)}"
        with transaction():
            if kind == "user":
                found = db.session.scalar(select(User.id).where(User.username == name))
            else:
                found = db.session.scalar(select(ApiToken.id).where(ApiToken.id == int(name))) \
                    if str(name).isdigit() and len(str(name)) < 12 else None
        if found is None:
            raise NotFound(f"no {kind} {name!r}")
        return f"{kind}:{found}"

    def set(self, subject: str, max_bytes: Any, max_files: Any) -> QuotaInfo:
        """Set (or, with both None, remove) a quota. Lowering one below the usage refuses new
        uploads only: nothing stored is touched."""
        max_bytes, max_files = _limit(max_bytes, "max_bytes"), _limit(max_files, "max_files")
        if max_files is not None and not subject.startswith("bucket:"):
            raise InvalidInput("max_files is a bucket's limit; a user's or token's is max_bytes", "invalid_max_files")
        with transaction():
            if max_bytes is None and max_files is None:
                db.session.execute(delete(_quotas).where(_quotas.c.subject == subject))
            else:
                db.session.execute(_upsert(db.engine.dialect.name),
                                   {"subject": subject, "max_bytes": max_bytes, "max_files": max_files})
            kind, _, name = subject.partition(":")
            audit.record("quota", bucket=name if kind == "bucket" else None,
                         detail={"subject": subject, "max_bytes": max_bytes, "max_files": max_files})
        return self.get(subject)

    def get(self, subject: str) -> QuotaInfo:
        with transaction():
            limits = db.session.execute(_LIMITS, {"subject": subject}).first()
            usage = usage_of(subject, self.clock())
        return QuotaInfo(subject, subject.partition(":")[2], *(limits or (None, None)), usage)

    def all(self) -> list[QuotaInfo]:
        with transaction():
            subjects = db.session.scalars(select(_quotas.c.subject).order_by(_quotas.c.subject)).all()
        return [self.get(subject) for subject in subjects]

    def check(self, bucket: str | None, owner: str | None, size: int) -> None:
        """A check ahead of the bytes, where the upload's promise is recorded later (its own
        creation checks again, atomically)."""
        with transaction():
            enforce(bucket, owner, size, self.clock())


def _limit(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise InvalidInput(f"{name} must be a non-negative integer or null", f"invalid_{name}")
    return value
