"""HTML pages over the same services: browse buckets and folders, look at files, upload, delete.

Every page has a JSON twin in the API (`<link rel="alternate" type="application/json">`).
Pages carry a strict CSP (no inline script), and every form POST carries a CSRF token.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask import Flask, g, render_template, request, session

from .. import auth
from .pages import bp, count, csrf_token, folder_url, human_bytes, kind, when

PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
            "media-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")


def init_app(app: Flask) -> None:
    app.secret_key = _secret_key(app.config["FILES_SECRET_KEY"], Path(app.config["FILES_DATA_DIR"]))
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=bool(app.config["FILES_HTTPS"]))
    from . import account, activity, hooks, people, quotas, sharing, trash, views  # noqa: F401  (routes register on bp)

    app.register_blueprint(bp)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["folder_url"] = folder_url
    app.jinja_env.filters["bytes"] = human_bytes
    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["count"] = count
    app.jinja_env.filters["kind"] = kind

    @app.context_processor
    def who():
        # Who is signed in (the header shows their name and role), and whether the admin pages are
        # theirs to open (on an open service everyone's: that is where the first person is made).
        principal = auth.current()
        service_open = auth.service_open()
        signed_in = principal.owner.startswith("user:")
        return {"service_open": service_open, "signed_in": signed_in, "me": principal if signed_in else None,
                "is_admin": service_open or (signed_in and auth.sees_everything()), "may_manage": may_manage,
                "may_write": may_write, "may_admin": auth.current().is_admin}

    @app.context_processor
    def retention():
        # What a delete does here (its confirmations say so): into the trash for `trash_days`, or
        # gone for good when that is 0.
        return {"trash_days": app.extensions["files"].objects.retention.trash_days}

    @app.after_request
    def csrf_with_every_session(response):
        # The first response that sets the cookie already carries a CSRF token (a page opened
        # right after sign-in, or any flash, has one to send back).
        if session.modified and session:
            csrf_token()
        return response

    @app.after_request
    def security_headers(response):
        # Every response: pages get a CSP without inline script; anything else (JSON, errors) may
        # not run or be framed at all; downloads keep the sandboxing CSP downloads.py gave them.
        csp = PAGE_CSP if response.mimetype == "text/html" else "default-src 'none'; frame-ancestors 'none'"
        response.headers.setdefault("Content-Security-Policy", csp)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.endpoint != "api.content":
            response.headers.setdefault("X-Frame-Options", "DENY")
        return response


def may_manage(bucket: str) -> bool:
    """Whether the caller may manage `bucket` (its Access and Activity links show)."""
    return auth.bucket_refusal(auth.current(), bucket, "manage") is None


def may_write(bucket: str) -> bool:
    """Whether the caller may change `bucket`'s files: a reader is not offered what would be refused.
    Asked once per page (the answer is kept for the request)."""
    answers = g.setdefault("may_write", {})
    if bucket not in answers:
        answers[bucket] = auth.bucket_refusal(auth.current(), bucket, "write") is None
    return answers[bucket]


def wants_html() -> bool:
    """Pages answer errors as pages; the API (and anything asking for JSON) as JSON."""
    if request.endpoint in ("shares.create_upload", "shares.upload"):
        return False  # tus clients
    if request.endpoint in ("shares.content", "shares.zip_folder"):
        return "text/html" in request.headers.get("Accept", "")  # a browser following a download link
    return not request.path.startswith(("/v1/", "/healthz")) and request.blueprint not in ("api", "files")


def error_page(status: int, title: str, message: str):
    return render_template("error.html", status=status, title=title, message=message), status


def _secret_key(configured: str, data_dir: Path) -> str:
    """FILES_SECRET_KEY, else one made once and kept in the data dir (shared by every worker)."""
    if configured:
        return configured
    path = data_dir / "secret_key"
    if not path.exists():
        # Written aside and linked into place, so a worker never reads a half-written key.
        draft = data_dir / f".secret_key.{os.getpid()}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process was first; use its key
        finally:
            draft.unlink()
    return path.read_text().strip()
