"""Upload sessions: create, send content, read, abort."""

from __future__ import annotations

from flask import request

from .. import auth, validation
from ..errors import InvalidInput
from ..services import ChunkRequest
from ..tus import views as tus_views
from . import bp
from .common import RequestBody, file_json, read_json_object, session_json, uploads

_FIELDS = ("bucket", "key", "mime_type", "size", "sha256")


@bp.post("/files")
@bp.post("/files/")  # tus endpoints are often written with a trailing slash
def create_session():
    if "Tus-Resumable" in request.headers:
        return tus_views.create_upload()
    fields = read_json_object(request.stream)
    for name in ("bucket", "key", "size"):
        if name not in fields:
            raise InvalidInput(f"missing field {name!r}", "missing_field", field=name)
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match not in (None, "*"):
        raise InvalidInput("If-None-Match on session creation may only be '*'", "invalid_precondition")
    auth.check_bucket(fields.get("bucket"))
    info = uploads().create(**{name: fields.get(name) for name in _FIELDS}, create_only=if_none_match == "*",
                            owner=auth.current().owner)
    body = session_json(info)
    return body, 201, {"Location": body["url"]}


@bp.get("/files/session:<session_id>")
def session(session_id: str):
    if request.method == "HEAD":
        return tus_views.head_upload(session_id)
    info = uploads().get(session_id, auth.current().owner)
    return session_json(info), 200, {"Upload-Offset": str(info.offset), "Cache-Control": "no-store"}


@bp.post("/files/session:<session_id>")
def upload_content(session_id: str):
    chunk = ChunkRequest(RequestBody(request.stream), length=request.content_length,
                         offset=validation.offset_header(request.headers.get("Upload-Offset")),
                         checksum=validation.checksum_header(request.headers.get("Upload-Checksum")))
    result = uploads().write(session_id, chunk, owner=auth.current().owner)
    headers = {"Upload-Offset": str(result.session.offset)}
    if result.object is not None:
        return file_json(result.object), 200, headers
    return session_json(result.session), 200, headers


@bp.delete("/files/session:<session_id>")
def abort_session(session_id: str):
    uploads().abort(session_id, auth.current().owner)
    return "", 204
