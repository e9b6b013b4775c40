"""What every view shares, whichever blueprint or dialect: the services, and the request body as
the services read it."""

from __future__ import annotations

from flask import current_app, request

from .errors import IncompleteBody
from .services import ObjectService, UploadService


def uploads() -> UploadService:
    return current_app.extensions["files"].uploads


def objects() -> ObjectService:
    return current_app.extensions["files"].objects


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

    def drain(self, limit: int) -> None:
        """Read and drop up to `limit` more bytes. A server that answers and closes while the client
        is still sending resets the connection, and the client never sees the answer."""
        while limit > 0:
            try:
                dropped = self.read(min(limit, 64 * 1024))
            except IncompleteBody:
                return
            if not dropped:
                return
            limit -= len(dropped)
