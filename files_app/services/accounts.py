"""API tokens and users. Only hashes are stored: a token's sha256, a password's werkzeug hash."""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import bindparam, exists, select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from .. import validation
from ..errors import Conflict, InvalidInput
from ..models import ApiToken, User, db

SCOPES = ("read", "write", "admin")  # each allows what the ones before it allow
TOKEN_PREFIX = "fsk_"
_USERNAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,100}")
_FIND_TOKEN = select(ApiToken.id, ApiToken.scope, ApiToken.bucket).where(
    ApiToken.token_sha256 == bindparam("digest"))
_ANY = select(exists(select(ApiToken.id)) | exists(select(User.id)))


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
            answer = bool(db.session.scalar(_ANY))
            db.session.commit()
            self._any_cached = (time.monotonic(), answer)
        return answer

    def create_token(self, name: str, scope: str, bucket: str | None = None) -> str:
        if scope not in SCOPES:
            raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}", "invalid_scope")
        if bucket is not None:
            validation.bucket_name(bucket)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        db.session.add(ApiToken(name=name[:100], token_sha256=_digest(token), scope=scope, bucket=bucket,
                                created_at=int(time.time())))
        db.session.commit()
        self._any_cached = (0.0, True)
        return token

    def token_principal(self, token: str) -> Principal | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        row = db.session.execute(_FIND_TOKEN, {"digest": _digest(token)}).first()
        db.session.commit()
        return Principal(f"token:{row.id}", row.scope, row.bucket) if row else None

    def create_user(self, username: str, password: str) -> None:
        if not _USERNAME_RE.fullmatch(username):
            raise InvalidInput("a user name is 1 to 100 letters, digits, '_', '.', '@' or '-'", "invalid_username")
        if len(password) < 8:
            raise InvalidInput("a password has at least 8 characters", "invalid_password")
        db.session.add(User(username=username, password_hash=generate_password_hash(password),
                            created_at=int(time.time())))
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            raise Conflict(f"user {username!r} exists") from None
        self._any_cached = (0.0, True)

    def sign_in(self, username: str, password: str) -> Principal | None:
        row = db.session.execute(select(User.id, User.password_hash).where(User.username == username)).first()
        db.session.commit()
        # Check a hash even for an unknown name, so timing does not tell which names exist.
        stored = row.password_hash if row else _decoy_hash()
        if check_password_hash(stored, password) and row:
            return Principal(f"user:{row.id}", "admin")
        return None

    def user_principal(self, user_id: int) -> Principal | None:
        found = db.session.scalar(select(User.id).where(User.id == user_id))
        db.session.commit()
        return Principal(f"user:{found}", "admin") if found else None
