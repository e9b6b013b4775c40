"""Counters against the rows they count: `flask files check` (and `--repair`).

The counters kept in step with the rows, in the transactions that change the rows:
- a bucket's `object_count` and `total_bytes`: its files and the sum of their sizes;
- an owner's `owner_usage` (files, bytes): the files they uploaded (what user and token quotas read);
- both also count what trash and versions keep (`kept_files`, `kept_bytes`: rows of kept_files).
Promised bytes are no stored counter: every quota check sums the open sessions' declared sizes at that
moment; what can be wrong there is a session's offset outside its size, which the check reports. A
share's `downloads` and `uploaded_bytes` are budgets spent (a deleted upload does not refund its link),
so no rows recount them; they must stay within 0 and the share's limit.

A check reads every counter and what it counts in one snapshot (PostgreSQL: REPEATABLE READ; SQLite: a
read transaction is one). A repair first takes the write lock (SQLite: the first write of the
transaction takes the database's one write lock; PostgreSQL: the counted tables locked against
writers), then recomputes and sets each counter from the rows, so no writer can move a counter or a row
between the recount and the set.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, case, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from ..models import Bucket, KeptFile, OwnerUsage, SessionState, Share, StoredObject, UploadSession, db, transaction

_objects, _buckets, _usage = StoredObject.__table__, Bucket.__table__, OwnerUsage.__table__
_shares, _sessions = Share.__table__, UploadSession.__table__

_kept = KeptFile.__table__


def _per(table, column):
    """Files and bytes per `column` value of a file table."""
    return (select(column.label("by"), func.count().label("files"),
                   func.coalesce(func.sum(table.c.size), 0).label("bytes")).group_by(column))


_PER_BUCKET = _per(_objects, _objects.c.bucket_id).subquery()
_KEPT_PER_BUCKET = _per(_kept, _kept.c.bucket_id).subquery()
_BUCKETS = (select(_buckets.c.id, _buckets.c.name, _buckets.c.object_count, _buckets.c.total_bytes,
                   _buckets.c.kept_files, _buckets.c.kept_bytes,
                   func.coalesce(_PER_BUCKET.c.files, 0).label("files"),
                   func.coalesce(_PER_BUCKET.c.bytes, 0).label("bytes"),
                   func.coalesce(_KEPT_PER_BUCKET.c.files, 0).label("in_kept_files"),
                   func.coalesce(_KEPT_PER_BUCKET.c.bytes, 0).label("in_kept_bytes"))
            .select_from(_buckets.outerjoin(_PER_BUCKET, _PER_BUCKET.c.by == _buckets.c.id)
                         .outerjoin(_KEPT_PER_BUCKET, _KEPT_PER_BUCKET.c.by == _buckets.c.id))
            .order_by(_buckets.c.name))
_PER_OWNER = _per(_objects, _objects.c.owner).where(_objects.c.owner.is_not(None))
_KEPT_PER_OWNER = _per(_kept, _kept.c.owner).where(_kept.c.owner.is_not(None))
_OWNERS = select(_usage.c.owner, _usage.c.files, _usage.c.bytes, _usage.c.kept_files, _usage.c.kept_bytes)
_SHARES = (select(_shares.c.id, _shares.c.downloads, _shares.c.max_downloads, _shares.c.uploaded_bytes,
                  _shares.c.upload_max_bytes)
           .where((_shares.c.downloads < 0) | (_shares.c.uploaded_bytes < 0)
                  | (_shares.c.max_downloads.is_not(None) & (_shares.c.downloads > _shares.c.max_downloads))
                  | (_shares.c.upload_max_bytes.is_not(None)
                     & (_shares.c.uploaded_bytes > _shares.c.upload_max_bytes)))
           .order_by(_shares.c.id))
_SESSIONS = (select(_sessions.c.id, _sessions.c.offset, _sessions.c.size)
             .where(_sessions.c.state == SessionState.ACTIVE,
                    (_sessions.c.offset < 0) | (_sessions.c.size < 0) | (_sessions.c.offset > _sessions.c.size))
             .order_by(_sessions.c.id))

# The repair's statements: each counter set from its rows, in the statement that sets it.
_RECOUNT_BUCKET = (update(_buckets).where(_buckets.c.id == bindparam("bucket_id")).values(
    object_count=select(func.count()).where(_objects.c.bucket_id == _buckets.c.id).scalar_subquery(),
    total_bytes=select(func.coalesce(func.sum(_objects.c.size), 0))
    .where(_objects.c.bucket_id == _buckets.c.id).scalar_subquery(),
    kept_files=select(func.count()).where(_kept.c.bucket_id == _buckets.c.id).scalar_subquery(),
    kept_bytes=select(func.coalesce(func.sum(_kept.c.size), 0)).where(_kept.c.bucket_id == _buckets.c.id)
    .scalar_subquery()))
_CLAMP_SHARE = (update(_shares).where(_shares.c.id == bindparam("share_id")).values(
    downloads=case((_shares.c.downloads < 0, 0),
                   (_shares.c.max_downloads.is_not(None) & (_shares.c.downloads > _shares.c.max_downloads),
                    _shares.c.max_downloads), else_=_shares.c.downloads),
    uploaded_bytes=case((_shares.c.uploaded_bytes < 0, 0),
                        (_shares.c.upload_max_bytes.is_not(None)
                         & (_shares.c.uploaded_bytes > _shares.c.upload_max_bytes), _shares.c.upload_max_bytes),
                        else_=_shares.c.uploaded_bytes)))


@dataclass(frozen=True)
class Drift:
    """One counter that is not what its rows say: `kind` (bucket, owner, share, session), whose, which
    counter, what it holds and what the rows say it should (None: nothing to repair it to)."""

    kind: str
    name: str
    counter: str
    stored: int
    actual: int | None

    def __str__(self) -> str:
        if self.actual is None:
            return f"{self.kind} {self.name}: {self.counter} is {self.stored}, which no row can explain"
        says = "its limits allow at most" if self.kind == "share" and self.actual else (
            "its limits allow" if self.kind == "share" else "its rows say")
        return (f"{self.kind} {self.name}: {self.counter} is {self.stored}, {says} {self.actual} "
                f"(off by {self.stored - self.actual:+d})")


def _drift() -> list[Drift]:
    """Every difference, read in the caller's transaction."""
    found: list[Drift] = []
    for row in db.session.execute(_BUCKETS):
        for counter, stored, actual in (("files", row.object_count, row.files), ("bytes", row.total_bytes, row.bytes),
                                        ("kept_files", row.kept_files, row.in_kept_files),
                                        ("kept_bytes", row.kept_bytes, row.in_kept_bytes)):
            if stored != actual:
                found.append(Drift("bucket", row.name, counter, int(stored), int(actual)))
    counted = _owner_counts()
    stored = {row.owner: tuple(int(value) for value in row[1:]) for row in db.session.execute(_OWNERS)}
    for owner in sorted(counted.keys() | stored.keys()):
        for counter, held, actual in zip(_OWNER_COUNTERS, stored.get(owner, (0,) * 4), counted.get(owner, (0,) * 4),
                                         strict=True):
            if held != actual:
                found.append(Drift("owner", owner, counter, held, actual))
    for row in db.session.execute(_SHARES):
        if row.downloads < 0 or (row.max_downloads is not None and row.downloads > row.max_downloads):
            found.append(Drift("share", row.id, f"downloads (of at most {row.max_downloads})", row.downloads,
                               max(0, min(row.downloads, row.max_downloads or row.downloads))))
        if row.uploaded_bytes < 0 or (row.upload_max_bytes is not None and row.uploaded_bytes > row.upload_max_bytes):
            found.append(Drift("share", row.id, f"uploaded_bytes (of at most {row.upload_max_bytes})",
                               row.uploaded_bytes,
                               max(0, min(row.uploaded_bytes, row.upload_max_bytes or row.uploaded_bytes))))
    for row in db.session.execute(_SESSIONS):
        found.append(Drift("session", row.id, f"offset (of size {row.size})", row.offset, None))
    return found


_OWNER_COUNTERS = ("files", "bytes", "kept_files", "kept_bytes")


def _owner_counts(owner: str | None = None) -> dict[str, tuple[int, int, int, int]]:
    """What each owner's files and kept files add up to (only `owner`'s, if given)."""
    counts: dict[str, list[int]] = {}
    for query, at in ((_PER_OWNER, 0), (_KEPT_PER_OWNER, 2)):
        if owner is not None:
            query = query.having(query.selected_columns.by == owner)
        for row in db.session.execute(query):
            counts.setdefault(row.by, [0, 0, 0, 0])[at:at + 2] = [int(row.files), int(row.bytes)]
    return {name: tuple(values) for name, values in counts.items()}


def check() -> list[Drift]:
    """Every counter that differs from its rows, all read in one snapshot."""
    with transaction():
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        return _drift()


def _lock_writers() -> None:
    """Take the write lock before reading: nobody changes a file or a counter until this transaction ends."""
    if db.engine.dialect.name == "postgresql":
        # SHARE ROW EXCLUSIVE conflicts with every writer's ROW EXCLUSIVE (and with itself), not with readers.
        db.session.execute(text("LOCK TABLE objects, kept_files, buckets, owner_usage, shares "
                                "IN SHARE ROW EXCLUSIVE MODE"))
    else:  # SQLite: a transaction's first write takes the one write lock (a no-op UPDATE still takes it)
        db.session.execute(update(_buckets).where(_buckets.c.id == -1).values(id=_buckets.c.id))


def _upsert_usage(dialect: str):
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert_(_usage).values(owner=bindparam("owner"),
                                       **{counter: bindparam(counter) for counter in _OWNER_COUNTERS})
    return statement.on_conflict_do_update(index_elements=[_usage.c.owner], set_={
        counter: statement.excluded[counter] for counter in _OWNER_COUNTERS})


def repair() -> list[Drift]:
    """Set every drifted counter to what its rows say, under the write lock; the differences mended
    (a session's offset is not a counter: it is reported, never changed)."""
    with transaction():
        _lock_writers()
        found = _drift()  # again, under the lock: exactly what is mended
        for drift in found:
            if drift.kind == "bucket":
                db.session.execute(_RECOUNT_BUCKET, {"bucket_id": db.session.scalar(
                    select(_buckets.c.id).where(_buckets.c.name == drift.name))})
            elif drift.kind == "owner":
                counts = _owner_counts(drift.name).get(drift.name)
                if counts is None:
                    db.session.execute(delete(_usage).where(_usage.c.owner == drift.name))
                else:
                    db.session.execute(_upsert_usage(db.engine.dialect.name),
                                       dict(zip(_OWNER_COUNTERS, counts, strict=True), owner=drift.name))
            elif drift.kind == "share":
                db.session.execute(_CLAMP_SHARE, {"share_id": drift.name})
    return found
