"""Share links: a file or a folder for anyone with the link, until it expires, is revoked or is
used up; and file requests: a folder anyone with the link may upload into (never overwriting).

A file's share remembers which file it shares (the blob_id its file had when shared, unique to
that upload): deleted, replaced or moved away, the file takes its share with it (410), and a later
file at the same key is never served through it. A folder's share serves what the folder holds.

A link's secret (144 random bits) is shown once; only its sha256 is kept, as for tokens. Each share
also has an `id`, a handle for the API (list, read, revoke) that opens nothing by itself. A share
acts with its creator's access at the time of use (the views check it): a token deleted, narrowed
or confined to another bucket takes its shares with it.
"""

from __future__ import annotations

import hashlib
import posixpath
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, delete, exists, insert, literal, or_, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from .. import validation
from ..errors import InvalidInput, NotFound, QuotaExceeded, ShareGone
from ..models import Bucket, OwnerUsage, SessionState, Share, StoredObject, UploadSession, db, transaction
from . import audit
from .leases import LEASE_FREE
from .objects import ObjectInfo
from .records import SessionInfo
from .uploads import UploadService

SECRET_BYTES = 18  # 144 bits
DEFAULT_TTL = 7 * 86400
MAX_TTL = 10 * 365 * 86400
_shares = Share.__table__
KEEP_BOTH_TRIES = 100
# A download or an upload counts only while the share still works, checked in the same statement:
# a revocation or the expiry that commits meanwhile wins over a request that opened it just before.
_LIVE = (_shares.c.id == bindparam("share_id"), _shares.c.revoked_at.is_(None), _shares.c.expires_at > bindparam("now"))
_COUNT_DOWNLOAD = (update(_shares).where(*_LIVE, or_(
    _shares.c.max_downloads.is_(None), _shares.c.downloads < _shares.c.max_downloads))
    .values(downloads=_shares.c.downloads + 1))
_RESERVE_UPLOAD = (update(_shares).where(*_LIVE, or_(
    _shares.c.upload_max_bytes.is_(None), _shares.c.uploaded_bytes + bindparam("size") <= _shares.c.upload_max_bytes))
    .values(uploaded_bytes=_shares.c.uploaded_bytes + bindparam("size")))
_GIVE_BACK = (update(_shares).where(_shares.c.id == bindparam("share_id"))
              .values(uploaded_bytes=_shares.c.uploaded_bytes - bindparam("size")))
_sessions = UploadSession.__table__
# A file request's upload given up: its row goes only if it is still this link's and unfinished, and
# the statement's RETURNING says what to give back, so an abort sent twice at once refunds once.
_GONE = (_sessions.c.id, _sessions.c.owner, _sessions.c.size, _sessions.c.store_state)  # what _give_back needs
_ABORT_UPLOAD = (delete(_sessions).where(_sessions.c.id == bindparam("sid"), _sessions.c.owner == bindparam("owner"),
                                         _sessions.c.state == SessionState.ACTIVE).returning(*_GONE))
# File-request uploads past their expiry, never finished: gc's to forget, after giving their bytes back
# (and one link's, when it takes a new upload: its budget comes back when they expire, not at gc).
_EXPIRED = (_sessions.c.state == SessionState.ACTIVE, _sessions.c.expires_at < bindparam("now"), LEASE_FREE)
_EXPIRED_UPLOADS = delete(_sessions).where(_sessions.c.owner.like("share:%"), *_EXPIRED).returning(*_GONE)
_EXPIRED_UPLOADS_OF = delete(_sessions).where(_sessions.c.owner == bindparam("owner"), *_EXPIRED).returning(*_GONE)
# A revoked file request's unfinished uploads can neither go on nor be aborted through it: they go
# with the revocation, so that they stop counting for its creator at once.
_UNFINISHED_UPLOADS_OF = (delete(_sessions).where(_sessions.c.owner == bindparam("owner"),
                                                   _sessions.c.state == SessionState.ACTIVE).returning(*_GONE))

# A share that works no more: expired, revoked, or used up (a file request is never used up).
_DEAD = or_(_shares.c.expires_at <= bindparam("now"), _shares.c.revoked_at.is_not(None),
            _shares.c.max_downloads.is_not(None) & (_shares.c.downloads >= _shares.c.max_downloads)
            & ~_shares.c.allow_upload)
# A file request's uploads are owned by "share:<id>" and count for its creator through its row: the
# row stays, dead or not, while a file it received is stored or a session of its is left.
_usage, _as_owner = OwnerUsage.__table__, literal("share:") + _shares.c.id
_NOTHING_COUNTS_THROUGH = (~exists().where(_usage.c.owner == _as_owner, or_(_usage.c.files > 0, _usage.c.bytes > 0,
                                                                              _usage.c.kept_files > 0)),
                           ~exists().where(_sessions.c.owner == _as_owner))

# A file's share whose file is not at its key any more (deleted, replaced, moved away): what
# `file_of` finds, for a list of shares in one statement.
_objects, _buckets = StoredObject.__table__, Bucket.__table__
_FILE_GONE = and_(_shares.c.key.is_not(None), ~exists().where(
    _buckets.c.name == _shares.c.bucket, _objects.c.bucket_id == _buckets.c.id, _objects.c.key == _shares.c.key,
    _objects.c.blob_id == _shares.c.blob_id)).label("file_gone")
_WITH_FILE_STATE = select(_shares, _FILE_GONE)


@dataclass(frozen=True)
class ShareInfo:
    id: str
    bucket: str
    key: str | None  # a file's share
    prefix: str | None  # a folder's ("" for the whole bucket)
    created_by: str | None
    created_at: int
    expires_at: int
    password_hash: str | None
    max_downloads: int | None
    downloads: int
    allow_upload: bool
    upload_max_bytes: int | None
    uploaded_bytes: int
    listing: bool  # visitors see the folder's files (a file request's default: no)
    revoked_at: int | None
    blob_id: str | None = None  # a file's share: its file's, when shared (never shown)
    file_gone: bool = False  # a file's share whose file is not at its key (read by `list` and `get`)

    @classmethod
    def from_row(cls, row) -> ShareInfo:
        return cls(row.id, row.bucket, row.key, row.prefix, row.created_by, row.created_at, row.expires_at,
                   row.password_hash, row.max_downloads, row.downloads, bool(row.allow_upload),
                   row.upload_max_bytes, row.uploaded_bytes, bool(row.listing), row.revoked_at, row.blob_id,
                   bool(getattr(row, "file_gone", False)))

    def state(self, now: float) -> str:
        """active, revoked, expired, exhausted (its downloads used up, and no uploads allowed), or
        file_gone (a file's share whose file was deleted, replaced or moved away: its link answers
        410 share_file_gone, until the same file is back at its key), in the order the link checks them."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= now:
            return "expired"
        if self.max_downloads is not None and self.downloads >= self.max_downloads and not self.allow_upload:
            return "exhausted"
        if self.file_gone:
            return "file_gone"
        return "active"

    def holds(self, key: str) -> bool:
        """Whether the share gives access to this file."""
        return key == self.key if self.key is not None else key.startswith(self.prefix or "")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


class ShareService:
    def __init__(self, uploads: UploadService, clock=time.time):
        self.uploads, self.objects, self.clock = uploads, uploads.objects, clock

    def create(self, fields: dict[str, Any], created_by: str | None) -> tuple[ShareInfo, str]:
        """A new share from the API's fields; (the share, its link's secret, shown only now)."""
        bucket = validation.bucket_name(fields.get("bucket"))
        key, prefix = fields.get("key"), fields.get("prefix")
        if (key is None) == (prefix is None):
            raise InvalidInput("give key (a file) or prefix (a folder: '' or ending in '/')", "invalid_share")
        blob_id = None
        if key is not None:
            shared = self.objects.row(bucket, validation.object_key(key, new=False))  # 404 if there is none
            key, blob_id = shared.key, shared.blob_id
        else:
            prefix = validation.list_prefix(prefix)
            if prefix and not prefix.endswith("/"):
                raise InvalidInput("prefix must be a folder: '' or ending in '/'", "invalid_prefix")
            self.objects.bucket_id(bucket)  # 404 if there is no bucket
        now = int(self.clock())
        expires_at = _expiry(fields, now)
        allow_upload = _flag(fields, "allow_upload", False)
        if allow_upload and key is not None:
            raise InvalidInput("uploads go into a folder: share a prefix", "invalid_allow_upload")
        upload_max = _count(fields, "upload_max_bytes")
        if upload_max is not None and not allow_upload:
            raise InvalidInput("upload_max_bytes needs allow_upload", "invalid_upload_max_bytes")
        password = fields.get("password")
        if password is not None and not (isinstance(password, str) and 1 <= len(password) <= 200):
            raise InvalidInput("password must be 1 to 200 characters", "invalid_password")
        share_id, secret = f"shr_{secrets.token_hex(8)}", secrets.token_urlsafe(SECRET_BYTES)
        row = dict(id=share_id, secret_sha256=_digest(secret), bucket=bucket, key=key, prefix=prefix,
                   created_by=created_by or None, created_at=now, expires_at=expires_at,
                   password_hash=generate_password_hash(password) if password else None,
                   max_downloads=_count(fields, "max_downloads"), downloads=0, allow_upload=allow_upload,
                   upload_max_bytes=upload_max, uploaded_bytes=0,
                   listing=_flag(fields, "listing", not allow_upload) if key is None else False, revoked_at=None,
                   blob_id=blob_id)
        with transaction():
            db.session.execute(insert(_shares), row)
            audit.record("share.create", bucket=bucket, key=key if key is not None else prefix,
                         detail={"share": share_id, "upload": allow_upload, "expires_at": expires_at,
                                 "password": bool(password), "max_downloads": row["max_downloads"]})
        return ShareInfo(**{name: value for name, value in row.items() if name != "secret_sha256"}), secret

    def list(self, created_by: str | None, everyone: bool) -> list[ShareInfo]:
        query = _WITH_FILE_STATE.order_by(_shares.c.created_at.desc(), _shares.c.id)
        if not everyone:
            query = query.where(_shares.c.created_by == created_by) if created_by else query.where(
                _shares.c.created_by.is_(None))
        with transaction():
            return [ShareInfo.from_row(row) for row in db.session.execute(query).all()]

    def get(self, share_id: str, created_by: str | None, everyone: bool) -> ShareInfo:
        """Another's share is as good as none (404), unless `everyone` (an admin)."""
        with transaction():
            row = db.session.execute(_WITH_FILE_STATE.where(_shares.c.id == share_id)).first()
        if row is None or not (everyone or (row.created_by or None) == (created_by or None)):
            raise NotFound(f"no share {share_id!r}")
        return ShareInfo.from_row(row)

    def revoke(self, share_id: str, created_by: str | None, everyone: bool) -> ShareInfo:
        share = self.get(share_id, created_by, everyone)
        aborted = []
        with transaction():
            if db.session.execute(update(_shares).where(_shares.c.id == share.id, _shares.c.revoked_at.is_(None))
                                  .values(revoked_at=int(self.clock()))).rowcount:
                if share.allow_upload:
                    aborted = self._give_back(_UNFINISHED_UPLOADS_OF, {"owner": f"share:{share.id}"})
                audit.record("share.revoke", bucket=share.bucket, key=share.key if share.key is not None
                             else share.prefix, detail={"share": share.id, "uploads_aborted": len(aborted)})
        self._discard(aborted)
        return self.get(share_id, created_by, everyone)

    def open(self, secret: str) -> ShareInfo:
        """The share a link names: 404 if none, 410 if it no longer works."""
        if not (isinstance(secret, str) and 10 <= len(secret) <= 64):
            raise NotFound("no such share")
        with transaction():
            row = db.session.execute(select(_shares).where(_shares.c.secret_sha256 == _digest(secret))).first()
        if row is None:
            raise NotFound("no such share")
        share = ShareInfo.from_row(row)
        _refuse_dead(share, self.clock())
        return share

    def file_of(self, share: ShareInfo) -> ObjectInfo:
        """A file's share: its file, if the key still holds the file that was shared (410 if it was
        deleted, replaced or moved away since)."""
        try:
            row = self.objects.row(share.bucket, share.key)
        except NotFound:
            row = None
        if row is None or share.blob_id is None or not secrets.compare_digest(row.blob_id, share.blob_id):
            raise ShareGone("the shared file was deleted or replaced since it was shared", state="file_gone")
        return ObjectInfo.from_row(share.bucket, row)

    @staticmethod
    def password_matches(share: ShareInfo, password: str) -> bool:
        return share.password_hash is None or check_password_hash(share.password_hash, password[:200])

    @staticmethod
    def unlocked(share: ShareInfo) -> None:
        """Someone gave the link's password: recorded."""
        with transaction():
            audit.record("share.open", bucket=share.bucket, key=share.key if share.key is not None else share.prefix,
                         detail={"share": share.id})

    def count_download(self, share: ShareInfo, key: str | None = None) -> None:
        """One more download (of `key`, or the folder as a zip), unless the link is used up,
        revoked or expired meanwhile (410): one statement, so parallel downloads cannot pass its
        limit together."""
        with transaction():
            counted = db.session.execute(_COUNT_DOWNLOAD, {"share_id": share.id, "now": self.clock()}).rowcount
            if counted == 1:
                audit.record("share.download", bucket=share.bucket, key=key if key is not None else share.prefix,
                             detail={"share": share.id, "zip": key is None})
        if counted != 1:
            self._refuse_now(share)
            raise ShareGone("this link's downloads are used up", state="exhausted")

    def start_upload(self, share: ShareInfo, *, name: str, size: int, mime_type: str | None,
                     tus_metadata: str | None, owner: str) -> SessionInfo:
        """A file request's upload session: under the shared folder by its name alone, never
        replacing a file ("name (1).ext" where it is taken), its bytes counted against the link's
        limit before they are sent (507 past it), and its creator's and the bucket's quotas."""
        key = self._free_key(share, validation.object_key((share.prefix or "") + (name or "upload")))
        if share.created_by:
            self.uploads.check_quota(None, share.created_by, size)  # the bucket's: when the session is made
        now = self.clock()
        with transaction():
            expired = self._give_back(_EXPIRED_UPLOADS_OF, {"owner": f"share:{share.id}", "now": now})
            reserved = db.session.execute(_RESERVE_UPLOAD, {"share_id": share.id, "size": size, "now": now}).rowcount
        self._discard(expired)
        if reserved != 1:
            self._refuse_now(share)
            left = max((share.upload_max_bytes or 0) - share.uploaded_bytes, 0)
            raise QuotaExceeded(f"this link takes at most {share.upload_max_bytes} bytes of uploads; "
                                f"about {left} are left", quota="share", limit_bytes=share.upload_max_bytes,
                                used_bytes=share.uploaded_bytes, requested_bytes=size)
        try:
            return self.uploads.create(bucket=share.bucket, key=key, size=size, create_only=True,
                                       mime_type=mime_type, tus_metadata=tus_metadata, owner=owner)
        except Exception:  # refused (a quota, a name taken meanwhile): nothing was sent, so give it back
            with transaction():
                db.session.execute(_GIVE_BACK, {"share_id": share.id, "size": size})
            raise

    def abort_upload(self, share: ShareInfo, session_id: str, owner: str) -> None:
        """A file request's upload given up (tus DELETE): its session goes, and its bytes go back to
        the link's budget, in one transaction with the delete. A finished upload's session is only
        forgotten: its file is there, and keeps its bytes counted."""
        self.uploads.get(session_id, owner)  # 404 unless it is this link's
        with transaction():
            gone = self._give_back(_ABORT_UPLOAD, {"sid": session_id, "owner": owner})
        if not gone:  # finished, or aborted by another request meanwhile: as uploads.abort does
            self.uploads.discard(session_id)
            return
        self._discard(gone)

    def _free_key(self, share: ShareInfo, key: str) -> str:
        """The key, or "name (n).ext" for the first n free: nothing stored is ever replaced."""
        stem, dot, extension = key.rpartition(".") if "." in posixpath.basename(key) else (key, "", "")
        for number in range(KEEP_BOTH_TRIES):
            candidate = key if number == 0 else f"{stem} ({number}){dot}{extension}"
            if not self.uploads.name_taken(share.bucket, candidate):
                return candidate
        raise InvalidInput("too many files of this name here already; rename it", "name_taken")

    def _refuse_now(self, share: ShareInfo) -> None:
        """410 if the share died since it was opened."""
        with transaction():
            row = db.session.execute(select(_shares).where(_shares.c.id == share.id)).first()
        if row is None:
            raise ShareGone("this link was withdrawn", state="revoked")
        _refuse_dead(ShareInfo.from_row(row), self.clock())

    def refund_expired_uploads(self, now: float) -> int:
        """For gc, before it forgets expired sessions: a file request's upload that expired
        unfinished gives its bytes back to its link (in the transaction that deletes it), then its
        bytes go. The number of uploads refunded."""
        with transaction():
            expired = self._give_back(_EXPIRED_UPLOADS, {"now": now})
        self._discard(expired)
        return len(expired)

    @staticmethod
    def _give_back(deleting, params: dict) -> list:
        """Run a statement that deletes file-request sessions, and give each one's bytes back to its
        link, in the caller's transaction. The rows, for _discard once it has committed."""
        gone = db.session.execute(deleting, params).all()
        for row in gone:
            if row.size:
                db.session.execute(_GIVE_BACK, {"share_id": row.owner.removeprefix("share:"), "size": row.size})
        return gone

    def _discard(self, gone: list) -> None:
        """The bytes of sessions whose rows are gone (committed): as UploadService.discard frees them."""
        for row in gone:
            self.uploads.store.discard_partial(row.id, row.store_state)
            self.uploads.store.delete_blob(row.id)

    def forget_dead(self, now: float) -> int:
        """For gc: shares expired, revoked or used up, but not a file request's while something it
        received still counts for its creator through it (its files, its sessions: the next gc
        after they are gone). A session is made for a file request under its row's lock (see
        quotas.enforce); on PostgreSQL the dead rows are locked first, so the delete that follows
        sees every session made before it, and a creation after it finds no row (410)."""
        with transaction():
            if db.engine.dialect.name == "postgresql":
                db.session.execute(select(_shares.c.id).where(_DEAD).with_for_update(), {"now": now})
            return db.session.execute(delete(_shares).where(_DEAD, *_NOTHING_COUNTS_THROUGH), {"now": now}).rowcount


_GONE_BECAUSE = {"expired": "this link has expired", "revoked": "this link has been revoked",
                 "exhausted": "this link has been used up", "file_gone": "the file this link shared is gone"}


def _refuse_dead(share: ShareInfo, now: float) -> None:
    if (state := share.state(now)) != "active":
        raise ShareGone(_GONE_BECAUSE.get(state, f"this link works no more ({state})"), state=state)


def _expiry(fields: dict[str, Any], now: int) -> int:
    expires_in, expires_at = fields.get("expires_in"), fields.get("expires_at")
    if expires_in is not None and expires_at is not None:
        raise InvalidInput("give expires_in or expires_at, not both", "invalid_expiry")
    if expires_at is not None:
        if isinstance(expires_at, bool) or not isinstance(expires_at, int) or not now < expires_at <= now + MAX_TTL:
            raise InvalidInput("expires_at must be Unix seconds in the next ten years", "invalid_expires_at")
        return expires_at
    ttl = DEFAULT_TTL if expires_in is None else expires_in
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 60 <= ttl <= MAX_TTL:
        raise InvalidInput("expires_in must be 60 seconds to ten years", "invalid_expires_in")
    return now + ttl


def _flag(fields: dict[str, Any], name: str, default: bool) -> bool:
    value = fields.get(name, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false", f"invalid_{name}")
    return value


def _count(fields: dict[str, Any], name: str) -> int | None:
    value = fields.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**63):
        raise InvalidInput(f"{name} must be a positive integer", f"invalid_{name}")
    return value
