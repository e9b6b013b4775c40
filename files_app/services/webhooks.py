"""Webhooks: every event of the audit log (a change, a sign-in) POSTed to the URLs admins register,
signed, at least once, in order per bucket, retried with backoff for a day.

- The queue is a table: audit.record adds one `hook_deliveries` row per matching hook in the
  transaction of the change, so a crash neither loses nor invents an event. Which hooks match is
  read from a per-process copy of the hooks (models.HookRoutes): no query per change. A hook made,
  changed or deleted in another worker or host reaches this process's copy within a poll
  (FILES_HOOKS_POLL_MS, read by a thread of its own): an event of a change made meanwhile here goes
  by the hooks as they were (a hook made less than a poll ago may miss it; a deleted hook's are
  dropped). The process that changed a hook reads them again at once.
- Delivery is off the request path: a thread per worker (`start_delivery`) claims due deliveries
  with a lease (a compare-and-set UPDATE ... RETURNING, on SQLite and PostgreSQL alike), so workers
  and hosts never send one event at once; a worker killed mid-send leaves a lease that expires
  (FILES_HOOKS_TIMEOUT + 5 s), and the event is sent again (at least once: receivers dedupe by the
  X-Files-Event id). A delivery is claimed only while no earlier one of its hook and bucket is
  pending, so a receiver sees each bucket's events in the order of their ids; a failing one holds
  back its bucket's later events until it succeeds or is given up. (The ids are the audit log's,
  given as each change writes its entry, inside its transaction: SQLite has one writer at a time,
  so they follow the commits. On PostgreSQL, two changes of one bucket in flight at once may commit
  in the other order than their ids, and the later id may then go first if it is claimed between
  the two commits.)
- Each POST: the event as JSON, `X-Files-Signature: sha256=<hex HMAC-SHA256 of the body with the
  hook's secret>`, `X-Files-Event` (the audit entry's id), `X-Files-Delivery`. A 2xx is delivered;
  anything else (a redirect too) is retried after FILES_HOOKS_BACKOFF_MS, doubling up to an hour,
  until FILES_HOOKS_RETRY_FOR has passed since the event: then the delivery is failed. One POST may
  take FILES_HOOKS_TIMEOUT seconds in all (connecting at most 5), and POSTs go concurrently, so a
  slow receiver holds back only its own bucket's events.
- Security: a hook sends the service's events to any http(s) URL an admin names, loopback and the
  local network included (a server-side request by design, as S3's notifications; nothing else is
  refused, since a receiver on the same host is a common setup): only admins may register one, the
  answer is never shown beyond its status and a short error, no redirect is followed, and no proxy
  from the environment is used. The secret is kept as it is (it signs every event), so the database
  that holds it is the service's own, readable by its user only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import json
import random
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import delete, exists, func, select, update

from .. import validation
from ..errors import Conflict, InvalidInput, NotFound
from ..models import AuditEntry, Hook, HookDelivery, db, hook_routes, transaction
from . import audit
from .acting import current_actor

MAX_HOOKS = 100
MAX_URL = 2048
STATES = ("pending", "delivered", "failed")
FAMILIES = {action.partition(".")[0] for action in audit.ACTIONS}

_d, _h, _a = HookDelivery.__table__, Hook.__table__, AuditEntry.__table__


class TooManyHooks(Conflict):
    code = "too_many_hooks"


# --- hooks (admins) -------------------------------------------------------------------------------
@dataclass(frozen=True)
class HookInfo:
    id: int
    url: str
    actions: list[str]
    buckets: list[str] | None  # None: every bucket, and events of none (people, tokens, sign-ins)
    enabled: bool
    created_at: int
    created_by: str | None
    pending: int = 0  # deliveries waiting (or being retried)
    failed: int = 0  # given up (kept as long as their audit entries: gc prunes both by FILES_AUDIT_DAYS)


def _info(row: Hook, counts: Mapping[tuple[int, str], int]) -> HookInfo:
    return HookInfo(row.id, row.url, row.actions.split(","), row.buckets.split(",") if row.buckets else None,
                    row.enabled, row.created_at, row.created_by, counts.get((row.id, "pending"), 0),
                    counts.get((row.id, "failed"), 0))


def _counts(hook_id: int | None = None) -> dict[tuple[int, str], int]:
    """Pending and failed deliveries per hook (of one hook, or all)."""
    query = (select(_d.c.hook_id, _d.c.state, func.count()).where(_d.c.state.in_(("pending", "failed")))
             .group_by(_d.c.hook_id, _d.c.state))
    if hook_id is not None:
        query = query.where(_d.c.hook_id == hook_id)
    return {(hook_id, state): number for hook_id, state, number in db.session.execute(query)}


def hooks() -> list[HookInfo]:
    with transaction():
        counts = _counts()
        return [_info(row, counts) for row in db.session.scalars(select(Hook).order_by(Hook.id))]


def hook(hook_id: int) -> HookInfo:
    with transaction():
        return _info(_row(hook_id), _counts(hook_id))


def _row(hook_id: int) -> Hook:
    row = db.session.get(Hook, hook_id)
    if row is None:
        raise NotFound(f"there is no hook {hook_id}")
    return row


def url(value: Any) -> str:
    """http or https, with a host; nothing more is refused (see the module's note on security)."""
    if (not isinstance(value, str) or not value or len(value) > MAX_URL
            or any(ord(char) <= 0x20 or ord(char) == 0x7F for char in value)):
        raise InvalidInput(f"url must be an http or https URL of at most {MAX_URL} characters", "invalid_url")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is no number or out of range
    except ValueError:
        raise InvalidInput("url is not a URL", "invalid_url") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidInput("url must be an http:// or https:// URL with a host", "invalid_url")
    return value


def actions(value: Any) -> list[str]:
    """A list of actions ("upload"), families ("share": every share.* action) or ["*"] (all)."""
    if not isinstance(value, list) or not value or not all(isinstance(action, str) for action in value):
        raise InvalidInput('actions must be a list: action names, families such as "share", or ["*"]',
                           "invalid_actions")
    unknown = [action for action in value if action != "*" and action not in audit.ACTIONS
               and action not in FAMILIES]
    if unknown:
        raise InvalidInput(f"unknown actions: {', '.join(unknown[:5])}; they are {', '.join(audit.ACTIONS)}, "
                           f"a family ({', '.join(sorted(FAMILIES))}) or *", "invalid_actions")
    return ["*"] if "*" in value else list(dict.fromkeys(value))


def buckets(value: Any) -> list[str] | None:
    """None (all), or a list of bucket names (which need not exist yet)."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or len(value) > 100:
        raise InvalidInput("buckets must be a list of 1 to 100 bucket names, or null for all", "invalid_buckets")
    try:
        return list(dict.fromkeys(validation.bucket_name(name) for name in value))
    except InvalidInput as error:
        raise InvalidInput(f"buckets: {error.message}", "invalid_buckets") from None


def secret(value: Any) -> str:
    if not isinstance(value, str) or not 16 <= len(value) <= 256 or not value.isprintable():
        raise InvalidInput("secret must be 16 to 256 printable characters (leave it out to have one made)",
                           "invalid_secret")
    return value


def create_hook(target: Any, wanted: Any, in_buckets: Any = None, given_secret: Any = None) -> tuple[HookInfo, str]:
    """A new hook, and its secret (made when none is given): the only time the secret is shown."""
    row = Hook(url=url(target), actions=",".join(actions(wanted)), enabled=True, created_at=int(time.time()),
               created_by=current_actor().owner)
    chosen = buckets(in_buckets)
    row.buckets = ",".join(chosen) if chosen else None
    row.secret = secrets.token_hex(32) if given_secret is None else secret(given_secret)
    with transaction():
        if db.session.scalar(select(func.count()).select_from(_h)) >= MAX_HOOKS:
            raise TooManyHooks(f"there are {MAX_HOOKS} hooks already; delete one first")
        hook_routes.load()  # before the new hook is in the session: it does not get the event of its own making
        db.session.add(row)
        db.session.flush()
        audit.record("hook.create", detail={"hook": row.id, "host": urlsplit(row.url).hostname})
        made = _info(row, {})
    _reload_routes()
    return made, row.secret


def update_hook(hook_id: int, changes: Mapping[str, Any]) -> HookInfo:
    """`changes`: any of url, actions, buckets (null: all), enabled, secret."""
    unknown = set(changes) - {"url", "actions", "buckets", "enabled", "secret"}
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}", "invalid_field")
    if "enabled" in changes and not isinstance(changes["enabled"], bool):
        raise InvalidInput("enabled must be true or false", "invalid_enabled")
    values: dict[str, Any] = {}
    if "url" in changes:
        values["url"] = url(changes["url"])
    if "actions" in changes:
        values["actions"] = ",".join(actions(changes["actions"]))
    if "buckets" in changes:
        chosen = buckets(changes["buckets"])
        values["buckets"] = ",".join(chosen) if chosen else None
    if "enabled" in changes:
        values["enabled"] = changes["enabled"]
    if "secret" in changes:
        values["secret"] = secret(changes["secret"])
    with transaction():
        row = _row(hook_id)
        for name, value in values.items():
            setattr(row, name, value)
        audit.record("hook.update", detail={"hook": hook_id, "changed": ",".join(sorted(values)) or None})
        changed = _info(row, _counts(hook_id))
    _reload_routes()
    return changed


def _reload_routes() -> None:
    """After this process changed a hook: its next changes' events go by the hooks as they are now."""
    with transaction():
        hook_routes.load()


def delete_hook(hook_id: int) -> None:
    """The hook and its deliveries, sent or not."""
    with transaction():
        row = _row(hook_id)
        audit.record("hook.delete", detail={"hook": hook_id, "host": urlsplit(row.url).hostname})
        db.session.flush()
        db.session.execute(delete(_d).where(_d.c.hook_id == hook_id))  # (its own deletion's event too)
        db.session.delete(row)
    _reload_routes()


# --- a hook's delivery log ------------------------------------------------------------------------
@dataclass(frozen=True)
class DeliveryInfo:
    id: int
    event: int  # the audit entry's id
    action: str
    bucket: str | None
    key: str | None
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: float | None  # while pending
    delivered_at: float | None
    created_at: float


@dataclass(frozen=True)
class DeliveryPage:
    deliveries: list[DeliveryInfo]
    next_cursor: str | None


def deliveries(hook_id: int, *, state: str | None = None, cursor: str | None = None,
               limit: int = 100) -> DeliveryPage:
    """Newest first, keyset-paged by id."""
    if state is not None and state not in STATES:
        raise InvalidInput(f"state is one of {', '.join(STATES)}", "invalid_state")
    if cursor is not None and (not cursor.isdigit() or len(cursor) > 18):
        raise InvalidInput("cursor is not one this server gave out", "invalid_cursor")
    query = (select(_d, _a.c.action, _a.c.key).join(_a, _a.c.id == _d.c.audit_id)
             .where(_d.c.hook_id == hook_id).order_by(_d.c.id.desc()).limit(limit + 1))
    if state is not None:
        query = query.where(_d.c.state == state)
    if cursor is not None:
        query = query.where(_d.c.id < int(cursor))
    with transaction():
        _row(hook_id)
        rows = db.session.execute(query).all()
    found = [DeliveryInfo(row.id, row.audit_id, row.action, row.bucket or None, row.key, row.state, row.attempts,
                          row.last_status, row.last_error, row.next_attempt_at if row.state == "pending" else None,
                          row.delivered_at, row.created_at) for row in rows[:limit]]
    return DeliveryPage(found, str(found[-1].id) if len(rows) > limit else None)


def prune(older_than: float) -> int:
    """For gc: deliveries of events recorded before `older_than` (sent, failed, or of a hook that is
    gone), found by their audit entry's id (indexed) rather than by a scan."""
    with transaction():
        first_kept = db.session.scalar(select(_a.c.id).where(_a.c.at >= older_than).order_by(_a.c.id).limit(1))
        query = delete(_d) if first_kept is None else delete(_d).where(_d.c.audit_id < first_kept)
        return db.session.execute(query).rowcount


# --- delivery -------------------------------------------------------------------------------------
def _run_apart(coroutine):
    """asyncio.run, also from a thread whose own event loop is running (a caller inside another
    framework's loop): then in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as apart:
        return apart.submit(asyncio.run, coroutine).result()


@dataclass(frozen=True)
class DeliverySettings:
    poll: float = 1.0  # seconds between looks at the queue when it had nothing due
    timeout: float = 10.0  # for one POST, all of it
    connect_timeout: float = 5.0
    backoff: float = 10.0  # the first retry's delay, doubling
    backoff_cap: float = 3600.0
    retry_for: float = 86400.0  # after this long since the event, a failure is final
    batch: int = 32  # claimed at once, sent concurrently (each the head of its hook's bucket)

    @property
    def lease(self) -> float:
        """How long a claim keeps other workers off (a POST, plus its two short transactions)."""
        return self.timeout + 5.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DeliverySettings:
        timeout = float(max(1, config["FILES_HOOKS_TIMEOUT"]))
        return cls(poll=config["FILES_HOOKS_POLL_MS"] / 1000, timeout=timeout, connect_timeout=min(5.0, timeout),
                   backoff=config["FILES_HOOKS_BACKOFF_MS"] / 1000, retry_for=float(config["FILES_HOOKS_RETRY_FOR"]))


@dataclass(frozen=True)
class Claim:
    id: int
    hook_id: int
    url: str
    secret: str
    attempts: int
    created_at: float
    token: str
    event: dict[str, Any]


# async (client, url, body, headers) -> (status or None, error or None)
Sender = Callable[[httpx.AsyncClient, str, bytes, dict[str, str]], Awaitable[tuple[int | None, str | None]]]


async def post(client: httpx.AsyncClient, target: str, body: bytes, headers: dict[str, str]) -> tuple[int, None]:
    """The POST itself; its answer's body is not read (only its status counts)."""
    async with client.stream("POST", target, content=body, headers=headers) as response:
        return response.status_code, None


def signature(key: str, body: bytes) -> str:
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


class Deliverer:
    """One pass at a time: claim what is due, POST it all concurrently, record how each went."""

    def __init__(self, settings: DeliverySettings, send: Sender = post, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.send = send
        self.clock = clock

    def run_once(self) -> int:
        """How many deliveries were attempted (0: nothing was due; wait for the next poll)."""
        with transaction():
            if not hook_routes.current():
                return 0
        claims = self.claim()
        if claims:
            results = _run_apart(self._send_all(claims))
            self.finish(claims, results)
        return len(claims)

    def claim(self) -> list[Claim]:
        now, token = self.clock(), secrets.token_hex(16)
        queued, earlier = _d.alias("queued"), _d.alias("earlier")
        heads = (select(queued.c.id).select_from(queued.join(_h, _h.c.id == queued.c.hook_id))
                 .where(_h.c.enabled, queued.c.state == "pending", queued.c.next_attempt_at <= now,
                        queued.c.lease_until <= now,
                        ~exists().where(earlier.c.state == "pending", earlier.c.hook_id == queued.c.hook_id,
                                        earlier.c.bucket == queued.c.bucket, earlier.c.id < queued.c.id))
                 .order_by(queued.c.id).limit(self.settings.batch))
        # Read first: a look that finds nothing due writes nothing (on SQLite a write takes the one
        # write lock that uploads wait for). Then the conditions again on each row as it is taken: of
        # two workers that chose the same head, the second finds it leased (PostgreSQL re-reads a row
        # another transaction changed) and takes nothing. (A head stays the head: no event comes
        # before one already queued, and none is ever pending again.)
        with transaction():
            due = db.session.execute(heads).scalars().all()
        if not due:
            return []
        take = (update(_d).where(_d.c.id.in_(due), _d.c.state == "pending", _d.c.lease_until <= now)
                .values(lease_until=now + self.settings.lease, lease_token=token).returning(_d.c.id))
        with transaction():
            taken = db.session.execute(take).scalars().all()
            if not taken:
                return []
            rows = db.session.execute(
                select(_d.c.id.label("delivery_id"), _d.c.hook_id, _d.c.attempts, _d.c.created_at.label("queued_at"),
                       _h.c.url, _h.c.secret, *(_a.c[name] for name in _EVENT_FIELDS))
                .select_from(_d.join(_h, _h.c.id == _d.c.hook_id).join(_a, _a.c.id == _d.c.audit_id))
                .where(_d.c.id.in_(taken)).order_by(_d.c.id)).all()
        return [Claim(row.delivery_id, row.hook_id, row.url, row.secret, row.attempts, row.queued_at, token,
                      _event(row)) for row in rows]

    async def _send_all(self, claims: list[Claim]) -> list[tuple[int | None, str | None]]:
        timeout = httpx.Timeout(self.settings.timeout, connect=self.settings.connect_timeout)
        # Straight to the receiver: no proxy from the environment, no redirect followed.
        async with httpx.AsyncClient(timeout=timeout, trust_env=False, follow_redirects=False) as client:
            return list(await asyncio.gather(*(self._send_one(client, claim) for claim in claims)))

    async def _send_one(self, client: httpx.AsyncClient, claim: Claim) -> tuple[int | None, str | None]:
        body = json.dumps(claim.event, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "files-service-hooks/1",
                   "X-Files-Event": str(claim.event["id"]), "X-Files-Delivery": str(claim.id),
                   "X-Files-Action": claim.event["action"], "X-Files-Attempt": str(claim.attempts + 1),
                   "X-Files-Signature": signature(claim.secret, body)}
        try:
            return await asyncio.wait_for(self.send(client, claim.url, body, headers), self.settings.timeout)
        except TimeoutError:
            return None, f"no answer within {self.settings.timeout:g} s"
        except Exception as error:  # noqa: BLE001 - refused, reset, a bad name: this event's failure alone
            return None, f"{error.__class__.__name__}: {error}"[:200]

    def finish(self, claims: list[Claim], results: list[tuple[int | None, str | None]]) -> None:
        """Each claim's outcome, written only while its lease is still this pass's own."""
        now = self.clock()
        with transaction():
            for claim, (status, error) in zip(claims, results, strict=True):
                attempts = claim.attempts + 1
                values: dict[str, Any] = {"attempts": attempts, "last_status": status, "lease_until": 0.0,
                                          "lease_token": None}
                if status is not None and 200 <= status < 300:
                    values.update(state="delivered", delivered_at=now, last_error=None)
                else:
                    values["last_error"] = error or f"the receiver answered {status}"
                    if now - claim.created_at >= self.settings.retry_for:
                        values["state"] = "failed"
                    else:
                        delay = min(self.settings.backoff * 2 ** (attempts - 1), self.settings.backoff_cap)
                        values["next_attempt_at"] = now + delay
                db.session.execute(update(_d).where(_d.c.id == claim.id, _d.c.lease_token == claim.token)
                                   .values(**values))


# What a receiver gets: the audit entry, without where it came from (address, browser).
_EVENT_FIELDS = ("id", "at", "action", "actor", "actor_name", "bucket", "key", "bytes", "detail", "outcome")


def _event(row: Any) -> dict[str, Any]:
    event = {name: getattr(row, name) for name in _EVENT_FIELDS}
    event["detail"] = json.loads(event["detail"]) if event["detail"] else None
    return event


def start_delivery(app: Any) -> threading.Event:
    """In a server's worker (where the gc thread starts), two threads: one delivers due events every
    FILES_HOOKS_POLL_MS (at once again after a pass that had work), the other reads the hooks as
    often, so that a hook made or changed elsewhere applies here within a poll, however long a pass
    waits on a slow receiver. 0: neither runs. Returns the event that stops them."""
    stop = threading.Event()
    settings = DeliverySettings.from_config(app.config)
    if not settings.poll:
        return stop
    deliverer = Deliverer(settings)

    def deliver() -> None:
        while not stop.is_set():
            busy = 0
            try:
                with app.app_context():
                    busy = deliverer.run_once()
            except Exception:  # noqa: BLE001 - a database that is down, say: the next pass retries
                app.logger.exception("hook deliveries failed")
            if not busy:
                stop.wait(settings.poll * random.uniform(0.8, 1.2))

    def read_hooks() -> None:
        while True:
            try:
                with app.app_context():
                    _reload_routes()
            except Exception:  # noqa: BLE001 - the next poll retries
                app.logger.exception("reading the hooks failed")
            if stop.wait(settings.poll * random.uniform(0.8, 1.2)):
                return

    threading.Thread(target=deliver, name="files-hooks", daemon=True).start()
    threading.Thread(target=read_hooks, name="files-hook-routes", daemon=True).start()
    return stop
