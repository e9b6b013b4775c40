"""Activity (the audit log, newest first, filtered by user, bucket, action and time, paged by an
"Older" link) and a bucket's Access page (its owner and grants)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import flash, redirect, render_template, request, url_for

from .. import auth, validation
from ..access import access
from ..errors import FilesError, InvalidInput
from ..request_io import people
from ..services import audit
from ..services.accounts import BUCKET_LEVELS
from .account import browser_name
from .pages import bp

PAGE_SIZE = 100
FILTERS = ("user", "bucket", "action", "since", "until")


def _day(text: str, name: str, end: bool = False) -> float | None:
    """A day typed in the form (YYYY-MM-DD, UTC) as Unix seconds: its start, or with `end` its end."""
    if not text:
        return None
    try:
        moment = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise InvalidInput(f"{name} is a day written as YYYY-MM-DD", f"invalid_{name}") from None
    return moment + 86400 if end else moment


def readable_buckets_for_activity() -> dict[str, int] | None:
    """Whose entries the caller may read: every one (None) for an admin; else those of the buckets
    they manage, and none at all without a credential that may manage."""
    return people().audit_scope(auth.current(), auth.sees_everything())


@bp.get("/activity")
@access("authenticated")
def activity():
    args = {name: request.args.get(name, "").strip() for name in FILTERS}
    buckets = readable_buckets_for_activity()
    entries, older = [], None
    try:
        filters = audit.AuditFilter(actor=args["user"] or None, bucket=args["bucket"] or None,
                                    action=args["action"] or None, since=_day(args["since"], "since"),
                                    until=_day(args["until"], "until", end=True))
        limit = validation.list_limit(request.args.get("limit"), default=PAGE_SIZE, maximum=1000)
        if buckets != {}:
            found = audit.page(filters, buckets=buckets, cursor=request.args.get("cursor") or None, limit=limit)
            entries, older = found.entries, found.next_cursor
    except FilesError as error:
        flash(error.message, "error")
        return redirect(url_for("web.activity"))
    shown = {name: value for name, value in args.items() if value}
    paging = {**shown, "limit": request.args.get("limit")}  # the next page is as long as this one
    families = sorted({action.partition(".")[0] for action in audit.ACTIONS if "." in action})
    return render_template("activity.html", entries=entries, args=args, shown=shown, buckets=buckets,
                           older=url_for("web.activity", **paging, cursor=older) if older else None,
                           newest=url_for("web.activity", **paging) if request.args.get("cursor") else None,
                           actions=audit.ACTIONS, families=families, browser_name=browser_name,
                           detail_text=detail_text)


def detail_text(detail: dict | None) -> str:
    """An entry's details as people read them: "user: bob, level: read"."""
    if not detail:
        return ""
    return ", ".join(f"{name.replace('_', ' ')}: {value}" for name, value in detail.items() if value is not None)


@bp.get("/b/<bucket>/access")
@access("manage", bucket="bucket")
def bucket_access(bucket: str):
    owner, grants = people().grants(bucket)
    names = [user.name for user in people().users() if user.name != owner] if auth.sees_everything() else []
    return render_template("access.html", bucket=bucket, owner=owner, grants=grants, levels=BUCKET_LEVELS,
                           names=names)


@bp.post("/b/<bucket>/access")
@access("manage", bucket="bucket")
def change_access(bucket: str):
    user, level = request.form.get("user", "").strip(), request.form.get("level", "")
    try:
        if not user:
            raise InvalidInput("name the person to give access to", "invalid_user")
        people().grant(bucket, user, level or None)
    except FilesError as error:
        flash(f"Access did not change: {error.message}.", "error")
    else:
        flash(f"{user} has {level or 'no'} access to {bucket} now.", "ok")
    return redirect(url_for("web.bucket_access", bucket=bucket))
