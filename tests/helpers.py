"""Small helpers shared by the test modules."""

from __future__ import annotations

import hashlib
import io


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ChunkedBody:
    """A request body for the services: yields `data` in pieces, then optionally breaks off."""

    def __init__(self, data: bytes, piece: int = 256 * 1024, fail_after: int | None = None):
        self._stream = io.BytesIO(data)
        self._piece = piece
        self._fail_after = fail_after
        self.read_bytes = 0

    def read(self, size: int) -> bytes:
        from files_app.errors import IncompleteBody

        if self._fail_after is not None and self.read_bytes >= self._fail_after:
            raise IncompleteBody("client went away")
        if self._fail_after is not None:
            size = min(size, self._fail_after - self.read_bytes)
        data = self._stream.read(min(size, self._piece))
        self.read_bytes += len(data)
        return data


def upload(uploads, bucket: str, key: str, data: bytes, chunk: int | None = None, **create):
    """Create a session and send `data` through the service, in chunks of `chunk` bytes."""
    info = uploads.create(bucket=bucket, key=key, size=len(data), **create)
    if not data:
        return info, uploads.objects.get(bucket, key)
    step = chunk or len(data)
    result = None
    for start in range(0, len(data), step):
        piece = data[start:start + step]
        result = uploads.write(info.id, ChunkedBody(piece), length=len(piece), offset=start)
    return info, result.object


def assert_error(response, status, code):
    """The one error shape: {"error": {"status", "code", "message", ...}} as JSON."""
    assert response.status_code == status, response.data
    assert response.content_type == "application/json"
    error = response.get_json()["error"]
    assert (error["status"], error["code"]) == (status, code)
    assert isinstance(error["message"], str) and error["message"]
    return error


def blob_ids(store) -> list[str]:
    """Every blob the store holds, whatever its age."""
    return sorted(store.blob_ids(older_than=float("inf")))


def holds_private_bytes(store, session_id: str) -> bool:
    """Whether a session's bytes-in-progress are still in the store (a partial file, or an S3
    multipart upload or held tail)."""
    if hasattr(store, "uploads"):
        return (store.uploads / session_id).exists()
    return session_id in store.partial_ids(older_than=float("inf"))
