"""What anyone with a share link sees and does, without signing in: `/s/<secret>` (a file with its
preview, or a folder's files, or a file request's drop zone), its bytes, a folder as a zip, and tus
uploads into a file request. Each request opens the share again: expired, revoked, used up, or its
creator's access gone, it answers 410; so does a file's link whose file was deleted or replaced.

A download spends one of a link's downloads when its answer carries the whole file or its first
byte (decided where the answer is: downloads.send_object), whatever Range and If-Range say; HEAD,
304, a resumed range and errors spend none.
"""

from __future__ import annotations

import hashlib
import hmac
import posixpath
import time

from flask import Blueprint, current_app, g, make_response, redirect, render_template, request, url_for
from werkzeug.http import http_date

from .. import auth, validation
from ..access import access
from ..downloads import send_object, send_thumbnail
from ..errors import Forbidden, InvalidInput, NotFound, ShareGone, Unauthorized
from ..request_io import RequestBody, accounts, objects, shares, uploads, zip_response
from ..services import ChunkRequest, acting, archive
from ..services.accounts import Principal
from ..services.shares import ShareInfo
from ..tus import handler, protocol
from ..web.views import folder_crumbs, preview_context

bp = Blueprint("shares", __name__, url_prefix="/s")
PAGE_SIZE = 100


def _open(secret: str, need: str = "read") -> ShareInfo:
    """The share, if it still works and its creator may still do what it does (`need`)."""
    share = shares().open(secret)
    if share.created_by is None:
        allowed = auth.service_open()  # made while the service was open: only while it still is
    else:
        creator = accounts().principal_of(share.created_by)
        allowed = creator is not None and auth.bucket_refusal(creator, share.bucket, need) is None
    if not allowed:
        raise ShareGone("whoever shared this may no longer do so", state="revoked")
    g.principal = Principal(f"share:{share.id}", need, share.bucket)
    actor = acting.current_actor()
    acting.set_actor(acting.Actor(g.principal.owner, f"share link {share.id}", actor.address, actor.user_agent))
    return share


def _proof(share: ShareInfo) -> str:
    """The cookie that says this browser gave the password (changes with it, and with the secret key)."""
    return hmac.new(current_app.secret_key.encode(), f"{share.id}:{share.password_hash}".encode(),
                    hashlib.sha256).hexdigest()


def _unlocked(share: ShareInfo) -> bool:
    return share.password_hash is None or hmac.compare_digest(request.cookies.get(f"s_{share.id}", ""), _proof(share))


def _require_unlocked(share: ShareInfo) -> None:
    if not _unlocked(share):
        raise Unauthorized("this link needs its password: open the link's page first")


@bp.get("/<secret>")
@access("public")
def page(secret: str):
    share = _open(secret)
    if not _unlocked(share):
        return render_template("share_password.html", share=share, secret=secret)
    context = {"share": share, "secret": secret}
    if share.key is not None:
        info = shares().file_of(share)
        if share.max_downloads:  # no preview: it would spend a download, or show the file without one
            context.update(file=info, preview=None)
        else:  # the file page's previews; a relative image in Markdown would be another file: not shown
            context.update(preview_context(info, None, ""))
            if shares().file_of(share).sha256 != info.sha256:  # replaced while its preview was read
                raise ShareGone("the shared file was replaced since it was shared", state="file_gone")
    else:
        path = _subfolder(share, request.args.get("path", ""))
        context.update(path=path, crumbs=folder_crumbs(path))
        if share.listing:
            context["page"] = objects().list(share.bucket, prefix=(share.prefix or "") + path, delimiter="/",
                                             limit=PAGE_SIZE, cursor=request.args.get("cursor"))
    return render_template("share.html", **context)


@bp.post("/<secret>")
@access("public")
def unlock(secret: str):
    """The password form: a right one leaves a cookie for this link; failures are throttled per
    link and per address, as sign-ins are."""
    share = _open(secret)
    subjects = [f"share:{share.id}", f"addr:{request.remote_addr}"]
    accounts().count_attempt(subjects)
    if not shares().password_matches(share, request.form.get("password", "")):
        return render_template("share_password.html", share=share, secret=secret, wrong=True), 401
    accounts().attempt_succeeded(subjects)
    shares().unlocked(share)
    response = make_response(redirect(url_for("shares.page", secret=secret)))
    response.set_cookie(f"s_{share.id}", _proof(share), max_age=max(share.expires_at - int(time.time()), 60),
                        path=f"/s/{secret}", httponly=True, samesite="Strict", secure=request.is_secure)
    return response


@bp.route("/<secret>/f/<path:key>", methods=["GET", "HEAD"])
@access("public")
def content(secret: str, key: str):
    """A shared file's bytes (a folder's file by its name under the folder). Ranges and the
    untrusted-content headers as for every download; HTML and SVG are never shown inline."""
    share = _open(secret)
    _require_unlocked(share)
    full_key = share.key if share.key is not None else (share.prefix or "") + key
    if share.key is not None and key != posixpath.basename(share.key) or not share.holds(full_key):
        raise NotFound("no such file in this share")
    if share.key is None and not share.listing:
        raise Forbidden("this link takes uploads; it shows no files")
    check = None
    if share.key is not None:
        sha256 = shares().file_of(share).sha256

        def check(info):  # the bytes opened are the shared file's: not another's put there meanwhile
            if info.sha256 != sha256:
                raise ShareGone("the shared file was replaced since it was shared", state="file_gone")

    # A resumed download (a range past byte 0) is the same download: counted once, by its first byte.
    return send_object(share.bucket, full_key, attachment=bool(request.args.get("download")), check=check,
                       count=lambda: shares().count_download(share, full_key))


@bp.get("/<secret>/t/<path:key>")
@access("public")
def thumbnail(secret: str, key: str):
    """A shared folder's image as a thumbnail, for its listing (spends no download: it is not the file)."""
    share = _open(secret)
    _require_unlocked(share)
    if share.key is not None or not share.listing:
        raise NotFound("this link lists no files")
    return send_thumbnail(share.bucket, (share.prefix or "") + key)


@bp.get("/<secret>/zip")
@access("public")
def zip_folder(secret: str):
    share = _open(secret)
    _require_unlocked(share)
    if share.key is not None or not share.listing:
        raise NotFound("this link shares no folder to download")
    path = _subfolder(share, request.args.get("path", ""))
    name = (path.rstrip("/").rpartition("/")[2] or (share.prefix or "").rstrip("/").rpartition("/")[2]
            or share.bucket) + ".zip"
    if request.method == "HEAD":  # no archive, and no download spent
        return zip_response(iter(()), name)
    shares().count_download(share)
    return zip_response(archive.zip_folder(objects(), share.bucket, (share.prefix or "") + path), name)


# --- file requests: tus uploads into the shared folder -------------------------------------------

@bp.post("/<secret>/uploads")
@access("public")
def create_upload(secret: str):
    """A tus creation: Upload-Length (no deferral) and the file's name in Upload-Metadata. The file
    goes under the shared folder by its name alone, and never replaces one: a taken name becomes
    "name (1).ext" (keep both)."""
    share = _upload_share(secret)
    if request.headers.get("Tus-Resumable") != protocol.VERSION:
        raise InvalidInput(f"send Tus-Resumable: {protocol.VERSION}", "invalid_tus_version")
    length = request.headers.get("Upload-Length")
    if length is None:
        raise InvalidInput("a file request's upload needs Upload-Length", "invalid_length")
    size = protocol.parse_length(length)
    metadata = protocol.parse_metadata(request.headers.get("Upload-Metadata"))
    name = posixpath.basename((protocol.metadata_text(metadata, "filename", "name") or "").replace("\\", "/"))
    info = shares().start_upload(share, name=name, size=size,
                                 mime_type=protocol.metadata_text(metadata, "filetype", "type"),
                                 tus_metadata=request.headers.get("Upload-Metadata"), owner=g.principal.owner)
    headers = {"Location": url_for("shares.upload", secret=secret, session_id=info.id, _external=True),
               "Upload-Expires": http_date(info.expires_at), "Tus-Resumable": protocol.VERSION}
    if request.content_length:  # creation-with-upload
        chunk = ChunkRequest(RequestBody(request.stream), offset=0, length=request.content_length)
        info = uploads().write(info.id, chunk, owner=g.principal.owner, with_creation=True).session
        headers["Upload-Offset"] = str(info.offset)
    return handler.empty(201, headers)


@bp.route("/<secret>/uploads/<session_id>", methods=["HEAD", "PATCH", "DELETE"])
@access("public")
def upload(secret: str, session_id: str):
    """The upload's tus URL: only this link's uploads are found here."""
    share = _upload_share(secret)
    if request.method == "DELETE":  # its bytes go back to the link
        shares().abort_upload(share, session_id, g.principal.owner)
        response = handler.empty(204, {})
    elif request.method == "HEAD":
        response = handler.head_upload(session_id)
    else:
        response = handler.patch_upload(session_id)
    response.headers["Tus-Resumable"] = protocol.VERSION
    return response


def _upload_share(secret: str) -> ShareInfo:
    share = _open(secret, "write")
    if not share.allow_upload:
        raise Forbidden("this link takes no uploads")
    _require_unlocked(share)
    return share


def _subfolder(share: ShareInfo, path: str) -> str:
    """A folder under the shared one, relative to it ('' or ending in '/'); never out of it."""
    if not path:
        return ""
    if not path.endswith("/") or path.startswith("/") or "/../" in f"/{path}" or "/./" in f"/{path}":
        raise NotFound("no such folder in this share")
    validation.list_prefix((share.prefix or "") + path)
    return path

