"""The record of who did what: every change and every sign-in, written inside the transaction of
the change it records (so neither can exist without the other, even after SIGKILL).

Who is acting comes from acting.py: services call `record(...)` inside their transaction blocks
and never look at the request themselves.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from ..models import AuditEntry, db
from .acting import current_actor

ACTIONS = (
    "upload", "delete", "move", "copy", "folder.delete", "bucket.create", "bucket.delete", "grant", "quota",
    "share.create", "share.revoke", "share.open", "share.download", "share.upload", "user.create", "user.update",
    "user.delete", "user.password", "token.create", "token.revoke", "signin", "signout.everywhere",
)


def record(action: str, *, bucket: str | None = None, key: str | None = None, size: int | None = None,
           detail: dict[str, Any] | None = None, outcome: str = "ok", actor: tuple[str, str] | None = None) -> None:
    """Add an entry to the caller's open transaction (it commits or rolls back with the change).
    `actor` names who acted when the request's actor is not them yet (a sign-in)."""
    who = current_actor()
    owner, name = actor if actor is not None else (who.owner, who.name)
    db.session.add(AuditEntry(at=time.time(), actor=owner, actor_name=name, address=who.address,
                              user_agent=who.user_agent, action=action, bucket=bucket, key=key, bytes=size,
                              detail=json.dumps(detail, separators=(",", ":")) if detail else None,
                              outcome=outcome))


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None  # an owner string, or a user's name (their own and their tokens' entries)
    bucket: str | None = None
    action: str | None = None
    since: float | None = None
    until: float | None = None


def page(filters: AuditFilter, *, buckets: list[str] | None, before_id: int | None, limit: int) -> list[AuditEntry]:
    """Newest first, keyset-paged by id. `buckets`: only entries of these (a manager's view); None: all."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if buckets is not None:
        query = query.where(AuditEntry.bucket.in_(buckets))
    if filters.bucket is not None:
        query = query.where(AuditEntry.bucket == filters.bucket)
    if filters.action is not None:
        query = query.where((AuditEntry.action == filters.action) | AuditEntry.action.startswith(filters.action + "."))
    if filters.actor is not None:
        query = query.where(AuditEntry.actor == filters.actor) if ":" in filters.actor else query.where(
            (AuditEntry.actor_name == filters.actor) | AuditEntry.actor_name.startswith(filters.actor + " ("))
    if filters.since is not None:
        query = query.where(AuditEntry.at >= filters.since)
    if filters.until is not None:
        query = query.where(AuditEntry.at < filters.until)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return list(db.session.scalars(query))


def prune(older_than: float) -> int:
    """For gc: entries past FILES_AUDIT_DAYS."""
    return db.session.execute(delete(AuditEntry).where(AuditEntry.at < older_than)).rowcount
