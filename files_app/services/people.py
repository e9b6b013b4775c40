"""People and what they may do: users (roles, disabling, deleting, passwords), their tokens and
web sessions, and grants on buckets. Each check and the change it allows happen in one transaction,
after the rows they depend on are taken for writing: two admins demoting each other leave one.
Every change is in the audit log, written in the same transaction.
"""

from __future__ import annotations

import functools
import gzip
import re
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from .. import validation
from ..errors import Conflict, Forbidden, InvalidInput, LastAdmin, NotFound, OwnsBuckets
from ..models import ApiToken, Bucket, Grant, Share, User, WebSession, db, transaction
from . import audit
from .accounts import BUCKET_LEVELS, ROLES, AccountService, Principal

_USERNAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,100}")
MIN_PASSWORD = 10
COMMON_PASSWORDS = Path(__file__).resolve().parent.parent / "data" / "common-passwords.txt.gz"


@functools.cache
def _common_passwords() -> frozenset[str]:
    with gzip.open(COMMON_PASSWORDS, "rt", encoding="utf-8") as lines:
        return frozenset(line.strip() for line in lines)


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a password has at least {MIN_PASSWORD} characters", "invalid_password")
    if password.lower() in _common_passwords():
        raise InvalidInput("that password is among the most common ones; choose another", "common_password")


@dataclass(frozen=True)
class UserInfo:
    id: int
    name: str
    role: str
    created_at: int
    disabled_at: int | None


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    scope: str
    bucket: str | None
    user: str | None  # whose it is; None: an operator's token
    created_at: int
    expires_at: int | None
    last_used_at: int | None
    last_used_from: str | None
    revoked_at: int | None


@dataclass(frozen=True)
class WebSessionInfo:
    id: str  # the first characters of the stored hash: names it, opens nothing
    created_at: int
    last_seen_at: int | None
    address: str | None
    user_agent: str | None


@dataclass(frozen=True)
class GrantInfo:
    user: str
    level: str
    created_at: int


_USER_COLUMNS = (User.id, User.username, User.role, User.created_at, User.disabled_at)
_LIVE_ADMINS = select(func.count()).select_from(User).where(User.role == "admin", User.disabled_at.is_(None))


def _user_row(name: str, for_update: bool = False):
    query = select(*_USER_COLUMNS).where(User.username == name)
    row = db.session.execute(query.with_for_update() if for_update else query).first()
    if row is None:
        raise NotFound(f"user {name!r} does not exist")
    return row


def _lock_admins() -> None:
    """Take every admin's row for writing before counting them (SQLite: the write lock, by a no-op
    UPDATE; PostgreSQL: row locks), so that two requests cannot each remove 'another' admin."""
    db.session.execute(update(User).where(User.role == "admin").values(role=User.role))


class PeopleService:
    def __init__(self, accounts: AccountService):
        self.accounts = accounts

    # --- users -----------------------------------------------------------------------------
    def users(self) -> list[UserInfo]:
        with transaction():
            return [UserInfo(*row) for row in db.session.execute(select(*_USER_COLUMNS).order_by(User.username))]

    def user(self, name: str) -> UserInfo:
        with transaction():
            return UserInfo(*_user_row(name))

    def user_by_id(self, user_id: int) -> UserInfo:
        with transaction():
            row = db.session.execute(select(*_USER_COLUMNS).where(User.id == user_id)).first()
        if row is None:
            raise NotFound("this user no longer exists")
        return UserInfo(*row)

    def create_user(self, name: str, password: str, role: str | None = None) -> UserInfo:
        """A new person. `role` None: admin if they are the first person, else member."""
        if not _USERNAME_RE.fullmatch(name):
            raise InvalidInput("a user name is 1 to 100 letters, digits, '_', '.', '@' or '-'", "invalid_username")
        if role is not None and role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}", "invalid_role")
        check_password(password)
        password_hash = generate_password_hash(password)
        now = int(time.time())
        try:
            with transaction():
                _lock_admins()
                if role is None:
                    role = "member" if db.session.scalar(select(func.count()).select_from(User)) else "admin"
                row = User(username=name, password_hash=password_hash, created_at=now, role=role)
                db.session.add(row)
                db.session.flush()
                audit.record("user.create", detail={"user": name, "role": role})
                info = UserInfo(row.id, name, role, now, None)
        except IntegrityError:
            raise Conflict(f"user {name!r} exists") from None
        self.accounts.credentials_made()
        return info

    def update_user(self, name: str, *, role: str | None = None, disabled: bool | None = None) -> UserInfo:
        """Change a role or disable/enable. The last live admin can be neither demoted nor disabled.
        Disabling ends their web sessions at once; their tokens and shares stop at their next use."""
        if role is not None and role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}", "invalid_role")
        with transaction():
            _lock_admins()
            row = _user_row(name, for_update=True)
            values: dict = {}
            if role is not None and role != row.role:
                values["role"] = role
            if disabled is not None and disabled != (row.disabled_at is not None):
                values["disabled_at"] = int(time.time()) if disabled else None
            losing_admin = row.role == "admin" and row.disabled_at is None and (
                values.get("role", "admin") != "admin" or values.get("disabled_at") is not None)
            if losing_admin and db.session.scalar(_LIVE_ADMINS) <= 1:
                raise LastAdmin(f"{name!r} is the last admin: make another admin first")
            if values:
                db.session.execute(update(User).where(User.id == row.id).values(**values))
                if values.get("disabled_at"):
                    db.session.execute(delete(WebSession).where(WebSession.user_id == row.id))
                audit.record("user.update", detail={"user": name, **{k: v for k, v in values.items()}})
            fresh = db.session.execute(select(*_USER_COLUMNS).where(User.id == row.id)).one()
        return UserInfo(*fresh)

    def delete_user(self, name: str, transfer_to: str | None = None) -> None:
        """Delete a person: their web sessions, tokens (revoked, kept for the record), grants and
        shares go with them. Refused while they own buckets, unless `transfer_to` takes them over."""
        with transaction():
            _lock_admins()
            row = _user_row(name, for_update=True)
            if row.role == "admin" and row.disabled_at is None and db.session.scalar(_LIVE_ADMINS) <= 1:
                raise LastAdmin(f"{name!r} is the last admin: make another admin first")
            owned = db.session.scalar(select(func.count()).select_from(Bucket).where(Bucket.owner_id == row.id))
            heir = None
            if owned:
                if transfer_to is None:
                    raise OwnsBuckets(f"{name!r} owns {owned} bucket(s): name who takes them over (transfer_to)")
                heir = _user_row(transfer_to)
                if heir.id == row.id:
                    raise InvalidInput("the buckets must go to someone else", "invalid_transfer_to")
                db.session.execute(update(Bucket).where(Bucket.owner_id == row.id).values(owner_id=heir.id))
            now = int(time.time())
            db.session.execute(update(ApiToken).where(ApiToken.user_id == row.id, ApiToken.revoked_at.is_(None))
                               .values(revoked_at=now))
            db.session.execute(update(Share).where(Share.created_by == f"user:{row.id}", Share.revoked_at.is_(None))
                               .values(revoked_at=now))
            db.session.execute(delete(User).where(User.id == row.id))  # sessions and grants cascade
            audit.record("user.delete", detail={"user": name, "buckets_to": heir.username if heir else None,
                                                "buckets": owned})

    def set_password(self, name: str, new_password: str, *, current_password: str | None = None,
                     keep_session: str | None = None, address: str | None = None) -> None:
        """A new password. With `current_password` (a person changing their own) it must match,
        and guesses are counted and limited as sign-ins are (per account and per `address`).
        Every web session of theirs ends but `keep_session` (the id hash of the one asking)."""
        check_password(new_password)
        with transaction():
            row = db.session.execute(select(User.id, User.password_hash).where(User.username == name)).first()
        if row is None:
            raise NotFound(f"user {name!r} does not exist")
        if current_password is not None:
            subjects = [f"user:{name}", f"addr:{address or ''}"]
            self.accounts.count_attempt(subjects)
            if not check_password_hash(row.password_hash, current_password[:1024]):
                with transaction():
                    audit.record("user.password", outcome="failed", detail={"user": name, "by_self": True})
                raise Forbidden("the current password is not right")
            self.accounts.attempt_succeeded(subjects)
        new_hash = generate_password_hash(new_password)
        with transaction():
            db.session.execute(update(User).where(User.id == row.id).values(password_hash=new_hash))
            ending = delete(WebSession).where(WebSession.user_id == row.id)
            if keep_session is not None:
                ending = ending.where(WebSession.id_sha256 != keep_session)
            db.session.execute(ending)
            audit.record("user.password", detail={"user": name, "by_self": current_password is not None})

    # --- tokens ------------------------------------------------------------------------------
    def tokens(self, user_id: int | None, everyone: bool, own_token: int | None = None) -> list[TokenInfo]:
        """A person's tokens (`user_id`), or every token (`everyone`, for admins), newest first. A
        token that belongs to no person and is no admin's sees itself alone (`own_token`)."""
        query = (select(ApiToken.id, ApiToken.name, ApiToken.scope, ApiToken.bucket, User.username,
                        ApiToken.created_at, ApiToken.expires_at, ApiToken.last_used_at, ApiToken.last_used_from,
                        ApiToken.revoked_at)
                 .outerjoin(User, User.id == ApiToken.user_id).order_by(ApiToken.id.desc()))
        if not everyone:
            query = query.where(ApiToken.user_id == user_id if user_id is not None else ApiToken.id == own_token)
        with transaction():
            return [TokenInfo(*row) for row in db.session.execute(query)]

    def revoke_token(self, token_id: int, user_id: int | None, everyone: bool,
                     own_token: int | None = None) -> TokenInfo:
        """Revoke one of `user_id`'s tokens (or anyone's, `everyone`; or, for a token of no person,
        itself). Someone else's is 404: its id tells a member nothing. Revoking twice is no error."""
        with transaction():
            query = update(ApiToken).where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
            if not everyone:
                query = query.where(ApiToken.user_id == user_id if user_id is not None else ApiToken.id == own_token)
            revoked = db.session.execute(query.values(revoked_at=int(time.time())).returning(ApiToken.name)).first()
            if revoked:
                audit.record("token.revoke", detail={"token": token_id, "name": revoked.name})
        found = [info for info in self.tokens(user_id, everyone, own_token) if info.id == token_id]
        if not found:
            raise NotFound(f"token {token_id} does not exist")
        return found[0]

    # --- web sessions ------------------------------------------------------------------------
    def web_sessions(self, user_id: int) -> list[WebSessionInfo]:
        query = (select(WebSession.id_sha256, WebSession.created_at, WebSession.last_seen_at, WebSession.address,
                        WebSession.user_agent).where(WebSession.user_id == user_id, WebSession.expires_at > time.time())
                 .order_by(WebSession.created_at.desc()))
        with transaction():
            return [WebSessionInfo(row[0][:12], *row[1:]) for row in db.session.execute(query)]

    def sign_out_everywhere(self, user_id: int) -> int:
        with transaction():
            ended = db.session.execute(delete(WebSession).where(WebSession.user_id == user_id)).rowcount
            audit.record("signout.everywhere", detail={"sessions": ended})
        return ended

    # --- grants -------------------------------------------------------------------------------
    def grants(self, bucket: str) -> tuple[str | None, list[GrantInfo]]:
        """A bucket's owner's name and its grants."""
        with transaction():
            bucket_row = self._bucket(bucket)
            owner = db.session.scalar(select(User.username).where(User.id == bucket_row.owner_id))
            rows = db.session.execute(select(User.username, Grant.level, Grant.created_at)
                                      .join(User, User.id == Grant.user_id)
                                      .where(Grant.bucket_id == bucket_row.id).order_by(User.username)).all()
        return owner, [GrantInfo(*row) for row in rows]

    def grant(self, bucket: str, user: str, level: str | None) -> GrantInfo | None:
        """Give `user` `level` in `bucket` (None: take it away)."""
        if level is not None and level not in BUCKET_LEVELS:
            raise InvalidInput(f"level must be one of {', '.join(BUCKET_LEVELS)}", "invalid_level")
        now = int(time.time())
        for _ in range(3):  # two grants of one person racing to insert: the loser goes round once more
            try:
                with transaction():
                    bucket_row = self._bucket(bucket)
                    user_row = _user_row(user)
                    if user_row.id == bucket_row.owner_id:
                        raise InvalidInput(f"{user!r} owns bucket {bucket!r}: an owner needs no grant", "owner")
                    db.session.execute(delete(Grant).where(Grant.bucket_id == bucket_row.id,
                                                           Grant.user_id == user_row.id))
                    if level is not None:
                        db.session.add(Grant(bucket_id=bucket_row.id, user_id=user_row.id, level=level,
                                             created_at=now))
                    audit.record("grant", bucket=bucket, detail={"user": user, "level": level})
                break
            except IntegrityError:
                continue
        else:
            raise Conflict(f"{user!r}'s access to {bucket!r} is being changed at the same time; retry")
        return GrantInfo(user, level, now) if level is not None else None

    def visible_buckets(self, principal: Principal) -> list[str] | None:
        """The names of the buckets `principal`'s person may read; None: every bucket."""
        if principal.role == "admin":
            return None
        with transaction():
            return list(db.session.scalars(
                select(Bucket.name).where((Bucket.owner_id == principal.user_id) | Bucket.id.in_(
                    select(Grant.bucket_id).where(Grant.user_id == principal.user_id))).order_by(Bucket.name)))

    def audit_scope(self, principal: Principal, everything: bool) -> dict[str, int] | None:
        """Whose audit entries `principal` may read: all (None) for an unconfined admin credential
        (`everything`); else the buckets they manage, each from the entry that made it (an older
        bucket of the same name is not theirs), and none without a credential that may manage."""
        if everything:
            return None
        if not principal.allows("manage"):
            return {}
        query = select(Bucket.name)
        if principal.role != "admin":
            query = query.where((Bucket.owner_id == principal.user_id) | Bucket.id.in_(
                select(Grant.bucket_id).where(Grant.user_id == principal.user_id, Grant.level == "manage")))
        if principal.bucket:
            query = query.where(Bucket.name == principal.bucket)
        elif principal.role == "admin":
            return {}  # an admin's credential that is not an admin's (confined elsewhere): nothing
        with transaction():
            names = list(db.session.scalars(query))
        return audit.first_entries(names)

    @staticmethod
    def _bucket(name: str):
        row = db.session.execute(select(Bucket.id, Bucket.owner_id)
                                 .where(Bucket.name == validation.bucket_name(name))).first()
        if row is None:
            raise NotFound(f"bucket {name!r} does not exist")
        return row
