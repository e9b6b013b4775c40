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

from sqlalchemy import bindparam, delete, func, insert, or_, select

from ..errors import InvalidInput
from ..models import AuditEntry, HookDelivery, db, hook_routes, transaction
from .acting import current_actor

ACTIONS = (
    "upload", "delete", "move", "copy", "folder.delete", "bucket.create", "bucket.delete", "grant", "quota",
    "share.create", "share.revoke", "share.open", "share.download", "share.upload", "user.create", "user.update",
    "user.delete", "user.password", "token.create", "token.revoke", "signin", "signout.everywhere",
    "hook.create", "hook.update", "hook.delete", "trash.restore", "trash.purge", "version.restore", "version.delete",
)


def record(action: str, *, bucket: str | None = None, key: str | None = None, size: int | None = None,
           detail: dict[str, Any] | None = None, outcome: str = "ok", actor: tuple[str, str] | None = None) -> None:
    """Add an entry to the caller's open transaction (it commits or rolls back with the change).
    `actor` names who acted when the request's actor is not them yet (a sign-in)."""
    who = current_actor()
    owner, name = actor if actor is not None else (who.owner, who.name)
    now = time.time()
    values = dict(at=now, actor=owner, actor_name=name, address=who.address, user_agent=who.user_agent,
                  action=action, bucket=bucket, key=key, bytes=size,
                  detail=json.dumps(detail, separators=(",", ":")) if detail else None, outcome=outcome)
    # The event, queued for each hook that wants it in the same transaction: a crash neither loses
    # nor invents one (services/webhooks.py delivers them). Which hooks want it is known without a
    # query (read once per process, then kept fresh off the request path); no hooks: nothing added.
    # Prebuilt Core inserts, not ORM objects: one entry per change costs ~0.1 ms, not ~0.3 ms.
    hooks = hook_routes.matching(action, bucket)
    if not hooks:
        db.session.execute(_INSERT_ENTRY, values)
        return
    entry_id = db.session.execute(_INSERT_ENTRY_RETURNING, values).scalar_one()
    db.session.execute(_INSERT_DELIVERY, [
        dict(hook_id=hook_id, audit_id=entry_id, bucket=bucket or "", state="pending", attempts=0, created_at=now,
             next_attempt_at=now, lease_until=0.0) for hook_id in hooks])

# The oldest entry to keep, walking the primary key from the oldest (ids follow time): no index on `at`,
# one less to keep up on every change.
_FIRST_KEPT = (select(AuditEntry.id).where(AuditEntry.at >= bindparam("older_than")).order_by(AuditEntry.id)
               .limit(1))
_INSERT_ENTRY = insert(AuditEntry.__table__)
_INSERT_ENTRY_RETURNING = insert(AuditEntry.__table__).returning(AuditEntry.__table__.c.id)
_INSERT_DELIVERY = insert(HookDelivery.__table__)
_FAMILIES = {action.partition(".")[0] for action in ACTIONS}


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None  # an owner string, or a user's name (their own and their tokens' entries)
    bucket: str | None = None
    action: str | None = None
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True)
class AuditInfo:
    id: int
    at: float
    actor: str | None
    actor_name: str | None
    address: str | None
    user_agent: str | None
    action: str
    bucket: str | None
    key: str | None
    bytes: int | None
    detail: dict[str, Any] | None
    outcome: str


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditInfo]
    next_cursor: str | None  # the id to continue before, as text


def page(filters: AuditFilter, *, buckets: dict[str, int] | None, cursor: str | None = None,
         limit: int = 100) -> AuditPage:
    """Newest first, keyset-paged by id. `buckets`: only entries of these buckets from the entry id
    each starts at (a manager's view: nothing of an earlier bucket of the same name); None: all."""
    before_id = None
    if cursor:
        if not cursor.isascii() or not cursor.isdigit() or len(cursor) > 10 or int(cursor) > 2**31 - 1:
            raise InvalidInput("cursor is not one this server gave out", "invalid_cursor")
        before_id = int(cursor)
    if filters.action is not None and filters.action not in ACTIONS and filters.action not in _FAMILIES:
        raise InvalidInput(f"action is one of {', '.join(ACTIONS)}", "invalid_action")
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit + 1)
    if buckets is not None:
        if not buckets:
            return AuditPage([], None)
        query = query.where(or_(*[(AuditEntry.bucket == name) & (AuditEntry.id >= first)
                                  for name, first in buckets.items()]))
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
    with transaction():
        rows = list(db.session.scalars(query))
    entries = [AuditInfo(row.id, row.at, row.actor, row.actor_name, row.address, row.user_agent, row.action,
                         row.bucket, row.key, row.bytes, json.loads(row.detail) if row.detail else None, row.outcome)
               for row in rows[:limit]]
    return AuditPage(entries, str(entries[-1].id) if len(rows) > limit else None)


def first_entries(buckets: list[str]) -> dict[str, int]:
    """Where each bucket's own history starts: the entry that made it (its name may have been a
    deleted bucket's before); 0 for a bucket made before the audit log was."""
    made = select(AuditEntry.bucket, func.max(AuditEntry.id)).where(
        AuditEntry.action == "bucket.create", AuditEntry.bucket.in_(buckets)).group_by(AuditEntry.bucket)
    with transaction():
        found = dict(db.session.execute(made).all()) if buckets else {}
    return {name: found.get(name, 0) for name in buckets}


def prune(older_than: float) -> int:
    """For gc: entries past FILES_AUDIT_DAYS."""
    with transaction():
        first_kept = db.session.scalar(_FIRST_KEPT, {"older_than": older_than})
        query = delete(AuditEntry) if first_kept is None else delete(AuditEntry).where(AuditEntry.id < first_kept)
        return db.session.execute(query).rowcount
