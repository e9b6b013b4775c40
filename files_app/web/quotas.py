"""Quota pages: a bucket's from its page, and every quota (a bucket's, a user's, a token's) on /quotas."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from .. import auth, validation
from ..access import access
from ..errors import FilesError, Forbidden
from ..request_io import quotas
from .pages import bp


@bp.post("/b/<bucket>/quota")
@access("admin", bucket="bucket")
def set_quota(bucket: str):
    """A bucket's quota, from the bucket page (sizes as people write them: 10G, 500M; empty: none)."""
    return _set_quota("bucket", bucket, url_for("web.folder", bucket=bucket, path=""))


@bp.get("/quotas")
@access("admin")
def quotas_page():
    """Every quota with what it counts now, and a form for a bucket's, a user's or a token's."""
    _unconfined()
    return render_template("quotas.html", quotas=quotas().all())


@bp.post("/quotas")
@access("admin")
def set_any_quota():
    _unconfined()
    kind = request.form.get("kind", "")
    if kind not in ("bucket", "user", "token"):
        flash("choose a bucket, a user or a token", "error")
        return redirect(url_for("web.quotas_page"))
    return _set_quota(kind, request.form.get("name", "").strip(), url_for("web.quotas_page"))


def _unconfined() -> None:
    """Every quota is the whole service's business: a credential confined to one bucket is refused here
    as the API refuses it (the authentication hook already does, for any admin route naming no bucket;
    said again where the quotas are, as /v1/quotas/users|tokens says it)."""
    if auth.current().bucket:
        raise Forbidden("a token confined to a bucket cannot see or set every quota")


def _set_quota(kind: str, name: str, back: str):
    try:
        max_bytes = validation.byte_size(request.form.get("max_bytes", ""), "max_bytes")
        max_files = validation.form_number(request.form.get("max_files", ""), "max_files")
        info = quotas().set(quotas().subject(kind, name), max_bytes, max_files)
    except FilesError as error:
        flash(error.message, "error")
        return redirect(back)
    flash("Quota removed." if info.max_bytes is None and info.max_files is None else "Quota set.", "ok")
    return redirect(back)
