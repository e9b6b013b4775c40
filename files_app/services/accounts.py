"""API tokens and users. Only hashes are stored: a token's sha256, a password's werkzeug hash."""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, exists, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from .. import validation
from ..errors import AccountDisabled, Forbidden, InvalidInput, TooManyAttempts
from ..models import ApiToken, Bucket, Grant, SigninFailure, User, WebSession, db, transaction
from . import audit

SCOPES = ("read", "write", "manage", "admin")  # each allows what the ones before it allow
ROLES = ("admin", "member")
BUCKET_LEVELS = ("read", "write", "manage")
TOKEN_PREFIX = "fsk_"
_USERNAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,100}")
_FIND_TOKEN = (
    select(ApiToken.id, ApiToken.name, ApiToken.scope, ApiToken.bucket, ApiToken.user_id, ApiToken.expires_at,
           ApiToken.last_used_at, ApiToken.revoked_at, User.role, User.username, User.disabled_at)
    .outerjoin(User, User.id == ApiToken.user_id).where(ApiToken.token_sha256 == bindparam("digest")))
_TOKEN_BY_ID = (
    select(*_FIND_TOKEN.selected_columns).outerjoin(User, User.id == ApiToken.user_id)
    .where(ApiToken.id == bindparam("token_id")))
_ANY = select(exists(select(ApiToken.id)) | exists(select(User.id)))
_WEB_SESSION_USER = (
    select(User.id, User.role, User.username, WebSession.last_seen_at).join(WebSession, WebSession.user_id == User.id)
    .where(WebSession.id_sha256 == bindparam("digest"), WebSession.expires_at > bindparam("now"),
           User.disabled_at.is_(None)))
# Last use is written at most once a minute, by whichever request first finds it older.
LAST_USE_EVERY = 60
_TOUCH_TOKEN = (update(ApiToken).where(ApiToken.id == bindparam("token_id"),
                                       ApiToken.last_used_at.is_(None) | (ApiToken.last_used_at < bindparam("before")))
                .values(last_used_at=bindparam("now"), last_used_from=bindparam("address")))
_TOUCH_SESSION = (update(WebSession).where(WebSession.id_sha256 == bindparam("digest"),
                                           (WebSession.last_seen_at.is_(None))
                                           | (WebSession.last_seen_at < bindparam("before")))
                  .values(last_seen_at=bindparam("now"), address=bindparam("address")))
WEB_SESSION_TTL = 14 * 86400  # a signed-in browser signs in again after two weeks
# Sign-in failures allowed per window, per account and per address; then 429 until the window ends.
SIGNIN_WINDOW = 300
SIGNIN_LIMITS = {"user": 5, "addr": 20, "share": 10}  # "share": a share link's password


@dataclass(frozen=True)
class Principal:
    """Who is asking: a token or a signed-in user. `owner` marks what they make (sessions, files,
    shares); `user_id` and `role` are the person behind it (None and "admin" for an operator's token
    or the open service); `scope` caps what this credential may do, whatever the person may."""

    owner: str
    scope: str
    bucket: str | None = None
    user_id: int | None = None
    role: str = "admin"
    name: str | None = None
    expires_at: int | None = None  # a token's expiry: the tokens it makes expire no later

    def allows(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)

    @property
    def is_admin(self) -> bool:
        """May manage people, tokens, quotas and every bucket."""
        return self.role == "admin" and self.scope == "admin"


def capped_scope(scope: str, role: str) -> str:
    """A credential's scope as far as its person's role allows: a member's stops at `manage` (their
    own buckets and grants), an admin's does not."""
    return scope if role == "admin" or SCOPES.index(scope) <= SCOPES.index("manage") else "manage"


@functools.cache
def _decoy_hash() -> str:
    return generate_password_hash("not a user")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class AccountService:
    def __init__(self):
        self._any_cached: tuple[float, bool] = (0.0, False)

    def any_credentials(self) -> bool:
        """Whether any token or user exists (then the service is closed). Cached for a second:
        asked on every request, and a new token from the CLI takes effect within that second."""
        checked_at, answer = self._any_cached
        if time.monotonic() - checked_at > 1.0:
            with transaction():
                answer = bool(db.session.scalar(_ANY))
            self._any_cached = (time.monotonic(), answer)
        return answer

    def credentials_made(self) -> None:
        """A token or a user now exists: the service is closed from this request on."""
        self._any_cached = (0.0, True)

    def create_token(self, name: str, scope: str, bucket: str | None = None, *, user_id: int | None = None,
                     role: str = "admin", expires_at: int | None = None) -> tuple[int, str]:
        """A new token (its id, and the secret, shown once). A person's token may do no more than
        the person: a member's is at most `manage`."""
        if scope not in SCOPES:
            raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}", "invalid_scope")
        if capped_scope(scope, role) != scope:
            raise Forbidden(f"a {role}'s token may be at most {capped_scope('admin', role)!r}")
        if bucket is not None:
            validation.bucket_name(bucket)
        name = name.strip()[:100]
        if not name or not name.isprintable():
            raise InvalidInput("a token needs a name (what it is for), without control characters", "invalid_name")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with transaction():
            row = ApiToken(name=name, token_sha256=digest(token), scope=scope, bucket=bucket,
                           created_at=int(time.time()), user_id=user_id, expires_at=expires_at)
            db.session.add(row)
            db.session.flush()
            token_id = row.id
            audit.record("token.create", detail={"token": token_id, "name": name, "scope": scope, "bucket": bucket,
                                                 "user_id": user_id, "expires_at": expires_at})
        self.credentials_made()
        return token_id, token

    def token_principal(self, token: str, address: str | None = None) -> Principal | None:
        """The token's principal, if it is live: not revoked, not expired, its person not disabled.
        A personal token never allows more than its person's role does."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        now = int(time.time())
        with transaction():
            row = db.session.execute(_FIND_TOKEN, {"digest": digest(token)}).first()
            if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
                return None
            if row.user_id is not None and (row.role is None or row.disabled_at is not None):
                return None  # its person was deleted or disabled
            if row.last_used_at is None or row.last_used_at < now - LAST_USE_EVERY:
                db.session.execute(_TOUCH_TOKEN, {"token_id": row.id, "before": now - LAST_USE_EVERY, "now": now,
                                                  "address": (address or "")[:64] or None})
        if row.user_id is None:
            return Principal(f"token:{row.id}", row.scope, row.bucket, name=f"token {row.name}",
                             expires_at=row.expires_at)
        return Principal(f"token:{row.id}", capped_scope(row.scope, row.role), row.bucket, row.user_id, row.role,
                         f"{row.username} (token {row.name})", row.expires_at)

    def uploader_name(self, owner: str | None) -> str | None:
        """Who a file's `owner` is, as people read it: a user's name, a token's ("token <name>"), a
        file request's; None when nobody signed it (an open service)."""
        kind, _, number = (owner or "").partition(":")
        if kind == "share":
            return f"a file request ({number})"
        if kind not in ("user", "token") or not number.isdigit():
            return None
        model, column = (User, User.username) if kind == "user" else (ApiToken, ApiToken.name)
        with transaction():
            name = db.session.scalar(select(column).where(model.id == int(number)))
        if name is None:
            return f"a deleted {kind}"
        return name if kind == "user" else f"token {name}"

    def sign_in(self, username: str, password: str, address: str, user_agent: str = "") -> str | None:
        """A new web session id for the right password, else None. Failures are counted per
        account and per address; past the limit, TooManyAttempts (checked before the password).
        A disabled person cannot sign in (and is told nothing more than a wrong password)."""
        subjects = [f"user:{username[:100]}", f"addr:{address}"]
        now = time.time()
        self.count_attempt(subjects, now)
        with transaction():
            row = db.session.execute(select(User.id, User.password_hash, User.disabled_at)
                                     .where(User.username == username)).first()
        # Check a hash even for an unknown name, so timing does not tell which names exist.
        stored = row.password_hash if row else _decoy_hash()
        if not (check_password_hash(stored, password) and row):
            with transaction():
                audit.record("signin", outcome="failed", detail={"username": username[:100]})
            return None
        if row.disabled_at is not None:  # the right password: saying so tells its holder nothing new
            with transaction():
                audit.record("signin", outcome="disabled", actor=(f"user:{row.id}", username),
                             detail={"username": username})
            raise AccountDisabled("this account is disabled; ask an admin to enable it")
        self.attempt_succeeded(subjects)
        session_id = secrets.token_urlsafe(32)
        with transaction():
            db.session.add(WebSession(id_sha256=digest(session_id), user_id=row.id, created_at=int(now),
                                      expires_at=now + WEB_SESSION_TTL, address=address[:64] or None,
                                      user_agent=user_agent[:200] or None, last_seen_at=int(now)))
            audit.record("signin", actor=(f"user:{row.id}", username), detail={"username": username})
        return session_id

    def sign_out(self, session_id: str) -> None:
        with transaction():
            db.session.execute(delete(WebSession).where(WebSession.id_sha256 == digest(session_id)))

    def web_session_principal(self, session_id: str, address: str | None = None) -> Principal | None:
        """The signed-in user's principal: an admin acts as an admin, a member up to `manage` in
        the buckets they may manage. None once the session ended or the user is disabled."""
        now = int(time.time())
        session_digest = digest(session_id)
        with transaction():
            row = db.session.execute(_WEB_SESSION_USER, {"digest": session_digest, "now": now}).first()
            if row is not None and (row.last_seen_at is None or row.last_seen_at < now - LAST_USE_EVERY):
                db.session.execute(_TOUCH_SESSION, {"digest": session_digest, "before": now - LAST_USE_EVERY,
                                                    "now": now, "address": (address or "")[:64] or None})
        if row is None:
            return None
        return Principal(f"user:{row.id}", capped_scope("admin", row.role), None, row.id, row.role, row.username)

    def principal_of(self, owner: str) -> Principal | None:
        """Who `owner` ("user:<id>", "token:<id>") is now, with what they may do now; None if they
        are gone, disabled, revoked or expired."""
        kind, _, number = owner.partition(":")
        if not number.isdigit():
            return None
        now = int(time.time())
        with transaction():
            if kind == "token":
                row = db.session.execute(_TOKEN_BY_ID, {"token_id": int(number)}).first()
                if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
                    return None
                if row.user_id is None:
                    return Principal(owner, row.scope, row.bucket, name=f"token {row.name}")
                if row.role is None or row.disabled_at is not None:
                    return None
                return Principal(owner, capped_scope(row.scope, row.role), row.bucket, row.user_id, row.role,
                                 f"{row.username} (token {row.name})")
            if kind == "user":
                row = db.session.execute(select(User.role, User.username, User.disabled_at)
                                         .where(User.id == int(number))).first()
                if row is not None and row.disabled_at is None:
                    return Principal(owner, capped_scope("admin", row.role), None, int(number), row.role, row.username)
        return None

    def bucket_level(self, principal: Principal, bucket: str) -> str | None:
        """What `principal`'s person may do in `bucket` ("read", "write", "manage"), before the
        credential's scope caps it; None if nothing (or the bucket does not exist: "absent")."""
        if principal.role == "admin":
            return "manage"
        with transaction():
            row = db.session.execute(
                select(Bucket.owner_id, Grant.level).outerjoin(
                    Grant, (Grant.bucket_id == Bucket.id) & (Grant.user_id == bindparam("user_id")))
                .where(Bucket.name == bindparam("bucket")), {"user_id": principal.user_id, "bucket": bucket}).first()
        if row is None:
            return "absent"
        if row.owner_id is not None and row.owner_id == principal.user_id:
            return "manage"
        return row.level

    def count_attempt(self, subjects: list[str], now: float | None = None) -> None:
        """Count an attempt against each of `subjects` ("user:<name>", "share:<id>", "addr:<ip>")
        before its password is checked, each in one statement, so that N guesses sent at once cost
        N attempts; 429 once any of them is past its limit in the current window (even for the
        right password)."""
        now = time.time() if now is None else now
        wait = None
        for subject in subjects:
            attempts, window_start = self._count(subject, now)
            if attempts > SIGNIN_LIMITS[subject.partition(":")[0]]:
                wait = max(wait or 0, window_start + SIGNIN_WINDOW - now)
        if wait is not None:
            raise TooManyAttempts("too many failed sign-ins; wait before trying again", retry_after=int(wait) + 1)

    def attempt_succeeded(self, subjects: list[str]) -> None:
        """The password was right: the first subject (the account, the link) starts again; the
        others (the address) take this attempt back."""
        with transaction():
            db.session.execute(delete(SigninFailure).where(SigninFailure.subject == subjects[0]))
            db.session.execute(update(SigninFailure).where(SigninFailure.subject.in_(subjects[1:]),
                                                           SigninFailure.failures > 0)
                               .values(failures=SigninFailure.failures - 1))

    @staticmethod
    def _count(subject: str, now: float) -> tuple[int, float]:
        """One more attempt in `subject`'s window (a new window once the last one is over)."""
        for _ in range(10):  # add one, or start a window; attempts racing to start one go round again
            try:
                with transaction():
                    row = db.session.execute(
                        update(SigninFailure).where(SigninFailure.subject == subject,
                                                    SigninFailure.window_start > now - SIGNIN_WINDOW)
                        .values(failures=SigninFailure.failures + 1)
                        .returning(SigninFailure.failures, SigninFailure.window_start)).first()
                    if row is not None:
                        return row.failures, row.window_start
                    # Only a window that is over goes: one another attempt just started stays (the
                    # insert below then clashes with it, and this attempt is counted in it instead).
                    db.session.execute(delete(SigninFailure).where(SigninFailure.subject == subject,
                                                                   SigninFailure.window_start <= now - SIGNIN_WINDOW))
                    db.session.add(SigninFailure(subject=subject, failures=1, window_start=now))
                return 1, now
            except IntegrityError:
                continue
        raise TooManyAttempts("too many sign-in attempts at once; wait before trying again", retry_after=1)

    def forget_expired(self, now: float) -> int:
        """For gc: signed-in sessions past their time and failure windows that are over."""
        with transaction():
            gone = db.session.execute(delete(WebSession).where(WebSession.expires_at < now)).rowcount
            db.session.execute(delete(SigninFailure).where(SigninFailure.window_start < now - SIGNIN_WINDOW))
        return gone
