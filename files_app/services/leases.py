"""One writer per session: a lease on the session row, taken and kept by compare-and-set.

Every statement here is its own short transaction, so no transaction stays open while a body
streams, and the same code works on SQLite and PostgreSQL, across processes and hosts.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import or_, update

from ..errors import LeaseLost
from ..models import UploadSession, db


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
        taken = db.session.execute(
            update(UploadSession)
            .where(
                UploadSession.id == session_id,
                UploadSession.state == "active",
                UploadSession.expires_at >= now,
                or_(UploadSession.lease_token.is_(None), UploadSession.lease_expires_at < now),
            )
            .values(lease_token=token, lease_expires_at=now + ttl)
        ).rowcount
        db.session.commit()
        return cls(session_id, token, ttl, session_ttl, clock) if taken == 1 else None

    @staticmethod
    def seconds_left(row: UploadSession, clock: Callable[[], float]) -> int:
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
        done = db.session.execute(
            update(UploadSession)
            .where(UploadSession.id == self.session_id, UploadSession.lease_token == self.token)
            .values(**values)
        ).rowcount
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

    def renew_if_due(self) -> None:
        if self.clock() - self.renewed_at > self.ttl / 3:
            self.commit_update()

    def release(self) -> None:
        """Give the session back without changing it (after an error); never raises LeaseLost."""
        if not self.held:
            return
        db.session.rollback()
        db.session.execute(
            update(UploadSession)
            .where(UploadSession.id == self.session_id, UploadSession.lease_token == self.token)
            .values(lease_token=None, lease_expires_at=0.0)
        )
        db.session.commit()
        self.held = False
