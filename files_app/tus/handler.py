"""The tus 1.0 dialect on the upload session URLs: creation (with upload, deferred length,
concatenation), HEAD, PATCH, OPTIONS, and the hooks every /v1/files request passes (the API's
files blueprint registers them: api/blueprints.py).

The upload URL of every session is its seed URL, /v1/files/session:<id>; the API's views
(api/sessions.py) hand a request here when it speaks tus. No blueprint of its own.
"""

from __future__ import annotations

import uuid

from flask import Response, current_app, request, url_for
from werkzeug.http import http_date

from .. import auth, validation
from ..errors import InvalidInput, PreconditionFailed, UnsupportedMediaType
from ..models import SessionKind
from ..request_io import RequestBody, is_chunked, uploads
from ..services import ChunkRequest, SessionInfo
from . import protocol

# Endpoints that exist only in the tus dialect: a request without Tus-Resumable is refused.
_TUS_ONLY = {("HEAD", "files.session"), ("PATCH", "files.patch_session")}


# --- hooks -------------------------------------------------------------------------------------------
def refuse_other_versions():
    """The protocol: a tus request of a version we do not speak gets 412 with the versions we do,
    and nothing else happens."""
    if request.method == "OPTIONS":
        return None
    version = request.headers.get("Tus-Resumable")
    if version is None and (request.method, request.endpoint) not in _TUS_ONLY and not _tus_creation():
        return None  # the seed's dialect
    if version != protocol.VERSION:
        raise PreconditionFailed(f"tus version {version!r} is not supported; use {protocol.VERSION}",
                                 tus_version=protocol.VERSION)
    return None


def answer_options():
    """OPTIONS tells what the server speaks (and answers CORS preflights, see cors.py): 200, as
    tusd answers (clients accept 200 and 204 alike)."""
    if request.method != "OPTIONS":
        return None
    return empty(200, options_headers() if request.blueprint == "files" else {})


def mark_resumable(response: Response) -> Response:
    if request.method != "OPTIONS":
        response.headers["Tus-Resumable"] = protocol.VERSION
    return response


def _tus_creation() -> bool:
    """A POST that announces a tus upload (a length, and no JSON body of the seed's) but forgot
    Tus-Resumable: the protocol says 412 with the versions we speak."""
    announces = "Upload-Length" in request.headers or "Upload-Defer-Length" in request.headers
    seed_body = bool(request.content_length) and request.mimetype != protocol.UPLOAD_CONTENT_TYPE
    return request.method == "POST" and request.endpoint == "files.create_session" and announces and not seed_body


# --- handlers ----------------------------------------------------------------------------------------


def options_headers() -> dict[str, str]:
    return {
        "Tus-Version": protocol.VERSION,
        "Tus-Extension": ",".join(protocol.EXTENSIONS),
        "Tus-Max-Size": str(current_app.config["FILES_MAX_OBJECT_SIZE"]),
        "Tus-Checksum-Algorithm": ",".join(protocol.CHECKSUM_ALGORITHMS),
    }


def _has_body() -> bool:
    return bool(request.content_length) or is_chunked()


def _require_upload_content_type() -> None:
    if request.mimetype != protocol.UPLOAD_CONTENT_TYPE:
        raise UnsupportedMediaType(f"upload bytes need Content-Type: {protocol.UPLOAD_CONTENT_TYPE}")


def empty(status: int, headers: dict[str, str]) -> Response:
    """A tus answer: headers only, and no Content-Type claiming a body that is not there."""
    response = Response(status=status, headers=headers)
    del response.headers["Content-Type"]
    return response


def _location(info: SessionInfo) -> str:
    return url_for("files.session", session_id=info.id, _external=True)


def create_upload():
    """POST /v1/files with Tus-Resumable."""
    raw_metadata = request.headers.get("Upload-Metadata")
    metadata = protocol.parse_metadata(raw_metadata)
    kind, partial_ids = protocol.parse_concat(request.headers.get("Upload-Concat"))
    target = dict(
        bucket=protocol.metadata_text(metadata, "bucket") or current_app.config["FILES_DEFAULT_BUCKET"],
        key=protocol.metadata_text(metadata, "key", "filename", "name") or uuid.uuid4().hex,
        mime_type=protocol.metadata_text(metadata, "filetype", "type"),
        create_only=validation.if_none_match(request.headers.get("If-None-Match")),
        tus_metadata=raw_metadata or None,
        owner=auth.current().owner,
    )
    length, deferred = request.headers.get("Upload-Length"), request.headers.get("Upload-Defer-Length")
    if kind != SessionKind.PARTIAL:
        auth.require_bucket(target["bucket"], "write")
    if kind == SessionKind.FINAL:
        if length is not None or deferred is not None:
            raise InvalidInput("a final upload's length is its partials' sum: send no Upload-Length",
                               "invalid_length")
        info = uploads().concatenate(partial_ids, tus_concat=request.headers["Upload-Concat"], **target).session
        return empty(201, {"Location": _location(info), "Upload-Offset": str(info.offset),
                           "Upload-Expires": http_date(info.expires_at)})
    if deferred is not None and (deferred != "1" or length is not None):
        raise InvalidInput("Upload-Defer-Length must be 1, and not sent with Upload-Length", "invalid_length")
    if length is None and deferred is None:
        raise InvalidInput("a tus creation needs Upload-Length or Upload-Defer-Length: 1", "invalid_length")
    if _has_body():
        _require_upload_content_type()
    checksum = validation.checksum_header(request.headers.get("Upload-Checksum"))
    size = None if length is None else protocol.parse_length(length)
    if kind == SessionKind.PARTIAL:
        target.update(bucket=None, key=None)
    info = uploads().create(size=size, kind=kind, defer_length=size is None, **target)
    headers = {"Location": _location(info), "Upload-Expires": http_date(info.expires_at)}
    if _has_body():  # creation-with-upload
        chunk = ChunkRequest(RequestBody(request.stream), offset=0, length=request.content_length, checksum=checksum)
        info = uploads().write(info.id, chunk, owner=target["owner"], with_creation=True).session
        headers.update({"Upload-Offset": str(info.offset), "Upload-Expires": http_date(info.expires_at)})
    return empty(201, headers)


def head_upload(session_id: str):
    """HEAD /v1/files/session:<id>."""
    info = uploads().get(session_id, auth.current().owner)
    headers = {"Cache-Control": "no-store"}
    if info.kind != SessionKind.FINAL or info.completed:
        headers["Upload-Offset"] = str(info.offset)
    if info.size is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(info.size)
    metadata = info.tus_metadata
    if metadata is None and info.kind == SessionKind.UPLOAD:  # made by the seed's API: say where it goes
        metadata = protocol.encode_metadata({"bucket": info.bucket, "key": info.key, "filetype": info.mime_type})
    if metadata:
        headers["Upload-Metadata"] = metadata
    if info.kind == SessionKind.PARTIAL:
        headers["Upload-Concat"] = "partial"
    elif info.kind == SessionKind.FINAL:
        headers["Upload-Concat"] = info.tus_concat
    if not info.completed:
        headers["Upload-Expires"] = http_date(info.expires_at)
    return empty(200, headers)


def patch_upload(session_id: str):
    """PATCH /v1/files/session:<id>: bytes at an offset."""
    _require_upload_content_type()
    offset = validation.offset_header(request.headers.get("Upload-Offset"))
    if offset is None:
        raise InvalidInput("PATCH needs Upload-Offset", "invalid_offset")
    length = request.headers.get("Upload-Length")
    chunk = ChunkRequest(RequestBody(request.stream), offset=offset, length=request.content_length,
                         checksum=validation.checksum_header(request.headers.get("Upload-Checksum")),
                         declared_size=None if length is None else protocol.parse_length(length))
    result = uploads().write(session_id, chunk, owner=auth.current().owner)
    info = result.session
    return empty(204, {"Upload-Offset": str(info.offset), "Upload-Expires": http_date(info.expires_at)})


class MethodOverride:
    """X-HTTP-Method-Override names the method, for clients that cannot send PATCH or DELETE."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        override = environ.get("HTTP_X_HTTP_METHOD_OVERRIDE", "").strip().upper()
        if override.isalpha() and override.isascii():
            environ["REQUEST_METHOD"] = override
        return self.wsgi_app(environ, start_response)
