"""What every view shares, whichever blueprint or dialect: the services, the request body as the
services read it, small JSON bodies, and streamed downloads' headers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from flask import Response, current_app, request, stream_with_context

from . import validation
from .errors import IncompleteBody, InvalidInput
from .services import ObjectService, UploadService
from .services.accounts import AccountService
from .services.folders import FolderService
from .services.people import PeopleService
from .services.quotas import QuotaService
from .services.shares import ShareService
from .services.thumbnails import ThumbnailService
from .services.trash import TrashService

MAX_JSON_BYTES = 64 * 1024
MAX_DRAIN_BYTES = 1024 * 1024  # read past a refused JSON body this far, so that the 400 reaches the client
CLOSE_CONNECTION = "files.close_connection"  # set in a request's environ: its answer says Connection: close


def close_when_asked(wsgi_app):
    """WSGI middleware: an answer whose request set CLOSE_CONNECTION goes out with `Connection: close`
    (gunicorn's response object, behind its start_response, is told to close), so that a keep-alive
    client does not send its next request on a connection that will not read it."""
    def app(environ, start_response):
        def start(status, headers, exc_info=None):
            if environ.get(CLOSE_CONNECTION):
                force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
                if force_close is not None:
                    force_close()
            return start_response(status, headers, exc_info)
        return wsgi_app(environ, start)
    return app


def uploads() -> UploadService:
    return current_app.extensions["files"].uploads


def objects() -> ObjectService:
    return current_app.extensions["files"].objects


def folders() -> FolderService:
    return current_app.extensions["files"].folders


def trash() -> TrashService:
    return current_app.extensions["files"].trash


def uploader_name(owner: str | None) -> str | None:
    return current_app.extensions["files"].accounts.uploader_name(owner)


def accounts() -> AccountService:
    return current_app.extensions["files"].accounts


def people() -> PeopleService:
    return current_app.extensions["files"].people


def shares() -> ShareService:
    return current_app.extensions["files"].shares


def quotas() -> QuotaService:
    return current_app.extensions["files"].quotas


def thumbnails() -> ThumbnailService:
    return current_app.extensions["files"].thumbnails


def filename_params(name: str) -> str:
    """Content-Disposition's file name, for old clients (ASCII) and new (RFC 6266 UTF-8): only a base
    name (what follows the last '/' or '\\', never '', '.' or '..'), so that no browser or tool saves
    it anywhere but where it was asked to, and no control or invisible character in it."""
    name = validation.visible(validation.key_name(name))
    ascii_name = "".join(character if " " <= character <= "~" and character not in '"\\%' else "_"
                         for character in name)
    return f"filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def zip_response(chunks: Iterator[bytes], name: str) -> Response:
    """A zip archive streamed as it is made (the request's context stays for the services)."""
    return Response(stream_with_context(chunks), mimetype="application/zip", headers={
        "Content-Disposition": f"attachment; {filename_params(name)}",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    })


def is_chunked() -> bool:
    """The body comes in chunks (Transfer-Encoding: chunked): its length is not known up front."""
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()


class RequestBody:
    """`request.stream` as the services' Body: any failure to read is the client's broken body
    (disconnects, bad chunked encoding raise from deep in the server), never a 500."""

    def __init__(self, stream):
        self._stream = stream

    def read(self, size: int) -> bytes:
        try:
            return self._stream.read(size)
        except Exception as error:  # noqa: BLE001 - server-specific exception types
            raise IncompleteBody(f"the request body broke off: {error.__class__.__name__}") from None

    def drain(self, limit: int) -> bool:
        """Read and drop up to `limit` more bytes. A server that answers and closes while the client
        is still sending resets the connection, and the client never sees the answer. Whether the
        body's end was reached (if not, the connection cannot carry another request)."""
        while limit > 0:
            try:
                dropped = self.read(min(limit, 64 * 1024))
            except IncompleteBody:
                return True
            if not dropped:
                return True
            limit -= len(dropped)
        return not self.read(1)


def read_json_object(stream) -> dict[str, Any]:
    """Parse a small JSON object from the raw body, whatever Content-Type claims: the seed's
    curl examples send JSON as application/x-www-form-urlencoded."""
    body = RequestBody(stream)
    raw = body.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        if not body.drain(MAX_DRAIN_BYTES):
            request.environ[CLOSE_CONNECTION] = True  # the rest of the body is still on the wire
        raise InvalidInput(f"the JSON body must be at most {MAX_JSON_BYTES} bytes", "body_too_large")
    try:
        value = json.loads(raw)
    except RecursionError:  # "[[[[..." nested past Python's stack: hostile, not a server fault
        raise InvalidInput("the JSON body is nested too deeply", "invalid_json") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInput(f"the body is not valid JSON: {error}", "invalid_json") from None
    if not isinstance(value, dict):
        raise InvalidInput("the body must be a JSON object", "invalid_json")
    try:  # "\ud800" parses, but a lone surrogate is no text: nothing downstream could store or encode it
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("the JSON body holds a lone surrogate (\\ud800-\\udfff): not text", "invalid_json") from None
    return value
