"""People, their tokens and web sessions, and grants on buckets:

- `GET|POST /v1/users`, `GET|PATCH|DELETE /v1/users/{name}` (admins);
- `GET /v1/account`, `POST /v1/account/password`, `GET|DELETE /v1/account/sessions` (one's own);
- `GET|POST /v1/tokens`, `DELETE /v1/tokens/{id}` (one's own; an admin's: everyone's);
- `GET /v1/grants/{bucket}`, `PUT|DELETE /v1/grants/{bucket}/{user}` (the bucket's managers).
Never under /v1/files/{bucket}/..., where every path may be a key.
"""

from __future__ import annotations

import time
from typing import Any

from flask import request, session

from .. import auth
from ..access import access
from ..errors import Forbidden, InvalidInput
from ..request_io import accounts, people, read_json_object
from ..services.accounts import ROLES, SCOPES, digest
from ..services.people import GrantInfo, TokenInfo, UserInfo, check_password
from .blueprints import api_bp

MAX_TOKEN_TTL = 10 * 365 * 86400


def user_json(info: UserInfo) -> dict[str, Any]:
    return {"name": info.name, "role": info.role, "created_at": info.created_at,
            "disabled": info.disabled_at is not None, "disabled_at": info.disabled_at}


def token_json(info: TokenInfo, now: float) -> dict[str, Any]:
    state = ("revoked" if info.revoked_at is not None else
             "expired" if info.expires_at is not None and info.expires_at <= now else "active")
    return {"id": info.id, "name": info.name, "scope": info.scope, "bucket": info.bucket, "user": info.user,
            "created_at": info.created_at, "expires_at": info.expires_at, "last_used_at": info.last_used_at,
            "last_used_from": info.last_used_from, "revoked_at": info.revoked_at, "state": state}


def grant_json(info: GrantInfo) -> dict[str, Any]:
    return {"user": info.user, "level": info.level, "created_at": info.created_at}


def _text(fields: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = fields.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string", f"invalid_{name}")
    return value


def _flag(fields: dict[str, Any], name: str) -> bool | None:
    value = fields.get(name)
    if value is not None and not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false", f"invalid_{name}")
    return value


# --- users (admins) -------------------------------------------------------------------------------
@api_bp.get("/users")
@access("admin")
def list_users():
    return {"data": [user_json(info) for info in people().users()]}


@api_bp.post("/users")
@access("admin")
def create_user():
    fields = read_json_object(request.stream)
    info = people().create_user(_text(fields, "name"), _text(fields, "password"), _text(fields, "role", False))
    return user_json(info), 201


@api_bp.get("/users/<name>")
@access("admin")
def get_user(name: str):
    return user_json(people().user(name))


@api_bp.patch("/users/<name>")
@access("admin")
def update_user(name: str):
    """{role?, disabled?, password?}: a new password ends the user's web sessions."""
    fields = read_json_object(request.stream)
    unknown = set(fields) - {"role", "disabled", "password"}
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}", "invalid_field")
    password, role, disabled = _text(fields, "password", False), _text(fields, "role", False), _flag(fields, "disabled")
    people().user(name)  # 404 first, and every field checked before anything changes
    if password is not None:
        check_password(password)
    if role is not None and role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", "invalid_role")
    info = people().update_user(name, role=role, disabled=disabled)
    if password is not None:
        people().set_password(name, password)
    return user_json(people().user(name)) if password is not None else user_json(info)


@api_bp.delete("/users/<name>")
@access("admin")
def delete_user(name: str):
    """?transfer_to=<user>: who takes over the buckets they own (needed when they own any)."""
    people().delete_user(name, request.args.get("transfer_to"))
    return "", 204


# --- one's own account -------------------------------------------------------------------------
@api_bp.get("/account")
@access("authenticated")
def account():
    principal = auth.current()
    return {"owner": principal.owner or None, "name": principal.name, "role": principal.role,
            "scope": principal.scope, "bucket": principal.bucket, "user_id": principal.user_id}


def _person_id() -> int:
    user_id = auth.current().user_id
    if user_id is None:
        raise Forbidden("this credential belongs to no person (an operator's token, or an open service)")
    return user_id


@api_bp.post("/account/password")
@access("write")
def change_password():
    """{current_password, new_password}: every other web session of theirs ends."""
    fields = read_json_object(request.stream)
    name = people().user_by_id(_person_id()).name
    sid = session.get("sid")
    people().set_password(name, _text(fields, "new_password"), current_password=_text(fields, "current_password"),
                          keep_session=digest(sid) if isinstance(sid, str) else None, address=request.remote_addr)
    return "", 204


@api_bp.get("/account/sessions")
@access("authenticated")
def list_web_sessions():
    sid = session.get("sid")
    mine = digest(sid)[:12] if isinstance(sid, str) else None
    return {"data": [{"id": info.id, "created_at": info.created_at, "last_seen_at": info.last_seen_at,
                      "address": info.address, "user_agent": info.user_agent, "current": info.id == mine}
                     for info in people().web_sessions(_person_id())]}


@api_bp.delete("/account/sessions")
@access("write")
def sign_out_everywhere():
    """Every web session of theirs ends, this one too."""
    return {"ended": people().sign_out_everywhere(_person_id())}


# --- tokens ------------------------------------------------------------------------------------
def _own_token() -> int | None:
    kind, _, number = auth.current().owner.partition(":")
    return int(number) if kind == "token" else None


@api_bp.get("/tokens")
@access("authenticated")
def list_tokens():
    now = time.time()
    return {"data": [token_json(info, now) for info in people().tokens(auth.current().user_id, auth.sees_everything(),
                                                                       _own_token())]}


@api_bp.post("/tokens")
@access("authenticated")
def create_token():
    """{name, scope, bucket?, expires_in? (seconds) | expires_at? (Unix seconds)}: the secret is in
    the answer only. A token may do no more than whoever makes it (scope, bucket, role)."""
    principal = auth.current()
    fields = read_json_object(request.stream)
    scope = _text(fields, "scope", False) or "read"
    if scope not in SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}", "invalid_scope")
    if not principal.allows(scope):
        raise Forbidden(f"this credential may {principal.scope}: it cannot make a token that may {scope}")
    bucket = _text(fields, "bucket", False) or principal.bucket
    if principal.bucket and bucket != principal.bucket:
        raise Forbidden(f"this token is confined to bucket {principal.bucket!r}: so are the tokens it makes")
    if principal.user_id is None and not principal.is_admin:
        raise Forbidden("only a person or an admin token makes tokens")
    if bucket is not None and not principal.bucket:
        auth.require_bucket(bucket, "read")  # no token for a bucket its person may not read
    expires_at = _expiry(fields)
    if principal.expires_at is not None and (expires_at is None or expires_at > principal.expires_at):
        expires_at = principal.expires_at  # a token made by a token does not outlive it
    token_id, secret = accounts().create_token(_text(fields, "name"), scope, bucket, user_id=principal.user_id,
                                               role=principal.role, expires_at=expires_at)
    info = next(info for info in people().tokens(None, True) if info.id == token_id)
    return {**token_json(info, time.time()), "token": secret}, 201


def _expiry(fields: dict[str, Any]) -> int | None:
    now = int(time.time())
    if "expires_in" in fields and "expires_at" in fields:
        raise InvalidInput("give expires_in or expires_at, not both", "invalid_expiry")
    for name, base in (("expires_in", now), ("expires_at", 0)):
        value = fields.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not now < base + value <= now + MAX_TOKEN_TTL:
            raise InvalidInput(f"{name} must be whole seconds, in the future and within ten years", f"invalid_{name}")
        return base + value
    return None


@api_bp.delete("/tokens/<int:token_id>")
@access("authenticated")
def revoke_token(token_id: int):
    """Yours (an admin: anyone's). Someone else's is 404, as if it did not exist. A read-only
    credential revokes only itself: revoking others is a change."""
    if token_id != _own_token() and not auth.current().allows("write"):
        raise Forbidden("a read-only credential may revoke only itself")
    info = people().revoke_token(token_id, auth.current().user_id, auth.sees_everything(), _own_token())
    return token_json(info, time.time())


# --- grants ------------------------------------------------------------------------------------
@api_bp.get("/grants/<bucket>")
@access("manage", bucket="bucket")
def list_grants(bucket: str):
    owner, grants = people().grants(bucket)
    return {"bucket": bucket, "owner": owner, "data": [grant_json(info) for info in grants]}


@api_bp.put("/grants/<bucket>/<user>")
@access("manage", bucket="bucket")
def set_grant(bucket: str, user: str):
    """{level: read | write | manage}."""
    fields = read_json_object(request.stream)
    return grant_json(people().grant(bucket, user, _text(fields, "level")))


@api_bp.delete("/grants/<bucket>/<user>")
@access("manage", bucket="bucket")
def remove_grant(bucket: str, user: str):
    people().grant(bucket, user, None)
    return "", 204
