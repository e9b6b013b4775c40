"""Who may do what. Bearer tokens for the API (scopes read < write < manage < admin, optionally
confined to a bucket, and capped by their person's role); a signed-in user (session cookie naming a
server-side web session) for the web UI and its own API calls. Admins may do everything; members
what they own and what they were granted. With no token and no user the service is open, which
gunicorn.conf.py allows on loopback addresses only. Where a request comes from is guard.py's
business; what each route needs is declared on the route (access.py)."""

from __future__ import annotations

import hmac

from flask import Flask, current_app, flash, g, redirect, request, session, url_for

from . import access
from .errors import CsrfFailed, FilesError, Forbidden, NotFound, Unauthorized
from .guard import SAFE_METHODS, host_name, is_loopback
from .services import acting
from .services.accounts import BUCKET_LEVELS, Principal

OPEN = Principal("", "admin")  # nobody is configured: everyone may do everything
ANONYMOUS = Principal("", "read", role="member")  # a public route on a closed service: nobody in particular


def init_app(app: Flask) -> None:
    accounts = app.extensions["files"].accounts

    @app.before_request
    def authenticate():
        """Who is asking, and may they call this route: the view's declared rule (access.py) decides."""
        g.principal = OPEN
        acting.set_actor(acting.Actor(None, None, request.remote_addr, _user_agent()))
        if request.endpoint is None or request.method == "OPTIONS":
            return None  # routing answers 404/405; CORS preflights carry no credentials
        rule = access.rule_of(app.view_functions.get(request.endpoint))
        if rule is None:
            raise Forbidden(f"route {request.endpoint} declares no access rule")
        if service_open():
            return None
        if rule.level == "public":
            g.principal = ANONYMOUS
            return None
        principal, by_cookie = _identify(accounts)
        if principal is None:
            if request.blueprint == "web":
                if session.pop("sid", None) is not None:  # it was signed in: say why it is not any more
                    flash("Your session has ended (signed out everywhere, a new password, or the account was "
                          "disabled). Sign in again.", "error")
                return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
            raise Unauthorized("send Authorization: Bearer <token>")
        # Pages check their forms' token themselves (web/pages.py); everything else a cookie reaches
        # must send the page's token in a header: cookies ride along on cross-site requests.
        if by_cookie and request.method not in SAFE_METHODS and request.blueprint != "web":
            if not csrf_matches(request.headers.get("X-CSRF-Token")):
                raise CsrfFailed("a signed-in request that changes data needs the page's X-CSRF-Token")
        g.principal = principal
        acting.set_actor(acting.Actor(principal.owner, principal.name, request.remote_addr, _user_agent(),
                                      principal.user_id, principal.role == "admin"))
        if rule.level == "admin":
            if not principal.is_admin:
                raise Forbidden("only an admin may do this")
            if rule.bucket is not None:
                check_confinement((request.view_args or {}).get(rule.bucket))
            elif principal.bucket:  # people, tokens, quotas of everyone: not a one-bucket credential's business
                raise Forbidden(f"this token is confined to bucket {principal.bucket!r}")
        elif rule.level != "authenticated":
            if rule.bucket is not None:
                require_bucket((request.view_args or {}).get(rule.bucket), rule.level)
            elif not principal.allows(rule.level):
                raise Forbidden(f"this credential may {principal.scope}, not {rule.level}")
        return None


def _user_agent() -> str | None:
    return request.headers.get("User-Agent", "")[:200] or None


def _identify(accounts) -> tuple[Principal | None, bool]:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Authorization must be 'Bearer <token>'")
        principal = accounts.token_principal(token.strip(), request.remote_addr)
        if principal is None:
            raise Unauthorized("this token is not valid (unknown, revoked or expired)")
        return principal, False
    web_session = session.get("sid")
    if not isinstance(web_session, str):
        return None, True
    return accounts.web_session_principal(web_session, request.remote_addr), True


def require_bucket(bucket: str | None, level: str) -> None:
    """May the caller do `level` ("read", "write", "manage") in `bucket`? For views whose bucket is
    in the body, and for the hook."""
    if (refusal := bucket_refusal(current(), bucket, level)) is not None:
        raise refusal


def bucket_refusal(principal: Principal, bucket: str | None, level: str) -> FilesError | None:
    """Why `principal` may not do `level` in `bucket`, or None if they may. A bucket the caller may
    not read does not exist for them (404); one that does not exist yet may be made by anyone who
    may write (it becomes theirs)."""
    if principal.bucket and bucket != principal.bucket:
        return Forbidden(f"this token is confined to bucket {principal.bucket!r}")
    if not principal.allows(level):
        return Forbidden(f"this credential may {principal.scope}, not {level}")
    if principal.role == "admin" or not isinstance(bucket, str):
        return None  # admins may do everything; no bucket: the view refuses the request itself
    if bucket == current_app.config["FILES_OPENAI_BUCKET"]:  # the service's own: nobody's to make or browse
        return NotFound(f"bucket {bucket!r} does not exist, or is not shared with you")
    have = current_app.extensions["files"].accounts.bucket_level(principal, bucket)
    if have == "absent":
        return None  # reads find nothing; a write makes it, as theirs
    if have is None:
        return NotFound(f"bucket {bucket!r} does not exist, or is not shared with you")
    if BUCKET_LEVELS.index(have) < BUCKET_LEVELS.index(level):
        return Forbidden(f"you may {have} in bucket {bucket!r}, not {level}")
    return None


def person() -> str | None:
    """Whose things the caller makes, across their credentials: "user:<id>" for a person (signed in
    or by any of their tokens), else the credential's owner (an operator's token); None when open."""
    principal = current()
    return f"user:{principal.user_id}" if principal.user_id is not None else principal.owner or None


def only_their_own() -> str | None:
    """For things that belong to a person (OpenAI files): a member sees only theirs; None: all."""
    return None if current().role == "admin" else person()


def bucket_filter() -> dict:
    """How the caller's bucket lists are narrowed: to a token's one bucket, to a member's own and
    granted ones."""
    principal = current()
    return {"only": principal.bucket, "readable_by": principal.user_id if principal.role != "admin" else None}


def check_confinement(bucket: str) -> None:
    """For routes that work in one bucket of the service's own (the OpenAI API's)."""
    principal = current()
    if principal.bucket and bucket != principal.bucket:
        raise Forbidden(f"this token is confined to bucket {principal.bucket!r}")


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
    """An admin confined to no bucket: sees and manages what others made (share links, tokens)."""
    return current().is_admin and not current().bucket


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
