"""Upload sessions: create, send content, read, abort. Each URL serves both dialects: a request
that speaks tus goes to the tus handler (tus.py), the others are the seed's JSON."""

from __future__ import annotations

from flask import request

from .. import auth, validation
from ..access import access
from ..errors import InvalidInput, NotFound
from ..request_io import RequestBody, read_json_object, uploads
from ..services import ChunkRequest
from ..tus import handler as tus
from .blueprints import files_bp
from .common import file_json, session_json

_FIELDS = ("bucket", "key", "mime_type", "size", "sha256")


@files_bp.post("")
@files_bp.post("/")  # tus endpoints are often written with a trailing slash
@access("write")
def create_session():
    if "Tus-Resumable" in request.headers:
        return tus.create_upload()
    fields = read_json_object(request.stream)
    for name in ("bucket", "key", "size"):
        if name not in fields:
            raise InvalidInput(f"missing field {name!r}", "missing_field", field=name)
    create_only = validation.if_none_match(request.headers.get("If-None-Match"))
    auth.require_bucket(fields.get("bucket"), "write")
    info = uploads().create(**{name: fields.get(name) for name in _FIELDS}, create_only=create_only,
                            owner=auth.current().owner)
    body = session_json(info)
    return body, 201, {"Location": body["url"]}


@files_bp.get("/session:<session_id>")  # (and HEAD, which only tus sends)
@access("read")
def session(session_id: str):
    if request.method == "HEAD":
        return tus.head_upload(session_id)
    info = uploads().get(session_id, auth.current().owner)
    return session_json(info), 200, {"Upload-Offset": str(info.offset), "Cache-Control": "no-store"}


@files_bp.post("/session:<session_id>")
@access("write")
def upload_content(session_id: str):
    chunk = ChunkRequest(RequestBody(request.stream), length=request.content_length,
                         offset=validation.offset_header(request.headers.get("Upload-Offset")),
                         checksum=validation.checksum_header(request.headers.get("Upload-Checksum")),
                         sha256=validation.sha256_hex(validation.sha256_header(request.headers.get("X-Checksum-Sha256"))))
    result = uploads().write(session_id, chunk, owner=auth.current().owner)
    headers = {"Upload-Offset": str(result.session.offset)}
    if result.object is not None:
        return file_json(result.object), 200, headers
    return session_json(result.session), 200, headers


@files_bp.patch("/session:<session_id>")  # tus only (refuse_other_versions sees to it)
@access("write")
def patch_session(session_id: str):
    return tus.patch_upload(session_id)


@files_bp.delete("/session:<session_id>")
@access("write")
def abort_session(session_id: str):
    uploads().abort(session_id, auth.current().owner)
    return "", 204


@files_bp.route("", methods=["PATCH"])
@files_bp.route("/", methods=["PATCH"])
@files_bp.route("/<bucket>", methods=["PATCH"])
@files_bp.route("/<bucket>/<path:key>", methods=["PATCH"])
@access("public")
def not_an_upload(**_url_parts: str):
    """tus: a PATCH to what is not an upload URL is about an upload that does not exist (404, not 405)."""
    raise NotFound(f"no upload at {request.path}")
