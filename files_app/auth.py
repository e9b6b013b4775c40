"""Who may do what. Bearer tokens for the API (scopes read < write < admin, optionally confined to
a bucket); a signed-in user (session cookie naming a server-side web session) for the web UI and
its own API calls. With no token and no user the service is open, which gunicorn.conf.py allows
on loopback addresses only. Where a request comes from is guard.py's business."""

from __future__ import annotations

import hmac

from flask import Flask, current_app, g, redirect, request, session, url_for

from .errors import CsrfFailed, Forbidden, Unauthorized
from .guard import SAFE_METHODS, host_name, is_loopback
from .services.accounts import Principal

OPEN = Principal("", "admin")  # nobody is configured: everyone may do everything
_PUBLIC = {"healthz", "static", "web.login", "web.favicon", "api.openapi",
           # Share links: whoever has one; each view checks the share and its creator's access.
           "shares.page", "shares.unlock", "shares.content", "shares.thumbnail", "shares.zip_folder",
           "shares.create_upload", "shares.upload"}
_ADMIN = {"files.create_bucket", "files.delete_bucket", "web.create_bucket", "web.delete_bucket",
          "api.set_bucket_quota", "api.owner_quota", "web.set_quota", "web.set_any_quota", "web.quotas_page"}


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
        if by_cookie and request.method not in SAFE_METHODS and request.path.startswith("/v1/"):
            # Cookies ride along on cross-site requests: a state change must prove it is ours.
            if not csrf_matches(request.headers.get("X-CSRF-Token")):
                raise CsrfFailed("a signed-in request that changes data needs the page's X-CSRF-Token")
        needed = "admin" if request.endpoint in _ADMIN else "read" if request.method in SAFE_METHODS else "write"
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
    web_session = session.get("sid")
    return (accounts.web_session_principal(web_session) if isinstance(web_session, str) else None), True


def csrf_matches(sent: str | None) -> bool:
    """The token a page or form sent is the session's. No token (no session yet) never matches."""
    expected = session.get("csrf")
    return bool(sent) and isinstance(expected, str) and bool(expected) and hmac.compare_digest(sent, expected)


def service_open() -> bool:
    """Nobody needs to prove who they are: FILES_AUTH=off, or no token and no user exist yet."""
    return current_app.config["FILES_AUTH"] == "off" or not current_app.extensions["files"].accounts.any_credentials()


def current() -> Principal:
    return g.get("principal", OPEN)


def sees_everything() -> bool:
    """An admin confined to no bucket: sees and manages what others made (share links)."""
    return current().allows("admin") and not current().bucket


def check_bucket(bucket: str | None) -> None:
    """For requests that name their bucket in the body (session creation, tus metadata)."""
    principal = current()
    if principal.bucket and bucket != principal.bucket:
        raise Forbidden(f"this token is confined to bucket {principal.bucket!r}")


def refuse_open_exposure(app: Flask, addresses: list[str]) -> str | None:
    """Why the service must not serve: open (no token, no user) on an address other than loopback
    without FILES_AUTH=off. `addresses` are what gunicorn binds (or has bound): host:port,
    [v6]:port, unix:path or fd://n, whatever set them (config, -b, GUNICORN_CMD_ARGS)."""
    exposed = [address for address in addresses if not _local_address(address)]
    if app.config["FILES_AUTH"] == "off" or not exposed:
        return None
    with app.app_context():
        if app.extensions["files"].accounts.any_credentials():
            return None
    return (f"refusing to serve {', '.join(exposed)}: no token and no user exist, so anyone could read and "
            "delete everything. Create one (flask --app app files token create / user create), bind to "
            "127.0.0.1, or set FILES_AUTH=off to run open on purpose.")


def _local_address(address: str) -> bool:
    if address.startswith("unix:"):
        return True  # a socket file: only this host's users (and its permissions) reach it
    if address.startswith("fd://"):
        return False  # inherited from a supervisor: we cannot tell where it listens
    return is_loopback(host_name(address))
