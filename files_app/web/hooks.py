"""Webhooks, for admins: the hooks (made here, with the secret shown once; deleted) and each hook's
delivery log. The JSON twin is /v1/hooks."""

from __future__ import annotations

import re

from flask import flash, redirect, render_template, request, url_for

from .. import validation
from ..access import access
from ..errors import FilesError
from ..services import audit, webhooks
from .pages import bp

PAGE_SIZE = 100


def _words(text: str) -> list[str]:
    """"upload, delete" or "upload delete" as a list."""
    return [word for word in re.split(r"[\s,]+", text) if word]


def _page(**extra):
    families = sorted(webhooks.FAMILIES - set(audit.ACTIONS))
    return render_template("hooks.html", hooks=webhooks.hooks(), actions=audit.ACTIONS, families=families, **extra)


@bp.get("/hooks")
@access("admin")
def hooks_page():
    return _page()


@bp.post("/hooks")
@access("admin")
def create_hook():
    form = request.form
    try:
        made, secret = webhooks.create_hook(form.get("url", "").strip(), _words(form.get("actions", "")) or ["*"],
                                            _words(form.get("buckets", "")) or None,
                                            form.get("secret", "").strip() or None)
    except FilesError as error:
        flash(f"No hook was made: {error.message}.", "error")
        return redirect(url_for("web.hooks_page"))
    # The secret is on this answer alone (never cached), as a new token's is.
    return _page(made=made, secret=secret), 200, {"Cache-Control": "no-store"}


@bp.get("/hooks/<int:hook_id>")
@access("admin")
def hook_page(hook_id: int):
    """The hook and its delivery log, newest first (?state=, paged by an "Older" link)."""
    state = request.args.get("state") or None
    try:
        limit = validation.list_limit(request.args.get("limit"), default=PAGE_SIZE, maximum=1000)
        found = webhooks.deliveries(hook_id, state=state, cursor=request.args.get("cursor") or None, limit=limit)
    except FilesError as error:
        if error.status == 404:
            raise
        flash(error.message, "error")
        return redirect(url_for("web.hook_page", hook_id=hook_id))
    paging = {"state": state, "limit": request.args.get("limit")}
    return render_template(
        "hooks.html", hook=webhooks.hook(hook_id), deliveries=found.deliveries, state=state, states=webhooks.STATES,
        older=url_for("web.hook_page", hook_id=hook_id, **paging, cursor=found.next_cursor) if found.next_cursor
        else None,
        newest=url_for("web.hook_page", hook_id=hook_id, **paging) if request.args.get("cursor") else None)


@bp.post("/hooks/<int:hook_id>/delete")
@access("admin")
def delete_hook(hook_id: int):
    try:
        webhooks.delete_hook(hook_id)
    except FilesError as error:
        flash(error.message, "error")
    else:
        flash("The hook is deleted, and its deliveries not yet sent with it.", "ok")
    return redirect(url_for("web.hooks_page"))
