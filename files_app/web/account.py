"""My account: change my password, my personal access tokens (made here, shown once, revoked here),
the browsers I am signed in on, and "sign out everywhere"."""

from __future__ import annotations

import hashlib
import re
import time

from flask import flash, redirect, render_template, request, session, url_for

from .. import auth, validation
from ..access import access
from ..errors import FilesError, InvalidInput
from ..request_io import accounts, people
from ..services.accounts import SCOPES, capped_scope
from .pages import bp

MAX_TOKEN_DAYS = 3650


def token_state(token, now: float) -> str:
    """active, expired or revoked: what a token row says of itself."""
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"


def scopes_for(role: str) -> list[str]:
    """The scopes a person of `role` may give their tokens: no more than they may do."""
    return [scope for scope in SCOPES if capped_scope(scope, role) == scope]


_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chromium/", "Chromium"),
             ("Chrome/", "Chrome"), ("Safari/", "Safari"), ("curl/", "curl"), ("python", "Python"))
_SYSTEMS = (("Android", "Android"), ("iPhone", "iOS"), ("iPad", "iPadOS"), ("Windows", "Windows"),
            ("Mac OS X", "macOS"), ("CrOS", "ChromeOS"), ("Linux", "Linux"))


def browser_name(user_agent: str | None) -> str:
    """"Firefox on Linux" from a User-Agent header (the whole header stays in the page's tooltip)."""
    if not user_agent:
        return "Unknown browser"
    browser = next((name for mark, name in _BROWSERS if mark in user_agent), None)
    if browser is None:
        browser = re.split(r"[/ ]", user_agent, maxsplit=1)[0][:40] or "Unknown browser"
    system = next((name for mark, name in _SYSTEMS if mark in user_agent), None)
    return f"{browser} on {system}" if system else browser


def this_session_digest() -> str | None:
    """The stored name of this browser's web session (sha256 of the cookie's id), or None."""
    sid = session.get("sid")
    return hashlib.sha256(sid.encode("utf-8", "surrogatepass")).hexdigest() if isinstance(sid, str) else None


def _person():
    """The signed-in person asking (a web session), or None: an open service, or a bearer token."""
    principal = auth.current()
    if principal.user_id is None or not principal.owner.startswith("user:"):
        return None
    return principal


def _back():
    return redirect(url_for("web.account"))


@bp.get("/account")
@access("authenticated")
def account():
    me = _person()
    if me is None:
        return render_template("account.html", me=None)
    digest = this_session_digest()
    return render_template("account.html", me=me, tokens=people().tokens(me.user_id, everyone=False),
                           sessions=people().web_sessions(me.user_id), now=time.time(),
                           this_session=digest[:12] if digest else None, scopes=scopes_for(me.role),
                           state=token_state, browser_name=browser_name)


@bp.post("/account/password")
@access("authenticated")
def change_password():
    me = _person()
    form = request.form
    try:
        if me is None:
            raise InvalidInput("sign in as a person to change a password", "not_signed_in")
        if form.get("new_password", "") != form.get("repeat_password", ""):
            raise InvalidInput("the two new passwords differ", "passwords_differ")
        people().set_password(me.name, form.get("new_password", ""),
                              current_password=form.get("current_password", ""), keep_session=this_session_digest(),
                              address=request.remote_addr)
    except FilesError as error:
        flash(f"The password was not changed: {error.message}.", "error")
        return _back()
    flash("Password changed. Every other browser signed in as you has been signed out.", "ok")
    return _back()


@bp.post("/account/tokens")
@access("authenticated")
def create_token():
    me = _person()
    form = request.form
    try:
        if me is None:
            raise InvalidInput("sign in as a person to make a token of your own", "not_signed_in")
        days = validation.form_number(form.get("expires_days", ""), "expires_days")
        if days is not None and not 1 <= days <= MAX_TOKEN_DAYS:
            raise InvalidInput(f"a token expires after 1 to {MAX_TOKEN_DAYS} days, or never", "invalid_expires_days")
        token_id, secret = accounts().create_token(
            form.get("name", ""), form.get("scope", ""), form.get("bucket", "").strip() or None,
            user_id=me.user_id, role=me.role, expires_at=int(time.time()) + days * 86400 if days else None)
    except FilesError as error:
        flash(f"No token was made: {error.message}.", "error")
        return _back()
    # The secret is in this answer only: never in a flash (the session cookie is signed, not secret).
    made = next(token for token in people().tokens(me.user_id, everyone=False) if token.id == token_id)
    return render_template("token_made.html", token=made, secret=secret), 200, {"Cache-Control": "no-store"}


@bp.post("/account/tokens/<int:token_id>/revoke")
@access("authenticated")
def revoke_my_token(token_id: int):
    me = _person()
    try:
        if me is None:
            raise InvalidInput("sign in as a person to revoke your tokens", "not_signed_in")
        token = people().revoke_token(token_id, me.user_id, everyone=False)
    except FilesError as error:
        flash(error.message, "error")
        return _back()
    flash(f"Token {token.name} is revoked: the next request that sends it is refused.", "ok")
    return _back()


@bp.post("/account/sign-out-everywhere")
@access("authenticated")
def sign_out_everywhere():
    me = _person()
    if me is None:
        flash("Nobody is signed in here.", "error")
        return _back()
    ended = people().sign_out_everywhere(me.user_id)
    session.clear()
    flash(f"Signed out everywhere ({ended} browser{'s' if ended != 1 else ''}). Sign in again here.", "ok")
    return redirect(url_for("web.login"))
