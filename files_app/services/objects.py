"""Buckets and stored objects: list (prefix, delimiter, cursor pages), get, open, delete."""

from __future__ import annotations

import base64
import binascii
import functools
import time
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import bindparam, delete, exists, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from .. import validation
from ..errors import BlobMissing, BucketNotEmpty, Conflict, InvalidInput, NotFound
from ..models import (
    Bucket,
    Grant,
    KeptFile,
    KeptKind,
    OwnerUsage,
    Quota,
    SessionState,
    StoredObject,
    UploadSession,
    db,
    transaction,
)
from ..storage import BlobStore
from ..storage.base import MemoryBlobReader
from . import audit, counting, kept, search
from .acting import current_actor
from .kept import Retention


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    mime_type: str
    size: int
    sha256: str
    created_at: int
    owner: str | None = None  # who uploaded it, where the query read it
    damaged_at: int | None = None  # when a scrub found its stored bytes damaged (never served then)

    @classmethod
    def from_row(cls, bucket: str, row) -> ObjectInfo:
        return cls(bucket, row.key, row.mime_type, row.size, row.sha256, row.created_at, getattr(row, "owner", None),
                   getattr(row, "damaged_at", None))


@dataclass(frozen=True)
class BucketInfo:
    name: str
    created_at: int
    object_count: int
    total_bytes: int
    updated_at: int
    max_bytes: int | None = None  # its quota, if any
    max_files: int | None = None
    kept_files: int = 0  # in its trash and versions
    kept_bytes: int = 0


@dataclass(frozen=True)
class ObjectPage:
    objects: list[ObjectInfo]
    prefixes: list[str]
    next_cursor: str | None


_objects = StoredObject.__table__
_PAGE = (
    select(_objects.c.key, _objects.c.mime_type, _objects.c.size, _objects.c.sha256, _objects.c.created_at)
    .where(_objects.c.bucket_id == bindparam("bucket_id"), _objects.c.key >= bindparam("start"))
    .order_by(_objects.c.key)
    .limit(bindparam("n"))
)
_PAGE_BELOW = _PAGE.where(_objects.c.key < bindparam("upper"))
# Keys before a page, nearest first: for the cursor of the page before it.
_KEYS_BEFORE = (
    select(_objects.c.key)
    .where(_objects.c.bucket_id == bindparam("bucket_id"), _objects.c.key >= bindparam("prefix"),
           _objects.c.key < bindparam("before"))
    .order_by(_objects.c.key.desc())
    .limit(bindparam("n"))
)
_OBJECT = (  # everything but the bytes of an inline file: those only `open` needs
    select(*[column for column in _objects.c if column.name != "inline_data"])
    .join(Bucket.__table__, Bucket.__table__.c.id == _objects.c.bucket_id)
    .where(Bucket.__table__.c.name == bindparam("bucket"), _objects.c.key == bindparam("key"))
)
_OBJECT_WITH_BYTES = _OBJECT.add_columns(_objects.c.inline_data)
_BUCKET_INFO = (  # with its quota's limits, if it has one
    select(Bucket.name, Bucket.created_at, Bucket.object_count, Bucket.total_bytes, Bucket.updated_at,
           Quota.max_bytes, Quota.max_files, Bucket.kept_files, Bucket.kept_bytes)
    .outerjoin(Quota, Quota.subject == literal("bucket:") + Bucket.name)
)
_BUCKET_ID = select(Bucket.__table__.c.id).where(Bucket.__table__.c.name == bindparam("name"))
_COUNT = (
    update(Bucket.__table__)
    .where(Bucket.__table__.c.id == bindparam("bucket_id"))
    .values(object_count=Bucket.__table__.c.object_count + bindparam("files"),
            total_bytes=Bucket.__table__.c.total_bytes + bindparam("bytes"),
            kept_files=Bucket.__table__.c.kept_files + bindparam("kept_files"),
            kept_bytes=Bucket.__table__.c.kept_bytes + bindparam("kept_bytes"), updated_at=bindparam("now"))
)
_DELETE_EMPTY_BUCKET = delete(Bucket.__table__).where(
    Bucket.__table__.c.id == bindparam("bucket_id"),
    ~exists().where(_objects.c.bucket_id == Bucket.__table__.c.id),
    ~exists().where(UploadSession.__table__.c.bucket_id == Bucket.__table__.c.id),
)
_ABOVE_EVERY_KEY = "\U0010ffff"  # keys hold no code point above it (and it alone is no key)
_FOLDER_BATCH = 16  # rows per query when folders may be skipped: small, since a folder's rest is seeked past


def _new_bucket(name: str) -> Bucket:
    now = int(time.time())
    return Bucket(name=name, created_at=now, object_count=0, total_bytes=0, updated_at=now,
                  owner_id=current_actor().user_id)


_INSERT_BUCKET = insert(Bucket.__table__).returning(Bucket.__table__.c.id)
_BUCKET_WRITABLE = select(Bucket.id, ((Bucket.owner_id == bindparam("user_id")) | exists(select(Grant.level).where(
    Grant.bucket_id == Bucket.id, Grant.user_id == bindparam("user_id"), Grant.level.in_(("write", "manage")))))
    .label("writable")).where(Bucket.name == bindparam("name"))


def bucket_for_writing(name: str) -> int:
    """The bucket's id, inside the caller's transaction, making it on first use (it is then the
    acting person's). Two requests making it at once: one gets an IntegrityError and goes round
    again (its transaction block rolled back). A member may write only where they own the bucket
    or were granted write, checked here again in the transaction that writes: the bucket another
    member made between the request's check and now is not theirs."""
    actor = current_actor()
    if actor.every_bucket:
        bucket_id = db.session.scalar(_BUCKET_ID, {"name": name})
    else:
        row = db.session.execute(_BUCKET_WRITABLE, {"name": name, "user_id": actor.user_id}).first()
        bucket_id = row.id if row else None
        if row is not None and not row.writable:
            raise NotFound(f"bucket {name!r} does not exist, or is not shared with you")
    if bucket_id is None:
        now = int(time.time())
        bucket_id = db.session.execute(_INSERT_BUCKET, dict(name=name, created_at=now, object_count=0,
                                                            total_bytes=0, updated_at=now,
                                                            owner_id=actor.user_id)).scalar_one()
        audit.record("bucket.create", bucket=name)
    return bucket_id


class Tally:
    """What one transaction's statements changed (their RETURNING rows, never an earlier read), moved
    into the counters at its end: buckets by id, then owners by name. Every writer takes its file rows
    first and its counter rows last, each kind in one order, so two writers never wait for each other's
    counter rows in opposite orders (PostgreSQL would end one of them as a deadlock). What trash and
    versions keep is counted beside what files hold."""

    def __init__(self) -> None:
        self.buckets: dict[int, list[int]] = {}  # files, bytes, kept files, kept bytes
        self.owners: dict[str, list[int]] = {}

    def bucket(self, bucket_id: int, files: int, size: int) -> None:
        self._add(self.buckets.setdefault(bucket_id, [0, 0, 0, 0]), 0, files, size)

    def owner(self, owner: str | None, files: int, size: int) -> None:
        if owner:  # files sent while the service was open have no owner
            self._add(self.owners.setdefault(owner, [0, 0, 0, 0]), 0, files, size)

    def kept(self, bucket_id: int, owner: str | None, files: int, size: int) -> None:
        """Files into (positive) or out of (negative) trash and versions."""
        self._add(self.buckets.setdefault(bucket_id, [0, 0, 0, 0]), 2, files, size)
        if owner:
            self._add(self.owners.setdefault(owner, [0, 0, 0, 0]), 2, files, size)

    @staticmethod
    def _add(counts: list[int], at: int, files: int, size: int) -> None:
        counts[at] += files
        counts[at + 1] += size

    def gone(self, bucket_id: int, rows) -> None:
        """Rows a statement deleted (each with its size and owner)."""
        for row in rows:
            self.bucket(bucket_id, -1, -row.size)
            self.owner(row.owner, -1, -row.size)

    def apply(self, now: int) -> None:
        for bucket_id in sorted(self.buckets):
            count_in_bucket(bucket_id, *self.buckets[bucket_id], now)
        for owner in sorted(self.owners):
            count_for_owner(owner, *self.owners[owner])


def count_in_bucket(bucket_id: int, files: int, size: int, kept_files: int, kept_bytes: int, now: int) -> None:
    """Keep a bucket's counts in step, inside the caller's transaction."""
    db.session.execute(_COUNT, {"bucket_id": bucket_id, "files": files, "bytes": size, "kept_files": kept_files,
                                "kept_bytes": kept_bytes, "now": now})


@functools.cache
def _add_usage(dialect: str):
    table = OwnerUsage.__table__
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert_(table).values(owner=bindparam("owner"), files=bindparam("files"), bytes=bindparam("bytes"),
                                      kept_files=bindparam("kept_files"), kept_bytes=bindparam("kept_bytes"))
    return statement.on_conflict_do_update(index_elements=[table.c.owner], set_={
        name: table.c[name] + statement.excluded[name] for name in ("files", "bytes", "kept_files", "kept_bytes")})


def count_for_owner(owner: str | None, files: int, size: int, kept_files: int = 0, kept_bytes: int = 0) -> None:
    """Keep an owner's counts in step, inside the caller's transaction (files sent while the service
    was open have no owner)."""
    if owner and (files or size or kept_files or kept_bytes):
        db.session.execute(_add_usage(db.engine.dialect.name), {"owner": owner, "files": files, "bytes": size,
                                                                "kept_files": kept_files, "kept_bytes": kept_bytes})


def key_successor_bound(prefix: str) -> str:
    """The smallest string greater than every string that starts with `prefix`.

    Keys compare by code point (= UTF-8 bytes), so bumping the last character works;
    surrogates cannot be stored, so U+D7FF bumps to U+E000, and U+10FFFF carries left.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code == 0xD800:
            code = 0xE000
        if code <= 0x10FFFF:
            return "".join(chars) + chr(code)
    return ""  # prefix was empty (or all U+10FFFF): no upper bound


def encode_cursor(start_at: str) -> str:
    return base64.urlsafe_b64encode(start_at.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = base64.b64decode(padded, altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidInput("cursor is not one this server gave out", "invalid_cursor") from None
    if "\x00" in position or len(position) > 2048:
        raise InvalidInput("cursor is not one this server gave out", "invalid_cursor")
    return position


class ObjectService:
    def __init__(self, store: BlobStore, retention: Retention | None = None):
        self.store = store
        self.retention = retention or Retention()

    # --- buckets -----------------------------------------------------------------------
    def bucket_id(self, name: str) -> int:
        with transaction():
            bucket_id = db.session.scalar(_BUCKET_ID, {"name": validation.bucket_name(name)})
        if bucket_id is None:
            raise NotFound(f"bucket {name!r} does not exist")
        return bucket_id

    def list_buckets(self, only: str | None = None, readable_by: int | None = None) -> list[BucketInfo]:
        """Every bucket, or just `only` (a caller confined to one bucket sees no other), or those
        the member `readable_by` owns or was granted."""
        query = _BUCKET_INFO.order_by(Bucket.name)
        if only is not None:
            query = query.where(Bucket.name == only)
        if readable_by is not None:
            query = query.where((Bucket.owner_id == readable_by) | Bucket.id.in_(
                select(Grant.bucket_id).where(Grant.user_id == readable_by)))
        with transaction():
            rows = db.session.execute(query).all()
        return [BucketInfo(*row) for row in rows]

    def get_bucket(self, name: str) -> BucketInfo:
        with transaction():
            row = db.session.execute(_BUCKET_INFO.where(Bucket.name == validation.bucket_name(name))).first()
        if row is None:
            raise NotFound(f"bucket {name!r} does not exist")
        return BucketInfo(*row)

    def create_bucket(self, name: str) -> BucketInfo:
        """An empty bucket; 409 if it exists."""
        bucket = _new_bucket(validation.bucket_name(name))
        created_at = bucket.created_at  # not read back after the commit: a delete may follow at once
        try:
            with transaction():
                db.session.add(bucket)
                audit.record("bucket.create", bucket=bucket.name)
        except IntegrityError:
            raise Conflict(f"bucket {name!r} already exists") from None
        return BucketInfo(name, created_at, 0, 0, created_at)

    def delete_bucket(self, name: str) -> None:
        """Delete an empty bucket. Emptiness is checked by the DELETE itself, in the transaction
        that deletes, so a session created meanwhile either makes it fail (409) or finds the bucket
        gone and makes it again: a session that was answered 201 is never lost."""
        bucket_id = self.bucket_id(name)
        try:
            with transaction(durable=True):
                # Completed sessions only remember an upload that is over; they go with the bucket, and
                # so do its trash and versions (their owners' counts with them).
                db.session.execute(delete(UploadSession).where(UploadSession.bucket_id == bucket_id,
                                                               UploadSession.state == SessionState.COMPLETED))
                tally = Tally()
                forgotten = kept.forget(KeptFile.bucket_id == bucket_id, tally=tally)
                tally.buckets.pop(bucket_id, None)  # its counters go with its row
                if db.session.execute(_DELETE_EMPTY_BUCKET, {"bucket_id": bucket_id}).rowcount != 1:
                    raise BucketNotEmpty(f"bucket {name!r} still holds files or uploads in progress")
                tally.apply(int(time.time()))
                audit.record("bucket.delete", bucket=name,
                             detail={"kept_files": len(forgotten)} if forgotten else None)
        except IntegrityError:  # PostgreSQL: a session or file committed while we waited for the row
            raise BucketNotEmpty(f"bucket {name!r} still holds files or uploads in progress") from None
        for row in forgotten:
            self.store.release_blob(row.blob_id)

    # --- objects -------------------------------------------------------------------------
    def row(self, bucket: str, key: str, with_bytes: bool = False):
        """The object's columns (and an inline file's bytes, if asked); one query for the bucket and
        the key together."""
        params = {"bucket": validation.bucket_name(bucket), "key": validation.object_key(key, new=False)}
        with transaction():
            row = db.session.execute(_OBJECT_WITH_BYTES if with_bytes else _OBJECT, params).first()
        if row is None:
            self.bucket_id(bucket)  # 404 for the bucket rather than the file, where that is why
            raise NotFound(f"no file {key!r} in bucket {bucket!r}")
        return row

    def get(self, bucket: str, key: str) -> ObjectInfo:
        return ObjectInfo.from_row(bucket, self.row(bucket, key))

    def open(self, bucket: str, key: str) -> tuple[ObjectInfo, BinaryIO]:
        """The file's metadata and its bytes. Once open, a replace or delete that commits
        afterwards cannot take them away (POSIX keeps open files); one that committed between the
        lookup and the open took the blob: look again, and find the new file or none (404)."""
        for _ in range(5):
            row = self.row(bucket, key, with_bytes=True)
            kept.refuse_damaged(row, row.bucket_id)
            if row.inline_data is not None:
                return ObjectInfo.from_row(bucket, row), MemoryBlobReader(row.inline_data)
            try:
                return ObjectInfo.from_row(bucket, row), self.store.open_blob(row.blob_id)
            except BlobMissing:
                continue
        raise Conflict(f"{key!r} is being replaced too often to read; retry")

    def read_head(self, bucket: str, key: str, limit: int) -> tuple[ObjectInfo, bytes]:
        """The file's metadata and its first `limit` bytes (for a preview)."""
        info, stream = self.open(bucket, key)
        with stream:
            stream.bound(limit)  # an object store's reader asks for these bytes only
            return info, stream.read(limit)

    def delete(self, bucket: str, key: str, *, deletion: str | None = None, to_trash: bool = True) -> ObjectInfo:
        """Delete a file: into its bucket's trash (unless the trash is off or `to_trash` is False, as
        for an expired OpenAI file), under `deletion` (one id for the files of one delete: its Undo)."""
        row = self.row(bucket, key)
        info, blob_id, row_id, bucket_id = ObjectInfo.from_row(bucket, row), row.blob_id, row.id, row.bucket_id
        trashing = to_trash and self.retention.trash
        with transaction(durable=True):  # the blob goes next: the row must not come back after power loss
            # Only if it is still this file at this key: one moved away meanwhile is not deleted from its
            # new place, and one another request deleted first is not counted out twice. The counters
            # move by the row the DELETE returns.
            gone = db.session.execute(
                delete(_objects).where(_objects.c.id == row_id, _objects.c.blob_id == blob_id,
                                       _objects.c.bucket_id == bucket_id, _objects.c.key == key)
                .returning(*kept.OBJECT_RETURNING)).all()
            if gone:
                tally = Tally()
                tally.gone(bucket_id, gone)
                if trashing:
                    kept.keep(bucket_id, gone, KeptKind.TRASH, tally, deletion=deletion or kept.new_deletion())
                tally.apply(int(time.time()))
                audit.record("delete", bucket=bucket, key=key, size=gone[0].size,
                             detail={"trash": True} if trashing else None)
        if not gone:
            raise Conflict(f"{key!r} changed while it was being deleted; look again and retry")
        if not trashing:
            self.store.release_blob(blob_id)  # after the commit: a crash here leaves an orphan for gc
        return info

    def list(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> ObjectPage:
        """One page in key order. Keyset pagination: each query seeks on (bucket_id, key).

        With a delimiter, the keys below a common prefix ("folder") are skipped: those in the rows
        at hand, and the rest by seeking past the folder's upper bound, so a folder of a million
        keys costs one short query.
        """
        bucket_id = self.bucket_id(bucket)
        start_at = max(decode_cursor(cursor) or "", prefix)
        upper = key_successor_bound(prefix) if prefix else ""
        page = _PAGE_BELOW if upper else _PAGE
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        has_more, skip_below = False, ""
        with transaction():  # one snapshot for all the batches of a page
            while not has_more:
                want = limit - len(objects) - len(prefixes)
                batch = want + 1 if not delimiter else min(want + 1, _FOLDER_BATCH)
                rows = db.session.execute(page, {"bucket_id": bucket_id, "start": start_at, "upper": upper,
                                                 "n": batch}).all()
                for row in rows:
                    if row.key < skip_below:
                        continue  # inside the folder just listed
                    if len(objects) + len(prefixes) == limit:
                        has_more = True
                        break
                    folder = _common_prefix(row.key, prefix, delimiter)
                    if folder is None:
                        objects.append(ObjectInfo(bucket, row.key, row.mime_type, row.size, row.sha256, row.created_at))
                        start_at = row.key + "\x01"  # the next key up: keys hold no control characters
                        # (and PostgreSQL's text holds no NUL)
                    else:
                        prefixes.append(folder)
                        start_at = skip_below = key_successor_bound(folder)
                else:
                    if len(rows) < batch:
                        break  # the range is exhausted
        return ObjectPage(objects, prefixes, encode_cursor(start_at) if has_more else None)

    def search(self, bucket: str, q: str, *, prefix: str = "", limit: int = 1000,
               cursor: str | None = None) -> ObjectPage:
        """Files under `prefix` whose keys hold the fragment `q` (any case), a page in key order."""
        bucket_id, fragment = self.bucket_id(bucket), validation.search_query(q)
        start_at = max(decode_cursor(cursor) or "", prefix)
        rows = search.find(bucket_id, fragment, start=start_at, upper=key_successor_bound(prefix) if prefix else None,
                           limit=limit + 1)
        found = [ObjectInfo.from_row(bucket, row) for row in rows[:limit]]
        return ObjectPage(found, [], encode_cursor(found[-1].key + "\x01") if len(rows) > limit else None)

    def previous_cursor(self, bucket: str, *, prefix: str = "", delimiter: str | None = None, limit: int = 1000,
                        cursor: str | None = None) -> str | None:
        """The cursor of the page before the one `cursor` starts ("" when that is the first page;
        None when this is the first page). Walks back from the page's start, a folder counting as one
        entry and skipped whole, as `list` walks forward."""
        start_at = decode_cursor(cursor)
        if start_at is None or start_at <= prefix:
            return None
        bucket_id = self.bucket_id(bucket)

        def keys_before(key: str, n: int) -> list:
            return db.session.execute(_KEYS_BEFORE, {"bucket_id": bucket_id, "prefix": prefix, "before": key,
                                                     "n": n}).all()

        before, entries = start_at, 0
        with transaction():
            if not keys_before(before, 1):
                return None  # nothing before it: this is the first page, reached by a cursor
            while rows := keys_before(before, min(limit, _FOLDER_BATCH) if delimiter else limit):
                for row in rows:
                    if row.key >= before:
                        continue  # inside the folder just counted
                    before = _common_prefix(row.key, prefix, delimiter) or row.key  # where that entry starts
                    entries += 1
                    if entries == limit:
                        return encode_cursor(before) if keys_before(before, 1) else ""
            return ""  # a page's worth or less before this one: the first page


    def position(self, bucket: str, *, prefix: str = "", delimiter: str | None = None,
                 cursor: str | None = None) -> counting.Counts:
        """Where the page that `cursor` starts stands: the entries before it and in all (a folder
        counts as one), each exact unless the count reached its cap."""
        bucket_id = self.bucket_id(bucket)
        end = key_successor_bound(prefix) if prefix else _ABOVE_EVERY_KEY
        start = min(max(decode_cursor(cursor) or "", prefix), end)
        with transaction():
            return counting.count_entries(bucket_id, prefix, delimiter, start, end)

    def last_cursor(self, bucket: str, *, prefix: str = "", delimiter: str | None = None,
                    limit: int = 1000) -> str | None:
        """The cursor of the last `limit` entries (None when they all fit on the first page): the
        page before the end of the range, walked back as `previous_cursor` walks."""
        end = key_successor_bound(prefix) if prefix else _ABOVE_EVERY_KEY
        return self.previous_cursor(bucket, prefix=prefix, delimiter=delimiter, limit=limit,
                                    cursor=encode_cursor(end)) or None


def _common_prefix(key: str, prefix: str, delimiter: str | None) -> str | None:
    if not delimiter:
        return None
    at = key.find(delimiter, len(prefix))
    return None if at < 0 else key[: at + len(delimiter)]
