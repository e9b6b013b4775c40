"""One writer per session: a lease on the session row, taken and kept by compare-and-set.

Every statement here is its own short transaction, so no transaction stays open while a body
streams, and the same code works on SQLite and PostgreSQL, across processes and hosts.
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, or_, update

from ..errors import LeaseLost
from ..models import SessionState, UploadSession, db

# Statements are built once: building one per call cost more than running it (bench/README.md).
_sessions = UploadSession.__table__
# Nobody holds the session: no lease, or one whose holder stopped renewing it (bound as "now").
LEASE_FREE = or_(_sessions.c.lease_token.is_(None), _sessions.c.lease_expires_at < bindparam("now"))
_ACQUIRE = (
    update(_sessions)
    .where(
        _sessions.c.id == bindparam("sid"),
        _sessions.c.state == SessionState.ACTIVE,
        _sessions.c.expires_at >= bindparam("now"),
        LEASE_FREE,
    )
    .values(lease_token=bindparam("token"), lease_expires_at=bindparam("until"))
)
# Take the lease and read the session in one round trip (SQLite and PostgreSQL both have RETURNING).
_TAKE = _ACQUIRE.returning(*_sessions.c)
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
    def __init__(self, session_id: str, token: str, ttl: int, session_ttl: int, clock: Callable[[], float]):
        self.session_id = session_id
        self.token = token
        self.ttl = ttl
        self.session_ttl = session_ttl
        self.clock = clock
        self.renewed_at = clock()
        self.held = True

    @classmethod
    def try_acquire(cls, session_id: str, ttl: int, session_ttl: int, clock: Callable[[], float]) -> Lease | None:
        """The lease if the session is active, unexpired and not held by a live writer."""
        token, now = uuid.uuid4().hex, clock()
        taken = db.session.execute(_ACQUIRE, {"sid": session_id, "now": now, "token": token,
                                              "until": now + ttl}).rowcount
        db.session.commit()
        return cls(session_id, token, ttl, session_ttl, clock) if taken == 1 else None

    @classmethod
    def take(cls, session_id: str, ttl: int, session_ttl: int, clock: Callable[[], float],
             owner: str | None = None):
        """(lease, the session's row) if the session is active, unexpired, not held by a live writer
        and, when `owner` is given, theirs; else None. One statement."""
        token, now = uuid.uuid4().hex, clock()
        params = {"sid": session_id, "now": now, "token": token, "until": now + ttl, "by_owner": owner}
        row = db.session.execute(_TAKE_OWNED if owner else _TAKE, params).first()
        db.session.commit()
        return (cls(session_id, token, ttl, session_ttl, clock), row) if row is not None else None

    @staticmethod
    def is_free(row, now: float) -> bool:
        """LEASE_FREE, for a row already read."""
        return row.lease_token is None or row.lease_expires_at < now

    @staticmethod
    def seconds_left(row, clock: Callable[[], float]) -> int:
        """For Retry-After: when the current holder's lease runs out."""
        return max(1, math.ceil(row.lease_expires_at - clock()))

    def update(self, release: bool = False, **values: Any) -> None:
        """Change the session row, only if this lease still holds it; also renews or releases it.
        The caller commits (a release counts once committed: set `held = False` then)."""
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
        if done != 1:
            db.session.rollback()
            self.held = False
            raise LeaseLost("the upload session was taken over or aborted meanwhile")
        self.renewed_at = now

    def commit_update(self, release: bool = False, **values: Any) -> None:
        self.update(release=release, **values)
        db.session.commit()
        if release:
            self.held = False

    def claim_completion(self, size: int) -> Callable[[], None]:
        """For publish(): mark the session completed in the object's own transaction."""
        def claim() -> None:
            self.update(release=True, state=SessionState.COMPLETED, offset=size, hash_state=None, store_state=None)
        return claim

    def renew_if_due(self) -> None:
        if self.clock() - self.renewed_at > self.ttl / 3:
            self.commit_update()

    def release(self) -> None:
        """Give the session back without changing it (after an error); never raises LeaseLost."""
        if not self.held:
            return
        db.session.rollback()
        db.session.execute(_RELEASE, {"sid": self.session_id, "token": self.token})
        db.session.commit()
        self.held = False
