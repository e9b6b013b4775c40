"""Who may do what. Bearer tokens for the API (scopes read < write < admin, optionally confined to
a bucket); a signed-in user (session cookie) for the web UI and its own API calls. With no token
and no user the service is open, which gunicorn.conf.py allows on loopback addresses only."""

from __future__ import annotations

import hmac

from flask import Flask, current_app, g, redirect, request, session, url_for

from .errors import Forbidden, Unauthorized
from .services.accounts import Principal

OPEN = Principal("", "admin")  # nobody is configured: everyone may do everything
_PUBLIC = {"healthz", "static", "web.login", "web.favicon", "api.openapi"}
_ADMIN = {"api.delete_bucket", "web.create_bucket", "web.delete_bucket"}
_SAFE = ("GET", "HEAD", "OPTIONS")


def init_app(app: Flask) -> None:
    accounts = app.extensions["files"].accounts

    @app.before_request
    def authenticate():
        g.principal = OPEN
        if request.method == "OPTIONS" or request.endpoint in _PUBLIC or service_open():
            return None
        principal, by_cookie = _identify(accounts)
        if principal is None:
            if request.path.startswith("/v1/"):
                raise Unauthorized("send Authorization: Bearer <token>")
            return redirect(url_for("web.login", next=request.full_path))
        if by_cookie and request.method not in _SAFE and request.path.startswith("/v1/"):
            # Cookies ride along on cross-site requests: a state change must prove it is ours.
            sent = request.headers.get("X-CSRF-Token", "")
            if not hmac.compare_digest(sent, session.get("csrf", "")):
                raise Forbidden("a signed-in request that changes data needs the page's X-CSRF-Token")
        needed = "admin" if request.endpoint in _ADMIN else "read" if request.method in _SAFE else "write"
        if not principal.allows(needed):
            raise Forbidden(f"this token may {principal.scope}, not {needed}")
        bucket = (request.view_args or {}).get("bucket")
        if principal.bucket and bucket is not None and bucket != principal.bucket:
            raise Forbidden(f"this token is confined to bucket {principal.bucket!r}")
        g.principal = principal
        return None


def _identify(accounts) -> tuple[Principal | None, bool]:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Authorization must be 'Bearer <token>'")
        principal = accounts.token_principal(token.strip())
        if principal is None:
            raise Unauthorized("this token is not valid")
        return principal, False
    user_id = session.get("user_id")
    return (accounts.user_principal(user_id) if isinstance(user_id, int) else None), True


def service_open() -> bool:
    """Nobody needs to prove who they are: FILES_AUTH=off, or no token and no user exist yet."""
    return current_app.config["FILES_AUTH"] == "off" or not current_app.extensions["files"].accounts.any_credentials()


def current() -> Principal:
    return g.get("principal", OPEN)


def check_bucket(bucket: str | None) -> None:
    """For requests that name their bucket in the body (session creation, tus metadata)."""
    principal = current()
    if principal.bucket and bucket != principal.bucket:
        raise Forbidden(f"this token is confined to bucket {principal.bucket!r}")


def refuse_open_exposure(app: Flask) -> str | None:
    """Why the service must not start: open (no token, no user) on a non-loopback address
    without FILES_AUTH=off. Checked before anything binds the port."""
    host = app.config["FILES_HOST"]
    if app.config["FILES_AUTH"] == "off" or _is_loopback(host):
        return None
    with app.app_context():
        if app.extensions["files"].accounts.any_credentials():
            return None
    return (f"refusing to serve {host}: no token and no user exist, so anyone could read and delete "
            "everything. Create one (flask --app app files token create / user create), bind to "
            "127.0.0.1, or set FILES_AUTH=off to run open on purpose.")


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
