"""Reading a blob from S3: one streamed GET from where `seek` puts it, ranged."""

from __future__ import annotations

from botocore.exceptions import ClientError

from ...errors import StorageError
from .client import S3Client, error_code, translate_errors


class S3BlobReader:
    """A blob's bytes, fetched from where `seek` puts it onwards (Range), in one streamed GET."""

    can_sendfile = False  # they come over the network

    def __init__(self, store: S3Client, key: str):
        self._store, self._key = store, key
        self._position = 0
        self._end: int | None = None
        self._body = None

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0:
            raise OSError("S3 blobs seek from the start only")
        if offset != self._position:
            self._drop()
            self._position = offset
        return offset

    @translate_errors
    def direct_url(self, *, content_type: str, disposition: str) -> str | None:
        """With FILES_S3_PRESIGN, a presigned GET (five minutes) that answers with our headers."""
        if not self._store.presign:
            return None
        return self._store.client.generate_presigned_url("get_object", ExpiresIn=300, Params={
            "Bucket": self._store.bucket, "Key": self._key,
            "ResponseContentType": content_type, "ResponseContentDisposition": disposition})

    def bound(self, end: int) -> None:
        """Only bytes before `end` will be read: ask S3 for no more."""
        if self._body is None:
            self._end = end

    @translate_errors
    def read(self, size: int = -1) -> bytes:
        if self._body is None:
            wanted = f"bytes={self._position}-" + ("" if self._end is None else str(self._end - 1))
            if self._end is not None and self._end <= self._position:
                return b""
            try:
                self._body = self._store.fetch(self._key, wanted)
            except ClientError as error:
                if error_code(error) == "InvalidRange":
                    return b""  # at or past the end
                raise
            if self._body is None:
                raise StorageError(f"{self._key} is missing from the object store")
        data = self._body.read(None if size < 0 else size)
        self._position += len(data)
        return data

    def close(self) -> None:
        self._drop()

    def _drop(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def __enter__(self) -> S3BlobReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
