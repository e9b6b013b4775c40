"""The metadata model: buckets, stored objects, upload sessions, accounts, and the OpenAI API's files
and uploads. Blob bytes never live here (but for small files inline).

The schema itself is created by the Alembic migrations in files_app/migrations; these classes
must stay in step with them (tests/unit/test_schema.py checks that they do).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .errors import CommitNotDurable
from .group_commit import wal_sync_for


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)

# Keys sort bytewise everywhere: SQLite's default BINARY collation already does; PostgreSQL needs "C".
KeyString = String(1024).with_variant(String(1024, collation="C"), "postgresql")


@contextmanager
def transaction(durable: bool = False) -> Iterator[None]:
    """A short transaction as a block: committed at its end, rolled back if anything in it raises.

    `durable`: it acknowledges a stored or deleted file, so the block ends only once the commit
    survives power loss, not just a crash. SQLite's commits reach the disk at its next checkpoint
    (synchronous=NORMAL, enough for session bookkeeping: a lost offset is re-sent); a durable one
    then waits for a group sync of the WAL (group_commit.py). PostgreSQL's commits are durable.
    """
    try:
        yield
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    if durable and (wal_sync := wal_sync_for(db.engine)) is not None:
        try:
            wal_sync.wait_durable()
        except OSError as error:
            raise CommitNotDurable(f"the database could not sync a commit to disk: {error}") from error


class TransactionOpen(RuntimeError):
    """A bug: a database transaction is open while a request body streams (a slow client would
    hold it, and on PostgreSQL keep a transaction idle for a whole multi-GB body)."""


def assert_no_transaction(where: str) -> None:
    """Called where a request body starts streaming."""
    if db.session().in_transaction():
        raise TransactionOpen(f"a database transaction is open while {where}")


class Bucket(db.Model):
    __tablename__ = "buckets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    # Kept in step with its objects in the same transactions, so no page counts a million rows.
    object_count: Mapped[int] = mapped_column(BigInteger, default=0)
    total_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[int] = mapped_column(BigInteger, default=0)
    # What its trash and versions keep (kept_files), counted as its files are.
    kept_files: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    kept_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    # The member who made it (it is theirs to manage); None: made by an admin token or before people had roles.
    owner_id: Mapped[int | None] = mapped_column(Integer)


class Grant(db.Model):
    """What a user other than the owner may do in a bucket: read, write or manage."""

    __tablename__ = "grants"

    bucket_id: Mapped[int] = mapped_column(ForeignKey("buckets.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    level: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[int] = mapped_column(BigInteger)


class StoredObject(db.Model):
    """A visible file: its row exists only once its bytes are durable under `blob_id` (or in the row)."""

    __tablename__ = "objects"
    __table_args__ = (UniqueConstraint("bucket_id", "key", name="uq_objects_bucket_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket_id: Mapped[int] = mapped_column(ForeignKey("buckets.id"))
    key: Mapped[str] = mapped_column(KeyString)
    blob_id: Mapped[str] = mapped_column(String(64), unique=True)
    mime_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    # A file of at most FILES_INLINE_MAX bytes is kept here, not in the blob store: storing it costs
    # one durable commit. `blob_id` then names no blob (files are immutable: none ever moves out).
    inline_data: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Who uploaded it ("user:<id>", "token:<id>", as a session's owner); None while the service is open.
    owner: Mapped[str | None] = mapped_column(String(64))
    # When the row took its bucket, key and blob, as a number from one counter (migration 0014's
    # triggers set it): a folder delete takes only rows placed at or before the count it confirms.
    placed: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    # When `flask files verify` found its stored bytes not those uploaded (or missing): never served.
    damaged_at: Mapped[int | None] = mapped_column(BigInteger)


class Quota(db.Model):
    """Limits an admin set: for a bucket ("bucket:<name>", set before or after it exists) or for
    whoever owns uploads ("user:<id>", "token:<id>"). None: no limit of that kind."""

    __tablename__ = "quotas"

    subject: Mapped[str] = mapped_column(String(100), primary_key=True)
    max_bytes: Mapped[int | None] = mapped_column(BigInteger)
    max_files: Mapped[int | None] = mapped_column(BigInteger)


class OwnerUsage(db.Model):
    """The files and bytes each owner's uploads hold, kept in step with `objects` in the same
    transactions (as a bucket's counts are), so a quota check counts no rows."""

    __tablename__ = "owner_usage"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    files: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # Their files in trash and versions (kept_files): quotas count these bytes too.
    kept_files: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    kept_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))


class KeptKind(StrEnum):
    TRASH = "trash"  # deleted: restorable to its key until gc purges it (FILES_TRASH_DAYS)
    VERSION = "version"  # replaced: an earlier version of its key (the newest FILES_VERSIONS are kept)


class KeptFile(db.Model):
    """A file deleted (in its bucket's trash) or replaced (a version of its key): the row it had in
    `objects`, with its blob, and who put it here when. Restoring moves it back, in one transaction."""

    __tablename__ = "kept_files"
    __table_args__ = (Index("ix_kept_files_bucket_kind_id", "bucket_id", "kind", "id"),
                      Index("ix_kept_files_bucket_key_kind", "bucket_id", "key", "kind", "id"),
                      Index("ix_kept_files_kind_kept_at", "kind", "kept_at"),
                      {"sqlite_autoincrement": True})  # an id restored or purged never names another file

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    bucket_id: Mapped[int] = mapped_column(ForeignKey("buckets.id"))
    key: Mapped[str] = mapped_column(KeyString)
    blob_id: Mapped[str] = mapped_column(String(64), unique=True)
    mime_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    inline_data: Mapped[bytes | None] = mapped_column(LargeBinary)
    owner: Mapped[str | None] = mapped_column(String(64))  # who uploaded it
    kept_at: Mapped[float] = mapped_column(Float)
    kept_by: Mapped[str | None] = mapped_column(String(64))  # who deleted or replaced it
    kept_by_name: Mapped[str | None] = mapped_column(String(120))
    # One delete's files share an id: "Undo" restores exactly them.
    deletion: Mapped[str | None] = mapped_column(String(32), index=True)
    damaged_at: Mapped[int | None] = mapped_column(BigInteger)  # as a file's


class Share(db.Model):
    """A share link: a file (`key`) or a folder (`prefix`) for anyone with its secret, which is kept
    only as a sha256. Counts live here, changed by single conditional UPDATEs."""

    __tablename__ = "shares"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)  # shr_<16 hex>: a handle, not a secret
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    bucket: Mapped[str] = mapped_column(String(63))
    key: Mapped[str | None] = mapped_column(KeyString)
    prefix: Mapped[str | None] = mapped_column(KeyString)
    created_by: Mapped[str | None] = mapped_column(String(64), index=True)  # an owner, as sessions have
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    max_downloads: Mapped[int | None] = mapped_column(BigInteger)
    downloads: Mapped[int] = mapped_column(BigInteger, default=0)
    allow_upload: Mapped[bool] = mapped_column(default=False)
    upload_max_bytes: Mapped[int | None] = mapped_column(BigInteger)
    uploaded_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    listing: Mapped[bool] = mapped_column(default=True)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)
    # A file's share: the blob_id its file had when shared (unique to that upload). A file deleted,
    # replaced or moved away takes the share with it: a later file at the same key is another file.
    blob_id: Mapped[str | None] = mapped_column(String(64))


class SessionKind(StrEnum):
    UPLOAD = "upload"  # makes an object
    PARTIAL = "partial"  # tus: only holds bytes for a final upload to concatenate (no bucket, no key)
    FINAL = "final"  # tus: the concatenation of partials


class SessionState(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"


class UploadSession(db.Model):
    """An upload in progress. `offset` counts only bytes that are durable in the blob store."""

    __tablename__ = "upload_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # "upload" makes an object; a tus "partial" only holds bytes for a later "final" to concatenate,
    # so it has no bucket or key.
    kind: Mapped[str] = mapped_column(String(8), default="upload")
    bucket_id: Mapped[int | None] = mapped_column(ForeignKey("buckets.id"), index=True)
    key: Mapped[str | None] = mapped_column(KeyString)
    mime_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int | None] = mapped_column(BigInteger)  # None: tus Upload-Defer-Length
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(String(16), default="active")  # active | completed
    # tus headers echoed verbatim on HEAD, as the protocol requires.
    tus_metadata: Mapped[str | None] = mapped_column(Text)
    tus_concat: Mapped[str | None] = mapped_column(Text)
    expected_sha256: Mapped[str | None] = mapped_column(String(64))
    create_only: Mapped[bool] = mapped_column(default=False)  # If-None-Match: *
    # sha256 state after `offset` bytes, so chunks need not be re-read (see hashing.py).
    hash_state: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The blob store's bookkeeping for the same `offset` (S3: the multipart upload and its parts).
    store_state: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    # Who created it ("token:<id>", "user:<id>"; None while the service is open): only they may use it.
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    # One writer at a time: a lease taken by compare-and-set, renewed while a body streams.
    lease_token: Mapped[str | None] = mapped_column(String(32))
    lease_expires_at: Mapped[float] = mapped_column(Float, default=0.0)


class ApiToken(db.Model):
    """A bearer token for the API. Only its sha256 is kept; the token itself is shown once."""

    __tablename__ = "api_tokens"
    __table_args__ = {"sqlite_autoincrement": True}  # ids name owners: never used again

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(8))  # read | write | admin
    bucket: Mapped[str | None] = mapped_column(String(63))  # confined to this bucket, if set
    created_at: Mapped[int] = mapped_column(BigInteger)
    # The person it acts for (never more than they may); None: an operator's token (`flask files token create`).
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    # Written at most once a minute, not per request.
    last_used_at: Mapped[int | None] = mapped_column(BigInteger)
    last_used_from: Mapped[str | None] = mapped_column(String(64))
    # Revoked tokens keep their row, so that the files they uploaded still say whose they were.
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)


class User(db.Model):
    """A person who signs in to the web UI (werkzeug password hash)."""

    __tablename__ = "users"
    __table_args__ = {"sqlite_autoincrement": True}  # ids name owners: never used again

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[int] = mapped_column(BigInteger)
    role: Mapped[str] = mapped_column(String(8))  # admin | member
    disabled_at: Mapped[int | None] = mapped_column(BigInteger)


class WebSession(db.Model):
    """A signed-in browser. The cookie holds a random id; only its sha256 is kept, and signing out
    deletes the row, so a copied cookie stops working."""

    __tablename__ = "web_sessions"

    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[float] = mapped_column(Float)
    address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(200))
    last_seen_at: Mapped[int | None] = mapped_column(BigInteger)  # written at most once a minute


class SigninFailure(db.Model):
    """Failed sign-ins per account ("user:<name>") or address ("addr:<ip>") in the current window."""

    __tablename__ = "signin_failures"

    subject: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[float] = mapped_column(Float)


class OpenAIFile(db.Model):
    """A file of the OpenAI-compatible API: the object `key` in bucket `bucket` is its bytes.

    Its row is written before its object is published, so a file is visible (listed, readable) only
    while both exist and it has not expired: a crash between the two leaves a row that gc removes.
    """

    __tablename__ = "openai_files"
    __table_args__ = (Index("ix_openai_files_created", "created_at", "id"),
                      Index("ix_openai_files_purpose_created", "purpose", "created_at", "id"),
                      Index("ix_openai_files_owner_id", "owner", "id"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # file-<32 hex>
    bucket: Mapped[str] = mapped_column(String(63))
    key: Mapped[str] = mapped_column(KeyString)
    filename: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, index=True)
    owner: Mapped[str | None] = mapped_column(String(64))  # who made it: a member sees only their own


class OpenAIUpload(db.Model):
    """An OpenAI Upload: parts (tus-like partial sessions) joined into one file on completion."""

    __tablename__ = "openai_uploads"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # upload_<32 hex>
    filename: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(String(16))
    bytes: Mapped[int] = mapped_column(BigInteger)
    mime_type: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    status: Mapped[str] = mapped_column(String(12))  # pending | completing | completed | cancelled
    file_expires_after: Mapped[int | None] = mapped_column(BigInteger)  # seconds, for the file it makes
    file_id: Mapped[str | None] = mapped_column(String(40))
    owner: Mapped[str | None] = mapped_column(String(64))


class OpenAIUploadPart(db.Model):
    """A complete part of an Upload; its bytes are the blob of the partial session `session_id`."""

    __tablename__ = "openai_upload_parts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # part_<32 hex>
    upload_id: Mapped[str] = mapped_column(ForeignKey("openai_uploads.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)


class Thumbnail(db.Model):
    """A small image made once from an image file, kept beside its row and gone with it (the
    foreign key cascades). `data` is empty when none can be made (too big, not readable)."""

    __tablename__ = "thumbnails"

    object_id: Mapped[int] = mapped_column(ForeignKey("objects.id", ondelete="CASCADE"), primary_key=True)
    size: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_sha256: Mapped[str] = mapped_column(String(64))  # a replaced file's thumbnail is made again
    data: Mapped[bytes] = mapped_column(LargeBinary)


class AuditEntry(db.Model):
    """One change or sign-in: who (an owner string and their name at the time), from where, what,
    and how it ended. Written in the transaction of the change it records."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_bucket_id", "bucket", "id"), Index("ix_audit_log_action_id", "action", "id"),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float)  # ids follow time: prune and time filters walk the primary key
    actor: Mapped[str | None] = mapped_column(String(64), index=True)
    actor_name: Mapped[str | None] = mapped_column(String(120))
    address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32))
    bucket: Mapped[str | None] = mapped_column(String(63))
    key: Mapped[str | None] = mapped_column(KeyString)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))


class Hook(db.Model):
    """A webhook an admin registered: the events it wants (actions, buckets) POSTed to `url`, signed
    with `secret` (kept as it is, since it signs every delivery; shown once, when the hook is made)."""

    __tablename__ = "hooks"
    __table_args__ = {"sqlite_autoincrement": True}  # a deleted hook's id never names another one

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    actions: Mapped[str] = mapped_column(Text)  # comma-separated: actions, families ("share") or "*"
    buckets: Mapped[str | None] = mapped_column(Text)  # comma-separated; None: all, and events of no bucket
    secret: Mapped[str] = mapped_column(String(256))
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str | None] = mapped_column(String(64))


class HookDelivery(db.Model):
    """One event (an audit entry) queued for one hook, written in the transaction of the change, and
    its delivery's state: pending (with a lease while a worker sends it), delivered or failed.
    `hook_id` has no foreign key on purpose (migration 0012)."""

    __tablename__ = "hook_deliveries"
    __table_args__ = (Index("ix_hook_deliveries_queue", "state", "hook_id", "bucket", "id"),
                      Index("ix_hook_deliveries_hook_id", "hook_id", "id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hook_id: Mapped[int] = mapped_column(Integer)
    audit_id: Mapped[int] = mapped_column(ForeignKey("audit_log.id", ondelete="CASCADE"), index=True)
    bucket: Mapped[str] = mapped_column(String(63))  # "" for an event of no bucket: events are in order per bucket
    state: Mapped[str] = mapped_column(String(12), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    lease_until: Mapped[float] = mapped_column(Float, default=0.0)
    lease_token: Mapped[str | None] = mapped_column(String(32))
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(200))
    delivered_at: Mapped[float | None] = mapped_column(Float)


class HookRoutes:
    """Which enabled hooks want which events, per process and database, for audit.record to match
    every change against without a query (a service without hooks pays nothing). Loaded at the first
    change, then kept fresh by the process's delivery threads at each poll and after its own changes
    to hooks (services/webhooks.py). A process without them (a command, a test) sees the changes to
    hooks it makes itself."""

    Route = tuple[int, frozenset[str], frozenset[str] | None]  # hook id, actions, buckets (None: all)

    def __init__(self) -> None:
        self._by_database: dict[str, tuple[HookRoutes.Route, ...]] = {}

    def load(self) -> tuple[Route, ...]:
        """Read the enabled hooks in the session's transaction, without flushing what it holds."""
        with db.session.no_autoflush:
            rows = db.session.execute(db.select(Hook.id, Hook.actions, Hook.buckets).where(Hook.enabled)).all()
        routes = tuple((hook_id, frozenset(actions.split(",")), frozenset(buckets.split(",")) if buckets else None)
                       for hook_id, actions, buckets in rows)
        self._by_database[str(db.engine.url)] = routes
        return routes

    def current(self) -> tuple[Route, ...]:
        """As last loaded (the first time, loaded now, inside the caller's transaction)."""
        routes = self._by_database.get(str(db.engine.url))
        return self.load() if routes is None else routes

    def matching(self, action: str, bucket: str | None) -> list[int]:
        """The hooks an event goes to."""
        family = action.partition(".")[0]
        return [hook_id for hook_id, actions, buckets in self.current()
                if ("*" in actions or action in actions or family in actions)
                and (buckets is None or (bucket is not None and bucket in buckets))]


hook_routes = HookRoutes()
