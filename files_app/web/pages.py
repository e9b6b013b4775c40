"""What the web pages share: their blueprint, the CSRF token every form carries, and the
filters the templates use."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from flask import Blueprint, request, session, url_for
from markupsafe import Markup

from .. import auth
from ..errors import CsrfFailed

bp = Blueprint("web", __name__)



def folder_url(bucket: str, path: str, **args) -> str:
    """The page of a folder ('' is the bucket's top) or a file."""
    if not path:
        return url_for("web.folder", bucket=bucket, path="", **args)
    return url_for("web.folder_or_file", bucket=bucket, path=path, **args)


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def when(timestamp: int) -> Markup | str:
    """A <time> in UTC; the page's script shows it in the reader's own time zone."""
    if not timestamp:
        return "—"
    moment = datetime.fromtimestamp(timestamp, UTC)
    return Markup('<time datetime="{}">{}</time>').format(moment.isoformat(), moment.strftime("%Y-%m-%d %H:%M UTC"))


_KINDS = (("image/", "image"), ("video/", "video"), ("audio/", "audio"), ("application/pdf", "pdf"),
          ("text/", "text"), ("application/json", "text"), ("application/zip", "archive"),
          ("application/x-tar", "archive"), ("application/gzip", "archive"), ("application/x-7z", "archive"))


def kind(mime_type: str) -> str:
    """What icon a file's row shows: image, video, audio, pdf, text, archive or file."""
    base = mime_type.split(";")[0].strip().lower()
    return next((name for start, name in _KINDS if base.startswith(start)), "file")


def count(number: int) -> str:
    """1234567 -> "1,234,567"."""
    return f"{number:,}"


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


@bp.before_request
def check_csrf():
    if request.method == "POST":
        sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token")
        if not auth.csrf_matches(sent):
            raise CsrfFailed("This form has expired or did not come from this site. Reload the page and try again.")
