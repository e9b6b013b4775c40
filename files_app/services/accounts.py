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
from ..errors import Conflict, InvalidInput, TooManyAttempts
from ..models import ApiToken, SigninFailure, User, WebSession, db, transaction

SCOPES = ("read", "write", "admin")  # each allows what the ones before it allow
TOKEN_PREFIX = "fsk_"
_USERNAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,100}")
_FIND_TOKEN = select(ApiToken.id, ApiToken.scope, ApiToken.bucket).where(
    ApiToken.token_sha256 == bindparam("digest"))
_ANY = select(exists(select(ApiToken.id)) | exists(select(User.id)))
_WEB_SESSION_USER = select(WebSession.user_id).where(
    WebSession.id_sha256 == bindparam("digest"), WebSession.expires_at > bindparam("now"))
WEB_SESSION_TTL = 14 * 86400  # a signed-in browser signs in again after two weeks
# Sign-in failures allowed per window, per account and per address; then 429 until the window ends.
SIGNIN_WINDOW = 300
SIGNIN_LIMITS = {"user": 5, "addr": 20, "share": 10}  # "share": a share link's password


@dataclass(frozen=True)
class Principal:
    """Who is asking: a token or a user. `owner` marks the upload sessions they create."""

    owner: str
    scope: str
    bucket: str | None = None

    def allows(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)


@functools.cache
def _decoy_hash() -> str:
    return generate_password_hash("not a user")


def _digest(token: str) -> str:
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

    def create_token(self, name: str, scope: str, bucket: str | None = None) -> str:
        if scope not in SCOPES:
            raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}", "invalid_scope")
        if bucket is not None:
            validation.bucket_name(bucket)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with transaction():
            db.session.add(ApiToken(name=name[:100], token_sha256=_digest(token), scope=scope, bucket=bucket,
                                    created_at=int(time.time())))
        self._any_cached = (0.0, True)
        return token

    def token_principal(self, token: str) -> Principal | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        with transaction():
            row = db.session.execute(_FIND_TOKEN, {"digest": _digest(token)}).first()
        return Principal(f"token:{row.id}", row.scope, row.bucket) if row else None

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

    def create_user(self, username: str, password: str) -> None:
        if not _USERNAME_RE.fullmatch(username):
            raise InvalidInput("a user name is 1 to 100 letters, digits, '_', '.', '@' or '-'", "invalid_username")
        if len(password) < 8:
            raise InvalidInput("a password has at least 8 characters", "invalid_password")
        try:
            with transaction():
                db.session.add(User(username=username, password_hash=generate_password_hash(password),
                                    created_at=int(time.time())))
        except IntegrityError:
            raise Conflict(f"user {username!r} exists") from None
        self._any_cached = (0.0, True)

    def sign_in(self, username: str, password: str, address: str) -> str | None:
        """A new web session id for the right password, else None. Failures are counted per
        account and per address; past the limit, TooManyAttempts (checked before the password)."""
        subjects = [f"user:{username[:100]}", f"addr:{address}"]
        now = time.time()
        self.check_attempts(subjects, now)
        with transaction():
            row = db.session.execute(select(User.id, User.password_hash).where(User.username == username)).first()
        # Check a hash even for an unknown name, so timing does not tell which names exist.
        stored = row.password_hash if row else _decoy_hash()
        if not (check_password_hash(stored, password) and row):
            self.count_failure(subjects, now)
            return None
        session_id = secrets.token_urlsafe(32)
        with transaction():
            db.session.execute(delete(SigninFailure).where(SigninFailure.subject == subjects[0]))
            db.session.add(WebSession(id_sha256=_digest(session_id), user_id=row.id, created_at=int(now),
                                      expires_at=now + WEB_SESSION_TTL))
        return session_id

    def sign_out(self, session_id: str) -> None:
        with transaction():
            db.session.execute(delete(WebSession).where(WebSession.id_sha256 == _digest(session_id)))

    def web_session_principal(self, session_id: str) -> Principal | None:
        with transaction():
            user_id = db.session.scalar(_WEB_SESSION_USER, {"digest": _digest(session_id), "now": time.time()})
        return Principal(f"user:{user_id}", "admin") if user_id else None

    def principal_of(self, owner: str) -> Principal | None:
        """Who `owner` ("user:<id>", "token:<id>") is now, with the scope they have now; None if
        they are gone."""
        kind, _, number = owner.partition(":")
        if not number.isdigit():
            return None
        with transaction():
            if kind == "token":
                row = db.session.execute(select(ApiToken.scope, ApiToken.bucket)
                                         .where(ApiToken.id == int(number))).first()
                return Principal(owner, row.scope, row.bucket) if row else None
            if kind == "user" and db.session.scalar(select(User.id).where(User.id == int(number))) is not None:
                return Principal(owner, "admin")
        return None

    def check_attempts(self, subjects: list[str], now: float | None = None) -> None:
        """429 while any of `subjects` ("user:<name>", "share:<id>", "addr:<ip>") failed too often lately."""
        now = time.time() if now is None else now
        with transaction():
            rows = db.session.execute(select(SigninFailure.subject, SigninFailure.failures,
                                             SigninFailure.window_start)
                                      .where(SigninFailure.subject.in_(subjects))).all()
        for row in rows:
            left = row.window_start + SIGNIN_WINDOW - now
            if left > 0 and row.failures >= SIGNIN_LIMITS[row.subject.partition(":")[0]]:
                raise TooManyAttempts("too many failed sign-ins; wait before trying again", retry_after=int(left) + 1)

    def count_failure(self, subjects: list[str], now: float | None = None) -> None:
        now = time.time() if now is None else now
        for subject in subjects:
            for _ in range(3):  # insert or add one; two failures racing to insert go round once
                try:
                    with transaction():
                        counted = db.session.execute(
                            update(SigninFailure).where(SigninFailure.subject == subject,
                                                        SigninFailure.window_start > now - SIGNIN_WINDOW)
                            .values(failures=SigninFailure.failures + 1)).rowcount
                        if not counted:
                            db.session.execute(delete(SigninFailure).where(SigninFailure.subject == subject))
                            db.session.add(SigninFailure(subject=subject, failures=1, window_start=now))
                    break
                except IntegrityError:
                    continue

    def forget_expired(self, now: float) -> int:
        """For gc: signed-in sessions past their time and failure windows that are over."""
        with transaction():
            gone = db.session.execute(delete(WebSession).where(WebSession.expires_at < now)).rowcount
            db.session.execute(delete(SigninFailure).where(SigninFailure.window_start < now - SIGNIN_WINDOW))
        return gone
