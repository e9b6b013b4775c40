"""The pages that make and manage share links: a form for a file or a folder (a link to read it, or
a file request to upload into it), the link shown once, and "Shared links" to revoke them."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from .. import auth, validation
from ..access import access
from ..errors import FilesError
from ..request_io import shares
from .pages import bp

# The expiry choices the form offers, in seconds.
EXPIRY_CHOICES = [(3600, "1 hour"), (86400, "1 day"), (7 * 86400, "7 days"), (30 * 86400, "30 days"),
                  (365 * 86400, "1 year")]


@bp.get("/b/<bucket>/share")
@access("read", bucket="bucket")
def share_form(bucket: str):
    """?key= (a file) or ?prefix= (a folder); &upload=1 starts as a file request."""
    return render_template("share_new.html", bucket=bucket, key=request.args.get("key"),
                           prefix=request.args.get("prefix", "") if request.args.get("key") is None else None,
                           upload=bool(request.args.get("upload")), choices=EXPIRY_CHOICES)


@bp.post("/b/<bucket>/share")
@access("write", bucket="bucket")
def create_share(bucket: str):
    form = request.form
    try:
        fields = {"bucket": bucket, "expires_in": validation.form_number(form.get("expires_in", ""), "expires_in")}
        if form.get("key"):
            fields["key"] = form["key"]
        else:
            fields["prefix"] = form.get("prefix", "")
        if form.get("password"):
            fields["password"] = form["password"]
        if max_downloads := validation.form_number(form.get("max_downloads", ""), "max_downloads"):
            fields["max_downloads"] = max_downloads
        if form.get("allow_upload"):
            fields["allow_upload"] = True
            if limit := validation.form_number(form.get("upload_max_mib", ""), "upload_max_mib"):
                fields["upload_max_bytes"] = limit * 1024 * 1024
        share, secret = shares().create(fields, auth.current().owner)
    except FilesError as error:
        flash(error.message, "error")
        return redirect(url_for("web.share_form", bucket=bucket, key=form.get("key") or None,
                                prefix=None if form.get("key") else form.get("prefix", ""),
                                upload=1 if form.get("allow_upload") else None))
    return render_template("share_made.html", share=share,
                           url=url_for("shares.page", secret=secret, _external=True))


@bp.get("/shares")
@access("authenticated")
def shared_links():
    """The caller's share links (an admin's: everyone's), newest first, with their state."""
    return render_template("shares.html", shares=shares().list(auth.current().owner, auth.sees_everything()),
                           now=shares().clock())


@bp.post("/shares/<share_id>/revoke")
@access("authenticated")
def revoke_share(share_id: str):
    try:
        shares().revoke(share_id, auth.current().owner, auth.sees_everything())
        flash("The link no longer works.", "ok")
    except FilesError as error:
        flash(error.message, "error")
    return redirect(url_for("web.shared_links"))

