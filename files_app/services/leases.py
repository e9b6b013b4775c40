"""One writer per session: a lease on the session row, taken and kept by compare-and-set.

Every statement here is its own short transaction (but `complete`, which joins the transaction
that publishes the file), so no transaction stays open while a body streams, and the same code
works on SQLite and PostgreSQL, across processes and hosts.
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, or_, select, update

from ..errors import LeaseLost
from ..models import Bucket, SessionState, UploadSession, db, transaction
from .records import SessionRecord

# Statements are built once: building one per call cost more than running it (bench/README.md).
_sessions, _buckets = UploadSession.__table__, Bucket.__table__
# Nobody holds the session: no lease, or one whose holder stopped renewing it (bound as "now").
LEASE_FREE = or_(_sessions.c.lease_token.is_(None), _sessions.c.lease_expires_at < bindparam("now"))
# The bucket's name rides along with the row (RETURNING takes a scalar subquery on both databases).
BUCKET_NAME = (select(_buckets.c.name).where(_buckets.c.id == _sessions.c.bucket_id)
               .scalar_subquery().label("bucket"))
# Take the lease and read the session in one round trip (SQLite and PostgreSQL both have RETURNING).
_TAKE = (
    update(_sessions)
    .where(
        _sessions.c.id == bindparam("sid"),
        _sessions.c.state == SessionState.ACTIVE,
        _sessions.c.expires_at >= bindparam("now"),
        LEASE_FREE,
    )
    .values(lease_token=bindparam("token"), lease_expires_at=bindparam("until"))
    .returning(*_sessions.c, BUCKET_NAME)
)
_TAKE_OWNED = _TAKE.where(_sessions.c.owner == bindparam("by_owner"))
_RELEASE = (
    update(_sessions)
    .where(_sessions.c.id == bindparam("sid"), _sessions.c.lease_token == bindparam("token"))
    .values(lease_token=None, lease_expires_at=0.0)
)


@functools.cache
def _guarded_update(columns: tuple[str, ...]):
    """UPDATE upload_sessions SET <columns> WHERE id = :sid AND lease_token = :token."""
    return (
        update(_sessions)
        .where(_sessions.c.id == bindparam("sid"), _sessions.c.lease_token == bindparam("token"))
        .values({column: bindparam(f"new_{column}") for column in columns})
    )


class Lease:
    """Held from `take` until released: by `save(release=True)`, by a completion that committed,
    or on leaving its `with` block (after an error)."""

    def __init__(self, session_id: str, token: str, ttl: int, session_ttl: int, clock: Callable[[], float]):
        self.session_id = session_id
        self.token = token
        self.ttl = ttl
        self.session_ttl = session_ttl
        self.clock = clock
        self.renewed_at = clock()
        self._held = True

    @classmethod
    def take(cls, session_id: str, ttl: int, session_ttl: int, clock: Callable[[], float],
             owner: str | None = None) -> tuple[Lease, SessionRecord] | None:
        """(lease, the session) if the session is active, unexpired, not held by a live writer and,
        when `owner` is given, theirs; else None. One statement."""
        token, now = uuid.uuid4().hex, clock()
        params = {"sid": session_id, "now": now, "token": token, "until": now + ttl, "by_owner": owner}
        with transaction():
            row = db.session.execute(_TAKE_OWNED if owner else _TAKE, params).first()
        return (cls(session_id, token, ttl, session_ttl, clock), SessionRecord.from_row(row)) if row else None

    @staticmethod
    def seconds_left(record: SessionRecord, clock: Callable[[], float]) -> int:
        """For Retry-After: when the current holder's lease runs out."""
        return max(1, math.ceil(record.lease_expires_at - clock()))

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def save(self, release: bool = False, **values: Any) -> None:
        """Change the session row, in a transaction of its own, only if this lease still holds it;
        renews the lease, or releases it."""
        with transaction():
            self._update(release, **values)
        if release:
            self._held = False

    def renew_if_due(self) -> None:
        if self.clock() - self.renewed_at > self.ttl / 3:
            self.save()

    def complete(self, size: int) -> None:
        """Mark the session completed, in the caller's (publishing) transaction. The lease ends
        with that transaction: call `completed()` once it has committed."""
        self._update(True, state=SessionState.COMPLETED, offset=size, hash_state=None, store_state=None)

    def completed(self) -> None:
        self._held = False

    def release(self) -> None:
        """Give the session back without changing it (after an error); never raises LeaseLost."""
        if not self._held:
            return
        with transaction():
            db.session.execute(_RELEASE, {"sid": self.session_id, "token": self.token})
        self._held = False

    def _update(self, release: bool, **values: Any) -> None:
        now = self.clock()
        values.setdefault("expires_at", now + self.session_ttl)
        if release:
            values.update(lease_token=None, lease_expires_at=0.0)
        else:
            values.update(lease_expires_at=now + self.ttl)
        columns = tuple(sorted(values))
        params = {f"new_{column}": values[column] for column in columns}
        done = db.session.execute(_guarded_update(columns),
                                  {"sid": self.session_id, "token": self.token, **params}).rowcount
        if done != 1:  # (the caller's transaction block rolls back)
            self._held = False
            raise LeaseLost("the upload session was taken over or aborted meanwhile")
        self.renewed_at = now
